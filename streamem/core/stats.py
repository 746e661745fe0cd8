"""Sufficient statistics of the E-step, and the per-chunk kernels that compute them.

Every function here works on one in-memory chunk (numpy) and returns a small object that
adds with ``+``: statistics of a split array added together equal those of the whole.
Nothing of size ``n_samples x n_components`` outlives a block of rows (:func:`block_rows`).

Second moments are accumulated about a centre per component, fixed for the pass and near
the component's mean (:func:`~streamem.core.kernels.plan_groups`), never about the origin, and
added across blocks in float64 whatever the data's dtype. Statistics about different
centres merge exactly: :meth:`SufficientStats.recentred` moves them with Chan's update.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from streamem.core.covariance import get_covariance, products
from streamem.core.kernels import BLOCK_ELEMENTS, LOG_2PI, NoiseKernel, responsibilities_inplace
from streamem.core.missing import incomplete_estep
from streamem.core.moments import Moments
from streamem.core.params import MixtureParams
from streamem.core.validation import check_finite

__all__ = [
    "BLOCK_ROWS",
    "FeatureMoments",
    "block_rows",
    "LowestScoringRows",
    "SufficientStats",
    "chunk_stats",
    "chunk_kernels",
    "labelled_stats",
    "centred",
    "iter_blocks",
    "Accumulator",
    "add_lists",
    "totals",
]

BLOCK_ROWS = 4096


def block_rows(kernels) -> int:
    """Rows per block, so that a block's temporaries hold about ``BLOCK_ELEMENTS`` values
    (``kernels``: the :class:`~streamem.core.kernels.LogProbKernel` of each candidate)."""
    width = sum(kernel.block_width for kernel in kernels)
    return min(max(BLOCK_ELEMENTS // width, 256), 65536)


def iter_blocks(X: np.ndarray, sample_weight: np.ndarray | None, rows: int = BLOCK_ROWS):
    """Yield ``(block, w)``: blocks of ``rows`` rows of X and their weights."""
    for start in range(0, len(X), rows):
        yield X[start : start + rows], None if sample_weight is None else sample_weight[start : start + rows]


def centred(block: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``block - centre`` transposed, of shape (n_features, n_rows), in float64."""
    return np.subtract(block.T, centre[:, None], dtype=np.float64)


@dataclasses.dataclass(frozen=True, eq=False)
class LowestScoringRows:
    """The ``size`` rows with the smallest scores seen so far, smallest first.

    Adds like the statistics: the rows of two parts with the smallest scores are the
    smallest of the union. Used for the worst-explained rows of a pass (re-seeding) and
    for weighted random picks (scores ``-log(u) / weight``).
    """

    scores: np.ndarray
    points: np.ndarray
    size: int

    @classmethod
    def empty(cls, n_features: int, size: int) -> LowestScoringRows:
        return cls(np.empty(0), np.empty((0, n_features)), size)

    @classmethod
    def of(cls, scores, points, size: int) -> LowestScoringRows:
        """The ``size`` of these rows with the smallest scores; ties go by the rows' values,
        so that the rows kept never depend on the order they came in (nor on the chunks)."""
        scores = np.asarray(scores, dtype=np.float64)
        points = np.asarray(points, dtype=np.float64)
        keep = np.isfinite(scores)
        scores, points = scores[keep], points[keep]
        order = np.lexsort((*points.T[::-1], scores))[:size]
        return cls(scores[order], points[order], size)

    @classmethod
    def select(cls, scores, rows, size: int) -> LowestScoringRows:
        """The ``size`` rows of ``rows`` (an array of shape (n, n_features)) with the smallest
        scores (rows tied with the last of them are compared by :meth:`of`)."""
        if len(scores) > size:
            cut = np.partition(scores, size - 1)[size - 1]
            picked = np.flatnonzero(scores <= cut)
            return cls.of(scores[picked], rows[picked], size)
        return cls.of(scores, rows, size)

    def admits(self, lowest: float) -> bool:
        """Whether a row of score ``lowest`` would be kept (not all ``size`` places are
        taken, or it scores no higher than the last row kept): a block whose lowest score
        is not admitted has no row to add."""
        return len(self.scores) < self.size or lowest <= self.scores[-1]

    def affine(self, offset, scale, score_shift: float) -> LowestScoringRows:
        """The same rows as ``offset + scale * x``, their scores moved by ``score_shift``."""
        return LowestScoringRows(self.scores + score_shift, offset + scale * self.points, self.size)

    def __add__(self, other: LowestScoringRows) -> LowestScoringRows:
        if self.size == other.size and not (len(self.scores) and len(other.scores)):
            return other if len(other.scores) else self  # what of() gives: the rows of the side that has some
        return LowestScoringRows.of(
            np.concatenate([self.scores, other.scores]),
            np.concatenate([self.points, other.points]),
            self.size,
        )


