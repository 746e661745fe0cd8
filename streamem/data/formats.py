"""Tables and self-describing arrays as lazy dask arrays: Parquet data sets, CSV, HDF5
datasets, NetCDF files and xarray ``DataArray`` objects.

Each reader keeps the storage's own chunking where it has one: a Parquet data set is read
one row group (or one run of small row groups of a file) per chunk, never a whole file at
once; an HDF5 dataset along whole multiples of its chunks. Every chunk is read by a task of
its own that opens the file itself, so the graph runs on any scheduler, on a cluster too.
"""

from __future__ import annotations

import concurrent.futures
import re

import dask
import dask.array as da
import numpy as np

from streamem.data.storage import Location, location
from streamem.engine.passes import default_chunk_rows

__all__ = [
    "check_positions",
    "choose_columns",
    "frame_kinds",
    "hdf5_parts",
    "is_parquet_dataset",
    "is_xarray",
    "like_samples",
    "netcdf_parts",
    "read_csv",
    "read_hdf5",
    "read_netcdf",
    "read_parquet",
    "select_positions",
    "xarray_samples",
]

_PARQUET = (".parquet", ".pq")
_HDF5 = re.compile(r"^(?P<file>.+\.(?:h5|hdf5|he5))(?::(?P<key>/?[^:]*))?$", re.IGNORECASE)
_NETCDF = re.compile(r"^(?P<file>.+\.(?:nc|nc4|netcdf))(?::(?P<key>[^:/]+))?$", re.IGNORECASE)


def _positions(columns) -> list[int] | None:
    if not columns:
        return None
    try:
        return [int(c) for c in columns]
    except (TypeError, ValueError):
        return None


def check_positions(columns, n_columns: int, where: str) -> list[int] | None:
    """``columns`` as positions in an array of ``n_columns`` columns without names (None
    for all of them); ValueError for names or positions out of range."""
    if not columns:
        return None
    picks = _positions(columns)
    if picks is None:
        raise ValueError(f"{where!r} has no column names: expected column positions (0, 1, ...), got {list(columns)}")
    bad = [p for p in picks if not -n_columns <= p < n_columns]
    if bad:
        raise ValueError(f"column positions {bad} out of range: {where!r} has {n_columns} columns")
    return picks


def select_positions(X: da.Array, columns, where: str) -> da.Array:
    """The columns of an array without column names at the positions ``columns`` gives."""
    picks = check_positions(columns, X.shape[1], where)
    return X if picks is None else X[:, picks]


def choose_columns(names_types, columns, where: str) -> list[str]:
    """The columns to read: ``columns`` checked against the table's, or its numeric ones."""
    names = [name for name, _ in names_types]
    if columns:
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(f"columns {missing} not in {where!r}; it has {names}")
        chosen = list(columns)
    else:
        chosen = names
    kinds = dict(names_types)
    non_numeric = [c for c in chosen if kinds[c] != "numeric"]
    if non_numeric:
        raise ValueError(
            f"expected numeric columns, got non-numeric {non_numeric} in {where!r}; pick columns with --columns"
        )
    return chosen


# ---------------------------------------------------------------------- tables


