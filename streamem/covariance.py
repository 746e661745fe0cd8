"""One small strategy object per covariance type.

Everything that depends on the covariance type lives here, keyed by the user's string
(``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``): the shape of the second-moment
statistic, the M-step for the covariances, the Cholesky factor of the precisions, its
log-determinant, the squared Mahalanobis distances, the parameter count and sampling.

Shapes, with ``K = n_components`` and ``D = n_features``:

============  ======================  =====================  ==================
type          covariances             precisions_chol        second moment
============  ======================  =====================  ==================
full          (K, D, D)               (K, D, D)              (K, D, D)
tied          (D, D)                  (D, D)                 (D, D)
diag          (K, D)                  (K, D)                 (K, D)
spherical     (K,)                    (K,)                   (K,)
============  ======================  =====================  ==================

Kernels work components-first: responsibilities and log-densities of a block of ``B``
rows are arrays of shape (K, B), so that the reductions over components (max, sum) run
along contiguous rows, several times faster than across short rows of a (B, K) array.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["COVARIANCE_TYPES", "Covariance", "get_covariance", "products"]

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the "
    "input data."
)


class Covariance:
    """Interface of a covariance type; the subclasses below implement it.

    Per block of rows, :meth:`features` computes once what both the E-step
    (:meth:`mahalanobis`) and the statistics (:meth:`second_moment`) need, from ``xc``,
    the block minus the pass's shift, of shape (n_rows, n_features); ``means_c`` are
    the component means minus the same shift.
    """

    name: str = ""

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def second_moment_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def block_width(self, n_components: int, n_features: int) -> int:
        """Elements per row of a block's largest temporaries (to size blocks)."""
        return 2 * n_components + 2 * n_features

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Number of free parameters of the covariances."""
        raise NotImplementedError

    def features(self, xc):
        """Per-block quantities shared by :meth:`mahalanobis` and :meth:`second_moment`;
        the first is always ``xc.T`` as a contiguous (n_features, n_rows) array."""
        raise NotImplementedError

    def second_moment(self, features, resp, sample_weight):
        """Second-moment statistic of one block about the shift, in the block's dtype.

        ``resp`` has shape (n_components, n_rows) and already includes the weights.
        """
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

    def mahalanobis(self, features, prepared):
        """Squared Mahalanobis distances, array of shape (n_components, n_rows)."""
        raise NotImplementedError

    def component_covariance(self, covariances, k: int, n_features: int):
        """Full (D, D) covariance matrix of component ``k``."""
        raise NotImplementedError


def products(a, b):
    """``a @ b.T`` for ``a`` (K, n) and ``b`` (P, n) with a long inner dimension ``n``.

    BLAS GEMM is slow when the output is tiny: for a few rows of ``b``, one matrix-vector
    product per row is several times faster.
    """
    if len(b) <= 8:
        return np.stack([a @ row for row in b], axis=1)
    return a @ b.T


def _packed_outer(xc):
    """Upper triangles of the outer products of the rows, array of shape (D (D + 1) / 2, n).

    Row ``p`` holds ``x_i x_j`` for the ``p``-th pair ``i <= j`` of ``np.triu_indices(D)``.
    """
    xct = np.ascontiguousarray(xc.T)
    n_features, n_rows = xct.shape
    out = np.empty((n_features * (n_features + 1) // 2, n_rows), dtype=xc.dtype)
    start = 0
    for i in range(n_features):
        np.multiply(xct[i], xct[i:], out=out[start : start + n_features - i])
        start += n_features - i
    return xct, out


def _pack_quadratic(matrices):
    """Symmetric (..., D, D) as (..., D (D + 1) / 2) so that ``packed @ _packed_outer`` is ``x^T A x``."""
    n_features = matrices.shape[-1]
    rows, cols = np.triu_indices(n_features)
    return matrices[..., rows, cols] * np.where(rows == cols, 1.0, 2.0)


def _unpack_symmetric(packed, n_features):
    """(..., D (D + 1) / 2) upper triangles back to symmetric (..., D, D)."""
    rows, cols = np.triu_indices(n_features)
    out = np.empty(packed.shape[:-1] + (n_features, n_features))
    out[..., rows, cols] = packed
    out[..., cols, rows] = packed
    return out


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
    r"""One covariance per component.

    The E-step and the statistics share the packed outer products ``z = vec(x x^T)``
    of each block: ``x^T \Lambda_k x`` is one GEMM of the packed precisions with ``z``, and
    ``sum_i r_ik x_i x_i^T`` one GEMM of the responsibilities with ``z``, both with a
    long inner dimension.

    .. math::
        \|L_k^T (x - \mu_k)\|^2 = x^T \Lambda_k x - 2 (\Lambda_k \mu_k)^T x + \mu_k^T \Lambda_k \mu_k
    """

    name = "full"

    def covariance_shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    def second_moment_shape(self, n_components, n_features):
        return (n_components, n_features * (n_features + 1) // 2)

    def block_width(self, n_components, n_features):
        return n_features * (n_features + 1) // 2 + 2 * n_components + n_features

    def n_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) // 2

    def features(self, xc):
        return _packed_outer(xc)

    def second_moment(self, features, resp, sample_weight):
        return products(resp, features[1])

    def covariances(self, nk, means_c, s2, reg_covar):
        n_features = means_c.shape[1]
        second = _unpack_symmetric(s2, n_features)
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
        precisions = self.precisions(precisions_chol)
        weighted_means = np.einsum("kde,ke->kd", precisions, means_c)
        return (
            _pack_quadratic(precisions).astype(dtype),
            (-2.0 * weighted_means).astype(dtype),
            np.einsum("kd,kd->k", weighted_means, means_c).astype(dtype)[:, None],
        )

    def mahalanobis(self, features, prepared):
        xct, outer = features
        quadratic, cross, constant = prepared
        maha = quadratic @ outer
        maha += cross @ xct
        maha += constant
        return maha

    def component_covariance(self, covariances, k, n_features):
        return covariances[k]


def _covariance_of_chol(precision_chol):
    """``(P P^T)^-1`` for a triangular ``P``: upper from the M-step, lower from a given precision."""
    lower = not np.any(np.triu(precision_chol, 1))
    inverse = linalg.solve_triangular(precision_chol, np.eye(len(precision_chol)), lower=lower)
    return inverse.T @ inverse


class Tied(Covariance):
    """One covariance shared by all components; the same packed products as :class:`Full`."""

    name = "tied"

    def covariance_shape(self, n_components, n_features):
        return (n_features, n_features)

    def second_moment_shape(self, n_components, n_features):
        return (n_features * (n_features + 1) // 2,)

    def block_width(self, n_components, n_features):
        return n_features * (n_features + 1) // 2 + 2 * n_components + n_features

    def n_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) // 2

    def features(self, xc):
        return _packed_outer(xc)

    def second_moment(self, features, resp, sample_weight):
        # sum_k sum_i r_ik x x^T = sum_i w_i x x^T: the responsibilities are not needed.
        outer = features[1]
        return outer.sum(axis=1) if sample_weight is None else outer @ sample_weight

    def covariances(self, nk, means_c, s2, reg_covar):
        second = _unpack_symmetric(s2, means_c.shape[1])
        covariance = (second - (nk[:, None] * means_c).T @ means_c) / nk.sum()
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
        precision = self.precisions(precisions_chol)
        weighted_means = means_c @ precision
        return (
            _pack_quadratic(precision).astype(dtype),
            (-2.0 * weighted_means).astype(dtype),
            np.einsum("kd,kd->k", weighted_means, means_c).astype(dtype)[:, None],
        )

    def mahalanobis(self, features, prepared):
        xct, outer = features
        quadratic, cross, constant = prepared
        maha = cross @ xct
        maha += quadratic @ outer
        maha += constant
        return maha

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

    def features(self, xc):
        xct = np.ascontiguousarray(xc.T)
        return xct, xct * xct

    def second_moment(self, features, resp, sample_weight):
        return products(resp, features[1])

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
            precisions.astype(dtype),
            (-2.0 * means_c * precisions).astype(dtype),
            (means_c * means_c * precisions).sum(axis=1).astype(dtype)[:, None],
        )

    def mahalanobis(self, features, prepared):
        xct, squares = features
        precisions, cross, constant = prepared
        maha = precisions @ squares
        maha += cross @ xct
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

    def features(self, xc):
        xct = np.ascontiguousarray(xc.T)
        return xct, np.einsum("dn,dn->n", xct, xct)

    def second_moment(self, features, resp, sample_weight):
        return resp @ features[1]

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
            precisions.astype(dtype)[:, None],
            (-2.0 * means_c).astype(dtype),
            (means_c * means_c).sum(axis=1).astype(dtype)[:, None],
        )

    def mahalanobis(self, features, prepared):
        xct, squares = features
        precisions, cross, constant = prepared
        maha = cross @ xct
        maha += squares
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