def _centres(shift, n_components: int, n_features: int) -> np.ndarray:
    """``shift`` as centres of shape (n_components, n_features), in float64: a copy, or the
    very array when it is one already and read-only (a kernel's, shared by the chunks of a
    pass, so that their statistics add without comparing centres)."""
    if (
        isinstance(shift, np.ndarray)
        and not shift.flags.writeable
        and shift.dtype == np.float64
        and shift.shape == (n_components, n_features)
    ):
        return shift
    return np.array(np.broadcast_to(np.asarray(shift, dtype=np.float64), (n_components, n_features)))


def add_lists(a: list, b: list) -> list:
    """Add two lists of statistics element by element (one element per candidate)."""
    return [x + y for x, y in zip(a, b, strict=True)]


@dataclasses.dataclass(frozen=True, eq=False)
class SufficientStats(Moments):
    """E-step sufficient statistics of a mixture over some rows, each component's about its
    own centre (``shift``).

    Attributes
    ----------
    nk : ndarray of shape (n_components,)
        Sum of (weighted) responsibilities.
    s1 : ndarray of shape (n_components, n_features)
        Sums of responsibility-weighted ``x - shift[k]``.
    s2 : ndarray
        Second moments about ``shift[k]``; the shape depends on the covariance type (for
        ``"tied"``, the sum over components of each one's moments about its centre).
    loglik : float
        Sum of weighted per-row log-likelihoods.
    weight : float
        Sum of sample weights.
    count : int
        Number of rows (rows with every value missing are not counted).
    shift : ndarray of shape (n_components, n_features)
        The centre of each component's moments.
    worst : LowestScoringRows
        The worst-explained rows (lowest log-likelihood), used to re-seed components
        that lose their mass.
    covariance_type : str
    ignored : int
        Rows with every value missing.
    hole_entropy : float
        Sum over rows with holes of ``w r_k`` times the entropy of their holes given their
        observed values under component ``k`` (0 without missing values): what makes the
        responsibilities' entropy and a variational bound exact for such rows
        (:meth:`expected_log_joint`).
    noise : float
        Sum of ``w`` times the noise component's responsibility (with one,
        :class:`~streamem.core.params.NoisyParams`).
    merge_terms : ndarray of shape (n_components + n_pairs,) or None
        With pairs of components asked for (:func:`chunk_stats`'s ``pairs``): each
        component's :math:`\\sum_i w_i r_{ik} \\log r_{ik}`, then each pair's
        :math:`\\sum_i w_i s_i \\log s_i`, :math:`s_i = r_{ij} + r_{ik}` (what merging the
        pair takes from the responsibilities' entropy).
    """

    nk: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    loglik: float
    weight: float
    count: int
    shift: np.ndarray
    worst: LowestScoringRows
    covariance_type: str
    ignored: int = 0
    hole_entropy: float = 0.0
    noise: float = 0.0
    merge_terms: np.ndarray | None = None

    summed = ("nk", "s1", "s2", "loglik", "weight", "hole_entropy", "noise", "merge_terms")
    counted = ("count", "ignored")
    kept = ("worst",)
    moment_weight = "nk"

    @classmethod
    def zero(cls, n_components: int, n_features: int, covariance_type: str, shift) -> SufficientStats:
        """Empty statistics about ``shift``, of shape (n_features,) (one centre for all
        components) or (n_components, n_features)."""
        shape = get_covariance(covariance_type).second_moment_shape(n_components, n_features)
        return cls(
            np.zeros(n_components),
            np.zeros((n_components, n_features)),
            np.zeros(shape),
            0.0,
            0.0,
            0,
            _centres(shift, n_components, n_features),
            LowestScoringRows.empty(n_features, n_components),
            covariance_type,
        )

    def affine(self, offset, scale, loglik_shift: float) -> SufficientStats:
        """The statistics of the same rows as ``offset + scale * x`` (``scale`` positive, of
        shape (n_features,)), about the centres mapped alike: :math:`s_1 \\to S s_1`,
        :math:`S_2 \\to S S_2 S`. Each row's log-density moves by :math:`-\\sum_d \\log s_d`
        over its observed features; ``loglik_shift`` is that sum over the rows (a property
        of the data, not of the parameters). The entropy of holes is left as it is."""
        row_shift = -float(np.log(scale).sum())
        return dataclasses.replace(
            self,
            s1=self.s1 * scale,
            s2=get_covariance(self.covariance_type).scaled_second_moment(self.s2, scale),
            shift=offset + scale * self.shift,
            loglik=self.loglik + loglik_shift,
            worst=self.worst.affine(offset, scale, row_shift),
        )

    @property
    def mean_loglik(self) -> float:
        return self.loglik / self.weight

    def expected_log_joint(self, params: MixtureParams, log_weights: np.ndarray) -> float:
        r""":math:`\sum_{ik} w_i r_{ik} (l_k + E[\log N(x_i \mid \mu_k, \Sigma_k)])` over the
        rows of these statistics, ``l`` = ``log_weights``, the holes of a row in their
        conditional expectation: linear in the statistics, since the log-density is linear
        in a row's features (:meth:`~streamem.core.covariance.Covariance.mahalanobis_form`)."""
        D = params.n_features
        covariance = params.covariance
        form = covariance.mahalanobis_form(params.means - self.shift, params.precisions_chol)
        quadratic = form[:, 0] @ self.nk + np.einsum("kd,kd->", form[:, 1 : D + 1], self.s1)
        extra = form[:, D + 1 :]
        if covariance.per_component:
            quadratic += np.einsum("kf,kf->", extra, self.s2.reshape(len(extra), -1))
        else:
            quadratic += extra[0] @ self.s2
        constants = log_weights + covariance.log_det_chol(params.precisions_chol, D) - 0.5 * D * LOG_2PI
        used = self.nk > 0  # a component of weight 0 (log-weight -inf) has no responsibility
        return float(self.nk[used] @ np.broadcast_to(constants, self.nk.shape)[used] - 0.5 * quadratic)

    def entropy(self, params: MixtureParams) -> float:
        r"""The entropy of the responsibilities, :math:`-\sum_{ik} w_i r_{ik} \log r_{ik}`,
        of the E-step under ``params`` that gave these statistics, from the statistics alone
        (the ICL's penalty): the total log-likelihood minus the expected log-joint and the
        holes' entropy."""
        with np.errstate(divide="ignore"):
            log_weights = np.log(params.weights)
        return float(self.loglik - self.expected_log_joint(params, log_weights) - self.hole_entropy)

    @classmethod
    def implied(cls, params: MixtureParams, reg_covar: float) -> SufficientStats:
        """Statistics per unit of weight, about the means, whose M-step (with ``reg_covar``)
        gives back ``params``: a starting point that stepwise EM mixes away."""
        covariance = params.covariance
        K, D = params.means.shape
        full = params.full_covariances
        second = covariance.second_moment_from_full(params.weights[:, None, None] * (full - reg_covar * np.eye(D)))
        zero = cls.zero(K, D, params.covariance_type, params.means)
        return dataclasses.replace(zero, nk=params.weights.copy(), s2=second, weight=1.0, count=1)


