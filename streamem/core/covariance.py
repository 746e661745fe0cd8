r"""One small strategy object per covariance type.

Everything that depends on the covariance type lives here, keyed by the user's string
(``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``): the per-row features of a block,
the shape of the second-moment statistic, the M-step for the covariances, the Cholesky
factor of the precisions, its log-determinant, the squared Mahalanobis distances and
the parameter count.

Shapes, with ``K = n_components``, ``D = n_features`` and ``P = D (D + 1) / 2``:

============  ==========  ===============  =============  ===============================
type          covariances precisions_chol  second moment  features of a row (F values)
============  ==========  ===============  =============  ===============================
full          (K, D, D)   (K, D, D)        (K, P)         ``1``, ``x``, packed ``x x^T``
tied          (D, D)      (D, D)           (P,)           ``1``, ``x``, packed ``x x^T``
diag          (K, D)      (K, D)           (K, D)         ``1``, ``x``, ``x * x``
spherical     (K,)        (K,)             (K,)           ``1``, ``x``, ``x^T x``
============  ==========  ===============  =============  ===============================

One kernel serves all four. A block of ``n`` centred rows becomes its features ``F``, an
array of shape (F, n): a row of ones, then ``x^T`` (D rows), then the type's extra rows.
The squared Mahalanobis distances are linear in the features, and so are the weighted
log-densities: one GEMM gives those of every component,

.. math::
    \|L_k^T (x - \mu_k)\|^2 = \mu_k^T \Lambda_k \mu_k - 2 (\Lambda_k \mu_k)^T x + x^T \Lambda_k x
    = a_k^T f(x),

and the statistics are one more GEMM, ``resp @ F^T``: its first column is the sum of
responsibilities, the next ``D`` the sums of ``r x``, the others the second moments.
Responsibilities and log-densities are (K, n) arrays, so that the reductions over
components run along contiguous rows.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import linalg, stats

from streamem.core.packed import pack_quadratic, unpack_symmetric, upper_indices

__all__ = ["COVARIANCE_TYPES", "Covariance", "get_covariance", "products", "quadratic_form"]

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined "
    "empirical covariance (for instance caused by singleton or collapsed samples). "
    "Try to decrease the number of components, increase reg_covar, or scale the "
    "input data."
)


def products(a, b):
    """``a @ b.T`` for ``a`` (K, n) and ``b`` (F, n) with a long inner dimension ``n``.

    BLAS GEMM is slow when the output is tiny: for a few rows of ``b``, one matrix-vector
    product per row is several times faster. In single precision, OpenBLAS's GEMM runs
    1.2-2x faster with the output transposed (its float32 kernel prefers the short side
    as the unrolled one); in double precision the direct product is as fast or faster.
    """
    if len(b) <= 8:
        return np.stack([a @ row for row in b], axis=1)
    if a.dtype == np.float32 and b.dtype == np.float32:
        return (b @ a.T).T
    return a @ b.T


def _check_positive(values) -> None:
    if np.any(np.less_equal(values, 0.0)) or not np.all(np.isfinite(values)):
        raise ValueError(_ILL_DEFINED)


@functools.cache
def _lapack(name: str, dtype: np.dtype):
    """LAPACK's routine ``name`` for arrays of ``dtype``."""
    return linalg.get_lapack_funcs(name, dtype=dtype)


