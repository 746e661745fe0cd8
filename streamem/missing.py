r"""The E-step for rows with missing values (NaN): exact EM for the observed-data likelihood.

For a row with observed coordinates :math:`O` and missing :math:`M`, and component
:math:`k` with mean :math:`\mu` and precision :math:`\Lambda = \Sigma^{-1}` (Ghahramani &
Jordan 1994), write :math:`x_0` for the row with zeros in its holes, :math:`e = x_0 - \mu
\circ o` (zero where missing) and :math:`g_M = (\Lambda e)_M`. Then

.. math::
    \log p_k(x_O) = -\tfrac12\big(|O| \log 2\pi + \log|\Sigma| + \log|\Lambda_{MM}|
                    + e^T \Lambda e - g_M^T \Lambda_{MM}^{-1} g_M\big),

    \hat x_M = \mu_M - \Lambda_{MM}^{-1} g_M,\qquad
    E[x x^T \mid x_O, k] = \hat x \hat x^T + \begin{pmatrix} 0 & 0 \\ 0 & \Lambda_{MM}^{-1}\end{pmatrix}.

Rows are grouped by their pattern of holes (sorted by number of holes, then pattern).
Everything that depends on the pattern alone — :math:`\Lambda_{MM}`, its inverse and
log-determinant, the constant part of :math:`e^T \Lambda e` — is computed once per
distinct pattern of a chunk, vectorised over patterns. A pattern with many rows is a
mixture on its observed coordinates, fitted with the complete-data matrix products over
packed features; the moments of its completed rows follow from those of the observed ones,
since :math:`\hat x_M` is affine in :math:`x_0`. The other rows go block by block: one
matrix product per missing column for :math:`(\Lambda x_0)_M` and for the cross terms
:math:`\sum r\, x_0 \hat x_M^T`, and per-pattern sums for :math:`\sum r\, \hat x_M
\hat x_M^T`.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .covariance import _unpack_symmetric, get_covariance, products, quadratic_form
from .params import LOG_2PI, MixtureParams, log_resp_inplace

__all__ = ["MarginalEstep", "incomplete_estep"]

_BLOCK_ELEMENTS = 1 << 20  # values in a block's (components, features, rows) temporaries
# a pattern with at least this many rows per feature in a chunk is fitted as a marginal
# mixture (its own work per component grows as D^2, a row's as D)
FREQUENT_PATTERN_ROWS = 16


def _full_precisions(params: MixtureParams) -> np.ndarray:
    """Every component's precision as a contiguous (K, D, D) matrix, whatever the covariance type."""
    K, D = params.means.shape
    precisions = params.precisions
    kind = params.covariance_type
    if kind == "full":
        return np.ascontiguousarray(precisions)
    if kind == "tied":
        return np.ascontiguousarray(np.broadcast_to(precisions, (K, D, D)))
    if kind == "diag":
        return precisions[:, :, None] * np.eye(D)
    return precisions[:, None, None] * np.eye(D)


@dataclasses.dataclass
class MarginalEstep:
    """The E-step of rows with holes.

    Attributes
    ----------
    log_lik : ndarray of shape (n,)
        Marginal log-likelihood of each row's observed values.
    resp : ndarray of shape (n, K)
    completed : ndarray of shape (n, D)
        Each row's conditional expectation under the mixture, :math:`\\sum_k r_k \\hat x_k`,
        minus ``shift``.
    nk, s1, s2 : ndarrays of shapes (K,), (K, D), (K, D, D)
        Sums over rows of ``w r``, ``w r x_hat`` and ``w r E[x x^T | x_O]`` (about ``shift``).
    """

    log_lik: np.ndarray
    resp: np.ndarray
    completed: np.ndarray
    nk: np.ndarray
    s1: np.ndarray
    s2: np.ndarray