class Accumulator:
    """Float64 running sums of one candidate's statistics over the blocks of a chunk, each
    component's about ``shift[k]``."""

    def __init__(self, n_components, n_features, covariance_type, shift):
        self.covariance = get_covariance(covariance_type)
        self.zero = SufficientStats.zero(n_components, n_features, covariance_type, shift)
        self.nk = np.zeros(n_components)
        self.s1 = np.zeros((n_components, n_features))
        self.s2 = np.zeros_like(self.zero.s2)
        self.loglik = 0.0
        self.hole_entropy = 0.0
        self.noise = 0.0
        self.merge_terms = None
        self.worst = LowestScoringRows.empty(n_features, n_components)

    def add_moments(self, components, resp, features):
        """Add the moments of a block to ``components`` (an index array, or a slice):
        ``features`` (F, n) of the block's rows about those components' centres (ones, the
        centred rows, extras) and responsibilities (len(components), n) that include the
        weights; rows of ``resp`` after the components' own are left out."""
        n_features = self.s1.shape[1]
        moments = products(resp, features)[: len(self.nk[components])]  # resp may hold more rows below
        self.nk[components] += moments[:, 0]
        self.s1[components] += moments[:, 1 : 1 + n_features]
        self.covariance.add_second_moment(self.s2, components, moments[:, 1 + n_features :])

    def add_merge_terms(self, resp, order, pairs, w):
        """Add a block's merge terms (:attr:`SufficientStats.merge_terms`) from its
        responsibilities ``resp`` (rows in the components' ``order``, without the weights)."""
        row_of = np.empty(len(order), dtype=np.intp)
        row_of[order] = np.arange(len(order))
        own = resp[row_of]
        terms = np.concatenate([own, own[pairs[:, 0]] + own[pairs[:, 1]]])
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 log 0 = 0
            terms *= np.log(terms)
        terms[np.isnan(terms)] = 0.0
        terms = terms.astype(np.float64, copy=False)
        block = terms.sum(axis=1) if w is None else terms @ w.astype(np.float64)
        self.merge_terms = block if self.merge_terms is None else self.merge_terms + block

    def add_rows(self, log_lik, w, block, track_worst=True):
        """Add the block's log-likelihoods (and keep its worst-explained rows)."""
        if w is None:
            self.loglik += float(log_lik.sum(dtype=np.float64))
            scores = log_lik
        else:
            self.loglik += float(np.dot(log_lik.astype(np.float64), w))
            scores = np.where(w > 0, log_lik, np.inf)
        # the K worst rows of the pass, whatever the chunks; a block whose worst row is better
        # than the K kept so far (the usual case, checked by one minimum) has none to add
        if track_worst and self.worst.admits(scores.min(initial=np.inf)):
            self.worst = self.worst + LowestScoringRows.select(scores, block, self.worst.size)

    def add_incomplete(self, X, w, params, centre):
        """Add rows that each miss some values (NaN): the exact E-step of :mod:`streamem.core.missing`
        (its moments about centres near the components' means, moved onto this sum's)."""
        estep = incomplete_estep(X, params, centre, w, per_row=False)
        second = self.covariance.second_moment_from_full(estep.s2)
        moments = dataclasses.replace(self.zero, nk=estep.nk, s1=estep.s1, s2=second, shift=estep.centres)
        moments = moments.recentred(self.zero.shift)
        self.nk += moments.nk
        self.s1 += moments.s1
        self.s2 += moments.s2
        self.loglik += float(estep.log_lik.sum() if w is None else estep.log_lik @ w)
        self.hole_entropy += float(estep.hole_entropy.sum())
        scores = estep.log_lik if w is None else np.where(w > 0, estep.log_lik, np.inf)
        worst = np.flatnonzero(np.isfinite(scores))
        size = self.worst.size
        if not (len(worst) and self.worst.admits(scores[worst].min())):
            return  # no row, or all better explained than the K kept so far
        if len(worst) > size:
            worst = worst[scores[worst] <= np.partition(scores[worst], size - 1)[size - 1]]
        # the K worst-explained rows (and rows tied with them), completed by their expectation
        completed = incomplete_estep(X[worst], params, centre).completed
        self.worst = self.worst + LowestScoringRows.of(scores[worst], completed + centre, size)

    def result(self, weight, count, ignored=0) -> SufficientStats:
        return dataclasses.replace(
            self.zero,
            nk=self.nk,
            s1=self.s1,
            s2=self.s2,
            loglik=self.loglik,
            weight=weight,
            count=count,
            worst=self.worst,
            ignored=ignored,
            hole_entropy=self.hole_entropy,
            noise=self.noise,
            merge_terms=self.merge_terms,
        )


