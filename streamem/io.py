"""Inputs as dask arrays, and models saved as zarr groups.

A saved model is a zarr group: parameters as arrays, hyper-parameters, fitted scalars,
the history and a format version as JSON attributes. Loading reads arrays and JSON only:
it never executes code. Saving writes to a temporary name and renames it into place, so a
failed save leaves no half-written model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import dask.array as da
import numpy as np
import zarr

from .reduce import default_chunk_rows

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


def remove(path) -> None:
    """Remove a file, a symbolic link or a directory tree, if there."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _open_zarr_array(path) -> da.Array:
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a missing or foreign store
        raise ValueError(f"expected a zarr array at {str(path)!r}, could not open it: {exc}") from None
    if not isinstance(node, zarr.Array):
        arrays = sorted(node.array_keys())
        if "X" in arrays:  # a data set written by make_data: X and its labels
            arrays = ["X"]
        if len(arrays) != 1:
            raise ValueError(f"expected a zarr array at {str(path)!r}, got a group with arrays {arrays}")
        node = node[arrays[0]]
    return da.from_zarr(node)


def read_data(path, columns: list[str] | None = None) -> da.Array:
    """A data file as a lazy 2-D dask array, read chunk by chunk.

    ``.npy`` files are memory-mapped; ``.csv`` and ``.parquet`` files (or a directory of
    Parquet files) are read through ``dask.dataframe``, keeping ``columns`` (default: all
    numeric columns); anything else is opened as a zarr array, or as the ``X`` array of a
    zarr group.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no such file or directory: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as exc:
            raise ValueError(f"cannot read {str(path)!r} as a .npy file: {exc}") from None
        if array.ndim != 2:
            raise ValueError(f"expected a 2-D array in {str(path)!r}, got shape {array.shape}")
        rows = default_chunk_rows(array.shape[0], array.shape[1], array.dtype.itemsize)
        return da.from_array(array, chunks=(rows, -1))
    if suffix in (".csv", ".parquet", ".pq") or (path.is_dir() and any(path.glob("*.parquet"))):
        return _read_frame(path, suffix, columns)
    return _open_zarr_array(path)


def _read_frame(path: Path, suffix: str, columns) -> da.Array:
    import dask.dataframe as dd

    try:
        frame = dd.read_csv(str(path)) if suffix == ".csv" else dd.read_parquet(str(path))
    except Exception as exc:  # the readers raise many types for unreadable files
        raise ValueError(f"cannot read {str(path)!r}: {exc}") from None
    if columns:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"columns {missing} not in {str(path)!r}; it has {list(frame.columns)}")
        frame = frame[columns]
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    non_numeric = [str(c) for c, t in frame.dtypes.items() if not is_numeric_dtype(t) or is_bool_dtype(t)]
    if non_numeric:
        raise ValueError(
            f"expected numeric columns, got non-numeric {non_numeric} in {str(path)!r}; pick columns with --columns"
        )
    return frame.to_dask_array(lengths=True).astype(np.float64)


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


def make_data(out, n_samples: int, n_features: int, n_components: int, chunk_size: int = 100_000, seed: int = 0):
    """Write a generated Gaussian mixture (:func:`mixture_data`) to a zarr group ``out``:
    ``X`` and ``labels``, chunk by chunk, so data larger than memory can be made on any
    machine. The true weights, means and covariances are in the group's attributes.
    Written to a temporary name, then renamed.
    """
    out = Path(out)
    if out.exists():
        raise ValueError(f"{str(out)!r} already exists; choose another output path")
    X, y, truth = mixture_data(n_samples, n_features, n_components, chunk_size, seed)
    with atomic_path(out) as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        zx = group.create_array("X", shape=X.shape, chunks=(chunk_size, n_features), dtype="f8")
        zy = group.create_array("labels", shape=y.shape, chunks=(chunk_size,), dtype="i4")
        group.attrs.update({**{name: value.tolist() for name, value in truth.items()}, "seed": seed,
                            "generator": "streamem.make_data"})  # fmt: skip
        da.store([X, y], [zx, zy], lock=False)
    return out


def write_array(values: da.Array, out) -> None:
    """Write a dask array to ``out``, a ``.npy`` file or a ``.zarr`` store, chunk by chunk
    (a ``.npy`` file through a memory map); to a temporary name, then renamed."""
    out = Path(out)
    if out.suffix.lower() not in (".npy", ".zarr"):
        raise ValueError(f"expected an output path ending in .npy or .zarr, got {str(out)!r}")
    if out.exists():
        raise ValueError(f"{str(out)!r} already exists; choose another output path")
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".npy":
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=values.dtype, shape=values.shape)
            da.store(values, target, lock=False)
            target.flush()
            del target
        else:
            values.to_zarr(str(tmp))


def as_dask_array(X) -> tuple[da.Array, bool]:
    """X as a dask array, and whether it is lazy (dask, zarr or a path to a zarr store).

    In-memory inputs are returned as ``None`` in the first slot, so that the caller
    validates them with scikit-learn's helpers first; see :func:`from_numpy`.
    """
    if isinstance(X, da.Array):
        return X, True
    if isinstance(X, zarr.Array):
        return da.from_zarr(X), True
    if isinstance(X, (str, os.PathLike)):
        return _open_zarr_array(X), True
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


def check_model_path(path) -> None:
    """Raise ValueError unless a model can be saved at ``path`` (checked before long work)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"expected an existing directory to save into, got {str(parent)!r}")
    if path.exists():
        try:
            read_model(path)
        except ValueError:
            raise ValueError(f"refusing to overwrite {str(path)!r}: it exists and is not a streamem model") from None


