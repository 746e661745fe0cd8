"""Annotated outputs: a data set's rows with each row's component, that component's
responsibility and the row's log-density (an anomaly score: low is unusual), written
partition by partition; and outliers, the rows below a quantile of the log-density.

A Parquet output is a data set (a folder of ``part-NNNNN.parquet`` files, one per input
partition: a Parquet input's row groups, a CSV's blocks, an array's chunks) holding the
input's columns, all of them, and the new ones. A zarr output is a group: the data ``X``
and the arrays ``component``, ``responsibility``, ``log_density`` (and ``outlier``) beside
it. Both are written under a temporary name and put in place whole.
"""

from __future__ import annotations

import os

import dask
import dask.array as da
import numpy as np
import zarr

from streamem.data import formats
from streamem.data.storage import Location, location
from streamem.data.store import atomic_location, check_new_output
from streamem.engine.passes import apply_blocks
from streamem.engine.rows import summary_rows

__all__ = ["outlier_threshold", "write_annotated"]

_PARQUET = (".parquet", ".pq")


def outlier_threshold(model, X: da.Array, quantile: float) -> float:
    """The ``quantile`` of the log-densities of the rows of X under ``model`` (exact: the
    log-densities of every row are gathered, 8 bytes per row; one pass)."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"expected a quantile between 0 and 1, got {quantile!r}")
    scores = model.score_samples(X)
    return float(np.quantile(np.asarray(scores.compute() if isinstance(scores, da.Array) else scores), quantile))


def write_annotated(
    model, data, out, columns=None, threshold: float | None = None, storage_options: dict | None = None
) -> dict:
    """Write ``data`` (a path or URL as :func:`streamem.read_data` takes it) labelled by
    ``model`` to ``out``: a Parquet data set (``.parquet``) or a zarr group (``.zarr``).
    With ``threshold`` (a log-density), a boolean ``outlier`` marks the rows below it.
    Returns ``{"rows": ..., "partitions": ...}``."""
    target = location(out, storage_options)
    suffix = os.path.splitext(target.path)[1].lower()
    if suffix not in _PARQUET + (".zarr",):
        raise ValueError(f"expected a labelled output ending in .parquet or .zarr, got {target.url!r}")
    check_new_output(target)
    params = model.fitted_params()
    missing = model.missing == "marginalize"
    if suffix == ".zarr":
        from streamem.data.arrays import read_data

        X = read_data(data, columns, storage_options)
        _check_width(model, X.shape[1], data)
        return _write_zarr(X, params, missing, threshold, target)
    partitions, chosen = _partitions(data, columns, storage_options)
    _check_width(model, len(chosen), data)
    with atomic_location(target) as tmp:
        if tmp.local:
            os.makedirs(tmp.path, exist_ok=True)
        write = dask.delayed(_write_part, pure=False)
        counts = dask.compute(
            *[
                write(part, tmp / f"part-{i:05d}.parquet", chosen, params, missing, threshold)
                for i, part in enumerate(partitions)
            ]
        )
    return {"rows": int(sum(counts)), "partitions": len(counts)}


def _check_width(model, n_columns: int, data) -> None:
    if n_columns != model.n_features_in_:
        raise ValueError(f"{data} has {n_columns} features, but the model expects {model.n_features_in_}")


def _partitions(data, columns, storage_options) -> tuple[list, list[str]]:
    """The input as delayed pandas DataFrames (every column) and the feature columns."""
    text = str(data)
    loc = location(data, storage_options) if formats.hdf5_parts(text) is None else None
    if loc is not None and (loc.path.lower().endswith(_PARQUET) or loc.isdir() and formats.is_parquet_dataset(loc)):
        pieces, chosen = formats.parquet_pieces(loc, columns)
        read = dask.delayed(formats.read_row_groups, pure=True)
        return [read(loc.fs, path, groups) for path, groups, _ in pieces], chosen
    if loc is not None and loc.path.lower().endswith(".csv"):
        import dask.dataframe as dd

        frame = dd.read_csv(loc.url, storage_options=loc.options or None)
        return list(frame.to_delayed()), formats.choose_columns(formats.frame_kinds(frame), columns, loc.url)
    from streamem.data.arrays import read_data

    X = read_data(data, columns, storage_options)
    names = [f"x{i}" for i in range(X.shape[1])]
    frame = dask.delayed(_frame, pure=True)
    return [frame(block, names) for block in X.to_delayed().ravel()], names


def _frame(block: np.ndarray, names: list[str]):
    import pandas as pd

    return pd.DataFrame(block, columns=names)


def _labelled_frame(frame, chosen, params, missing, threshold):
    X = frame[chosen].to_numpy(dtype=np.float64, na_value=np.nan)
    summary = summary_rows(X, params, missing)
    frame = frame.assign(
        component=summary[:, 0].astype(np.int64), responsibility=summary[:, 1], log_density=summary[:, 2]
    )
    if threshold is not None:
        frame = frame.assign(outlier=summary[:, 2] < threshold)
    return frame


def _write_part(frame, part: Location, chosen, params, missing, threshold) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    labelled = _labelled_frame(frame, chosen, params, missing, threshold)
    with part.fs.open(part.path, "wb") as handle:
        pq.write_table(pa.Table.from_pandas(labelled, preserve_index=False), handle)
    return len(labelled)


def _write_zarr(X: da.Array, params, missing: bool, threshold, target: Location) -> dict:
    summary = apply_blocks(X, summary_rows, params, missing, dtype=X.dtype, n_columns=3)
    arrays = {
        "X": X,
        "component": summary[:, 0].astype(np.int64),
        "responsibility": summary[:, 1],
        "log_density": summary[:, 2],
    }
    if threshold is not None:
        arrays["outlier"] = summary[:, 2] < threshold
    with atomic_location(target) as tmp:
        group = zarr.open_group(tmp.zarr_store(read_only=False), mode="w")
        rows = X.chunks[0][0] if X.chunks[0] else 1
        stored = [
            group.create_array(name, shape=value.shape, dtype=value.dtype, chunks=(rows,) + tuple(value.shape[1:]))
            for name, value in arrays.items()
        ]
        if threshold is not None:
            group.attrs["outlier_threshold"] = float(threshold)
        da.store([value.rechunk((rows,) + value.shape[1:]) for value in arrays.values()], stored, lock=False)
    return {"rows": int(X.shape[0]), "partitions": int(X.numblocks[0])}