def totals(X, sample_weight):
    count = len(X)
    weight = float(count if sample_weight is None else sample_weight.sum(dtype=np.float64))
    return weight, count


def labelled_stats(X, sample_weight, labels, covariance_type: str, shift, params: MixtureParams | None = None):
    r"""Statistics of rows whose component is known (``labels``, each in 0..K-1, K the rows
    of ``shift``): a row's responsibility is 1 for its component, and with ``params`` its
    log-likelihood the complete-data one, :math:`\log w_k + \log N(x \mid \mu_k, \Sigma_k)`
    (semi-supervised EM). Each component's moments about ``shift[k]``."""
    K, D = shift.shape
    accumulator = Accumulator(K, D, covariance_type, shift)
    covariance = accumulator.covariance
    weights = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if params is not None:
        form = covariance.mahalanobis_form(params.means - shift, params.precisions_chol)
        with np.errstate(divide="ignore"):
            log_weights = np.log(params.weights)
        constants = log_weights + covariance.log_det_chol(params.precisions_chol, D) - 0.5 * D * LOG_2PI
        constants = np.broadcast_to(constants, (K,))
    for k in np.unique(labels):
        rows = labels == k
        features = covariance.centred_features(X[rows], shift[k], np.float64)
        w = weights[rows]
        accumulator.add_moments(np.array([k]), w[None, :], features)
        if params is not None:
            accumulator.loglik += float(w @ (constants[k] - 0.5 * (form[k] @ features)))
    return accumulator.result(*totals(X, sample_weight))