def _inverse_and_log_det(matrices):
    """Inverses and log-determinants of a batch of small symmetric positive definite
    matrices laid out (m, m, ...batch), by Gauss-Jordan elimination vectorised over the
    batch (m steps; no pivoting is needed for such matrices). LAPACK through
    ``numpy.linalg`` costs a call per matrix, which dominates for the thousands of 2x2 to
    5x5 blocks of a chunk."""
    a = np.array(matrices, dtype=np.float64, order="C")
    log_det = np.zeros(a.shape[2:])
    for i in range(len(a)):
        pivot = a[i, i].copy()
        if not np.all(pivot > 0):
            raise ValueError("a component's precision is not positive definite")
        log_det += np.log(pivot)
        row = a[i] / pivot
        column = a[:, i].copy()
        a -= column[:, None] * row[None, :]
        a[i] = row
        a[:, i] = -column / pivot
        a[i, i] = 1.0 / pivot
    return a, log_det


def _matvec(a, v):
    """``a @ v`` for matrices (m, m, ...batch) and vectors (m, ...batch)."""
    out = np.empty_like(v)
    for i in range(len(v)):
        out[i] = a[i, 0] * v[0]
        for j in range(1, len(v)):
            out[i] += a[i, j] * v[j]
    return out


class _Patterns:
    """What the rows with the same ``m`` missing coordinates share, per distinct pattern;
    arrays are laid out (slot, component, pattern) to be gathered by the rows' patterns."""

    def __init__(self, columns, precisions, means_c, h, constant):
        K, D = means_c.shape
        P, m = columns.shape
        k = np.arange(K)[:, None]
        self.columns = columns  # (P, m)
        holes = columns.T[:, None, :]  # (m, 1, P)
        self.mu_m = np.take(means_c, k * D + holes)  # (m, K, P)
        lam_mm = np.take(precisions, (k * D + holes[:, None]) * D + holes[None, :])  # (m, m, K, P)
        self.inverse, log_det = _inverse_and_log_det(lam_mm)  # the holes' conditional covariance, log|Lambda_MM|
        lam_mu = _matvec(lam_mm, self.mu_m)
        self.t_m = np.take(h, k * D + holes) - lam_mu  # (Lambda (mu o observed))_M
        self.marginal_constant = constant[:, None] - 0.5 * ((D - m) * LOG_2PI + log_det)  # (K, P)
        # with the part of e^T Lambda e that the rows share: (mu o observed)^T Lambda (mu o observed)
        # - mu^T Lambda mu + 2 t_M mu_M (see _Kernel.block)
        self.constant = self.marginal_constant + 0.5 * (self.mu_m * lam_mu).sum(axis=0)
        self.mass = np.zeros((K, P))  # sums of w r per pattern, for the conditional covariances
        self.outer = np.zeros((m, m, K, P))  # sums of w r u u^T per pattern (u: the holes' x_hat), lower half

    def add_to(self, s2):
        """Add the patterns' sums of ``w r (u u^T + Lambda_MM^-1)`` to ``s2`` (K, D, D)."""
        K, D = s2.shape[:2]
        P, m = self.columns.shape
        if not m:
            return
        i, j = np.triu_indices(m, 1)
        self.outer[i, j] = self.outer[j, i]  # the lower triangle was summed
        values = self.outer + self.inverse * self.mass
        rows = self.columns.T[:, None, None, :]  # (m, 1, 1, P)
        cols = self.columns.T[None, :, None, :]
        flat = np.arange(K)[None, None, :, None] * (D * D) + rows * D + cols
        s2 += np.bincount(flat.ravel(), weights=values.ravel(), minlength=K * D * D).reshape(K, D, D)


class _HolesByColumn:
    """The holes of a block, column by column: for each column ``c`` with holes, the slots
    and the rows (positions in the block) where ``c`` is missing."""

    def __init__(self, holes, n_features):
        m, nb = holes.shape
        flat = holes.ravel()
        order = np.argsort(flat, kind="stable")
        counts = np.bincount(flat, minlength=n_features)
        parts = np.split(order, np.cumsum(counts)[:-1])
        self.parts = [(c, *np.divmod(parts[c], nb)) for c in np.flatnonzero(counts)]

    def __iter__(self):
        return iter(self.parts)


def _runs(values):
    """For a sorted array: where each run of equal values starts, and each entry's run
    (0, 1, ...)."""
    new = np.ones(len(values), dtype=bool)
    new[1:] = values[1:] != values[:-1]
    return np.flatnonzero(new), np.cumsum(new) - 1


