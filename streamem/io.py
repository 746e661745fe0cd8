"""Inputs as dask arrays, and models saved as zarr groups.

A saved model is a zarr group: parameters as arrays, hyper-parameters, fitted scalars,
the history and a format version as JSON attributes. Loading reads arrays and JSON only:
it never executes code. Saving writes to a temporary name and renames it into place, so a
failed save leaves no half-written model.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import os
import time
import uuid
from pathlib import Path

import dask.array as da
import numpy as np
import zarr

from .reduce import default_chunk_rows
from .storage import Location, location, remove

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "as_dask_array",
    "make_data",
    "mixture_data",
    "read_data",
    "read_model",
    "write_array",
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
    (:meth:`~streamem.storage.Location.commit_from`)."""
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


def _open_zarr_array(loc: Location) -> da.Array:
    try:
        node = zarr.open(loc.zarr_store(), mode="r")
    except Exception as exc:  # zarr raises several types for a missing or foreign store
        raise ValueError(f"expected a zarr array at {loc.url!r}, could not open it: {exc}") from None
    if not isinstance(node, zarr.Array):
        arrays = sorted(node.array_keys())
        if "X" in arrays:  # a data set written by make_data: X and its labels
            arrays = ["X"]
        if len(arrays) != 1:
            raise ValueError(f"expected a zarr array at {loc.url!r}, got a group with arrays {arrays}")
        node = node[arrays[0]]
    return da.from_zarr(node)


def read_data(path, columns: list | None = None, storage_options: dict | None = None) -> da.Array:
    """A data set as a lazy 2-D dask array of shape (n_samples, n_features), read chunk by chunk.

    ``path`` is a local path or any fsspec URL (``s3://bucket/data.zarr``), opened with
    ``storage_options`` (credentials otherwise come from the store's usual environment):

    - a zarr array, or the ``X`` array of a zarr group (chunks as stored);
    - ``.parquet`` files or a directory of them (a Parquet data set over many files), one
      chunk per row group or per run of small row groups, each read alone;
    - ``.csv`` files, through ``dask.dataframe``;
    - ``.h5``/``.hdf5`` files as ``FILE:/group/dataset`` (the only dataset when no name is
      given), chunked along the dataset's own chunks;
    - ``.nc`` (NetCDF) files as ``FILE:variable`` (features along the last dimension) or,
      with ``columns``, the named variables as features;
    - ``.npy`` files, memory-mapped (read whole from an object store).

    ``columns`` picks features: names for tables and NetCDF, positions (integers) for arrays.
    Tables keep their numeric columns by default.
    """
    from . import formats

    text = str(path) if isinstance(path, (str, os.PathLike)) else ""
    if formats.hdf5_parts(text) is not None:
        return formats.read_hdf5(text, columns, storage_options)
    if formats.netcdf_parts(text) is not None:
        return formats.read_netcdf(text, columns, storage_options)
    loc = location(path, storage_options)
    try:
        present = loc.exists()
    except (OSError, ValueError) as exc:  # a store that cannot be reached, or refuses access
        raise ValueError(f"cannot open {loc.url!r}: {exc}") from None
    if not present:
        raise ValueError(f"no such file or directory: {loc.url!r}")
    suffix = os.path.splitext(loc.path)[1].lower()
    if suffix == ".npy":
        try:
            array = loc.open_npy()
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot read {loc.url!r} as a .npy file: {exc}") from None
        if array.ndim != 2:
            raise ValueError(f"expected a 2-D array in {loc.url!r}, got shape {array.shape}")
        rows = default_chunk_rows(array.shape[0], array.shape[1], array.dtype.itemsize)
        return formats.select_positions(da.from_array(array, chunks=(rows, -1)), columns, loc.url)
    if suffix == ".csv":
        return formats.read_csv(loc, columns)
    if suffix in (".parquet", ".pq") or formats.is_parquet_dataset(loc):
        return formats.read_parquet(loc, columns)
    return formats.select_positions(_open_zarr_array(loc), columns, loc.url)


def _mixture_block(block_id, chunk_rows, n_features, means, scales, weights, seed, labels):
    index = block_id[0]
    rng = np.random.default_rng([seed, index])
    n_rows = chunk_rows[index]
    y = rng.choice(len(weights), size=n_rows, p=weights)
    if labels:
        return y.astype(np.int32)
    noise = rng.standard_normal((n_rows, n_features))
    return means[y] + np.einsum("nd,nde->ne", noise, scales[y])


