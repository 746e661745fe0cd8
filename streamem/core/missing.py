r"""The E-step for rows with missing values (NaN): exact EM for the observed-data likelihood.

For a row with observed coordinates :math:`O` and missing :math:`M`, and component
:math:`k` with mean :math:`\mu` and precision :math:`\Lambda = \Sigma^{-1}` (Ghahramani &
Jordan 1994), write :math:`x_0` for the row with zeros in its holes, :math:`e = x_0 - \mu
\circ o` (zero in the holes) and :math:`g = (\Lambda e)_M`. Then

.. math::
    \log p_k(x_O) = -\tfrac12\big(|O| \log 2\pi + \log|\Sigma| + \log|\Lambda_{MM}|
                    + e^T \Lambda e - g^T \Lambda_{MM}^{-1} g\big),

    \hat x_M = \mu_M - \Lambda_{MM}^{-1} g,\qquad
    E[x x^T \mid x_O, k] = \hat x \hat x^T + \begin{pmatrix} 0 & 0 \\ 0 & \Lambda_{MM}^{-1}\end{pmatrix}.

With :math:`z = x_0 - \mu`, :math:`e^T \Lambda e = z^T \Lambda z + 2 g^T \mu_M - \mu_M^T
\Lambda_{MM} \mu_M`: the complete-data form of :math:`x_0`, a constant per pattern and a
term per row, so every row starts from the same packed-feature matrix product as a complete
row. (:math:`g` itself is :math:`(\Lambda x_0)_M` minus a constant per pattern; computed as
:math:`(\Lambda z)_M + \Lambda_{MM} \mu_M`, it would cancel large terms, and lose 2e-6 in a
log-likelihood on 50-feature covariances of condition 4e7, against 1e-7.)

Rows are grouped by their pattern of holes (sorted by number of holes, then pattern). What
depends on the pattern alone — :math:`\Lambda_{MM}^{-1}` and :math:`\log|\Lambda_{MM}|` — is
computed once per distinct pattern of a chunk, by sweeping every pattern's small matrix at
once. A pattern with many rows is a mixture on its observed coordinates, fitted with the
complete-data matrix products; the moments of its completed rows follow from those of the
observed ones, since :math:`\hat x_M` is affine in :math:`x_0`. The other rows go by pieces
of a few thousand rows with the same number of holes, in three passes: the holes in column
order, one matrix product per column gives :math:`(\Lambda x_0)_c` for the rows missing
:math:`c`, hence :math:`g`, :math:`\hat x_M` and each row's log-likelihood correction; the E-step of
every row then starts from the complete-data form of :math:`x_0`, by blocks as large as
those of complete rows; last, one matrix product per column gives the sums :math:`\sum r\,
\hat x_c (1, x_0)`, and the sums :math:`\sum r\, (\hat x_c \hat x_{c'} +
(\Lambda_{MM}^{-1})_{cc'})` are added by pair of hole columns.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse

from streamem.core.covariance import get_covariance, products, quadratic_form
from streamem.core.kernels import BLOCK_ELEMENTS, LOG_2PI, plan_groups, responsibilities_inplace
from streamem.core.packed import lower_slots, sweep, symmetric_matvec, unpack_symmetric
from streamem.core.params import MixtureParams

__all__ = ["MarginalEstep", "incomplete_estep"]

_PIECE_ELEMENTS = 1 << 20  # values per row (x0, x_hat, responsibilities...) of a piece of rows with holes
# a pattern with at least this many rows per feature in a chunk is fitted as a marginal
# mixture (its own work per component grows as D^2, a row's as D)
FREQUENT_PATTERN_ROWS = 16


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
        Sums over rows of ``w r``, ``w r x_hat`` and ``w r E[x x^T | x_O]``, each
        component's about its centre ``centres[k]``.
    hole_entropy : ndarray of shape (K,)
        Sums over rows of ``w r`` times the entropy of the row's holes given its observed
        values under each component.
    centres : ndarray of shape (K, D)
        The centre of each component's moments: ``shift``, or a centre nearer its mean
        where rows far from ``shift`` against the component's spread would lose precision
        (:func:`~streamem.core.kernels.plan_groups`).
    """

    log_lik: np.ndarray
    resp: np.ndarray | None
    completed: np.ndarray | None
    nk: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    hole_entropy: np.ndarray
    centres: np.ndarray


