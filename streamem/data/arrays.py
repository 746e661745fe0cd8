"""Inputs as dask arrays: a path or URL of any supported format, an array in memory, and
arrays written to zarr.
"""

from __future__ import annotations

import io as _io
import os

import dask.array as da
import numpy as np
import zarr

from streamem.data.storage import Location, location
from streamem.data.store import atomic_location, check_new_output
from streamem.engine.passes import default_chunk_rows

__all__ = ["as_dask_array", "read_data", "write_array"]


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
    from streamem.data import formats

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
