r"""Conjugate priors for MAP estimation: the M-step adds the prior's pseudo-statistics.

* weights: a symmetric Dirichlet with concentration :math:`\alpha \ge 1`;
* means: :math:`\mu_k \mid \Sigma_k \sim N(m_0, \Sigma_k / \kappa_0)`;
* covariances: an inverse-Wishart :math:`IW(\Psi_0, \nu_0)`, restricted to the covariance
  type's family (diagonal, a multiple of the identity, or one matrix shared by all
  components), so that with :math:`S_k = \sum_i r_{ik}(x_i - \bar x_k)(x_i - \bar x_k)^T`,
  :math:`d_k = \bar x_k - m_0` and :math:`c_k = \kappa_0 n_k / (\kappa_0 + n_k)` the
  posterior mode of a full covariance is

.. math::
    \Sigma_k = \frac{S_k + \Psi_0 + c_k d_k d_k^T}{n_k + \nu_0 + D + 1 + [\kappa_0 > 0]},
    \qquad \mu_k = \frac{n_k \bar x_k + \kappa_0 m_0}{n_k + \kappa_0},
    \qquad w_k \propto n_k + \alpha - 1

(Fraley & Raftery 2007, "Bayesian regularization for normal mixture estimation"). Each
part is optional: without a covariance prior :math:`\Psi_0 = 0` and the
:math:`\nu_0 + D + 1` term is absent. The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import special, stats

from streamem.core.covariance import get_covariance

__all__ = ["Prior"]


@dataclasses.dataclass(frozen=True, eq=False)
class Prior:
    """A conjugate prior; ``None`` leaves that part flat (maximum likelihood).

    Attributes
    ----------
    weight_concentration : float >= 1 or None
    mean : ndarray of shape (n_features,)
    mean_precision : float > 0 or None
    covariance : ndarray in the covariance type's shape ((D, D), (D,) or scalar) or None
    degrees_of_freedom : float > D - 1
    """

    weight_concentration: float | None
    mean: np.ndarray
    mean_precision: float | None
    covariance: np.ndarray | None
    degrees_of_freedom: float
    covariance_type: str

    def posterior_mode(self, nk, means_c, ml_covariances, shift):
        """MAP weights, means (minus ``shift``) and covariances from the ML M-step's
        (``ml_covariances`` computed without ``reg_covar``)."""
        n_features = means_c.shape[1]
        if self.weight_concentration is None:
            weights = nk / nk.sum()
        else:
            weights = np.maximum(nk + self.weight_concentration - 1.0, 0.0)
            weights = weights / weights.sum()
        kappa = self.mean_precision or 0.0
        deviations = means_c - (self.mean - shift)
        coefficient = kappa * nk / (kappa + nk)
        map_means_c = (nk[:, None] * means_c + kappa * (self.mean - shift)) / (nk + kappa)[:, None]
        has_mean = 1.0 if kappa > 0 else 0.0
        if self.covariance is None:
            psi, extra = 0.0, 0.0
        else:
            psi, extra = self.covariance, self.degrees_of_freedom + n_features + 1.0
        covariances = get_covariance(self.covariance_type).posterior_covariances(
            nk, ml_covariances, coefficient, deviations, psi, extra, has_mean
        )
        return weights, map_means_c, covariances

    def log_density(self, params) -> float:
        """Log-density of the prior at ``params`` (a :class:`~streamem.core.params.MixtureParams`)."""
        total = 0.0
        K, D = params.means.shape
        if self.weight_concentration is not None:
            alpha = self.weight_concentration
            total += special.gammaln(K * alpha) - K * special.gammaln(alpha)
            total += (alpha - 1.0) * np.log(params.weights).sum()
        if self.mean_precision:
            for mean, full in zip(params.means, params.full_covariances):
                total += stats.multivariate_normal.logpdf(mean, self.mean, full / self.mean_precision)
        if self.covariance is not None:
            nu = self.degrees_of_freedom
            total += params.covariance.prior_log_density(params.covariances, self.covariance, nu, D)
        return float(total)