def frame_kinds(frame) -> list[tuple[str, str]]:
    """``(name, kind)`` of a (dask) DataFrame's columns, kind ``"numeric"`` or the dtype."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return [(c, "numeric" if is_numeric_dtype(t) and not is_bool_dtype(t) else str(t)) for c, t in frame.dtypes.items()]


def read_csv(loc: Location, columns) -> da.Array:
    """A CSV file (or a glob of them) through ``dask.dataframe``."""
    import dask.dataframe as dd

    try:
        frame = dd.read_csv(loc.url, storage_options=loc.options or None)
    except Exception as exc:  # the reader raises many types for unreadable files
        raise ValueError(f"cannot read {loc.url!r}: {exc}") from None
    chosen = choose_columns(frame_kinds(frame), columns, loc.url)
    # each partition's rows, counted here: dask's own count (``lengths=True``) comes back as a
    # scalar for a single partition with pandas 2.1 (dask 2025.4), which it cannot iterate
    lengths = tuple(int(n) for n in np.atleast_1d(frame.map_partitions(len).compute()))
    return frame[chosen].to_dask_array(lengths=lengths).astype(np.float64)


def is_parquet_dataset(loc: Location) -> bool:
    """Whether ``loc`` is a directory holding Parquet files (at any depth: a partitioned set)."""
    return loc.isdir() and any(p.endswith(_PARQUET) for p in loc.fs.find(loc.path))


def _parquet_files(loc: Location) -> list[str]:
    if loc.isfile():
        return [loc.path]
    return sorted(p for p in loc.fs.find(loc.path) if p.endswith(_PARQUET) and "/." not in p[len(loc.path) :])


def _arrow_kind(arrow_type) -> str:
    import pyarrow as pa

    numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)
    return "numeric" if numeric else str(arrow_type)


def parquet_pieces(loc: Location, columns=None, target_rows: int | None = None):
    """The row groups of a Parquet file or data set, in order, gathered into chunks: a
    list of ``(file, [row group, ...], n_rows)``, and the feature columns (``columns``
    checked against the first file's schema, or its numeric columns). Only the files'
    footers are read. Consecutive small row groups of a file share a chunk of up to
    ``target_rows`` rows (default: a few per core); a chunk never spans two files."""
    files = _parquet_files(loc)
    if not files:
        raise ValueError(f"no Parquet files in {loc.url!r}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:  # requests in flight
        footers = list(pool.map(lambda path: _footer(loc, path), files))
    schema = footers[0].schema.to_arrow_schema()
    index = _index_columns(schema)
    chosen = choose_columns([(f.name, _arrow_kind(f.type)) for f in schema if f.name not in index], columns, loc.url)
    target_rows = target_rows or default_chunk_rows(sum(f.num_rows for f in footers), max(len(chosen), 1), 8)
    pieces = []
    for path, footer in zip(files, footers):
        run, run_rows = [], 0
        for group in range(footer.num_row_groups):
            rows = footer.row_group(group).num_rows
            if run and run_rows + rows > target_rows:
                pieces.append((path, run, run_rows))
                run, run_rows = [], 0
            run.append(group)
            run_rows += rows
        if run:
            pieces.append((path, run, run_rows))
    return pieces, chosen


def _footer(loc: Location, path: str):
    """A Parquet file's metadata (its footer alone is read)."""
    import pyarrow.parquet as pq

    try:
        with loc.fs.open(path, "rb") as handle:
            return pq.ParquetFile(handle).metadata
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"cannot read {path!r} as Parquet: {exc}") from None


def _index_columns(schema) -> set[str]:
    """The columns pandas stored its index in (not data)."""
    import json

    meta = (schema.metadata or {}).get(b"pandas")
    if not meta:
        return set()
    return {c for c in json.loads(meta).get("index_columns", []) if isinstance(c, str)}


def read_row_groups(fs, path: str, groups: list[int], columns: list[str] | None = None):
    """Row groups of one Parquet file as a pandas DataFrame (all columns unless named)."""
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        return pq.ParquetFile(handle).read_row_groups(groups, columns=columns).to_pandas()


def _row_groups_block(fs, path, groups, columns) -> np.ndarray:
    frame = read_row_groups(fs, path, groups, columns)
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def read_parquet(loc: Location, columns) -> da.Array:
    """A Parquet file or data set (many files, many row groups) as a float64 dask array,
    one chunk per row group or run of small row groups (:func:`parquet_pieces`)."""
    pieces, chosen = parquet_pieces(loc, columns)
    blocks = [
        da.from_delayed(
            dask.delayed(_row_groups_block, pure=True)(loc.fs, path, groups, chosen),
            shape=(rows, len(chosen)),
            dtype=np.float64,
        )
        for path, groups, rows in pieces
        if rows
    ]
    if not blocks:
        return da.zeros((0, len(chosen)), chunks=((0,), (len(chosen),)))
    return da.concatenate(blocks, axis=0)