def _cholesky(matrix, ill_defined: str):
    """The lower Cholesky factor of a symmetric positive-definite (D, D) ``matrix``; otherwise
    a ValueError of message ``ill_defined``. LAPACK's ``potrf`` as ``scipy.linalg.cholesky``
    calls it, bit for bit, without that function's checks, which cost several times the
    factorisation of the small matrices of a mixture's components (an M-step factorises
    every component of every candidate)."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or not np.isfinite(matrix).all():
        raise ValueError(ill_defined)
    factor, info = _lapack("potrf", matrix.dtype)(matrix, lower=1, clean=1)
    if info != 0:
        raise ValueError(ill_defined)
    return factor


def _triangular_inverse(triangular, lower: bool):
    """The inverse of a triangular (D, D) matrix, by LAPACK's ``trtrs`` on the identity, as
    ``scipy.linalg.solve_triangular`` calls it (bit for bit)."""
    eye = np.eye(len(triangular))  # (in double precision at least, whatever the factor's)
    inverse, info = _lapack("trtrs", np.result_type(triangular, eye))(triangular, eye, lower=int(lower))
    if info != 0:
        raise ValueError(_ILL_DEFINED)
    return inverse


def _cholesky_precision(covariance):
    """Precision Cholesky factor of one (D, D) covariance (upper triangular)."""
    return _triangular_inverse(_cholesky(covariance, _ILL_DEFINED), lower=True).T


def _cholesky_of_precision(precision):
    return _cholesky(precision, "expected symmetric, positive-definite precisions, got a matrix that is not")


def _covariance_of_chol(precision_chol):
    """``(P P^T)^-1`` for a triangular ``P``: upper from the M-step, lower from a given precision."""
    lower = not np.any(np.triu(precision_chol, 1))
    inverse = _triangular_inverse(precision_chol, lower=lower)
    return inverse.T @ inverse


class Covariance:
    """Interface of a covariance type; the subclasses below implement it.

    ``xct`` is a block of rows minus a centre, transposed: shape (n_features, n_rows);
    ``means_c`` are the component means minus the same centre. Features have
    ``1 + D + n_extra`` rows: ones, ``xct``, then the extra rows.
    """

    name: str = ""
    #: each component has a covariance of its own (all but tied)
    per_component: bool = True

    def covariance_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def second_moment_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def n_extra(self, n_features: int) -> int:
        """Number of feature rows after those of ones and of ``x`` itself."""
        raise NotImplementedError

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Number of free parameters of the covariances."""
        raise NotImplementedError

    def features(self, xct):
        """Features of a block, array of shape (1 + D + n_extra, n_rows): ones, ``xct``, extras."""
        n_features, n_rows = xct.shape
        out = np.empty((1 + n_features + self.n_extra(n_features), n_rows), dtype=xct.dtype)
        out[0] = 1
        out[1 : 1 + n_features] = xct
        self._extra(xct, out[1 + n_features :])
        return out

    def centred_features(self, rows, centre, dtype, out=None):
        """Features of ``rows - centre`` (rows of shape (n_rows, D)) in ``dtype``, the centred
        rows written in place: :meth:`features` without the copy of ``xct``; into ``out``
        when given (an array of the features' shape, for instance reused from block to block)."""
        n_rows, n_features = rows.shape
        if out is None:
            out = np.empty((1 + n_features + self.n_extra(n_features), n_rows), dtype=dtype)
        out[0] = 1
        xct = out[1 : 1 + n_features]
        np.subtract(rows.T, np.asarray(centre, dtype=dtype)[:, None], out=xct)
        self._extra(xct, out[1 + n_features :])
        return out

    def _extra(self, xct, out) -> None:
        raise NotImplementedError

    def mahalanobis_form(self, means_c, precisions_chol):
        """The linear form ``a`` of shape (K, F), in float64: squared Mahalanobis distances
        of a block are ``a @ features``."""
        raise NotImplementedError

    def second_moment(self, extra_moments):
        """Second-moment statistic from the extra columns of ``resp @ F^T`` of a block."""
        return extra_moments

    def second_moment_from_full(self, second):
        """Second-moment statistic from full per-component sums of ``r x x^T`` (K, D, D)."""
        raise NotImplementedError

    def add_second_moment(self, s2, components, extra_moments) -> None:
        """Add the second moments of some components (an index array or a slice), from the
        extra columns of their ``resp @ F^T``, to the statistic ``s2`` in place."""
        s2[components] += self.second_moment(extra_moments)

    def covariances(self, nk, means_c, s2, reg_covar):
        """M-step: covariances from the totals (``nk`` includes the ``10 eps`` guard)."""
        raise NotImplementedError

    def add_to_diagonal(self, covariances, value: float):
        """``covariances`` plus ``value`` times the identity (a new array)."""
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

    def whitened(self, centred, precisions_chol, k: int):
        """Rows minus component ``k``'s mean (n_rows, D) times its precision Cholesky factor:
        their squared norms are the Mahalanobis distances."""
        raise NotImplementedError

    def full_covariances(self, covariances, n_components: int, n_features: int):
        """Every component's covariance as a full matrix, array of shape (K, D, D)."""
        raise NotImplementedError

    def chol_to_free(self, precisions_chol) -> np.ndarray:
        """The precision Cholesky factors as unconstrained values, array of shape (n,): the
        logs of their (positive) diagonal, and the entries off it. Any values map back to
        valid factors (:meth:`chol_from_free`), so an extrapolation of them stays valid."""
        return np.log(precisions_chol).ravel()

    def chol_from_free(self, values, shape: tuple) -> np.ndarray:
        """The precision Cholesky factors of shape ``shape`` from :meth:`chol_to_free`'s values."""
        return np.exp(values).reshape(shape)

    def full_precisions(self, precisions_chol, n_components: int, n_features: int):
        """Every component's precision as a contiguous array of shape (K, D, D)."""
        raise NotImplementedError

    def variances(self, covariances, n_components: int, n_features: int):
        """The diagonal of every component's covariance, array of shape (K, D)."""
        raise NotImplementedError

    def abs_precision_product(self, precisions_chol, h):
        """``|Lambda_k| @ h_k`` for every component (elementwise absolute precisions), array
        of shape (K, D) from ``h`` of shape (K, D)."""
        K, D = h.shape
        return np.einsum("kij,kj->ki", np.abs(self.full_precisions(precisions_chol, K, D)), h)

    def check_precisions(self, precisions) -> None:
        """Raise ``ValueError`` for given precisions (``precisions_init``) of the right shape
        that are not valid (matrices that are not positive definite fail their Cholesky)."""

    def prior_shape(self, n_features: int) -> tuple[int, ...]:
        """Shape of the inverse-Wishart scale (``covariance_prior``)."""
        raise NotImplementedError

    def check_prior(self, psi, n_features: int) -> None:
        """Raise ``ValueError``, naming ``covariance_prior``, for a scale of the wrong shape or
        that is not positive (definite)."""
        shape = self.prior_shape(n_features)
        if psi.shape != shape:
            raise ValueError(f"expected covariance_prior of shape {shape} for {self.name!r}, got {psi.shape}")
        if not np.all(np.isfinite(psi)):
            raise ValueError("expected a finite covariance_prior")
        if psi.ndim == 2:
            if not np.allclose(psi, psi.T):
                raise ValueError("expected a symmetric covariance_prior, got an asymmetric matrix")
            if np.linalg.eigvalsh(psi)[0] <= 0:
                raise ValueError("expected a positive definite covariance_prior, got a matrix that is not")
        elif np.any(psi <= 0):
            raise ValueError("expected a positive covariance_prior, got non-positive values")

    def posterior_covariances(self, nk, ml_covariances, coefficient, deviations, psi, extra, has_mean):
        r"""Posterior mode of the covariances under the inverse-Wishart prior (see
        :mod:`streamem.core.prior`): the scatter ``nk * ml_covariances`` plus the mean prior's
        ``coefficient_k d_k d_k^T`` and the scale ``psi``, over ``nk + extra + has_mean``
        (summed over components for a shared covariance)."""
        raise NotImplementedError

    def from_full(self, covariances, weights):
        """The type's covariances from full ones (K, D, D) estimated from the same
        responsibilities, with ``weights`` the components' shares: what the type's M-step
        gives from the same statistics (their diagonals, their mean, their weighted sum)."""
        raise NotImplementedError

    def variational_covariances(self, nk, ml_covariances, coefficient, deviations, psi, degrees_of_freedom_prior):
        r"""The variational posterior's Wishart (as scikit-learn's ``BayesianGaussianMixture``
        keeps it): the covariances ``(psi + n_k S_k + c_k d_k d_k^T) / \nu_k`` and the degrees
        of freedom ``\nu_k = \nu_0 + n_k``, per component."""
        covariances = self.posterior_covariances(
            nk, ml_covariances, coefficient, deviations, psi, degrees_of_freedom_prior, 0.0
        )
        return covariances, degrees_of_freedom_prior + nk

    def prior_log_density(self, covariances, psi, degrees_of_freedom: float, n_features: int) -> float:
        """Log-density of the covariances under the inverse-Wishart prior restricted to the
        type's family."""
        raise NotImplementedError

    def scaled(self, covariances, precisions_chol, scale):
        r"""Covariances and precision Cholesky factors of ``x * scale`` (``scale`` of shape
        (n_features,), positive) from those of ``x``: :math:`S \Sigma S` and :math:`S^{-1} L`."""
        raise NotImplementedError

    def scaled_second_moment(self, s2, scale):
        """Second moments of ``x * scale`` (``scale`` of shape (n_features,)) from those of ``x``."""
        raise NotImplementedError

    def shifted_second_moment(self, s2, nk, s1, delta):
        r"""Second moments about ``c - delta`` from those about ``c`` (Chan's update, exact in
        float64): with ``s1`` the sums of ``r (x - c)`` of shape (K, D) and ``delta`` of
        shape (K, D),

        .. math::
            \sum r (x - c + \delta)(x - c + \delta)^T = S_2 + s_1 \delta^T + \delta s_1^T + n_k \delta \delta^T.
        """
        outer = s1[:, :, None] * delta[:, None, :]
        outer += np.swapaxes(outer, 1, 2)
        outer += nk[:, None, None] * delta[:, :, None] * delta[:, None, :]
        return s2 + self.second_moment_from_full(outer)