def write_model(path, arrays: dict, attrs: dict, pack: bool = False) -> None:
    """Write a model group to ``path`` atomically (temporary name, then rename)."""
    check_model_path(path)
    with atomic_path(path) as tmp:
        write_group(tmp, arrays, attrs, pack)


PUBLISHED_VERSIONS = 3


def publish_model(path, arrays: dict, attrs: dict) -> None:
    """Publish a model at ``path`` for readers in other processes: each version is a new
    group beside it, and ``path`` is a symbolic link switched atomically to the newest, so
    a reader (:func:`read_model` resolves the link once) always reads one whole version.
    The last few versions are kept for readers still reading them."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    versions = parent / f".{path.name}.versions"
    versions.mkdir(exist_ok=True)
    if path.exists() and not path.is_symlink():
        check_model_path(path)  # a model saved before: it becomes the oldest version
        os.replace(path, versions / f"model-0-{uuid.uuid4().hex}.zarr")
    name = f"model-{time.time_ns()}-{uuid.uuid4().hex[:8]}.zarr"
    with atomic_path(versions / name) as tmp:
        write_group(tmp, arrays, attrs, pack=True)
    with atomic_path(path) as link:
        os.symlink(Path(versions.name) / name, link)
    old = sorted(
        (p for p in versions.iterdir() if p.name.startswith("model-")), key=lambda p: int(p.name.split("-")[1])
    )
    for stale in old[:-PUBLISHED_VERSIONS]:
        shutil.rmtree(stale, ignore_errors=True)


PACKED = "packed"


def write_group(path, arrays: dict, attrs: dict, pack: bool = False) -> None:
    """A new zarr group at ``path``: numpy arrays, and attributes as standard JSON.

    With ``pack``, the (float64) arrays are stored end to end in one array ``packed`` and
    their places in the attribute ``packed``: a few files instead of two per array, for
    states written every second (:func:`read_group` unpacks them)."""
    group = zarr.open_group(str(path), mode="w")
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


def read_group(path) -> tuple[dict, dict]:
    return _group_arrays(zarr.open_group(str(path), mode="r"))


def read_model(path) -> tuple[dict, dict]:
    """Arrays and attributes of a saved model; ValueError for anything else. A published
    model (a link replaced atomically, :func:`publish_model`) is read from one version."""
    path = Path(path).resolve()
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is not a streamem model: cannot open it as a zarr group ({exc})") from None
    if attrs.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a streamem model: expected format {FORMAT!r}, got {attrs.get('format')!r}"
        )
    version = attrs.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format version {version!r}; this streamem reads versions up to {FORMAT_VERSION}"
        )
    try:
        arrays, attrs = _group_arrays(group)
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is a corrupt streamem model: {exc}") from None
    return arrays, attrs
