r"""The E-step for rows with missing values (NaN): exact EM for the observed-data likelihood.

For a row with observed coordinates :math:`O` and missing :math:`M`, and component
:math:`k` with mean :math:`\mu` and precision :math:`\Lambda = \Sigma^{-1}` (Ghahramani &
Jordan 1994), write :math:`x_0` for the row with zeros in its holes, :math:`z = x_0 - \mu`
and :math:`g = (\Lambda z)_M`. Then

.. math::
    \log p_k(x_O) = -\tfrac12\big(|O| \log 2\pi + \log|\Sigma| + \log|\Lambda_{MM}|
                    + z^T \Lambda z - g^T \Lambda_{MM}^{-1} g\big),

    \hat x_M = -\Lambda_{MM}^{-1} g,\qquad
    E[x x^T \mid x_O, k] = \hat x \hat x^T + \begin{pmatrix} 0 & 0 \\ 0 & \Lambda_{MM}^{-1}\end{pmatrix}:

:math:`\hat x_M` minimises :math:`(x - \mu)^T \Lambda (x - \mu)` over the holes, and the
minimum is the marginal's quadratic form. :math:`z^T \Lambda z` is the complete-data form
of :math:`x_0`, so every row starts from the same packed-feature matrix product as a
complete row.

Rows are grouped by their pattern of holes (sorted by number of holes, then pattern). What
depends on the pattern alone — :math:`\Lambda_{MM}^{-1}` and :math:`\log|\Lambda_{MM}|` — is
computed once per distinct pattern of a chunk, by sweeping every pattern's small matrix at
once. A pattern with many rows is a mixture on its observed coordinates, fitted with the
complete-data matrix products; the moments of its completed rows follow from those of the
observed ones, since :math:`\hat x_M` is affine in :math:`x_0`. The other rows go block by
block, their holes in column order: one matrix product per column gives :math:`(\Lambda
z)_c` for the rows missing :math:`c`, and another the sums :math:`\sum r\, \hat x_c (1,
x_0)`; the sums :math:`\sum r\, (\hat x_c \hat x_{c'} + (\Lambda_{MM}^{-1})_{cc'})` are
added by pair of hole columns.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .covariance import _unpack_symmetric, get_covariance, products, quadratic_form
from .params import LOG_2PI, MixtureParams, log_resp_inplace

__all__ = ["MarginalEstep", "incomplete_estep"]

_BLOCK_ELEMENTS = 1 << 19  # values in a block's (components, features, rows) temporaries
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


@functools.cache
def _packed(m):
    """The packed lower triangle of an m x m symmetric matrix: ``index[i, j]``, where
    entry (i, j) is, and ``slots``, the (i, j) of each packed entry (i >= j)."""
    slots = [(i, j) for i in range(m) for j in range(i + 1)]
    index = np.zeros((m, m), dtype=int)
    for s, (i, j) in enumerate(slots):
        index[i, j] = index[j, i] = s
    return index, slots


def _sweep(entries, m):
    """Sweep every pivot of a batch of small symmetric positive definite matrices, given
    by their packed lower triangles (slots, ...batch), in place: they become the packed
    negated inverses. Returns the log-determinants. Each step is a few batch-wide
    operations over the entries it changes; LAPACK through ``numpy.linalg`` would cost a
    call per matrix, which dominates for the thousands of 2x2 to 5x5 blocks of a chunk."""
    index, slots = _packed(m)
    log_det = np.zeros(entries.shape[1:])
    for k in range(m):
        pivot = entries[index[k, k]].copy()
        if not np.all(pivot > 0):
            raise ValueError("a component's precision is not positive definite")
        log_det += np.log(pivot)
        others = [i for i in range(m) if i != k]
        if others:
            column = entries[index[others, k]]  # (m - 1, ...batch)
            scaled = column / pivot
            pairs = [(a, b) for a in range(len(others)) for b in range(a + 1)]
            a, b = np.array(pairs).T
            entries[index[np.array(others)[a], np.array(others)[b]]] -= column[a] * scaled[b]
            entries[index[others, k]] = scaled
        np.divide(-1.0, pivot, out=entries[index[k, k]])
    return log_det


def _symmetric_matvec(packed, v):
    """``a @ v`` for symmetric matrices given by their packed lower triangles (S, ...batch)
    and vectors (m, ...batch)."""
    m = len(v)
    index, _ = _packed(m)
    out = np.empty_like(v)
    scratch = np.empty_like(v[0])
    for i in range(m):
        np.multiply(packed[index[i, 0]], v[0], out=out[i])
        for j in range(1, m):
            out[i] += np.multiply(packed[index[i, j]], v[j], out=scratch)
    return out


class _Patterns:
    """What the rows with the same ``m`` missing coordinates share, per distinct pattern;
    arrays are laid out (slot, pattern, component), so that gathering them for a block's
    rows copies whole rows of components."""

    def __init__(self, columns, precisions_t, h, constant):
        P, m = columns.shape
        D = precisions_t.shape[0]
        K = len(constant)
        self.columns = columns  # (P, m)
        _, self.slots = _packed(m)  # the packed lower triangle
        # Lambda_MM, swept into -Lambda_MM^-1: minus the holes' conditional covariance
        self.neg_inverse = np.empty((len(self.slots), P, K))
        for s, (i, j) in enumerate(self.slots):
            self.neg_inverse[s] = precisions_t[columns[:, i], columns[:, j]]
        log_det = _sweep(self.neg_inverse, m)  # log|Lambda_MM|
        self.h_m = h.T[columns.T]  # (m, P, K): (Lambda mu)_M
        self.marginal_constant = constant - 0.5 * ((D - m) * LOG_2PI + log_det)  # (P, K)
        i, j = np.array(self.slots, dtype=int).reshape(-1, 2).T
        self.pairs = columns[:, i] * D + columns[:, j]  # (P, slots): each slot's place in a (D, D) lower half


def _by_column(holes, n_features):
    """The holes of a block (nb, m) in column order: their positions ``slot * nb + row``,
    and each column's run (column, start, stop) in that order."""
    flat = holes.T.ravel()
    order = np.argsort(flat.astype(np.min_scalar_type(n_features)), kind="stable")  # a radix sort
    counts = np.bincount(flat, minlength=n_features)
    ends = np.cumsum(counts)
    return order, [(c, ends[c] - counts[c], ends[c]) for c in np.flatnonzero(counts)]