class _Patterns:
    """What the rows with the same ``m`` missing coordinates share, per distinct pattern;
    arrays are laid out (slot, pattern, component), so that gathering them for a piece's
    rows copies whole rows of components."""

    def __init__(self, columns, precisions_t, means_c, h, constant):
        P, m = columns.shape
        D = precisions_t.shape[0]
        self.columns = columns  # (P, m)
        _, self.slots = lower_slots(m)  # the packed lower triangle
        i, j = np.array(self.slots, dtype=int).reshape(-1, 2).T
        rows, cols = columns.T[i], columns.T[j]  # (slots, P), rows >= cols: the patterns' columns increase
        lam_mm = precisions_t[rows, cols]  # (slots, P, K): Lambda_MM
        mu_m = means_c.T[columns.T]  # (m, P, K)
        self.h_m = h.T[columns.T]  # (Lambda mu)_M
        lam_mu = symmetric_matvec(lam_mm, mu_m)  # Lambda_MM mu_M
        self.t_mu = np.concatenate([self.h_m - lam_mu, mu_m])  # (Lambda (mu o observed))_M, then mu_M
        self.neg_inverse = lam_mm.copy()  # swept into -Lambda_MM^-1: minus the holes' conditional covariance
        log_det = sweep(self.neg_inverse, m)  # log|Lambda_MM|
        self.hole_entropy = 0.5 * (m * (1.0 + LOG_2PI) - log_det)  # (P, K): of the holes given the rest
        self.marginal_constant = constant - 0.5 * ((D - m) * LOG_2PI + log_det)  # (P, K)
        # with mu_M^T Lambda_MM mu_M / 2, the part of the correction to the complete-data form the rows share
        self.constant = self.marginal_constant + 0.5 * np.einsum("ipk,ipk->pk", mu_m, lam_mu)
        self.pairs = rows * D + cols  # (slots, P): each slot's place in a (D, D) lower half


def _by_column(holes, n_features):
    """The holes of a piece of rows (n, m) in column order: their positions ``slot * n + row``,
    and each column's run (column, start, stop) in that order."""
    flat = holes.T.ravel()
    order = np.argsort(flat.astype(np.min_scalar_type(n_features)), kind="stable")  # a radix sort
    counts = np.bincount(flat, minlength=n_features)
    ends = np.cumsum(counts)
    return order, [(c, ends[c] - counts[c], ends[c]) for c in np.flatnonzero(counts)]


def _runs(values):
    """For a sorted array: where each run of equal values starts, and each entry's run
    (0, 1, ...). (``np.repeat`` releases the GIL where ``np.cumsum`` does not.)"""
    new = np.ones(len(values), dtype=bool)
    new[1:] = values[1:] != values[:-1]  # (also for the byte strings of long patterns)
    starts = np.flatnonzero(new)
    return starts, np.repeat(np.arange(len(starts)), np.diff(starts, append=len(values)))


def _centred(x, shift, out):
    """``x - shift`` into ``out``, with zeros where ``x`` is NaN (the holes)."""
    np.subtract(x, shift, out=out)
    np.copyto(out, 0.0, where=np.isnan(x))
    return out