class Kernels:
    """The candidates' kernels about ``centre``, made once per dtype of rows and reused by
    the chunks of a pass that one thread runs (a kernel keeps buffers between blocks)."""

    def __init__(self, params_list: list[MixtureParams], centre):
        self.params_list, self.centre = params_list, np.asarray(centre, dtype=np.float64)
        self._made: dict = {}

    def __call__(self, dtype) -> list:
        dtype = np.dtype(dtype)
        kernels = self._made.get(dtype)
        if kernels is None:
            kernels = self._made[dtype] = [p.kernel(dtype, self.centre) for p in self.params_list]
        return kernels


def chunk_kernels(params_list: list[MixtureParams], centre, *rest) -> dict:
    """The keywords that make :func:`chunk_stats` reuse its kernels across chunks: its
    ``prepare`` for :meth:`~streamem.engine.passes.ChunkedData.map_reduce`."""
    return {"kernels": Kernels(params_list, centre)}


def chunk_stats(
    X,
    sample_weight,
    params_list: list[MixtureParams],
    centre,
    missing: bool = False,
    pairs=None,
    labels=None,
    kernels: Kernels | None = None,
) -> list[SufficientStats]:
    """E-step of one chunk for every candidate in ``params_list``, from one read of X.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), float32 or float64
    sample_weight : ndarray of shape (n_rows,) or None
    params_list : list of MixtureParams
    centre : ndarray of shape (n_features,)
        The centre tried first for every candidate's components (the data's centre): the
        candidates share the features of a block about it.
    missing : bool
        Rows with NaN are missing those values: their E-step marginalises them. Rows with
        every value missing are ignored and counted.
    pairs : list of (ndarray of int of shape (n_pairs, 2) or None) or None
        For each candidate, pairs of components whose merge terms the statistics gather
        (:attr:`SufficientStats.merge_terms`; complete rows only).
    labels : ndarray of int of shape (n_rows,) or None
        Each row's known component, -1 where unknown: known rows count for their component
        alone (:func:`labelled_stats`), the others get the E-step.
    kernels : Kernels or None
        The candidates' kernels about ``centre`` made earlier (:func:`chunk_kernels`), or
        None to make them here.

    Returns
    -------
    list of SufficientStats, one per candidate, in float64, each component's about the
    centre its candidate's kernel gives it (:class:`~streamem.core.kernels.LogProbKernel`).
    """
    check_finite(X, sample_weight, allow_nan=missing)
    if missing and any(p.has_noise for p in params_list) and np.isnan(X).any():
        raise ValueError("expected no missing values (NaN) with a noise component")
    if labels is not None and (labels >= 0).any():
        known = np.asarray(labels) >= 0
        if missing and np.isnan(X[known]).any():
            raise ValueError("expected rows with a label to have no missing values (NaN)")
        w_known, w_unknown = (None, None) if sample_weight is None else (sample_weight[known], sample_weight[~known])
        inferred = chunk_stats(X[~known], w_unknown, params_list, centre, missing, pairs, kernels=kernels)
        return [
            total + labelled_stats(X[known], w_known, labels[known], p.covariance_type, p.means, p)
            for total, p in zip(inferred, params_list)
        ]
    kernels = Kernels(params_list, centre) if kernels is None else kernels
    centre = kernels.centre
    if missing:
        nan = np.isnan(X)
        if nan.any():
            return _stats_with_missing(X, sample_weight, params_list, kernels(X.dtype), centre, nan, pairs)
    sums = _complete_stats(X, sample_weight, kernels(X.dtype), params_list, pairs)
    weight, count = totals(X, sample_weight)
    return [acc.result(weight, count) for acc in sums]


