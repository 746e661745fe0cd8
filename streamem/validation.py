"""Checks of the input that name the problem: values in a chunk, weights, lazy arrays.

Each raises ``ValueError`` with a message a user can act on; the estimators' own checks
(shapes of initial parameters, hyper-parameters) use these and scikit-learn's.
"""

from __future__ import annotations

import math

import dask.array as da
import numpy as np

__all__ = ["check_dask_array", "check_finite", "check_sample_weight_shape", "check_total_weight", "max_weight",
           "relative_weights"]


def check_finite(X: np.ndarray, sample_weight: np.ndarray | None = None, allow_nan: bool = False) -> None:
    """Raise ValueError naming the problem if ``X`` holds NaN (unless ``allow_nan``: missing
    values) or infinity, or a weight is negative or not finite."""
    if not np.isfinite(X).all():
        if np.isinf(X).any():
            raise ValueError("Input X contains infinity; expected finite values only")
        if not allow_nan:
            raise ValueError(
                "Input X contains NaN; expected finite values only "
                "(missing='marginalize' fits data with missing values)"
            )
    if sample_weight is not None and not (np.isfinite(sample_weight).all() and (sample_weight >= 0).all()):
        raise ValueError("Negative or non-finite values in sample_weight; expected finite weights >= 0")
    largest = np.max(sample_weight, initial=0.0) if sample_weight is not None else 0.0
    if largest > max_weight(X.dtype):
        raise ValueError(
            f"sample_weight holds {largest:.3g}, above {max_weight(X.dtype):.3g}, where the weighted moments of "
            f"{X.dtype} data overflow: with a prior, weights count rows; divide them by a common factor"
        )


def max_weight(dtype) -> float:
    """The largest sample weight a fit of data of ``dtype`` takes (the square root of the
    largest number: room for a weight times a squared value)."""
    return float(np.sqrt(np.finfo(np.result_type(dtype, np.float32)).max))


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


def check_sample_weight_shape(sample_weight, n_samples: int) -> None:
    """Raise ValueError naming ``sample_weight`` unless it is one number per sample (or a
    single number, for every sample)."""
    shape = sample_weight.shape if isinstance(sample_weight, da.Array) else np.asarray(sample_weight).shape
    if shape not in ((n_samples,), ()):
        raise ValueError(f"expected sample_weight of shape ({n_samples},), got {shape}")


def check_total_weight(weight: float) -> None:
    """Raise ValueError unless the rows used have a positive total weight, naming what can
    leave them none: zero weights, or rows with missing values."""
    if not weight > 0:
        raise ValueError(
            f"expected sample_weight with a positive sum over the rows used, got a sum of {weight}: their weights "
            "are 0 or, with missing='marginalize', they miss values (rows with every value missing count for "
            "nothing, and the initialisation uses the rows without any)"
        )


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