def _rows_with_ones(X, shift, rows):
    """A column of ones, then ``X[rows] - shift`` with zeros in the holes."""
    out = np.empty((len(rows), 1 + X.shape[1]))
    out[:, 0] = 1.0
    _centred(np.take(X, rows, axis=0), shift, out[:, 1:])
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
        The centre tried first for the moments (components far from it against their own
        spread get centres of their own), and the centre ``completed`` is given about.
    sample_weight : ndarray of shape (n,) or None
    per_row : bool
        Whether to keep each row's responsibilities and completion (``resp`` and
        ``completed`` are None otherwise: the statistics alone need neither).

    Returns
    -------
    MarginalEstep
    """
    X = np.asarray(X, dtype=np.float64)
    shift = np.asarray(shift, dtype=np.float64)
    n, D = X.shape
    K = params.n_components
    log_det_sigma = -2.0 * params.covariance.log_det_chol(params.precisions_chol, D) * np.ones(K)
    with np.errstate(divide="ignore"):
        constant = np.log(params.weights) - 0.5 * log_det_sigma
    precisions = params.covariance.full_precisions(params.precisions_chol, K, D)
    kernels = [
        _Kernel(components, centre, precisions[components], params.means[components] - centre, constant[components], K)
        for components, centre, _ in plan_groups(params, np.float64, shift)
    ]
    missing = np.isnan(X)
    result = MarginalEstep(
        np.empty(n),
        np.empty((n, K)) if per_row else None,
        np.empty((n, D)) if per_row else None,
        np.zeros(K),
        np.zeros((K, D)),
        np.zeros((K, D, D)),
        np.zeros(K),
        np.empty((K, D)),
    )
    for m, rows, pattern, columns in _pattern_groups(missing):
        for kernel in kernels:
            kernel.shared = _Patterns(columns, kernel.precisions_t, kernel.means_c, kernel.h, kernel.constant)
        frequent = np.bincount(pattern) >= FREQUENT_PATTERN_ROWS * D
        by_pattern = frequent[pattern] & (m < D)  # a row with nothing observed has no marginal mixture
        if by_pattern.any():
            _frequent(kernels, X, shift, rows[by_pattern], pattern[by_pattern], m, result, sample_weight)
        rows, pattern = rows[~by_pattern], pattern[~by_pattern]
        piece = max(64, _PIECE_ELEMENTS // (1 + D + K * (2 + m + m * (m + 1) // 2) + D * (len(kernels) - 1)))
        for start in range(0, len(rows), piece):
            these = rows[start : start + piece]
            w = None if sample_weight is None else sample_weight[these]
            _one_by_one(kernels, X, shift, these, pattern[start : start + piece], w, m, result)
    for kernel in kernels:
        kernel.finish(result)
    return result


def _one_by_one(kernels, X, shift, rows, p, w, m, result):
    """A piece of rows with ``m`` holes each (``p``: their patterns, sorted), in three
    passes: the holes' conditional expectations and each row's log-likelihood correction,
    with the holes in column order; the E-step of every row from the complete-data form of
    ``x0``, by blocks as large as those of complete rows; then the holes' moments. Per-row
    values are laid out (slot, row, component); each kernel (group of components) works on
    the rows minus its own centre."""
    n, D = len(rows), X.shape[1]
    K = sum(len(kernel.components) for kernel in kernels)
    order, runs = _by_column(kernels[0].shared.columns[p], D) if m else (None, None)
    parts = [kernel.conditional(X, rows, p, m, order, runs) for kernel in kernels]
    rw = np.empty((n, K))
    step = max(64, BLOCK_ELEMENTS // (sum(kernel.form.shape[1] for kernel in kernels) + 2 * K))
    for start in range(0, n, step):
        stop = min(start + step, n)
        features = [kernel.features(part.x1[start:stop, 1:].T.copy()) for kernel, part in zip(kernels, parts)]
        weighted = _stacked(kernels, [kernel.form @ f for kernel, f in zip(kernels, features)], stop - start)
        weighted += _stacked(kernels, [part.extra[start:stop].T for part in parts], stop - start)
        result.log_lik[rows[start:stop]] = responsibilities_inplace(weighted)
        if result.resp is not None:
            result.resp[rows[start:stop]] = weighted.T
        if w is not None:
            weighted *= w[start:stop]
        for kernel, f in zip(kernels, features):
            kernel.packed += products(_rows_of(kernels, weighted, kernel), f)
        rw[start:stop] = weighted.T
    if result.completed is not None:
        completed = _centred(np.take(X, rows, axis=0), shift, np.empty((n, D)))
        if m:
            holes = kernels[0].shared.columns[p]
            filled = 0.0
            for kernel, part in zip(kernels, parts):
                x_hat = part.u + (kernel.centre - shift)[holes.T][:, :, None]  # about shift
                filled = filled + np.einsum("ink,nk->ni", x_hat, result.resp[rows][:, kernel.components])
            completed[np.arange(n)[:, None], holes] = filled
        result.completed[rows] = completed
    if m:
        for kernel, part in zip(kernels, parts):
            rw_g = rw if len(kernels) == 1 else rw[:, kernel.components]
            result.hole_entropy[kernel.components] += np.einsum("nk,nk->k", rw_g, kernel.shared.hole_entropy[p])
            kernel.moments(part, order, runs, p, m, rw_g)


def _stacked(kernels, values, n):
    """The (K, n) array whose rows of each kernel's components are ``values`` (one per kernel)."""
    if len(kernels) == 1:
        return values[0]
    out = np.empty((sum(len(kernel.components) for kernel in kernels), n))
    for kernel, value in zip(kernels, values):
        out[kernel.components] = value
    return out


