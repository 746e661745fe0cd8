"""One small strategy object per covariance type.

Everything that depends on the covariance type lives here, keyed by the user's string
(``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``): the shape of the second-moment
statistic, the M-step for the covariances, the Cholesky factor of the precisions, its
log-determinant, the squared Mahalanobis distances, the parameter count and sampling.

Shapes, with ``K = n_components`` and ``D = n_features``:

============  ======================  =====================  ==================
type          covariances             precisions_chol        second moment
============  ======================  =====================  ==================
full          (K, D, D)               (K, D, D)              (K, D (D + 1) / 2)
tied          (D, D)                  (D, D)                 (D, D)
diag          (K, D)                  (K, D)                 (K, D)
spherical     (K,)                    (K,)                   (K,)
============  ======================  =====================  ==================

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["COVARIANCE_TYPES", "Covariance", "get_covariance"]

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the "
    "input data."
)


class Covariance:
    """Interface of a covariance type; the subclasses below implement it.

    ``xc`` is always a block of data minus the pass's shift, of shape
    (n_rows, n_features), and ``means_c`` the component means minus the same shift.
    """

    name: str = ""

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def second_moment_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Number of free parameters of the covariances."""
        raise NotImplementedError

    def second_moment(self, xc, resp, sample_weight):
        """Second-moment statistic of one block, about the shift, in the block's dtype."""
        raise NotImplementedError

    def covariances(self, nk, means_c, s2, reg_covar):
        """M-step: covariances from the totals (``nk`` includes the ``10 eps`` guard)."""
        raise NotImplementedError

    def precisions_chol(self, covariances):
        """Cholesky factor of the precisions, ``P`` with ``P P^T = covariance^-1``."""
        raise NotImplementedError

    def precisions_chol_from_precisions(self, precisions):
        raise NotImplementedError

    def precisions(self, precisions_chol):
        raise NotImplementedError

    def covariances_from_precisions_chol(self, precisions_chol):
        raise NotImplementedError

    def log_det_chol(self, precisions_chol, n_features: int):
        """Log-determinant of the precision Cholesky factor, per component."""
        raise NotImplementedError

    def prepare(self, means_c, precisions_chol, dtype):
        """Per-pass constants for :meth:`mahalanobis`, cast to the data's dtype."""
        raise NotImplementedError

    def mahalanobis(self, xc, prepared):
        """Squared Mahalanobis distances of shape (n_rows, n_components)."""
        raise NotImplementedError

    def component_covariance(self, covariances, k: int, n_features: int):
        """Full (D, D) covariance matrix of component ``k``."""
        raise NotImplementedError


def _check_positive(values) -> None:
    if np.any(np.less_equal(values, 0.0)) or not np.all(np.isfinite(values)):
        raise ValueError(_ILL_DEFINED)


def _cholesky_precision(covariance):
    """Precision Cholesky factor of one (D, D) covariance."""
    try:
        cov_chol = linalg.cholesky(covariance, lower=True)
    except (linalg.LinAlgError, ValueError):
        raise ValueError(_ILL_DEFINED) from None
    eye = np.eye(covariance.shape[0])
    return linalg.solve_triangular(cov_chol, eye, lower=True).T


def _cholesky_of_precision(precision):
    try:
        return linalg.cholesky(precision, lower=True)
    except (linalg.LinAlgError, ValueError):
        raise ValueError("expected symmetric, positive-definite precisions, got a matrix that is not") from None


