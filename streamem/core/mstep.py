"""The M-step: a mixture's parameters from its reduced sufficient statistics
(:func:`m_step`), with MAP priors, re-seeded empty components and frozen parameters.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import numpy as np

from streamem.core.covariance import get_covariance
from streamem.core.params import EPS, MixtureParams

__all__ = ["FREEZABLE", "m_step", "row_weight"]


#: the parameters ``freeze`` can hold at their initial values
FREEZABLE = ("weights", "means", "covariances")


def m_step(
    stats,
    covariance_type: str,
    reg_covar: float,
    prior=None,
    freeze=(),
    current: MixtureParams | None = None,
    cholesky: bool = True,
) -> tuple[MixtureParams, list[int]]:
    """New parameters from reduced sufficient statistics.

    .. math::
        n_k = \\sum_i w_i r_{ik},\\quad \\mu_k = c_k + \\frac{1}{n_k}\\sum_i w_i r_{ik} (x_i - c_k),\\quad
        \\Sigma_k = \\frac{1}{n_k}\\sum_i w_i r_{ik}(x_i - c_k)(x_i - c_k)^T - (\\mu_k - c_k)(\\mu_k - c_k)^T
        + \\lambda I

    with :math:`c_k` the centre the statistics of component :math:`k` were taken about
    (``stats.shift[k]``, near its mean, so that the subtraction loses little) and
    :math:`\\lambda` = ``reg_covar``; with a :class:`~streamem.core.prior.Prior`, the posterior
    mode instead (MAP). A component whose mass vanished is re-seeded at the worst-explained
    point of the pass, with the average covariance of the others; its index is returned.

    The parameters named in ``freeze`` (of :data:`FREEZABLE`) are ``current``'s, the very
    arrays; the others maximise the likelihood given them: with the means held, the
    covariances are the scatter about them (the statistics moved onto them exactly). Nothing
    is re-seeded then.

    With ``cholesky=False`` the precisions' Cholesky factors are left out (NaN), for a
    caller that only reads the weights, means and covariances and regularises them itself
    (a variational posterior's prior does): a covariance may then be singular.
    """
    if freeze:
        if current is None:
            raise ValueError("freeze holds parameters at their current values: give current")
        return _frozen_m_step(stats, covariance_type, reg_covar, freeze, current), []
    covariance = get_covariance(covariance_type)
    empty = stats.nk <= 1e-8 * row_weight(stats)
    outliers = stats.worst.points
    reseeded = [int(k) for k in np.flatnonzero(empty)][: len(outliers)]
    nk = stats.nk + 10 * EPS * row_weight(stats)
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
        if covariance.per_component and alive.any():
            covariances[reseeded] = np.average(covariances[alive], axis=0, weights=weights[alive])
        means_c[reseeded] = outliers[: len(reseeded)] - stats.shift[reseeded]
        weights[reseeded] = weights[alive].min() if alive.any() else 1.0
        weights = weights / weights.sum()
    means = means_c + stats.shift
    if not cholesky:
        return MixtureParams(weights, means, covariances, np.full_like(covariances, np.nan), covariance_type), reseeded
    return MixtureParams.from_covariances(weights, means, covariances, covariance_type), reseeded


def row_weight(stats) -> float:
    """The mean weight of a row of the pass: the unit of the ``10 * eps`` added to each
    component's weight (1 for rows without weights, so that a fit at any scale of the
    weights is the same)."""
    return stats.weight / stats.count if stats.count else 1.0


def _frozen_m_step(stats, covariance_type, reg_covar, freeze, current: MixtureParams) -> MixtureParams:
    covariance = get_covariance(covariance_type)
    nk = stats.nk + 10 * EPS * row_weight(stats)
    weights = current.weights if "weights" in freeze else nk / nk.sum()
    if "means" in freeze:
        stats = stats.recentred(np.broadcast_to(current.means, stats.shift.shape))
        means, means_c = current.means, np.zeros_like(stats.s1)
    else:
        means_c = stats.s1 / nk[:, None]
        means = means_c + stats.shift
    if "covariances" in freeze:
        return MixtureParams(weights, means, current.covariances, current.precisions_chol, covariance_type)
    covariances = covariance.covariances(nk, means_c, stats.s2, reg_covar)
    return MixtureParams(weights, means, covariances, covariance.precisions_chol(covariances), covariance_type)