def _pattern_groups(missing: np.ndarray):
    """Per number of holes ``m``: the rows, ordered by pattern, their pattern index, and the
    patterns' columns (P, m)."""
    n_missing = missing.sum(axis=1)
    if missing.shape[1] <= 46:  # the number of holes and the pattern's bits in one exact float
        keys = missing @ np.exp2(np.arange(missing.shape[1], dtype=np.float64))
        order = np.argsort(keys + n_missing * 2.0**46)  # by number of holes, then by pattern
    else:
        bits = np.packbits(missing, axis=1)
        keys = np.ascontiguousarray(bits).view(np.dtype((np.void, bits.shape[1])))[:, 0]
        order = np.lexsort((keys, n_missing))
    keys, n_missing = keys[order], n_missing[order]
    group_starts, _ = _runs(n_missing)
    for start, stop in zip(group_starts, [*group_starts[1:], len(order)]):
        rows = order[start:stop]
        firsts, pattern = _runs(keys[start:stop])
        m = int(n_missing[start])
        yield m, rows, pattern, np.nonzero(missing[rows[firsts]])[1].reshape(len(firsts), m)


def incomplete_estep(
    X: np.ndarray, params: MixtureParams, shift: np.ndarray, sample_weight=None, per_row: bool = True
) -> MarginalEstep:
    """E-step of rows with missing values (NaN), exact for the observed values.

    Parameters
    ----------
    X : ndarray of shape (n, D)
        Rows with NaN where values are missing (a row with every value missing has
        log-likelihood 0 and the weights as responsibilities).
    params : MixtureParams
    shift : ndarray of shape (D,)
        The centre the moments are taken about.
    sample_weight : ndarray of shape (n,) or None
    per_row : bool
        Whether to keep each row's responsibilities and completion (``resp`` and
        ``completed`` are None otherwise: the statistics alone need neither).

    Returns
    -------
    MarginalEstep
    """
    X = np.asarray(X, dtype=np.float64)
    n, D = X.shape
    K = params.n_components
    means_c = params.means - shift
    precisions = _full_precisions(params)
    h = np.einsum("kij,kj->ki", precisions, means_c)  # Lambda mu
    log_det_sigma = -2.0 * params.covariance.log_det_chol(params.precisions_chol, D) * np.ones(K)
    with np.errstate(divide="ignore"):
        constant = np.log(params.weights) - 0.5 * log_det_sigma
    kernel = _Kernel(precisions, means_c)
    missing = np.isnan(X)
    x0 = np.where(missing, 0.0, X - shift)
    result = MarginalEstep(np.empty(n), np.empty((n, K)) if per_row else None, np.empty((n, D)) if per_row else None,
                           np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D)))  # fmt: skip
    packed = np.zeros((K, kernel.form.shape[1]))  # sums of w r over the features of x0
    block = max(64, _BLOCK_ELEMENTS // (K * D))
    for m, rows, pattern, columns in _pattern_groups(missing):
        shared = _Patterns(columns, precisions, means_c, h, constant)
        frequent = np.bincount(pattern) >= FREQUENT_PATTERN_ROWS * D
        by_pattern = frequent[pattern]
        if by_pattern.any():
            kernel.frequent(x0, rows[by_pattern], pattern[by_pattern], shared, m, result, packed, sample_weight)
        rows, pattern = rows[~by_pattern], pattern[~by_pattern]
        for start in range(0, len(rows), block):
            these = rows[start : start + block]
            w = None if sample_weight is None else sample_weight[these]
            kernel.block(x0[these].T.copy(), pattern[start : start + block], w, shared, m, result, these, packed)
        shared.add_to(result.s2)
    result.nk += packed[:, 0]
    result.s1 += packed[:, 1 : 1 + D]
    result.s2 += _unpack_symmetric(packed[:, 1 + D :], D)
    return result


class _Kernel:
    """Per block of rows with the same number of holes: log-likelihoods, responsibilities
    and moments, mostly as matrix products over all components at once."""

    def __init__(self, precisions, means_c):
        K, D = means_c.shape
        self.K, self.D = K, D
        self.precisions, self.means_c = precisions, means_c
        self.stacked_rows = np.ascontiguousarray(precisions.transpose(1, 0, 2))  # (D, K, D): row c of every Lambda_k
        self.form = -0.5 * quadratic_form(means_c, precisions)  # -(x0 - mu)^T Lambda (x0 - mu) / 2
        self.features = get_covariance("full").features

    def block(self, x0t, p, w, shared, m, result, rows, packed):
        """Add one block (``x0t``: rows with zeros in their holes, transposed; ``p``: their
        patterns, sorted) to ``result``, ``packed`` and the patterns' sums."""
        K, D = self.K, self.D
        nb = x0t.shape[1]
        starts, segment = _runs(p)  # the block's rows are ordered by pattern
        patterns = p[starts]

        def per_row(values):  # per-pattern values (..., P) for the block's rows (..., nb)
            return np.take(values.reshape(-1, values.shape[-1]), p, axis=1).reshape(values.shape[:-1] + (nb,))

        features = self.features(x0t)
        weighted = self.form @ features
        weighted += per_row(shared.constant)
        if m:
            holes = per_row(shared.columns.T)  # (m, nb)
            by_column = _HolesByColumn(holes, D)
            y_m = np.empty((m, K, nb))  # (Lambda x0)_M, one matrix product per column over its rows
            for c, slot, row in by_column:
                y_m[slot, :, row] = (self.stacked_rows[c] @ x0t[:, row]).T
            mu_m = per_row(shared.mu_m)
            g_m = y_m - per_row(shared.t_m)  # (Lambda e)_M
            delta = _matvec(per_row(shared.inverse), g_m)  # Lambda_MM^-1 g_M
            weighted += np.einsum("ikn,ikn->kn", g_m, 0.5 * delta - mu_m)  # -y_M mu_M: t_M mu_M is in the constant
        log_lik = log_resp_inplace(weighted)
        resp = weighted  # normalised in place
        rw = resp if w is None else resp * w
        result.log_lik[rows] = log_lik
        if result.resp is not None:
            result.resp[rows] = resp.T
        packed += products(rw, features)
        if not m:
            if result.completed is not None:
                result.completed[rows] = x0t.T
            return
        # x_hat = x0 + u, u = mu_M - delta in the holes: the moments of x0 are in ``packed``;
        # here the cross terms w r (x0 u^T + u x0^T), and per pattern w r u u^T
        u = mu_m - delta
        ru = u * rw
        for c, slot, row in by_column:
            values = ru[slot, :, row]  # (rows, K)
            result.s1[:, c] += values.sum(axis=0)
            cross = x0t[:, row] @ values  # sum w r x0 u_c, (D, K)
            result.s2[:, c, :] += cross.T
            result.s2[:, :, c] += cross.T
        # per-pattern sums by bincount (which, unlike ufunc.reduceat, lets other threads run)
        n_patterns = len(patterns)
        index = (np.arange(K)[:, None] * n_patterns + segment).ravel()

        def sums(values):  # (K, nb) summed per pattern: (K, n_patterns)
            return np.bincount(index, weights=values.ravel(), minlength=K * n_patterns).reshape(K, n_patterns)

        shared.mass[:, patterns] += sums(rw)
        for i in range(m):
            for j in range(i + 1):
                shared.outer[i, j][:, patterns] += sums(ru[i] * u[j])
        if result.completed is not None:
            completed = x0t.copy()
            np.put(completed, holes * nb + np.arange(nb), np.einsum("ikn,kn->in", u, resp))
            result.completed[rows] = completed.T

    def frequent(self, x0, rows, pattern, shared, m, result, packed, sample_weight):
        """Rows of patterns frequent in the chunk (``rows`` ordered by ``pattern``): each
        pattern is a mixture on its observed coordinates, whose E-step is the complete-data
        one (matrix products over packed features); the moments of the completed rows
        follow from those of the observed ones, since the expectation of the holes is
        affine in the observed values: ``x_hat_M = a - G x0`` per pattern and component."""
        K, D = self.K, self.D
        starts, segment = _runs(pattern)  # each row's pattern among these, 0..F-1
        which = pattern[starts]
        F = len(which)
        k = np.arange(K)[None, :, None]
        lam = self.precisions
        if m:
            holes = shared.columns[which]  # (F, m)
            inverse = shared.inverse[..., which].transpose(3, 2, 0, 1)  # (F, K, m, m)
            lam_rows = lam[k, holes[:, None, :]]  # (F, K, m, D): rows M of Lambda_k
            G = inverse @ lam_rows
            schur = lam - np.swapaxes(lam_rows, -1, -2) @ G  # Sigma_OO^-1, zero in the rows and columns M
            mu_m = shared.mu_m[..., which].transpose(2, 1, 0)  # (F, K, m)
            t_m = shared.t_m[..., which].transpose(2, 1, 0)
            a = mu_m + (inverse @ t_m[..., None])[..., 0]
        else:
            schur = np.broadcast_to(lam, (F, K, D, D))
        forms = -0.5 * quadratic_form(np.tile(self.means_c, (F, 1)), schur.reshape(F * K, D, D)).reshape(F, K, -1)
        constant = shared.marginal_constant[:, which]  # (K, F)
        moments = np.zeros((F, K, forms.shape[2]))
        block = max(64, (_BLOCK_ELEMENTS // 2) // forms.shape[2])
        for begin in range(0, len(rows), block):
            these = rows[begin : begin + block]
            x0t = x0[these].T.copy()
            features = self.features(x0t)
            seg = segment[begin : begin + block]
            cuts, _ = _runs(seg)
            bounds = list(zip(seg[cuts], cuts, [*cuts[1:], len(these)]))
            weighted = np.empty((K, len(these)))
            for f, start, stop in bounds:
                np.matmul(forms[f], features[:, start:stop], out=weighted[:, start:stop])
            weighted += np.take(constant, seg, axis=1)
            result.log_lik[these] = log_resp_inplace(weighted)
            resp = weighted  # normalised in place
            rw = resp if sample_weight is None else resp * sample_weight[these]
            for f, start, stop in bounds:
                moments[f] += products(rw[:, start:stop], features[:, start:stop])
            if result.resp is not None:
                result.resp[these] = resp.T
            if result.completed is not None:
                completed = x0t.T.copy()
                for f, start, stop in bounds:
                    if m:
                        u = a[f][:, :, None] - G[f] @ x0t[:, start:stop]  # (K, m, rows)
                        completed[start:stop, holes[f]] = np.einsum("kin,kn->ni", u, resp[:, start:stop])
                result.completed[these] = completed
        packed += moments.sum(axis=0)
        if not m:
            return
        # the holes' part of the completed rows' moments, from the observed rows' moments
        R, X1 = moments[:, :, 0], moments[:, :, 1 : 1 + D]
        X2 = _unpack_symmetric(moments[:, :, 1 + D :], D)  # (F, K, D, D)
        GX1 = (G @ X1[..., None])[..., 0]  # (F, K, m)
        sum_u = a * R[..., None] - GX1  # sum w r u
        cross = X1[..., :, None] * a[..., None, :] - X2 @ np.swapaxes(G, -1, -2)  # sum w r x0 u^T, (F, K, D, m)
        outer = R[..., None, None] * a[..., :, None] * a[..., None, :] - a[..., :, None] * GX1[..., None, :]
        outer += np.swapaxes(outer, -1, -2) - R[..., None, None] * a[..., :, None] * a[..., None, :]
        outer += G @ X2 @ np.swapaxes(G, -1, -2)  # sum w r u u^T, (F, K, m, m)
        shared.mass[:, which] += R.T
        shared.outer[..., which] += outer.transpose(2, 3, 1, 0)
        index = np.arange(K)[None, :, None] * D + holes[:, None, :]  # (F, K, m) into (K, D)
        result.s1 += np.bincount(index.ravel(), weights=sum_u.ravel(), minlength=K * D).reshape(K, D)
        d = np.arange(D)[None, None, :, None]
        kk = np.arange(K)[None, :, None, None]
        hole = holes[:, None, None, :]
        flat = np.concatenate([((kk * D + d) * D + hole).ravel(), ((kk * D + hole) * D + d).ravel()])
        values = np.concatenate([cross.ravel(), cross.ravel()])
        result.s2 += np.bincount(flat, weights=values, minlength=K * D * D).reshape(K, D, D)
