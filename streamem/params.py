"""The parameters of a Gaussian mixture, its log-densities, and the M-step.

A :class:`MixtureParams` is frozen: each EM iteration makes a new one from the reduced
sufficient statistics (:func:`m_step`). Precisions are kept as their Cholesky factors,
so that the log-determinant is a sum of logs of a diagonal and the log-density never
inverts a matrix.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .covariance import Covariance, get_covariance

__all__ = ["MixtureParams", "log_resp_inplace", "m_step"]

LOG_2PI = float(np.log(2.0 * np.pi))
EPS = float(np.finfo(np.float64).eps)


@dataclasses.dataclass(frozen=True, eq=False)
class MixtureParams:
    """Weights, means and covariances of a Gaussian mixture.

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray, shape given by the covariance type
    precisions_chol : ndarray, shape given by the covariance type
    covariance_type : {"full", "tied", "diag", "spherical"}
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_chol: np.ndarray
    covariance_type: str

    @classmethod
    def from_covariances(cls, weights, means, covariances, covariance_type: str) -> MixtureParams:
        covariance = get_covariance(covariance_type)
        covariances = np.asarray(covariances, dtype=np.float64)
        return cls(
            np.asarray(weights, dtype=np.float64),
            np.asarray(means, dtype=np.float64),
            covariances,
            covariance.precisions_chol(covariances),
            covariance_type,
        )

    @classmethod
    def from_precisions_chol(cls, weights, means, precisions_chol, covariance_type: str) -> MixtureParams:
        covariance = get_covariance(covariance_type)
        precisions_chol = np.asarray(precisions_chol, dtype=np.float64)
        return cls(
            np.asarray(weights, dtype=np.float64),
            np.asarray(means, dtype=np.float64),
            covariance.covariances_from_precisions_chol(precisions_chol),
            precisions_chol,
            covariance_type,
        )

    @property
    def covariance(self) -> Covariance:
        return get_covariance(self.covariance_type)

    @property
    def n_components(self) -> int:
        return len(self.weights)

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def precisions(self) -> np.ndarray:
        return self.covariance.precisions(self.precisions_chol)

    def n_parameters(self) -> int:
        """Number of free parameters (for BIC and AIC)."""
        n_components, n_features = self.means.shape
        cov_params = self.covariance.n_parameters(n_components, n_features)
        return int(cov_params + n_components * n_features + n_components - 1)

    def information_criteria(self, log_likelihood: float, n_samples: float) -> tuple[float, float]:
        """BIC and AIC from a total log-likelihood over ``n_samples`` (lower is better)."""
        n_parameters = self.n_parameters()
        return (
            float(-2 * log_likelihood + n_parameters * np.log(n_samples)),
            float(-2 * log_likelihood + 2 * n_parameters),
        )

    def kernel(self, shift: np.ndarray, dtype) -> LogProbKernel:
        """Constants for evaluating log-densities of data minus ``shift`` in ``dtype``."""
        return LogProbKernel(self, shift, dtype)


class LogProbKernel:
    """Weighted log-densities ``log w_k + log N(x | mu_k, Sigma_k)`` for blocks of rows.

    .. math::
        \\log w_k - \\tfrac{D}{2}\\log 2\\pi + \\log|L_k| - \\tfrac12 \\|L_k^T (x - \\mu_k)\\|^2

    where :math:`L_k` is the Cholesky factor of the precision of component :math:`k`.
    """

    def __init__(self, params: MixtureParams, shift: np.ndarray, dtype):
        covariance = params.covariance
        self.covariance = covariance
        form = -0.5 * covariance.mahalanobis_form(params.means - shift, params.precisions_chol)
        with np.errstate(divide="ignore"):
            log_weights = np.log(params.weights)
        log_det = covariance.log_det_chol(params.precisions_chol, params.n_features)
        form[:, 0] += log_weights + log_det - 0.5 * params.n_features * LOG_2PI  # the features' row of ones
        self.form = form.astype(dtype)

    def weighted_log_prob(self, features) -> np.ndarray:
        """Array of shape (n_components, n_rows), from the block's ``covariance.features``:
        one GEMM."""
        return self.form @ features


def log_resp_inplace(weighted_log_prob: np.ndarray) -> np.ndarray:
    """Turn weighted log-densities of shape (n_components, n_rows) into responsibilities,
    in place; return log p(x) of shape (n_rows,).

    A log-sum-exp over components that keeps the exponentials it computes, since the
    responsibilities are exactly those exponentials normalised (``scipy.special.logsumexp``
    would compute them and throw them away).
    """
    top = weighted_log_prob.max(axis=0)
    weighted_log_prob -= top
    np.exp(weighted_log_prob, out=weighted_log_prob)
    total = weighted_log_prob.sum(axis=0)
    weighted_log_prob *= np.reciprocal(total)  # a multiplication is several times faster than a division
    np.log(total, out=total)
    total += top
    return total


def m_step(stats, covariance_type: str, reg_covar: float, prior=None) -> tuple[MixtureParams, list[int]]:
    """New parameters from reduced sufficient statistics.

    .. math::
        n_k = \\sum_i w_i r_{ik},\\quad \\mu_k = c + \\frac{1}{n_k}\\sum_i w_i r_{ik} (x_i - c),\\quad
        \\Sigma_k = \\frac{1}{n_k}\\sum_i w_i r_{ik}(x_i - c)(x_i - c)^T - (\\mu_k - c)(\\mu_k - c)^T
        + \\lambda I

    with :math:`c` the shift of the pass and :math:`\\lambda` = ``reg_covar``; with a
    :class:`~streamem.prior.Prior`, the posterior mode instead (MAP). A component whose
    mass vanished is re-seeded at the worst-explained point of the pass, with the average
    covariance of the others; its index is returned.
    """
    covariance = get_covariance(covariance_type)
    empty = stats.nk <= 1e-8 * stats.weight / max(stats.count, 1)
    outliers = stats.worst.points
    reseeded = [int(k) for k in np.flatnonzero(empty)][: len(outliers)]
    nk = stats.nk + 10 * EPS
    means_c = stats.s1 / nk[:, None]
    if prior is None:
        covariances = covariance.covariances(nk, means_c, stats.s2, reg_covar)
        weights = nk / nk.sum()
    else:
        ml_covariances = covariance.covariances(nk, means_c, stats.s2, 0.0)
        weights, means_c, covariances = prior.posterior_mode(nk, means_c, ml_covariances, stats.shift)
        covariances = covariance.add_to_diagonal(covariances, reg_covar)
    if reseeded:
        alive = ~empty
        if covariance_type != "tied" and alive.any():
            covariances[reseeded] = np.average(covariances[alive], axis=0, weights=weights[alive])
        means_c[reseeded] = outliers[: len(reseeded)] - stats.shift
        weights[reseeded] = weights[alive].min() if alive.any() else 1.0
        weights = weights / weights.sum()
    means = means_c + stats.shift
    return MixtureParams.from_covariances(weights, means, covariances, covariance_type), reseeded