# ------------------------------------------------------------------------ HDF5


def hdf5_parts(path: str) -> tuple[str, str | None] | None:
    """``(file, dataset)`` of ``FILE.h5:/group/dataset`` (dataset None without one); None
    for a path that names no HDF5 file."""
    match = _HDF5.match(str(path))
    if match is None:
        return None
    return match["file"], (match["key"] or None)


def _open_hdf5(loc: Location):
    import h5py

    return h5py.File(loc.path if loc.local else loc.fs.open(loc.path, "rb"), "r")


def _hdf5_dataset(handle, key: str | None, where: str):
    import h5py

    if key is None:
        found = []
        handle.visititems(lambda name, node: found.append(name) if isinstance(node, h5py.Dataset) else None)
        if len(found) != 1:
            raise ValueError(f"expected FILE.h5:/group/dataset: {where!r} holds the datasets {found}")
        key = found[0]
    node = handle.get(key)
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"no dataset {key!r} in {where!r}")
    return node


def _hdf5_block(fs, path: str, key: str, start: int, stop: int, picks) -> np.ndarray:
    loc = Location(fs, path, path)
    with _open_hdf5(loc) as handle:
        block = handle[key][start:stop]
    return block if picks is None else block[:, picks]


def read_hdf5(path: str, columns=None, storage_options: dict | None = None) -> da.Array:
    """An HDF5 dataset ``FILE.h5:/group/dataset`` (through h5py), chunked along whole
    multiples of the dataset's own row chunks; ``columns`` are positions."""
    file, key = hdf5_parts(path)
    loc = location(file, storage_options)
    try:
        with _open_hdf5(loc) as handle:
            node = _hdf5_dataset(handle, key, loc.url)
            shape, dtype, stored = node.shape, node.dtype, node.chunks
            key = node.name
    except ImportError:
        raise ValueError("reading HDF5 needs h5py: pip install 'streamem[hdf5]'") from None
    except (OSError, KeyError) as exc:
        raise ValueError(f"cannot read {path!r} as HDF5: {exc}") from None
    if len(shape) != 2 or dtype.kind not in "fiu":
        raise ValueError(f"expected a 2-D numeric dataset at {path!r}, got shape {shape} and dtype {dtype}")
    picks = check_positions(columns, shape[1], path)
    n_columns = shape[1] if picks is None else len(picks)
    rows = default_chunk_rows(shape[0], shape[1], dtype.itemsize)
    if stored:
        rows = max(stored[0], rows // stored[0] * stored[0])
    read = dask.delayed(_hdf5_block, pure=True)
    bounds = [(start, min(start + rows, shape[0])) for start in range(0, shape[0], rows)]
    blocks = [
        da.from_delayed(read(loc.fs, loc.path, key, start, stop, picks), shape=(stop - start, n_columns), dtype=dtype)
        for start, stop in bounds
    ]
    if not blocks:
        return da.zeros((0, n_columns), dtype=dtype, chunks=((0,), (n_columns,)))
    return da.concatenate(blocks, axis=0)


# ---------------------------------------------------------------------- xarray


def netcdf_parts(path: str) -> tuple[str, str | None] | None:
    """``(file, variable)`` of ``FILE.nc:variable`` (variable None without one); None for
    a path that names no NetCDF file."""
    match = _NETCDF.match(str(path))
    if match is None:
        return None
    return match["file"], match["key"]


def read_netcdf(path: str, columns=None, storage_options: dict | None = None, feature_dim: str | None = None):
    """A NetCDF file's variable ``FILE.nc:variable`` (features along ``feature_dim``, by
    default its last dimension), or its variables ``columns`` side by side as features
    (each a column over the same dimensions), as a dask array of shape (n_samples, n_features)."""
    return xarray_samples(open_netcdf(path, columns, storage_options), feature_dim)[0]


def open_netcdf(path: str, columns=None, storage_options: dict | None = None):
    """The DataArray :func:`read_netcdf` reads (lazy, on dask)."""
    try:
        import xarray as xr
    except ImportError:
        raise ValueError("reading NetCDF needs xarray: pip install 'streamem[xarray]'") from None
    file, variable = netcdf_parts(path)
    loc = location(file, storage_options)
    try:
        source = loc.path if loc.local else loc.fs.open(loc.path, "rb")
        dataset = xr.open_dataset(source, chunks={}, engine=None if loc.local else "h5netcdf")
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path!r} as NetCDF: {exc}") from None
    names = list(dataset.data_vars)
    if variable is not None:
        if variable not in names:
            raise ValueError(f"no variable {variable!r} in {file!r}; it has {names}")
        if columns:
            raise ValueError(f"give either a variable ({path!r}) or columns, not both")
        return dataset[variable]
    numeric = [n for n in names if dataset[n].dtype.kind in "fiu"]
    chosen = list(columns) if columns else numeric
    missing = [c for c in chosen if c not in names]
    if missing:
        raise ValueError(f"columns {missing} not in {file!r}; it has {names}")
    if not chosen:
        raise ValueError(f"no numeric variables in {file!r}")
    if len(chosen) == 1 and not columns:
        return dataset[chosen[0]]
    dims = {dataset[n].dims for n in chosen}
    if len(dims) != 1:
        raise ValueError(f"expected variables over the same dimensions as columns, got {sorted(map(str, dims))}")
    return dataset[chosen].to_dataarray(dim="variable").transpose(*dims.pop(), "variable")


