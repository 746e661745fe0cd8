r"""The E-step for rows with missing values (NaN): exact EM for the observed-data likelihood.

For a row with observed coordinates :math:`O` and missing :math:`M`, and component
:math:`k` with precision :math:`\Lambda_k = \Sigma_k^{-1}` (Ghahramani & Jordan 1994):

.. math::
    \log p_k(x_O) = -\tfrac12\big(|O| \log 2\pi + \log|\Sigma_k| + \log|\Lambda_{k,MM}|
                    + (\hat x_k - \mu_k)^T \Lambda_k (\hat x_k - \mu_k)\big),

    \hat x_{k,M} = \mu_{k,M} - \Lambda_{k,MM}^{-1} \Lambda_{k,MO} (x_O - \mu_{k,O}),\qquad
    E[x x^T \mid x_O, k] = \hat x_k \hat x_k^T + \begin{pmatrix} 0 & 0 \\ 0 & \Lambda_{k,MM}^{-1}\end{pmatrix},

so only the small blocks :math:`\Lambda_{k,MM}` (as many rows as missing values) are
factorised. Rows are grouped by their number of missing values, and each group is one
batch of small Cholesky factorisations and matrix products over all its rows and
components: no Python loop over rows or patterns.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import numpy as np

from .params import LOG_2PI, MixtureParams

__all__ = ["incomplete_estep", "incomplete_moments"]


def _full_precisions(params: MixtureParams) -> np.ndarray:
    """Every component's precision as a (K, D, D) matrix, whatever the covariance type."""
    K, D = params.means.shape
    precisions = params.precisions
    kind = params.covariance_type
    if kind == "full":
        return precisions
    if kind == "tied":
        return np.broadcast_to(precisions, (K, D, D))
    if kind == "diag":
        return precisions[:, :, None] * np.eye(D)
    return precisions[:, None, None] * np.eye(D)


def _small_inverse(matrices):
    """Inverses and log-determinants of a batch (..., m, m) of small positive-definite
    matrices: closed forms for m = 1 and 2 (most rows miss one or two values), LAPACK
    through numpy for larger ones."""
    m = matrices.shape[-1]
    if m == 1:
        return 1.0 / matrices, np.log(matrices[..., 0, 0])
    if m == 2:
        a, b, d = matrices[..., 0, 0], matrices[..., 0, 1], matrices[..., 1, 1]
        det = a * d - b * b
        inverse = np.stack([np.stack([d, -b], axis=-1), np.stack([-b, a], axis=-1)], axis=-2) / det[..., None, None]
        return inverse, np.log(det)
    chol = np.linalg.cholesky(matrices)
    return np.linalg.inv(matrices), 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)


def incomplete_estep(X: np.ndarray, params: MixtureParams, shift: np.ndarray):
    """E-step of rows that each miss some (not all) values.

    Parameters
    ----------
    X : ndarray of shape (n, D) with NaN for the missing values
    params : MixtureParams
    shift : ndarray of shape (D,)

    Returns
    -------
    log_lik : ndarray of shape (n,)
        Marginal log-likelihood of each row's observed values.
    resp : ndarray of shape (n, K)
    xhat : ndarray of shape (n, K, D)
        Conditional expectation of each row given the component, minus ``shift``.
    conditional : list of (rows, columns, covariances)
        Per group of rows with the same number ``m`` of missing values: their indices, the
        missing columns (r, m), and the conditional covariances of those (r, K, m, m).
    """
    X = np.asarray(X, dtype=np.float64)
    n, D = X.shape
    K = params.n_components
    means_c = params.means - shift
    precisions = _full_precisions(params)
    log_det_sigma = -2.0 * params.covariance.log_det_chol(params.precisions_chol, D) * np.ones(K)
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    missing = np.isnan(X)
    n_missing = missing.sum(axis=1)
    log_lik = np.empty(n)
    resp = np.empty((n, K))
    xhat = np.empty((n, K, D))
    conditional = []  # (rows, columns M, inverse of Lambda_MM) per group
    xz = np.where(missing, 0.0, X - shift)
    for m in np.unique(n_missing):
        rows = np.flatnonzero(n_missing == m)
        cols = np.nonzero(missing[rows])[1].reshape(len(rows), m)
        observed = ~missing[rows]
        e = (xz[rows, None, :] - means_c[None]) * observed[:, None, :]  # (r, K, D), zero where missing
        g = np.matmul(e.transpose(1, 0, 2), precisions).transpose(1, 0, 2)  # Lambda_k e, (r, K, D)
        maha = np.einsum("rkd,rkd->rk", e, g)
        log_det = log_det_sigma[None, :].repeat(len(rows), axis=0)
        block = np.broadcast_to(xz[rows, None, :] * observed[:, None, :] + means_c[None] * ~observed[:, None, :],
                                (len(rows), K, D)).copy()  # fmt: skip
        if m:
            k_index = np.arange(K)[None, :, None, None]
            lam_mm = precisions[k_index, cols[:, None, :, None], cols[:, None, None, :]]  # (r, K, m, m)
            inverse, lam_log_det = _small_inverse(lam_mm)
            g_m = np.take_along_axis(g, np.broadcast_to(cols[:, None, :], (len(rows), K, m)), axis=2)
            delta = np.einsum("rkij,rkj->rki", inverse, g_m)  # Lambda_MM^-1 Lambda_MO e_O
            maha -= np.einsum("rkm,rkm->rk", g_m, delta)
            log_det += lam_log_det
            index = np.broadcast_to(cols[:, None, :], (len(rows), K, m))
            np.put_along_axis(block, index, np.take_along_axis(block, index, axis=2) - delta, axis=2)
            conditional.append((rows, cols, inverse))
        weighted = log_weights - 0.5 * ((D - m) * LOG_2PI + log_det + maha)
        top = weighted.max(axis=1, keepdims=True)
        total = np.exp(weighted - top).sum(axis=1, keepdims=True)
        log_lik[rows] = (top + np.log(total))[:, 0]
        resp[rows] = np.exp(weighted - log_lik[rows, None])
        xhat[rows] = block
    return log_lik, resp, xhat, conditional


def incomplete_moments(resp_w, xhat, conditional):
    """Sums over rows of ``r x_hat`` (K, D) and of ``r E[x x^T]`` (K, D, D) for the rows'
    weighted responsibilities ``resp_w`` (n, K)."""
    s1 = np.einsum("nk,nkd->kd", resp_w, xhat)
    weighted = xhat * resp_w[:, :, None]
    second = np.matmul(weighted.transpose(1, 2, 0), xhat.transpose(1, 0, 2))  # (K, D, D)
    K, D = second.shape[0], second.shape[1]
    for rows, cols, inverse in conditional:
        values = resp_w[rows][:, :, None, None] * inverse  # (r, K, m, m)
        flat = (
            np.arange(K)[None, :, None, None] * (D * D) + cols[:, None, :, None] * D + cols[:, None, None, :]
        )  # index into the flattened (K, D, D) sums
        flat = np.broadcast_to(flat, values.shape)
        second += np.bincount(flat.ravel(), weights=values.ravel(), minlength=K * D * D).reshape(K, D, D)
    return s1, second