def _runs(values):
    """For a sorted array: where each run of equal values starts, and each entry's run
    (0, 1, ...)."""
    new = np.ones(len(values), dtype=bool)
    new[1:] = values[1:] != values[:-1]
    return np.flatnonzero(new), np.cumsum(new) - 1


def _block_rows(X, shift, rows):
    """A column of ones, then ``X[rows] - shift`` with zeros in the holes."""
    x = np.take(X, rows, axis=0)
    out = np.empty((len(rows), 1 + X.shape[1]))
    out[:, 0] = 1.0
    np.subtract(x, shift, out=out[:, 1:])
    np.copyto(out[:, 1:], 0.0, where=np.isnan(x))
    return out


def _pattern_groups(missing: np.ndarray):
    """Per number of holes ``m``: the rows, ordered by pattern, their pattern index, and the
    patterns' columns (P, m)."""
    D = missing.shape[1]
    if D <= 46:  # the pattern's bits in one exact float
        keys, n_missing = (missing @ np.stack([np.exp2(np.arange(D)), np.ones(D)], axis=1)).T
        if D <= 16:  # two radix sorts of small integers: by pattern, then by number of holes
            order = np.argsort(keys.astype(np.uint16), kind="stable")
            order = order[np.argsort(n_missing[order].astype(np.uint8), kind="stable")]
        else:
            order = np.argsort(keys + n_missing * 2.0**46)  # by number of holes, then by pattern
    else:
        n_missing = missing.sum(axis=1)
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
    log_det_sigma = -2.0 * params.covariance.log_det_chol(params.precisions_chol, D) * np.ones(K)
    with np.errstate(divide="ignore"):
        constant = np.log(params.weights) - 0.5 * log_det_sigma
    kernel = _Kernel(_full_precisions(params), params.means - shift)
    missing = np.isnan(X)
    result = MarginalEstep(np.empty(n), np.empty((n, K)) if per_row else None, np.empty((n, D)) if per_row else None,
                           np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D)))  # fmt: skip
    packed = np.zeros((K, kernel.form.shape[1]))  # sums of w r over the features of x0
    block = max(64, _BLOCK_ELEMENTS // (K * D))
    for m, rows, pattern, columns in _pattern_groups(missing):
        shared = _Patterns(columns, kernel.precisions_t, kernel.h, constant)
        frequent = np.bincount(pattern) >= FREQUENT_PATTERN_ROWS * D
        by_pattern = frequent[pattern]
        if by_pattern.any():
            kernel.frequent(X, shift, rows[by_pattern], pattern[by_pattern], shared, m, result, packed, sample_weight)
        rows, pattern = rows[~by_pattern], pattern[~by_pattern]
        for start in range(0, len(rows), block):
            these = rows[start : start + block]
            w = None if sample_weight is None else sample_weight[these]
            x1 = _block_rows(X, shift, these)
            kernel.block(x1, pattern[start : start + block], w, shared, m, result, these, packed)
    result.nk += packed[:, 0]
    result.s1 += packed[:, 1 : 1 + D] + kernel.cross[:, 0].T
    result.s2 += _unpack_symmetric(packed[:, 1 + D :], D)
    result.s2 += kernel.cross[:, 1:].transpose(2, 0, 1)
    result.s2 += kernel.cross[:, 1:].transpose(2, 1, 0)
    holes = kernel.holes.reshape(D, D, K).transpose(2, 0, 1)  # lower halves
    result.s2 += holes
    result.s2 += np.swapaxes(np.tril(holes, -1), 1, 2)
    return result


class _Kernel:
    """Per block of rows with the same number of holes: log-likelihoods, responsibilities
    and moments, mostly as matrix products over all components at once."""

    def __init__(self, precisions, means_c):
        K, D = means_c.shape
        self.K, self.D = K, D
        self.precisions, self.means_c = precisions, means_c
        self.h = np.einsum("kij,kj->ki", precisions, means_c)  # Lambda mu, (K, D)
        self.precisions_t = np.ascontiguousarray(precisions.transpose(1, 2, 0))  # (D, D, K)
        # per column c, (1, x0) @ augmented[c] = (Lambda (x0 - mu))_c for every component
        self.augmented = np.concatenate([-self.h.T[:, None, :], self.precisions_t], axis=1)  # (D, 1 + D, K)
        # per hole column c: sums of w r u_c (1, x0) over the rows (u: the holes' x_hat)
        self.cross = np.zeros((D, 1 + D, K))
        # per pair of hole columns c >= c': sums of w r (u_c u_c' + (Lambda_MM^-1)_cc'), (D * D, K)
        self.holes = np.zeros((D * D, K))
        self.form = -0.5 * quadratic_form(means_c, precisions)  # -(x0 - mu)^T Lambda (x0 - mu) / 2
        self.features = get_covariance("full").features

    def add_holes(self, pairs, values):
        """Add ``values`` (..., K) to ``self.holes`` at ``pairs`` (...)."""
        index = (pairs[..., None] * self.K + np.arange(self.K)).ravel()
        self.holes += np.bincount(index, weights=values.ravel(), minlength=self.holes.size).reshape(self.holes.shape)

    def block(self, x1, p, w, shared, m, result, rows, packed):
        """Add one block (``x1``: ones, then the rows with zeros in their holes; ``p``:
        their patterns, sorted) to ``result``, ``packed``, ``self.cross`` and the patterns'
        sums. Per-row values are laid out (slot, row, component)."""
        K = self.K
        nb = len(x1)
        features = self.features(x1[:, 1:].T.copy())
        weighted = self.form @ features
        extra = np.take(shared.marginal_constant, p, axis=0)  # (nb, K)
        if m:
            holes = shared.columns[p]  # (nb, m)
            order, runs = _by_column(holes, self.D)
            x_holes = x1[order % nb]  # each hole's row, in column order
            g_sorted = np.empty((m * nb, K))
            for c, start, stop in runs:  # one matrix product per column over the rows missing it
                np.matmul(x_holes[start:stop], self.augmented[c], out=g_sorted[start:stop])
            g = np.empty((m * nb, K))  # (Lambda (x0 - mu))_M
            g[order] = g_sorted
            g = g.reshape(m, nb, K)
            neg_inverse = np.take(shared.neg_inverse, p, axis=1)  # (slots, nb, K)
            u = _symmetric_matvec(neg_inverse, g)  # x_hat_M = -Lambda_MM^-1 g
            extra -= 0.5 * np.einsum("ink,ink->nk", g, u)
        weighted += extra.T
        log_lik = log_resp_inplace(weighted)
        resp = weighted  # normalised in place
        rw = resp if w is None else resp * w
        result.log_lik[rows] = log_lik
        if result.resp is not None:
            result.resp[rows] = resp.T
        packed += products(rw, features)
        if not m:
            if result.completed is not None:
                result.completed[rows] = x1[:, 1:]
            return
        # x_hat = x0 + u in the holes: the moments of x0 are in ``packed``; here the sums
        # of w r u, the cross terms w r (x0 u^T + u x0^T) and w r (u u^T + Lambda_MM^-1)
        rw = rw.T.copy()  # (nb, K)
        second = np.empty_like(neg_inverse)  # per slot (i, j): w r (u_i u_j + (Lambda_MM^-1)_ij)
        for s, (i, j) in enumerate(shared.slots):
            np.multiply(u[i], u[j], out=second[s])
            second[s] -= neg_inverse[s]
            second[s] *= rw
        self.add_holes(shared.pairs[p].T, second)
        ru = (u * rw).reshape(m * nb, K)[order]
        for c, start, stop in runs:
            self.cross[c] += np.dot(x_holes[start:stop].T, ru[start:stop])  # matmul keeps the GIL for small outputs
        if result.completed is not None:
            completed = x1[:, 1:].copy()
            completed[np.arange(nb)[:, None], holes] = np.einsum("ink,kn->ni", u, resp)
            result.completed[rows] = completed

    def frequent(self, X, shift, rows, pattern, shared, m, result, packed, sample_weight):
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
            inverse = np.empty((F, K, m, m))  # Lambda_MM^-1
            for s, (i, j) in enumerate(shared.slots):
                inverse[:, :, i, j] = inverse[:, :, j, i] = -shared.neg_inverse[s, which]
            lam_rows = lam[k, holes[:, None, :]]  # (F, K, m, D): rows M of Lambda_k
            G = inverse @ lam_rows
            schur = lam - np.swapaxes(lam_rows, -1, -2) @ G  # Sigma_OO^-1, zero in the rows and columns M
            a = (inverse @ shared.h_m[:, which].transpose(1, 2, 0)[..., None])[..., 0]  # (F, K, m)
        else:
            schur = np.broadcast_to(lam, (F, K, D, D))
        forms = -0.5 * quadratic_form(np.tile(self.means_c, (F, 1)), schur.reshape(F * K, D, D)).reshape(F, K, -1)
        constant = shared.marginal_constant[which].T  # (K, F)
        moments = np.zeros((F, K, forms.shape[2]))
        block = max(64, (_BLOCK_ELEMENTS // 2) // forms.shape[2])
        for begin in range(0, len(rows), block):
            these = rows[begin : begin + block]
            x0t = _block_rows(X, shift, these)[:, 1:].T.copy()
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
        ones_x0_u = np.empty((F, K, 1 + D, m))  # sums of w r (1, x0) u^T
        ones_x0_u[:, :, 0] = a * R[..., None] - GX1
        ones_x0_u[:, :, 1:] = X1[..., :, None] * a[..., None, :] - X2 @ np.swapaxes(G, -1, -2)
        outer = R[..., None, None] * a[..., :, None] * a[..., None, :] - a[..., :, None] * GX1[..., None, :]
        outer += np.swapaxes(outer, -1, -2) - R[..., None, None] * a[..., :, None] * a[..., None, :]
        outer += G @ X2 @ np.swapaxes(G, -1, -2)  # sum w r u u^T, (F, K, m, m)
        i, j = np.array(shared.slots).T
        self.add_holes(shared.pairs[which], (outer + R[..., None, None] * inverse)[:, :, i, j].transpose(0, 2, 1))
        e = np.arange(1 + D)[None, None, :, None]
        index = (holes[:, None, None, :] * (1 + D) + e) * K + np.arange(K)[None, :, None, None]  # into self.cross
        self.cross += np.bincount(index.ravel(), weights=ones_x0_u.ravel(), minlength=self.cross.size).reshape(
            self.cross.shape
        )