def _rows_of(kernels, values, kernel):
    """The rows of a (K, ...) array that belong to ``kernel``'s components."""
    return values if len(kernels) == 1 else values[kernel.components]


@dataclasses.dataclass
class _Piece:
    """What one kernel keeps of a piece of rows between its passes."""

    x1: np.ndarray  # (n, 1 + D): ones, then the rows minus the kernel's centre, zeros in the holes
    extra: np.ndarray  # (n, K_g): each row's correction to the complete-data form
    x_holes: np.ndarray | None = None  # each hole's row of x1, in column order
    neg_inverse: np.ndarray | None = None  # (slots, n, K_g): each row's -Lambda_MM^-1
    u: np.ndarray | None = None  # (m, n, K_g): the holes' x_hat, about the kernel's centre


class _Kernel:
    """The E-step of rows with the same number of holes for a group of components that share
    a centre: log-likelihoods, responsibilities and moments, mostly as matrix products over
    all the group's components at once."""

    def __init__(self, components, centre, precisions, means_c, constant, n_components):
        K, D = means_c.shape
        self.K, self.D = K, D
        self.components, self.centre = components, centre
        self.precisions, self.means_c, self.constant = precisions, means_c, constant
        self.h = np.einsum("kij,kj->ki", precisions, means_c)  # Lambda mu, (K, D)
        self.precisions_t = np.ascontiguousarray(precisions.transpose(1, 2, 0))  # (D, D, K)
        # per hole column c: sums of w r u_c (1, x0) over the rows (u: the holes' x_hat)
        self.cross = np.zeros((D, 1 + D, K))
        # per pair of hole columns c >= c': sums of w r (u_c u_c' + (Lambda_MM^-1)_cc'), (D * D, K)
        self.holes = np.zeros((D * D, K))
        self.packed = np.zeros((K, 1 + D + D * (D + 1) // 2))  # sums of w r over the features of x0
        self.form = -0.5 * quadratic_form(means_c, precisions)  # -(x0 - mu)^T Lambda (x0 - mu) / 2
        self.features = get_covariance("full").features
        self.shared = None  # the _Patterns of the current number of holes

    def finish(self, result) -> None:
        """Add this group's sums to ``result``'s statistics (about its centre)."""
        D, k = self.D, self.components
        packed, cross = self.packed, self.cross
        s2 = unpack_symmetric(packed[:, 1 + D :], D)
        s2 += cross[:, 1:].transpose(2, 0, 1)
        s2 += cross[:, 1:].transpose(2, 1, 0)
        holes = self.holes.reshape(D, D, self.K).transpose(2, 0, 1)  # lower halves
        s2 += holes
        s2 += np.swapaxes(np.tril(holes, -1), 1, 2)
        result.nk[k] += packed[:, 0]
        result.s1[k] += packed[:, 1 : 1 + D] + cross[:, 0].T
        result.s2[k] += s2
        result.centres[k] = self.centre

    def add_holes(self, pairs, values):
        """Add ``values`` (..., K) to ``self.holes`` at ``pairs`` (...), as a product with
        the pairs' sparse one-hot matrix: a sum by pair that, unlike ``np.bincount``, lets
        other threads run."""
        pairs = pairs.ravel()
        n = len(pairs)
        one_hot = scipy.sparse.csc_array((np.ones(n), pairs, np.arange(n + 1)), shape=(len(self.holes), n))
        self.holes += one_hot @ values.reshape(n, self.K)

    def conditional(self, X, rows, p, m, order, runs) -> _Piece:
        """The first pass over a piece of rows: the rows minus the centre, and with holes
        their x_hat = mu_M - Lambda_MM^-1 g, where g = (Lambda e)_M and e = x0 - mu o
        observed (m, n, K), and each row's own part of the correction to the complete-data
        form, g^T (Lambda_MM^-1 g / 2 - mu_M)."""
        shared = self.shared
        piece = _Piece(_rows_with_ones(X, self.centre, rows), np.take(shared.constant, p, axis=0))
        if not m:
            return piece
        n, K = len(rows), self.K
        piece.x_holes = piece.x1[order % n]  # each hole's row, in column order
        piece.neg_inverse = np.take(shared.neg_inverse, p, axis=1)
        y_sorted = np.empty((m * n, K))
        for c, start, stop in runs:  # one matrix product per column over the rows missing it
            np.matmul(piece.x_holes[start:stop, 1:], self.precisions_t[c], out=y_sorted[start:stop])
        g = np.empty((m * n, K))
        g[order] = y_sorted  # (Lambda x0)_M
        g = g.reshape(m, n, K)
        t_mu = np.take(shared.t_mu, p, axis=1)
        g -= t_mu[:m]
        u = symmetric_matvec(piece.neg_inverse, g)  # -Lambda_MM^-1 g
        mu_m = t_mu[m:]
        piece.extra -= np.einsum("ink,ink->nk", g, 0.5 * u + mu_m)
        u += mu_m
        piece.u = u
        return piece

    def moments(self, piece, order, runs, p, m, rw):
        """Add the sums of w r x_hat_M, the cross terms w r (x0 x_hat_M^T + x_hat_M x0^T)
        and w r (x_hat_M x_hat_M^T + Lambda_MM^-1) (``rw``: (n, K)) to ``self.cross`` and
        ``self.holes``; the moments of x0 are in ``self.packed``. Overwrites the piece's
        ``neg_inverse``."""
        n, K, u = len(rw), self.K, piece.u
        second = piece.neg_inverse  # per slot (i, j): w r (u_i u_j + (Lambda_MM^-1)_ij)
        for s, (i, j) in enumerate(self.shared.slots):
            np.subtract(u[i] * u[j], second[s], out=second[s])
            second[s] *= rw
        self.add_holes(np.take(self.shared.pairs, p, axis=1), second)
        ru = (u * rw).reshape(m * n, K)[order]
        cross = np.empty((len(runs), 1 + self.D, K))
        for run, (_, start, stop) in enumerate(runs):  # np.dot: matmul keeps the GIL for small outputs
            np.dot(piece.x_holes[start:stop].T, ru[start:stop], out=cross[run])
        self.cross[[c for c, _, _ in runs]] += cross

    def marginal_forms(self, which, m):
        """Per frequent pattern (``which``): the forms of the marginal mixture on its observed
        coordinates (F, K, n_values), the affine map of the holes' x_hat = a - G x0, and the
        holes' conditional covariances Lambda_MM^-1."""
        shared, lam = self.shared, self.precisions
        F, K, D = len(which), self.K, self.D
        k = np.arange(K)[None, :, None]
        a = G = inverse = None
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
        return forms, a, G, inverse

    def frequent_moments(self, moments, which, m, a, G, inverse):
        """The holes' part of the completed rows' moments, from the observed rows' moments
        (``moments``: (F, K, n_values) sums of w r over the features of x0, per pattern)."""
        D, K, shared = self.D, self.K, self.shared
        self.packed += moments.sum(axis=0)
        if not m:
            return
        F = len(which)
        holes = shared.columns[which]
        R, X1 = moments[:, :, 0], moments[:, :, 1 : 1 + D]
        X2 = unpack_symmetric(moments[:, :, 1 + D :], D)  # (F, K, D, D)
        GX1 = (G @ X1[..., None])[..., 0]  # (F, K, m)
        ones_x0_u = np.empty((F, K, 1 + D, m))  # sums of w r (1, x0) u^T
        ones_x0_u[:, :, 0] = a * R[..., None] - GX1
        ones_x0_u[:, :, 1:] = X1[..., :, None] * a[..., None, :] - X2 @ np.swapaxes(G, -1, -2)
        outer = R[..., None, None] * a[..., :, None] * a[..., None, :] - a[..., :, None] * GX1[..., None, :]
        outer += np.swapaxes(outer, -1, -2) - R[..., None, None] * a[..., :, None] * a[..., None, :]
        outer += G @ X2 @ np.swapaxes(G, -1, -2)  # sum w r u u^T, (F, K, m, m)
        i, j = np.array(shared.slots).T
        self.add_holes(shared.pairs[:, which].T, (outer + R[..., None, None] * inverse)[:, :, i, j].transpose(0, 2, 1))
        e = np.arange(1 + D)[None, None, :, None]
        index = (holes[:, None, None, :] * (1 + D) + e) * K + np.arange(K)[None, :, None, None]  # into self.cross
        self.cross += np.bincount(index.ravel(), weights=ones_x0_u.ravel(), minlength=self.cross.size).reshape(
            self.cross.shape
        )


def _frequent(kernels, X, shift, rows, pattern, m, result, sample_weight):
    """Rows of patterns frequent in the chunk (``rows`` ordered by ``pattern``): each
    pattern is a mixture on its observed coordinates, whose E-step is the complete-data
    one (matrix products over packed features); the moments of the completed rows
    follow from those of the observed ones, since the expectation of the holes is
    affine in the observed values: ``x_hat_M = a - G x0`` per pattern and component."""
    K = sum(kernel.K for kernel in kernels)
    starts, segment = _runs(pattern)  # each row's pattern among these, 0..F-1
    which = pattern[starts]
    holes = kernels[0].shared.columns[which] if m else None  # (F, m)
    plans = [kernel.marginal_forms(which, m) for kernel in kernels]
    constants = [kernel.shared.marginal_constant[which].T for kernel in kernels]  # (K_g, F)
    moments = [np.zeros((len(which), kernel.K, plan[0].shape[2])) for kernel, plan in zip(kernels, plans)]
    block = max(64, BLOCK_ELEMENTS // (sum(plan[0].shape[2] for plan in plans) + 2 * K))
    ends = [*starts[1:], len(rows)]
    for begin in range(0, len(rows), block):
        these = rows[begin : begin + block]
        x = np.take(X, these, axis=0).T
        seg = segment[begin : begin + block]
        bounds = [
            (f, max(starts[f], begin) - begin, min(ends[f], begin + block) - begin)
            for f in range(segment[begin], seg[-1] + 1)
        ]
        x0ts, features, parts = [], [], []
        for kernel, (forms, *_), constant in zip(kernels, plans, constants):
            x0t = _centred(x, kernel.centre[:, None], np.empty(x.shape))  # the rows minus the centre, transposed
            f_rows = kernel.features(x0t)
            weighted = np.empty((kernel.K, len(these)))
            for f, start, stop in bounds:
                np.matmul(forms[f], f_rows[:, start:stop], out=weighted[:, start:stop])
            weighted += np.take(constant, seg, axis=1)
            x0ts.append(x0t)
            features.append(f_rows)
            parts.append(weighted)
        weighted = _stacked(kernels, parts, len(these))
        result.log_lik[these] = responsibilities_inplace(weighted)
        resp = weighted  # normalised in place
        rw = resp if sample_weight is None else resp * sample_weight[these]
        for kernel, f_rows, moment in zip(kernels, features, moments):
            rw_g = _rows_of(kernels, rw, kernel)
            for f, start, stop in bounds:
                moment[f] += products(rw_g[:, start:stop], f_rows[:, start:stop])
        if result.resp is not None:
            result.resp[these] = resp.T
        if result.completed is not None:
            completed = _centred(x, shift[:, None], np.empty(x.shape)).T
            if m:
                for f, start, stop in bounds:
                    filled = 0.0
                    for kernel, (_, a, G, _), x0t in zip(kernels, plans, x0ts):
                        u = a[f][:, :, None] - G[f] @ x0t[:, start:stop]  # (K_g, m, rows), about the centre
                        u += (kernel.centre - shift)[holes[f]][None, :, None]
                        filled = filled + np.einsum("kin,kn->ni", u, _rows_of(kernels, resp, kernel)[:, start:stop])
                    completed[start:stop, holes[f]] = filled
            result.completed[these] = completed
    for kernel, (_, a, G, inverse), moment in zip(kernels, plans, moments):
        entropy = kernel.shared.hole_entropy[which]  # (F, K_g)
        result.hole_entropy[kernel.components] += np.einsum("fk,fk->k", moment[:, :, 0], entropy)
        kernel.frequent_moments(moment, which, m, a, G, inverse)