def is_xarray(X) -> bool:
    return type(X).__name__ == "DataArray" and type(X).__module__.startswith("xarray")


def xarray_samples(X, feature_dim: str | None = None) -> tuple[da.Array, dict]:
    """An xarray ``DataArray`` as a dask array of shape (n_samples, n_features): features
    along ``feature_dim`` (default: the last dimension; a 1-D array is one feature),
    samples along every other dimension, in order. Also what :func:`like_samples` needs
    to give per-row results back with the sample dimensions and their coordinates."""
    if feature_dim is not None and feature_dim not in X.dims:
        raise ValueError(f"expected feature_dim as one of the dimensions {list(X.dims)}, got {feature_dim!r}")
    if X.ndim == 0:
        raise ValueError("expected a DataArray with at least one dimension")
    if feature_dim is None and X.ndim > 1:
        feature_dim = X.dims[-1]
    sample_dims = [d for d in X.dims if d != feature_dim]
    ordered = X.transpose(*sample_dims, feature_dim) if feature_dim is not None else X
    data = ordered.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks="auto")
    n_features = X.sizes[feature_dim] if feature_dim is not None else 1
    sample_shape = tuple(X.sizes[d] for d in sample_dims)
    data = data.reshape((int(np.prod(sample_shape, dtype=np.int64)), n_features), merge_chunks=True)
    coords = {name: coord for name, coord in X.coords.items() if set(coord.dims) <= set(sample_dims)}
    return data, {"dims": sample_dims, "shape": sample_shape, "coords": coords, "feature_dim": feature_dim}


def like_samples(values, template: dict, name: str):
    """Per-row results (array of shape (n_samples,) or (n_samples, k)) as a DataArray over
    the input's sample dimensions, with their coordinates."""
    import xarray as xr

    values = values.reshape(template["shape"] + tuple(values.shape[1:]))
    dims = list(template["dims"]) + ([f"{name}_column"] if values.ndim > len(template["dims"]) else [])
    return xr.DataArray(values, dims=dims, coords=template["coords"], name=name)
