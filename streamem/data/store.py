"""The model store: models saved as zarr groups, and outputs put in place whole.

A saved model is a zarr group: parameters as arrays, hyper-parameters, fitted scalars,
the history and a format version as JSON attributes. Loading reads arrays and JSON only:
it never executes code. Saving writes to a temporary name and renames it into place, so a
failed save leaves no half-written model.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
import zarr

from streamem.data.storage import Location, location, remove

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "atomic_location",
    "atomic_path",
    "check_model_path",
    "check_new_output",
    "json_safe",
    "publish_model",
    "read_group",
    "read_model",
    "write_group",
    "write_model",
]

FORMAT = "streamem.GaussianMixture"
FORMAT_VERSION = 1


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """A temporary name beside ``path`` to write a file or a directory to: renamed onto
    ``path`` when the block ends without error (a directory already there is moved aside
    first, then removed), removed when it raises. ``suffix`` ends the temporary name (for
    writers that choose the format from it)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    tmp = parent / f".{path.name}.tmp-{uuid.uuid4().hex}{suffix}"
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            old = parent / f".{path.name}.old-{uuid.uuid4().hex}"
            os.replace(path, old)
            os.replace(tmp, path)
            remove(old)
        else:
            os.replace(tmp, path)
    finally:
        remove(tmp)


@contextlib.contextmanager
def atomic_location(target: Location):
    """A temporary place beside ``target`` to write a file or a zarr group to, put at
    ``target`` when the block ends without error and removed when it raises: renamed on
    local disk (:func:`atomic_path`), copied with the root metadata last in an object store
    (:meth:`~streamem.data.storage.Location.commit_from`)."""
    if target.local:
        with atomic_path(target.path) as tmp:
            yield location(tmp)
        return
    tmp = target.temporary()
    try:
        yield tmp
        target.commit_from(tmp)  # removes tmp
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to see: it names where a model is kept
            tmp.remove()
        raise


def _probe(target: Location) -> tuple[bool, bool]:
    """Whether ``target`` exists, and whether the directory or bucket that would hold it
    does; a store that cannot be asked (unreachable, access denied) as one ValueError."""
    try:
        return target.exists(), target.store_exists()
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot write to {target.url!r}: {exc}") from None


def check_new_output(target: Location) -> None:
    """ValueError unless ``target`` is a new name in a place that exists (checked before
    long work): one line that names the place."""
    exists, parent_exists = _probe(target)
    if exists:
        raise ValueError(f"{target.url!r} already exists; choose another output path")
    if not parent_exists:
        raise ValueError(f"cannot write to {target.url!r}: the directory or bucket that would hold it does not exist")