def quadratic_form(means_c, precisions):
    """The linear form (K, F) of ``(x - mu_k)^T Lambda_k (x - mu_k)`` over the packed features
    (ones, ``x``, upper triangle of ``x x^T``), for precisions of shape (K, D, D)."""
    weighted_means = np.einsum("kde,ke->kd", precisions, means_c)
    constant = np.einsum("kd,kd->k", weighted_means, means_c)[:, None]
    return np.concatenate([constant, -2.0 * weighted_means, pack_quadratic(precisions)], axis=1)


class _Packed(Covariance):
    """Features ``x`` and the upper triangle of ``x x^T``: full and tied covariances."""

    def n_extra(self, n_features):
        return n_features * (n_features + 1) // 2

    def scaled_second_moment(self, s2, scale):
        rows, cols = upper_indices(len(scale))
        return s2 * (scale[rows] * scale[cols])

    def chol_to_free(self, precisions_chol):
        chol = np.asarray(precisions_chol, dtype=np.float64)
        if np.any(np.tril(chol, -1)):  # a lower factor (from given precisions): the upper one of the same
            chol = self.precisions_chol(self.covariances_from_precisions_chol(chol))
        rows, cols = upper_indices(chol.shape[-1])
        upper = chol[..., rows, cols].copy()
        diagonal = rows == cols
        upper[..., diagonal] = np.log(upper[..., diagonal])
        return upper.ravel()

    def chol_from_free(self, values, shape):
        D = shape[-1]
        rows, cols = upper_indices(D)
        upper = np.reshape(values, (*shape[:-2], len(rows))).copy()
        diagonal = rows == cols
        upper[..., diagonal] = np.exp(upper[..., diagonal])
        chol = np.zeros(shape)
        chol[..., rows, cols] = upper
        return chol

    def _extra(self, xct, out):
        n_features = len(xct)
        start = 0
        for i in range(n_features):
            np.multiply(xct[i], xct[i:], out=out[start : start + n_features - i])
            start += n_features - i