def _stats_with_missing(X, sample_weight, params_list, kernels, centre, nan, pairs=None):
    n_nan = nan.sum(axis=1)
    complete, partial, empty = n_nan == 0, (n_nan > 0) & (n_nan < X.shape[1]), n_nan == X.shape[1]
    w_of = (lambda rows: None) if sample_weight is None else (lambda rows: sample_weight[rows])  # noqa: E731
    sums = _complete_stats(X[complete], w_of(complete), kernels, params_list, pairs)
    if partial.any():
        X_partial, w = X[partial], w_of(partial)
        w = None if w is None else w.astype(np.float64)
        for params, acc in zip(params_list, sums):
            acc.add_incomplete(X_partial, w, params, centre)
    ignored = int(empty.sum())
    weight, count = totals(X[~empty], w_of(~empty))  # summed afresh: a heavy empty row would cancel the rest
    return [acc.result(weight, count, ignored=ignored) for acc in sums]


def _complete_stats(X, sample_weight, kernels, params_list, pairs=None) -> list[Accumulator]:
    sums = [Accumulator(p.n_components, p.n_features, p.covariance_type, k.shift) for p, k in zip(params_list, kernels)]
    pairs = [None] * len(kernels) if pairs is None else pairs
    for block, w in iter_blocks(X, sample_weight, block_rows(kernels)):
        cache: dict = {}  # features shared by the candidates' groups alike
        for kernel, acc, wanted in zip(kernels, sums, pairs, strict=True):
            evaluation = kernel.evaluate(block, cache)
            resp = evaluation.weighted
            log_lik = responsibilities_inplace(resp)
            if wanted is not None:
                acc.add_merge_terms(resp, kernel.order, wanted, w)
            if w is not None:
                resp *= w.astype(resp.dtype, copy=False)
            if isinstance(kernel, NoiseKernel):  # its responsibility is the last row
                acc.noise += float(resp[-1].sum(dtype=np.float64))
            for index, rows, features in evaluation.parts:
                acc.add_moments(kernel.groups[index].components, kernel.group_values(resp, index, rows), features)
            acc.add_rows(log_lik, w, block)
    return sums


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureMoments:
    r"""Each feature's total weight, mean and sum of squared deviations from the mean, over
    the values that are not NaN; mergeable exactly (Chan's pairwise update), so a pass of
    chunks gives what one computation over all rows would. The mean is kept about a shift
    (a value of the feature): at a large offset, differences of means stay exact.

    .. math::
        \bar x = \bar x_a + \delta \frac{w_b}{w}, \qquad
        M_2 = M_{2,a} + M_{2,b} + \delta^2 \frac{w_a w_b}{w}, \qquad \delta = \bar x_b - \bar x_a.

    Attributes
    ----------
    weight, shift, offset, m2 : ndarray of shape (n_features,)
        The mean is ``shift + offset``.
    rows : float
        The weight of the rows with some value observed.
    """

    weight: np.ndarray
    shift: np.ndarray
    offset: np.ndarray
    m2: np.ndarray
    rows: float = 0.0

    @classmethod
    def of(cls, X: np.ndarray, sample_weight: np.ndarray | None = None) -> FeatureMoments:
        """The moments of one chunk (float64, about the chunk's first value of each feature)."""
        X = np.asarray(X, dtype=np.float64)
        present = ~np.isnan(X)
        w = present.astype(np.float64) if sample_weight is None else present * sample_weight[:, None]
        first = present.argmax(axis=0) if len(X) else np.zeros(X.shape[1], dtype=int)
        shift = np.where(present.any(axis=0), X[first, np.arange(X.shape[1])] if len(X) else 0.0, 0.0)
        values = np.where(present, X - shift, 0.0)
        weight = w.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            offset = np.where(weight > 0, (w * values).sum(axis=0) / weight, 0.0)
        m2 = (w * (values - offset) ** 2).sum(axis=0)
        seen = present.any(axis=1)
        rows = float(seen.sum() if sample_weight is None else sample_weight[seen].sum())
        return cls(weight, shift, offset, m2, rows)

    @property
    def mean(self) -> np.ndarray:
        return self.shift + self.offset

    def __add__(self, other: FeatureMoments) -> FeatureMoments:
        weight = self.weight + other.weight
        delta = (other.shift - self.shift) + other.offset - self.offset
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(weight > 0, other.weight / weight, 0.0)
        offset = self.offset + delta * share
        m2 = self.m2 + other.m2 + delta**2 * self.weight * share
        return FeatureMoments(weight, self.shift, offset, m2, self.rows + other.rows)

    def scale(self) -> np.ndarray:
        """The standard deviations (weighted, over the weight: scikit-learn's
        ``StandardScaler``), 1 for a constant feature."""
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(np.where(self.weight > 0, self.m2 / self.weight, 0.0))
        return np.where(std > 10 * np.finfo(np.float64).eps * np.maximum(np.abs(self.mean), 1.0), std, 1.0)


def feature_moments_chunk(X, sample_weight, allow_nan: bool) -> FeatureMoments:
    check_finite(X, sample_weight, allow_nan=allow_nan)
    return FeatureMoments.of(X, sample_weight)
