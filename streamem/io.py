"""Inputs as dask arrays, and models saved as zarr groups.

A saved model is a zarr group: parameters as arrays, hyper-parameters, fitted scalars,
the history and a format version as JSON attributes. Loading reads arrays and JSON only:
it never executes code. Saving writes to a temporary name and renames it into place, so a
failed save leaves no half-written model.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path

import dask.array as da
import numpy as np
import zarr

from .reduce import default_chunk_rows

__all__ = ["FORMAT", "FORMAT_VERSION", "as_dask_array", "read_model", "write_model"]

FORMAT = "streamem.GaussianMixture"
FORMAT_VERSION = 1


def _open_zarr_array(path) -> da.Array:
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a missing or foreign store
        raise ValueError(f"expected a zarr array at {str(path)!r}, could not open it: {exc}") from None
    if not isinstance(node, zarr.Array):
        arrays = sorted(node.array_keys())
        if len(arrays) != 1:
            raise ValueError(f"expected a zarr array at {str(path)!r}, got a group with arrays {arrays}")
        node = node[arrays[0]]
    return da.from_zarr(node)


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


def check_dask_array(X: da.Array) -> da.Array:
    """Validate a lazy 2-D input without reading it; cast integers and bools to float64."""
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array of shape (n_samples, n_features), got a {X.ndim}D array of shape {X.shape}"
        )
    if any(math.isnan(n) for n in X.shape):
        raise ValueError("expected an array with known chunk sizes, got unknown sizes; call compute_chunk_sizes()")
    kind = X.dtype.kind
    if kind == "f":
        if X.dtype.itemsize < 4:
            X = X.astype(np.float32)
    elif kind in "iub":
        X = X.astype(np.float64)
    else:
        raise ValueError(f"expected a numeric array (float, int or bool), got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required")
    if X.shape[1] == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required")
    return X


def _json_safe(value):
    """Hyper-parameter values as JSON; arrays go to the group as arrays instead."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return None


def write_model(path, arrays: dict, attrs: dict) -> None:
    """Write a model group to ``path`` atomically (temporary name, then rename)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"expected an existing directory to save into, got {str(parent)!r}")
    if path.exists():
        try:
            read_model(path)
        except ValueError:
            raise ValueError(f"refusing to overwrite {str(path)!r}: it exists and is not a streamem model") from None
    tmp = parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        group = zarr.open_group(str(tmp), mode="w")
        for name, value in arrays.items():
            value = np.asarray(value)
            group.create_array(name, shape=value.shape, dtype=value.dtype, chunks=value.shape or (1,))[...] = value
        group.attrs.update(json.loads(json.dumps(attrs)))
        if path.exists():
            old = parent / f".{path.name}.old-{uuid.uuid4().hex}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_model(path) -> tuple[dict, dict]:
    """Arrays and attributes of a saved model; ValueError for anything else."""
    path = Path(path)
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
        arrays = {name: np.asarray(group[name][...]) for name in group.array_keys()}
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is a corrupt streamem model: {exc}") from None
    return arrays, attrs