def mixture_data(n_samples: int, n_features: int, n_components: int, chunk_size: int = 100_000, seed: int = 0):
    """A generated Gaussian mixture as lazy dask arrays: ``(X, labels, truth)``.

    Each chunk's rows depend only on ``seed`` and the chunk's position, so data larger
    than memory is generated (and written) one chunk at a time, in parallel. ``truth``
    holds the true ``weights``, ``means`` and ``covariances``.
    """
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.uniform(-10.0, 10.0, size=(n_components, n_features))
    scales = rng.uniform(-0.6, 0.6, size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    scales += np.eye(n_features) * rng.uniform(0.5, 1.5, size=(n_components, 1, 1))
    chunk_rows = da.core.normalize_chunks((chunk_size,), (n_samples,))[0]
    common = dict(chunk_rows=chunk_rows, n_features=n_features, means=means, scales=scales, weights=weights, seed=seed)
    X = da.map_blocks(_mixture_block, chunks=(chunk_rows, (n_features,)), dtype=np.float64, labels=False, **common)
    y = da.map_blocks(_mixture_block, chunks=(chunk_rows,), dtype=np.int32, labels=True, **common)
    truth = {"weights": weights, "means": means, "covariances": scales.transpose(0, 2, 1) @ scales}
    return X, y, truth


def make_data(out, n_samples: int, n_features: int, n_components: int, chunk_size: int = 100_000, seed: int = 0,
              storage_options: dict | None = None):  # fmt: skip
    """Write a generated Gaussian mixture (:func:`mixture_data`) to a zarr group ``out`` (a
    local path or any fsspec URL, opened with ``storage_options``): ``X`` and ``labels``,
    chunk by chunk, so data larger than memory can be made on any machine. The true
    weights, means and covariances are in the group's attributes. Written to a temporary
    name, then put in place (:func:`atomic_location`).
    """
    target = location(out, storage_options)
    check_new_output(target)
    X, y, truth = mixture_data(n_samples, n_features, n_components, chunk_size, seed)
    with atomic_location(target) as tmp:
        group = zarr.open_group(tmp.zarr_store(read_only=False), mode="w")
        zx = group.create_array("X", shape=X.shape, chunks=(chunk_size, n_features), dtype="f8")
        zy = group.create_array("labels", shape=y.shape, chunks=(chunk_size,), dtype="i4")
        group.attrs.update({**{name: value.tolist() for name, value in truth.items()}, "seed": seed,
                            "generator": "streamem.make_data"})  # fmt: skip
        da.store([X, y], [zx, zy], lock=False)
    return Path(out) if target.local else target.url


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


def write_array(values: da.Array, out, storage_options: dict | None = None) -> None:
    """Write a dask array to ``out``, a ``.npy`` file or a ``.zarr`` store (local or any
    fsspec URL), chunk by chunk (a local ``.npy`` file through a memory map); to a
    temporary name, then put in place."""
    target = location(out, storage_options)
    suffix = os.path.splitext(target.path)[1].lower()
    if suffix not in (".npy", ".zarr"):
        raise ValueError(f"expected an output path ending in .npy or .zarr, got {target.url!r}")
    check_new_output(target)
    with atomic_location(target) as tmp:
        if suffix == ".zarr":
            values.to_zarr(tmp.zarr_store(read_only=False))
        elif tmp.local:
            array = np.lib.format.open_memmap(tmp.path, mode="w+", dtype=values.dtype, shape=values.shape)
            da.store(values, array, lock=False)
            array.flush()
            del array
        else:
            buffer = _io.BytesIO()
            np.save(buffer, np.asarray(values.compute()), allow_pickle=False)
            tmp.write_bytes(buffer.getvalue())


def as_dask_array(X, storage_options: dict | None = None) -> tuple[da.Array, bool]:
    """X as a dask array, and whether it is lazy (dask, zarr, an xarray DataArray on dask,
    or a path or URL that :func:`read_data` opens).

    In-memory inputs are returned as ``None`` in the first slot, so that the caller
    validates them with scikit-learn's helpers first; see :func:`from_numpy`.
    """
    if isinstance(X, da.Array):
        return X, True
    if isinstance(X, zarr.Array):
        return da.from_zarr(X), True
    if isinstance(X, (str, os.PathLike)):
        return read_data(X, storage_options=storage_options), True
    return None, False


def from_numpy(X: np.ndarray) -> da.Array:
    """A dask view of an in-memory array, a few chunks per core."""
    rows = default_chunk_rows(X.shape[0], X.shape[1], X.dtype.itemsize)
    return da.from_array(X, chunks=(rows, X.shape[1]), asarray=False, name=False)


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
    """A new zarr group at ``path`` (a local path or a :class:`~streamem.storage.Location`):
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
