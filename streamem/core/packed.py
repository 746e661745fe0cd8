"""Small symmetric matrices stored packed: the upper triangles of the second-moment
statistics and quadratic forms (``np.triu_indices`` order, as :mod:`streamem.core.covariance`
keeps them), and the lower triangles of the many small blocks :mod:`streamem.core.missing`
inverts at once by sweeping (a few batch-wide operations per pivot instead of a LAPACK
call per matrix).

The numerical core imports only numpy.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["lower_slots", "pack_quadratic", "sweep", "symmetric_matvec", "unpack_symmetric", "upper_indices"]


@functools.cache
def upper_indices(n_features):
    """``np.triu_indices(n_features)``, computed once per size (read-only)."""
    rows, cols = np.triu_indices(n_features)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def pack_quadratic(matrices):
    """Symmetric (..., D, D) as (..., P), so that its product with packed ``x x^T`` is ``x^T A x``."""
    n_features = matrices.shape[-1]
    rows, cols = upper_indices(n_features)
    return matrices[..., rows, cols] * np.where(rows == cols, 1.0, 2.0)


def unpack_symmetric(packed, n_features):
    """(..., P) upper triangles in ``np.triu_indices`` order back to symmetric (..., D, D)."""
    rows, cols = upper_indices(n_features)
    out = np.empty(packed.shape[:-1] + (n_features, n_features))
    out[..., rows, cols] = packed
    out[..., cols, rows] = packed
    return out


@functools.cache
def lower_slots(m):
    """The packed lower triangle of an m x m symmetric matrix: ``index[i, j]``, where
    entry (i, j) is, and ``slots``, the (i, j) of each packed entry (i >= j)."""
    slots = [(i, j) for i in range(m) for j in range(i + 1)]
    index = np.zeros((m, m), dtype=int)
    for s, (i, j) in enumerate(slots):
        index[i, j] = index[j, i] = s
    return index, slots


@functools.cache
def _sweep_steps(m):
    """Per pivot k of an m x m packed symmetric matrix: the pivot's slot, the slots of the
    other entries of its column, and the slots the step updates with the pairs of those
    column entries (positions in the column) whose product it subtracts."""
    index, _ = lower_slots(m)
    steps = []
    for k in range(m):
        others = np.array([i for i in range(m) if i != k], dtype=int)
        a, b = np.tril_indices(len(others))
        steps.append((index[k, k], index[others, k], index[others[a], others[b]], a, b))
    return steps


def sweep(entries, m):
    """Sweep every pivot of a batch of small symmetric positive definite matrices, given
    by their packed lower triangles (slots, ...batch), in place: they become the packed
    negated inverses. Returns the log-determinants. Each step is a few batch-wide
    operations over the entries it changes; LAPACK through ``numpy.linalg`` would cost a
    call per matrix, which dominates for the thousands of 2x2 to 5x5 blocks of a chunk."""
    log_det = np.zeros(entries.shape[1:])
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # checked once, at the end
        for pivot_slot, column_slots, updated, a, b in _sweep_steps(m):
            pivot = entries[pivot_slot].copy()
            log_det += np.log(pivot)  # NaN or -inf for a pivot that is not positive
            if len(column_slots):
                column = entries[column_slots]
                scaled = column / pivot
                entries[updated] -= column[a] * scaled[b]
                entries[column_slots] = scaled
            np.divide(-1.0, pivot, out=entries[pivot_slot])
    if not np.isfinite(log_det).all():
        raise ValueError("a component's precision is not positive definite")
    return log_det


def symmetric_matvec(packed, v, out=None):
    """``a @ v`` for symmetric matrices given by their packed lower triangles (S, ...batch)
    and vectors (m, ...batch)."""
    m = len(v)
    index, _ = lower_slots(m)
    out = np.empty_like(v) if out is None else out
    if not m:
        return out
    scratch = np.empty_like(v[0])
    for i in range(m):
        np.multiply(packed[index[i, 0]], v[0], out=out[i])
        for j in range(1, m):
            out[i] += np.multiply(packed[index[i, j]], v[j], out=scratch)
    return out