class Full(_Packed):
    """One covariance per component."""

    name = "full"

    def covariance_shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    def second_moment_shape(self, n_components, n_features):
        return (n_components, n_features * (n_features + 1) // 2)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) // 2

    def mahalanobis_form(self, means_c, precisions_chol):
        return quadratic_form(means_c, self.precisions(precisions_chol))

    def second_moment_from_full(self, second):
        rows, cols = upper_indices(second.shape[-1])
        return second[:, rows, cols]

    def covariances(self, nk, means_c, s2, reg_covar):
        n_features = means_c.shape[1]
        second = unpack_symmetric(s2, n_features)
        covariances = second / nk[:, None, None] - means_c[:, :, None] * means_c[:, None, :]
        return self.add_to_diagonal(covariances, reg_covar)

    def add_to_diagonal(self, covariances, value):
        out = np.array(covariances, dtype=np.float64)
        index = np.arange(out.shape[-1])
        out[:, index, index] += value
        return out

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

    def whitened(self, centred, precisions_chol, k):
        return centred @ precisions_chol[k]

    def full_covariances(self, covariances, n_components, n_features):
        return np.array(covariances, dtype=np.float64)

    def prior_shape(self, n_features):
        return (n_features, n_features)

    def from_full(self, covariances, weights):
        return np.array(covariances, dtype=np.float64)

    def posterior_covariances(self, nk, ml_covariances, coefficient, deviations, psi, extra, has_mean):
        scatter = nk[:, None, None] * ml_covariances
        scatter += coefficient[:, None, None] * (deviations[:, :, None] * deviations[:, None, :])
        return (scatter + psi) / (nk + extra + has_mean)[:, None, None]

    def prior_log_density(self, covariances, psi, degrees_of_freedom, n_features):
        return float(sum(stats.invwishart.logpdf(c, df=degrees_of_freedom, scale=psi) for c in covariances))

    def scaled(self, covariances, precisions_chol, scale):
        return covariances * np.outer(scale, scale), precisions_chol / scale[:, None]

    def full_precisions(self, precisions_chol, n_components, n_features):
        return np.ascontiguousarray(self.precisions(precisions_chol))

    def variances(self, covariances, n_components, n_features):
        return np.diagonal(covariances, axis1=1, axis2=2).copy()


class Tied(_Packed):
    """One covariance shared by all components."""

    name = "tied"
    per_component = False

    def covariance_shape(self, n_components, n_features):
        return (n_features, n_features)

    def second_moment_shape(self, n_components, n_features):
        return (n_features * (n_features + 1) // 2,)

    def n_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) // 2

    def mahalanobis_form(self, means_c, precisions_chol):
        precisions = np.broadcast_to(self.precisions(precisions_chol), (len(means_c),) + precisions_chol.shape)
        return quadratic_form(means_c, precisions)

    def second_moment(self, extra_moments):
        # sum_k sum_i r_ik x x^T = sum_i w_i x x^T
        return extra_moments.sum(axis=0)

    def add_second_moment(self, s2, components, extra_moments):
        s2 += self.second_moment(extra_moments)

    def second_moment_from_full(self, second):
        rows, cols = upper_indices(second.shape[-1])
        return second.sum(axis=0)[rows, cols]

    def covariances(self, nk, means_c, s2, reg_covar):
        second = unpack_symmetric(s2, means_c.shape[1])
        covariance = (second - (nk[:, None] * means_c).T @ means_c) / nk.sum()
        return self.add_to_diagonal(covariance, reg_covar)

    def add_to_diagonal(self, covariances, value):
        return covariances + value * np.eye(len(covariances))

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

    def whitened(self, centred, precisions_chol, k):
        return centred @ precisions_chol

    def full_covariances(self, covariances, n_components, n_features):
        return np.tile(np.asarray(covariances, dtype=np.float64), (n_components, 1, 1))

    def prior_shape(self, n_features):
        return (n_features, n_features)

    def from_full(self, covariances, weights):
        return np.einsum("k,kij->ij", weights, covariances)

    def posterior_covariances(self, nk, ml_covariances, coefficient, deviations, psi, extra, has_mean):
        scatter = nk.sum() * ml_covariances + np.einsum("k,ki,kj->ij", coefficient, deviations, deviations)
        return (scatter + psi) / (nk.sum() + extra + len(nk) * has_mean)

    def variational_covariances(self, nk, ml_covariances, coefficient, deviations, psi, degrees_of_freedom_prior):
        # one Wishart for all: each component's statistics count 1/K (scikit-learn's convention)
        K = len(nk)
        covariances = self.posterior_covariances(
            nk / K, ml_covariances, coefficient / K, deviations, psi, degrees_of_freedom_prior, 0.0
        )
        return covariances, np.full(K, degrees_of_freedom_prior + nk.sum() / K)

    def prior_log_density(self, covariances, psi, degrees_of_freedom, n_features):
        return float(stats.invwishart.logpdf(covariances, df=degrees_of_freedom, scale=psi))

    def scaled(self, covariances, precisions_chol, scale):
        return covariances * np.outer(scale, scale), precisions_chol / scale[:, None]

    def full_precisions(self, precisions_chol, n_components, n_features):
        precisions = self.precisions(precisions_chol)
        return np.ascontiguousarray(np.broadcast_to(precisions, (n_components, n_features, n_features)))

    def variances(self, covariances, n_components, n_features):
        return np.tile(np.diag(covariances), (n_components, 1))


class _Scalar(Covariance):
    """Precisions given per component and feature (diag) or per component (spherical)."""

    def add_to_diagonal(self, covariances, value):
        return covariances + value

    def whitened(self, centred, precisions_chol, k):
        return centred * precisions_chol[k]

    def precisions_chol(self, covariances):
        _check_positive(covariances)
        return 1.0 / np.sqrt(covariances)

    def precisions_chol_from_precisions(self, precisions):
        return np.sqrt(precisions)

    def check_precisions(self, precisions):
        if np.any(np.less_equal(precisions, 0.0)):
            raise ValueError("expected precisions_init positive, got non-positive values")

    def abs_precision_product(self, precisions_chol, h):
        squared = precisions_chol**2  # a diagonal precision
        return (squared if squared.ndim == 2 else squared[:, None]) * h

    def precisions(self, precisions_chol):
        return precisions_chol**2

    def covariances_from_precisions_chol(self, precisions_chol):
        return 1.0 / precisions_chol**2


class Diag(_Scalar):
    """A diagonal covariance per component."""

    name = "diag"

    def scaled_second_moment(self, s2, scale):
        return s2 * scale**2

    def scaled(self, covariances, precisions_chol, scale):
        return covariances * scale**2, precisions_chol / scale

    def covariance_shape(self, n_components, n_features):
        return (n_components, n_features)

    def second_moment_shape(self, n_components, n_features):
        return (n_components, n_features)

    def n_extra(self, n_features):
        return n_features

    def n_parameters(self, n_components, n_features):
        return n_components * n_features

    def _extra(self, xct, out):
        np.multiply(xct, xct, out=out)

    def mahalanobis_form(self, means_c, precisions_chol):
        precisions = precisions_chol**2
        constant = (means_c * means_c * precisions).sum(axis=1)[:, None]
        return np.concatenate([constant, -2.0 * means_c * precisions, precisions], axis=1)

    def second_moment_from_full(self, second):
        return np.diagonal(second, axis1=1, axis2=2).copy()

    def covariances(self, nk, means_c, s2, reg_covar):
        return s2 / nk[:, None] - means_c * means_c + reg_covar

    def log_det_chol(self, precisions_chol, n_features):
        return np.log(precisions_chol).sum(axis=1)

    def full_covariances(self, covariances, n_components, n_features):
        return np.asarray(covariances, dtype=np.float64)[:, :, None] * np.eye(n_features)

    def prior_shape(self, n_features):
        return (n_features,)

    def from_full(self, covariances, weights):
        return np.diagonal(covariances, axis1=1, axis2=2).copy()

    def posterior_covariances(self, nk, ml_covariances, coefficient, deviations, psi, extra, has_mean):
        scatter = nk[:, None] * ml_covariances + coefficient[:, None] * deviations**2
        return (scatter + psi) / (nk + extra + has_mean)[:, None]

    def prior_log_density(self, covariances, psi, degrees_of_freedom, n_features):
        shape = (degrees_of_freedom + n_features - 1) / 2  # a diagonal of an inverse-Wishart's
        return float(stats.invgamma.logpdf(covariances, shape, scale=psi / 2).sum())

    def full_precisions(self, precisions_chol, n_components, n_features):
        return precisions_chol[:, :, None] ** 2 * np.eye(n_features)

    def variances(self, covariances, n_components, n_features):
        return np.array(covariances, dtype=np.float64)


class Spherical(_Scalar):
    """A multiple of the identity per component."""

    name = "spherical"

    def scaled_second_moment(self, s2, scale):
        return self.scaled(s2, s2, scale)[0]  # one scale for every feature, or an error

    def scaled(self, covariances, precisions_chol, scale):
        if np.allclose(scale, scale[0], rtol=1e-12, atol=0):
            return covariances * scale[0] ** 2, precisions_chol / scale[0]
        raise ValueError(
            "spherical components scaled by a different factor per feature are not spherical: "
            "with standardize=True, choose covariance_type='diag' (or another type)"
        )

    def covariance_shape(self, n_components, n_features):
        return (n_components,)

    def second_moment_shape(self, n_components, n_features):
        return (n_components,)

    def n_extra(self, n_features):
        return 1

    def n_parameters(self, n_components, n_features):
        return n_components

    def _extra(self, xct, out):
        np.einsum("dn,dn->n", xct, xct, out=out[0])

    def mahalanobis_form(self, means_c, precisions_chol):
        constant = (means_c * means_c).sum(axis=1)[:, None]
        a = np.concatenate([constant, -2.0 * means_c, np.ones((len(means_c), 1))], axis=1)
        return a * (precisions_chol**2)[:, None]

    def second_moment(self, extra_moments):
        return extra_moments[:, 0]

    def second_moment_from_full(self, second):
        return np.trace(second, axis1=1, axis2=2)

    def covariances(self, nk, means_c, s2, reg_covar):
        n_features = means_c.shape[1]
        return (s2 / nk - (means_c * means_c).sum(axis=1)) / n_features + reg_covar

    def log_det_chol(self, precisions_chol, n_features):
        return n_features * np.log(precisions_chol)

    def full_covariances(self, covariances, n_components, n_features):
        return np.asarray(covariances, dtype=np.float64)[:, None, None] * np.eye(n_features)

    def prior_shape(self, n_features):
        return ()

    def from_full(self, covariances, weights):
        return np.diagonal(covariances, axis1=1, axis2=2).mean(axis=1)

    def posterior_covariances(self, nk, ml_covariances, coefficient, deviations, psi, extra, has_mean):
        n_features = deviations.shape[1]
        scatter = nk * n_features * ml_covariances + coefficient * (deviations**2).sum(axis=1)
        return (scatter + n_features * psi) / (n_features * (nk + extra + has_mean))

    def prior_log_density(self, covariances, psi, degrees_of_freedom, n_features):
        shape = n_features * (degrees_of_freedom + n_features + 1) / 2 - 1
        return float(stats.invgamma.logpdf(covariances, shape, scale=n_features * psi / 2).sum())

    def full_precisions(self, precisions_chol, n_components, n_features):
        return precisions_chol[:, None, None] ** 2 * np.eye(n_features)

    def variances(self, covariances, n_components, n_features):
        return np.repeat(np.asarray(covariances, dtype=np.float64)[:, None], n_features, axis=1)


_REGISTRY: dict[str, Covariance] = {c.name: c() for c in (Full, Tied, Diag, Spherical)}
COVARIANCE_TYPES = tuple(_REGISTRY)


def get_covariance(covariance_type: str) -> Covariance:
    """The strategy object for ``covariance_type``."""
    try:
        return _REGISTRY[covariance_type]
    except KeyError:
        raise ValueError(f"expected covariance_type in {COVARIANCE_TYPES}, got {covariance_type!r}") from None