class Full(Covariance):
    name = "full"

    def covariance_shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    def second_moment_shape(self, n_components, n_features):
        return (n_components, n_features * (n_features + 1) // 2)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) // 2

    def second_moment(self, xc, resp, sample_weight):
        # One GEMM for every component: resp^T (n, K) times the packed upper triangle
        # of x x^T (n, D (D + 1) / 2).
        rows, cols = np.triu_indices(xc.shape[1])
        return resp.T @ (xc[:, rows] * xc[:, cols])

    def covariances(self, nk, means_c, s2, reg_covar):
        n_features = means_c.shape[1]
        rows, cols = np.triu_indices(n_features)
        second = np.empty((len(nk), n_features, n_features))
        second[:, rows, cols] = s2
        second[:, cols, rows] = s2
        covariances = second / nk[:, None, None] - means_c[:, :, None] * means_c[:, None, :]
        covariances[:, np.arange(n_features), np.arange(n_features)] += reg_covar
        return covariances

    def precisions_chol(self, covariances):
        return np.stack([_cholesky_precision(c) for c in covariances])

    def precisions_chol_from_precisions(self, precisions):
        return np.stack([_cholesky_of_precision(p) for p in precisions])

    def precisions(self, precisions_chol):
        return precisions_chol @ np.swapaxes(precisions_chol, -1, -2)

    def covariances_from_precisions_chol(self, precisions_chol):
        return np.stack([_covariance_of_chol(p) for p in precisions_chol])

    def log_det_chol(self, precisions_chol, n_features):
        return np.log(np.diagonal(precisions_chol, axis1=1, axis2=2)).sum(axis=1)

    def prepare(self, means_c, precisions_chol, dtype):
        n_components, n_features, _ = precisions_chol.shape
        # All components in one GEMM: (n, D) @ (D, K D).
        stacked = precisions_chol.transpose(1, 0, 2).reshape(n_features, -1)
        centres = np.einsum("kd,kde->ke", means_c, precisions_chol)
        return stacked.astype(dtype), centres.astype(dtype)

    def mahalanobis(self, xc, prepared):
        stacked, centres = prepared
        y = (xc @ stacked).reshape(len(xc), *centres.shape)
        y -= centres
        return np.einsum("nkd,nkd->nk", y, y)

    def component_covariance(self, covariances, k, n_features):
        return covariances[k]


def _covariance_of_chol(precision_chol):
    """``(P P^T)^-1`` for a triangular ``P``: upper from the M-step, lower from a given precision."""
    lower = not np.any(np.triu(precision_chol, 1))
    inverse = linalg.solve_triangular(precision_chol, np.eye(len(precision_chol)), lower=lower)
    return inverse.T @ inverse


class Tied(Covariance):
    name = "tied"

    def covariance_shape(self, n_components, n_features):
        return (n_features, n_features)

    def second_moment_shape(self, n_components, n_features):
        return (n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) // 2

    def second_moment(self, xc, resp, sample_weight):
        # sum_k sum_n r_nk x x^T = sum_n w_n x x^T: responsibilities are not needed.
        weighted = xc if sample_weight is None else xc * sample_weight[:, None]
        return xc.T @ weighted

    def covariances(self, nk, means_c, s2, reg_covar):
        covariance = (s2 - (nk[:, None] * means_c).T @ means_c) / nk.sum()
        covariance.flat[:: len(covariance) + 1] += reg_covar
        return covariance

    def precisions_chol(self, covariances):
        return _cholesky_precision(covariances)

    def precisions_chol_from_precisions(self, precisions):
        return _cholesky_of_precision(precisions)

    def precisions(self, precisions_chol):
        return precisions_chol @ precisions_chol.T

    def covariances_from_precisions_chol(self, precisions_chol):
        return _covariance_of_chol(precisions_chol)

    def log_det_chol(self, precisions_chol, n_features):
        return np.log(np.diag(precisions_chol)).sum()

    def prepare(self, means_c, precisions_chol, dtype):
        return precisions_chol.astype(dtype), (means_c @ precisions_chol).astype(dtype)

    def mahalanobis(self, xc, prepared):
        precisions_chol, centres = prepared
        y = xc @ precisions_chol
        diff = y[:, None, :] - centres[None, :, :]
        return np.einsum("nkd,nkd->nk", diff, diff)

    def component_covariance(self, covariances, k, n_features):
        return covariances


class Diag(Covariance):
    name = "diag"

    def covariance_shape(self, n_components, n_features):
        return (n_components, n_features)

    def second_moment_shape(self, n_components, n_features):
        return (n_components, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features

    def second_moment(self, xc, resp, sample_weight):
        return resp.T @ (xc * xc)

    def covariances(self, nk, means_c, s2, reg_covar):
        return s2 / nk[:, None] - means_c * means_c + reg_covar

    def precisions_chol(self, covariances):
        _check_positive(covariances)
        return 1.0 / np.sqrt(covariances)

    def precisions_chol_from_precisions(self, precisions):
        return np.sqrt(precisions)

    def precisions(self, precisions_chol):
        return precisions_chol**2

    def covariances_from_precisions_chol(self, precisions_chol):
        return 1.0 / precisions_chol**2

    def log_det_chol(self, precisions_chol, n_features):
        return np.log(precisions_chol).sum(axis=1)

    def prepare(self, means_c, precisions_chol, dtype):
        precisions = precisions_chol**2
        return (
            np.ascontiguousarray(precisions.T, dtype=dtype),
            np.ascontiguousarray((-2.0 * means_c * precisions).T, dtype=dtype),
            (means_c * means_c * precisions).sum(axis=1).astype(dtype),
        )

    def mahalanobis(self, xc, prepared):
        precisions_t, cross_t, constant = prepared
        maha = (xc * xc) @ precisions_t
        maha += xc @ cross_t
        maha += constant
        return maha

    def component_covariance(self, covariances, k, n_features):
        return np.diag(covariances[k])


class Spherical(Covariance):
    name = "spherical"

    def covariance_shape(self, n_components, n_features):
        return (n_components,)

    def second_moment_shape(self, n_components, n_features):
        return (n_components,)

    def n_parameters(self, n_components, n_features):
        return n_components

    def second_moment(self, xc, resp, sample_weight):
        return resp.T @ np.einsum("nd,nd->n", xc, xc)

    def covariances(self, nk, means_c, s2, reg_covar):
        n_features = means_c.shape[1]
        return (s2 / nk - (means_c * means_c).sum(axis=1)) / n_features + reg_covar

    def precisions_chol(self, covariances):
        _check_positive(covariances)
        return 1.0 / np.sqrt(covariances)

    def precisions_chol_from_precisions(self, precisions):
        return np.sqrt(precisions)

    def precisions(self, precisions_chol):
        return precisions_chol**2

    def covariances_from_precisions_chol(self, precisions_chol):
        return 1.0 / precisions_chol**2

    def log_det_chol(self, precisions_chol, n_features):
        return n_features * np.log(precisions_chol)

    def prepare(self, means_c, precisions_chol, dtype):
        precisions = precisions_chol**2
        return (
            precisions.astype(dtype),
            np.ascontiguousarray(-2.0 * means_c.T, dtype=dtype),
            (means_c * means_c).sum(axis=1).astype(dtype),
        )

    def mahalanobis(self, xc, prepared):
        precisions, cross_t, constant = prepared
        maha = xc @ cross_t
        maha += np.einsum("nd,nd->n", xc, xc)[:, None]
        maha += constant
        maha *= precisions
        return maha

    def component_covariance(self, covariances, k, n_features):
        return covariances[k] * np.eye(n_features)


_REGISTRY: dict[str, Covariance] = {c.name: c() for c in (Full, Tied, Diag, Spherical)}
COVARIANCE_TYPES = tuple(_REGISTRY)


def get_covariance(covariance_type: str) -> Covariance:
    """The strategy object for ``covariance_type``."""
    try:
        return _REGISTRY[covariance_type]
    except KeyError:
        raise ValueError(f"expected covariance_type in {COVARIANCE_TYPES}, got {covariance_type!r}") from None
