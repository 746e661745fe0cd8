"""Checks of lazy inputs: a dask array's chunks and its sample weights, before a pass reads
them (:mod:`streamem.core.validation` checks the values inside a chunk).
"""

from __future__ import annotations

import math

import dask.array as da
import numpy as np

__all__ = ["check_dask_array", "relative_weights"]


def relative_weights(sample_weight: da.Array) -> tuple[da.Array, float]:
    """Weights scaled by a power of two so that the largest lies in [1, 2), and the factor.

    A maximum-likelihood fit depends on the weights' ratios alone; scaled by a power of
    two (which changes no ratio) they neither overflow the weighted moments nor vanish
    beside the ``10 * eps`` that keeps a component's weight positive. Weights whose
    largest is already in [1, 2), and unit weights, are kept as they are. Reads the
    weights once when they are lazy."""
    largest = float(sample_weight.max().compute())
    if not (np.isfinite(largest) and largest > 0):  # the chunks' checks name the problem
        return sample_weight, 1.0
    exponent = math.frexp(largest)[1] - 1  # largest = m 2**exponent, 1 <= m < 2
    if exponent == 0:
        return sample_weight, 1.0
    scale = math.ldexp(1.0, -exponent)
    return sample_weight * scale, scale


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
