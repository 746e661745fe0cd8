"""Checks of input values and weights that name the problem.

Each raises ``ValueError`` with a message a user can act on; the estimators' own checks
(shapes of initial parameters, hyper-parameters) use these and scikit-learn's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_finite", "check_sample_weight_shape", "check_total_weight", "max_weight"]


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


def check_sample_weight_shape(sample_weight, n_samples: int) -> None:
    """Raise ValueError naming ``sample_weight`` unless it is one number per sample (or a
    single number, for every sample)."""
    shape = getattr(sample_weight, "shape", None)  # a lazy array's, without computing it
    if not isinstance(shape, tuple):
        shape = np.asarray(sample_weight).shape
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
