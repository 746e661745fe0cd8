"""Row-wise outputs of a fitted mixture over a block of rows (labels, responsibilities,
log-densities, imputations, summaries), for complete rows and rows with holes; and the BLAS
threads each concurrent chunk task gets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys

import dask
import numpy as np
from threadpoolctl import ThreadpoolController

from streamem.core.kernels import responsibilities_inplace
from streamem.core.params import MixtureParams
from streamem.core.stats import block_rows, iter_blocks
from streamem.core.validation import check_finite

__all__ = [
    "IMPUTED",
    "LABELS",
    "LOG_DENSITIES",
    "NOISE_LABELS",
    "NOISE_SUMMARY",
    "RESPONSIBILITIES",
    "SUMMARY",
    "RowOutput",
    "blas_per_task",
    "block_output",
    "summary_rows",
]


@dataclasses.dataclass(frozen=True)
class RowOutput:
    """A row-wise output of a fitted mixture (labels, responsibilities, log-densities or
    imputed rows), as computed for complete rows and for rows with holes.

    Attributes
    ----------
    of_complete : callable or None
        ``(weighted, rows) -> values`` from the weighted log-densities of complete rows
        (n_components, n_rows), which it may overwrite; None: the rows themselves.
    of_incomplete : callable
        ``(estep, rows, shift) -> values`` from the E-step of rows with holes
        (:class:`~streamem.core.missing.MarginalEstep`, its expectations minus ``shift``).
    columns : callable or None
        ``params -> n_columns`` for a 2-D output; None for one value per row.
    integer : bool
        Values are labels (int64) rather than numbers in the data's dtype.
    needs_holes : bool
        Rows with NaN are always read as rows with holes (imputation).
    name : str
        What the values are (the name of an xarray result).
    """

    of_complete: object
    of_incomplete: object
    columns: object = None
    integer: bool = False
    needs_holes: bool = False
    name: str = "values"

    def dtype(self, data_dtype):
        return np.dtype(np.int64) if self.integer else np.dtype(data_dtype)

    def empty(self, params: MixtureParams, data_dtype) -> np.ndarray:
        shape = (0,) if self.columns is None else (0, self.columns(params))
        return np.empty(shape, dtype=self.dtype(data_dtype))


def _imputed(estep, rows, shift):
    """Observed values kept exactly; missing ones get their conditional expectation."""
    out = rows.copy()
    holes = np.isnan(out)
    out[holes] = (estep.completed + shift)[holes]
    return out


def _responsibilities(weighted, rows):
    responsibilities_inplace(weighted)
    return weighted.T


def _noise_labels(weighted, rows):
    """Labels with a noise component (the last row of ``weighted``): -1 where it is the best."""
    labels = weighted.argmax(axis=0)
    labels[labels == len(weighted) - 1] = -1
    return labels


def _summary(weighted, rows, noise: bool = False):
    """Columns component, its responsibility and the log-density, from weighted log-densities."""
    log_density = responsibilities_inplace(weighted)
    labels = _noise_labels(weighted, rows) if noise else weighted.argmax(axis=0)
    return np.stack([labels, weighted.max(axis=0), log_density], axis=1).astype(rows.dtype)


def _summary_incomplete(estep, rows, shift):
    return np.stack([estep.resp.argmax(axis=1), estep.resp.max(axis=1), estep.log_lik], axis=1).astype(rows.dtype)


LABELS = RowOutput(
    lambda weighted, rows: weighted.argmax(axis=0),
    lambda estep, rows, shift: estep.resp.argmax(axis=1),
    integer=True,
    name="component",
)
NOISE_LABELS = RowOutput(_noise_labels, None, integer=True, name="component")
RESPONSIBILITIES = RowOutput(
    _responsibilities,
    lambda estep, rows, shift: estep.resp.astype(rows.dtype),
    columns=lambda params: params.n_components + params.has_noise,
    name="responsibility",
)
LOG_DENSITIES = RowOutput(
    lambda weighted, rows: responsibilities_inplace(weighted),
    lambda estep, rows, shift: estep.log_lik.astype(rows.dtype),
    name="log_density",
)
IMPUTED = RowOutput(None, _imputed, columns=lambda params: params.n_features, needs_holes=True, name="imputed")
SUMMARY = RowOutput(_summary, _summary_incomplete, columns=lambda params: 3, name="summary")
NOISE_SUMMARY = RowOutput(
    lambda weighted, rows: _summary(weighted, rows, noise=True), None, columns=lambda params: 3, name="summary"
)


def block_output(X, params: MixtureParams, output: RowOutput, missing: bool = False):
    """``output`` of a fitted mixture for the rows of one chunk. With ``missing``, rows with
    NaN get what the marginal density of their observed values gives."""
    check_finite(X, allow_nan=missing or output.needs_holes)
    shift = params.weights @ params.means
    nan_rows = np.isnan(X).any(axis=1) if missing or output.needs_holes else None
    if nan_rows is not None and nan_rows.any():
        return _block_output_missing(X, params, output, shift, nan_rows)
    if output.of_complete is None:
        return X
    kernel = params.kernel(X.dtype, shift)
    blocks = iter_blocks(X, None, block_rows([kernel]))
    parts = [output.of_complete(kernel.log_prob(block), block) for block, _ in blocks]
    return np.concatenate(parts) if parts else output.empty(params, X.dtype)


def summary_rows(X: np.ndarray, params: MixtureParams, missing: bool = False) -> np.ndarray:
    """Each row's component, its responsibility and the row's log-density, array of shape
    (n_rows, 3) (:meth:`MixtureBase.predict_summary` of rows in memory)."""
    return block_output(X, params, NOISE_SUMMARY if params.has_noise else SUMMARY, missing)


def _block_output_missing(X, params, output, shift, nan_rows):
    from streamem.core.missing import incomplete_estep

    complete = ~nan_rows
    out_complete = block_output(X[complete], params, output)
    partial = output.of_incomplete(incomplete_estep(X[nan_rows], params, shift), X[nan_rows], shift)
    out = np.empty((len(X),) + out_complete.shape[1:], dtype=out_complete.dtype)
    out[complete] = out_complete
    out[nan_rows] = partial
    return out


#: a chunk task of fewer values than this (1 MiB of float64) runs BLAS on one thread: its
#: products and the M-step's small triangular solves gain nothing from more, and OpenBLAS's
#: threads spin waiting for each other (several times slower when another process is busy)
SMALL_TASK_VALUES = 1 << 17


@contextlib.contextmanager
def blas_per_task(n_chunks: int, n_values: float | None = None):
    """On the local threaded scheduler, give each concurrent chunk task its share of BLAS threads.

    Several tasks each running a multi-threaded GEMM oversubscribe the cores; one BLAS
    thread per task is markedly faster, and one thread too when the tasks are small (fewer
    than :data:`SMALL_TASK_VALUES` of the ``n_values`` each). Never more threads than BLAS
    had (a user's ``OPENBLAS_NUM_THREADS=1`` holds). Other schedulers (a distributed
    cluster) run the tasks in other processes and are left alone.
    """
    local = dask.config.get("scheduler", None) is None and "distributed" not in sys.modules
    if not local and dask.base.get_scheduler() not in (None, dask.threaded.get):
        yield
        return
    n_chunks = max(n_chunks, 1)
    share = (os.cpu_count() or 1) // n_chunks
    if n_values is not None and n_values / n_chunks < SMALL_TASK_VALUES:  # (False for an unknown size, NaN)
        share = 1
    blas = ThreadpoolController().select(user_api="blas")  # (one scan of the loaded libraries)
    had = [library.num_threads for library in blas.lib_controllers]
    with blas.limit(limits=max(1, min([share, *had]))):
        yield