def json_safe(value):
    """Hyper-parameter values as JSON; arrays go to the group as arrays instead."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return None


def check_model_path(path, storage_options: dict | None = None) -> None:
    """Raise ValueError unless a model can be saved at ``path`` (checked before long work)."""
    target = location(path, storage_options)
    exists, parent_exists = _probe(target)
    if not parent_exists:
        raise ValueError(f"expected an existing directory or bucket to save into, got {target.parent.url!r}")
    if exists:
        try:
            read_model(target)
        except ValueError:
            raise ValueError(f"refusing to overwrite {target.url!r}: it exists and is not a streamem model") from None


def write_model(path, arrays: dict, attrs: dict, pack: bool = False, storage_options: dict | None = None) -> None:
    """Write a model group to ``path`` (a local path or any fsspec URL) atomically
    (:func:`atomic_location`)."""
    target = location(path, storage_options)
    check_model_path(target)
    with atomic_location(target) as tmp:
        write_group(tmp, arrays, attrs, pack)


PUBLISHED_VERSIONS = 3
PUBLISHED = "streamem.published"


def publish_model(path, arrays: dict, attrs: dict, storage_options: dict | None = None) -> None:
    """Publish a model at ``path`` for readers in other processes: each version is a new
    group in ``.NAME.versions`` beside it, and ``path`` switches atomically to the newest,
    so a reader (:func:`read_model` follows the switch once) always reads one whole
    version. On local disk ``path`` is a symbolic link replaced by a rename; in an object
    store it is a group whose only object, its ``zarr.json``, names the version and is
    replaced in one request. The last few versions are kept for readers still reading them."""
    target = location(path, storage_options)
    versions = target.sibling(f".{target.name}.versions")
    name = f"model-{time.time_ns()}-{uuid.uuid4().hex[:8]}.zarr"
    if target.local:
        path = Path(target.path)
        Path(versions.path).mkdir(exist_ok=True)
        if path.exists() and not path.is_symlink():
            check_model_path(path)  # a model saved before: it becomes the oldest version
            os.replace(path, Path(versions.path) / f"model-0-{uuid.uuid4().hex}.zarr")
        with atomic_path(Path(versions.path) / name) as tmp:
            write_group(tmp, arrays, attrs, pack=True)
        with atomic_path(path) as link:
            os.symlink(Path(versions.name) / name, link)
    else:
        saved = target.exists() and _published_version(target) is None
        if saved:
            check_model_path(target)  # a model saved before: readers keep it until the new version is whole
        write_group(versions / name, arrays, attrs, pack=True)  # a reader sees it once its zarr.json is written
        if saved:  # it becomes the oldest version, then its zarr.json turns into the pointer
            target.copy_tree_to(versions / f"model-0-{uuid.uuid4().hex}.zarr")
        pointer = {"zarr_format": 3, "node_type": "group", "attributes": {"format": PUBLISHED, "current": name}}
        (target / "zarr.json").write_text(json.dumps(pointer))
        if saved:
            target.remove_below_root()
    old = sorted((n for n in versions.listdir() if n.startswith("model-")), key=lambda n: int(n.split("-")[1]))
    for stale in old[:-PUBLISHED_VERSIONS]:
        (versions / stale).remove()


def _published_version(target: Location) -> Location | None:
    """The version a published model in an object store points to (None for a plain group)."""
    try:
        attrs = json.loads((target / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return None
    if attrs.get("format") != PUBLISHED:
        return None
    return target.sibling(f".{target.name}.versions") / attrs["current"]


PACKED = "packed"


def write_group(path, arrays: dict, attrs: dict, pack: bool = False) -> None:
    """A new zarr group at ``path`` (a local path or a :class:`~streamem.data.storage.Location`):
    numpy arrays, and attributes as standard JSON.

    With ``pack``, the (float64) arrays are stored end to end in one array ``packed`` and
    their places in the attribute ``packed``: a few files instead of two per array, for
    states written every second (:func:`read_group` unpacks them)."""
    group = zarr.open_group(location(path).zarr_store(read_only=False), mode="w")
    attrs = dict(attrs)
    if pack:
        places, parts, offset = {}, [], 0
        for name, value in arrays.items():
            value = np.asarray(value, dtype=np.float64)
            places[name] = [offset, list(value.shape)]
            parts.append(value.ravel())
            offset += value.size
        arrays = {PACKED: np.concatenate(parts) if parts else np.empty(0)}
        attrs[PACKED] = places
    for name, value in arrays.items():
        value = np.asarray(value)
        group.create_array(name, shape=value.shape, dtype=value.dtype, chunks=value.shape)[...] = value
    group.attrs.update(json.loads(json.dumps(attrs, allow_nan=False)))


def _group_arrays(group) -> tuple[dict, dict]:
    attrs = dict(group.attrs)
    arrays = {name: np.asarray(group[name][...]) for name in group.array_keys()}
    places = attrs.pop(PACKED, None)
    if places is not None:
        flat = arrays.pop(PACKED)
        for name, (offset, shape) in places.items():
            size = int(np.prod(shape, dtype=np.int64))
            arrays[name] = flat[offset : offset + size].reshape(shape)
    return arrays, attrs


def read_group(path, storage_options: dict | None = None) -> tuple[dict, dict]:
    return _group_arrays(zarr.open_group(location(path, storage_options).zarr_store(), mode="r"))


def read_model(path, storage_options: dict | None = None) -> tuple[dict, dict]:
    """Arrays and attributes of a saved model (a local path or any fsspec URL); ValueError
    for anything else. A published model (:func:`publish_model`) is read from one version."""
    source = location(path, storage_options)
    if source.local:
        source = location(Path(source.path).resolve())
    else:
        source = _published_version(source) or source
    try:
        group = zarr.open_group(source.zarr_store(), mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:
        raise ValueError(f"{source.url!r} is not a streamem model: cannot open it as a zarr group ({exc})") from None
    if attrs.get("format") != FORMAT:
        raise ValueError(
            f"{source.url!r} is not a streamem model: expected format {FORMAT!r}, got {attrs.get('format')!r}"
        )
    version = attrs.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{source.url!r} has format version {version!r}; this streamem reads versions up to {FORMAT_VERSION}"
        )
    try:
        arrays, attrs = _group_arrays(group)
    except Exception as exc:
        raise ValueError(f"{source.url!r} is a corrupt streamem model: {exc}") from None
    return arrays, attrs
