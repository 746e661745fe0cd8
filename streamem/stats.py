"""Sufficient statistics of the E-step, and the per-chunk kernels that compute them.

Every function here works on one in-memory chunk (numpy) and returns a small object that
adds with ``+``: statistics of a split array added together equal those of the whole.
Nothing of size ``n_samples x n_components`` outlives a block of rows (:func:`block_rows`).

Second moments are accumulated about a shift ``c`` fixed for the pass (the data's centre),
never about the origin, in float64 whatever the data's dtype.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .covariance import get_covariance, products
from .params import MixtureParams, log_resp_inplace

__all__ = [
    "BLOCK_ROWS",
    "block_rows",
    "Smallest",
    "SufficientStats",
    "check_finite",
    "check_total_weight",
    "chunk_stats",
    "hard_stats",
    "iter_blocks",
    "Accumulator",
    "add_lists",
    "totals",
    "nearest",
]

BLOCK_ROWS = 4096
_BLOCK_ELEMENTS = 1 << 20  # temporaries of a block: a few MiB (fewer, larger numpy calls between threads)


def block_rows(params_list) -> int:
    """Rows per block, so that a block's temporaries hold about ``_BLOCK_ELEMENTS`` values."""
    width = sum(p.covariance.block_width(p.n_components, p.n_features) for p in params_list)
    return int(np.clip(_BLOCK_ELEMENTS // width, 256, 65536))


def iter_blocks(X: np.ndarray, sample_weight: np.ndarray | None, shift: np.ndarray, rows: int = BLOCK_ROWS):
    """Yield ``(xct, w)``: blocks of ``rows`` rows of ``X - shift``, transposed to contiguous
    arrays of shape (n_features, n_rows) in X's dtype, and their weights."""
    shift = np.asarray(shift, dtype=X.dtype)[:, None]
    for start in range(0, len(X), rows):
        block = X[start : start + rows]
        xct = np.empty((X.shape[1], len(block)), dtype=X.dtype)
        np.subtract(block.T, shift, out=xct)
        w = None if sample_weight is None else sample_weight[start : start + rows]
        yield xct, w


def check_finite(X: np.ndarray, sample_weight: np.ndarray | None = None, allow_nan: bool = False) -> None:
    """Raise ValueError naming the problem if ``X`` holds NaN (unless ``allow_nan``: missing
    values) or infinity, or a weight is negative or not finite."""
    if not np.isfinite(X).all():
        if np.isinf(X).any():
            raise ValueError("Input X contains infinity; expected finite values only")
        if not allow_nan:
            raise ValueError(
                "Input X contains NaN; expected finite values only "
                "(missing='marginalize' fits data with missing values)"
            )
    if sample_weight is not None and not (np.isfinite(sample_weight).all() and (sample_weight >= 0).all()):
        raise ValueError("Negative or non-finite values in sample_weight; expected finite weights >= 0")


def check_total_weight(weight: float) -> None:
    if not weight > 0:
        raise ValueError(f"expected sample_weight with a positive sum, got a sum of {weight}")


@dataclasses.dataclass(frozen=True, eq=False)
class Smallest:
    """The ``size`` rows with the smallest scores seen so far, smallest first.

    Adds like the statistics: the rows of two parts with the smallest scores are the
    smallest of the union. Used for the worst-explained rows of a pass (re-seeding) and
    for weighted random picks (scores ``-log(u) / weight``).
    """

    scores: np.ndarray
    points: np.ndarray
    size: int

    @classmethod
    def empty(cls, n_features: int, size: int) -> Smallest:
        return cls(np.empty(0), np.empty((0, n_features)), size)

    @classmethod
    def of(cls, scores, points, size: int) -> Smallest:
        scores = np.asarray(scores, dtype=np.float64)
        keep = np.isfinite(scores)
        scores, points = scores[keep], points[keep]
        if len(scores) > size:
            part = np.argpartition(scores, size - 1)[:size]
            scores, points = scores[part], points[part]
        order = np.argsort(scores, kind="stable")
        return cls(scores[order], np.asarray(points, dtype=np.float64)[order], size)

    @classmethod
    def select(cls, scores, xct, shift, size: int) -> Smallest:
        """The columns of ``xct`` (rows of the data, minus ``shift``) with the ``size``
        smallest scores, as rows of the data."""
        if len(scores) <= size:
            rows = slice(None)
        elif size == 1:
            rows = [int(np.argmin(scores))]
        else:
            rows = np.argpartition(scores, size - 1)[:size]
        return cls.of(scores[rows], xct[:, rows].T + shift, size)

    def __add__(self, other: Smallest) -> Smallest:
        return Smallest.of(
            np.concatenate([self.scores, other.scores]),
            np.concatenate([self.points, other.points]),
            self.size,
        )


def add_lists(a: list, b: list) -> list:
    """Add two lists of statistics element by element (one element per candidate)."""
    return [x + y for x, y in zip(a, b, strict=True)]


@dataclasses.dataclass(frozen=True, eq=False)
class SufficientStats:
    """E-step sufficient statistics of a mixture over some rows, about ``shift``.

    Attributes
    ----------
    nk : ndarray of shape (n_components,)
        Sum of (weighted) responsibilities.
    s1 : ndarray of shape (n_components, n_features)
        Sum of responsibility-weighted ``x - shift``.
    s2 : ndarray
        Second moments about ``shift``; the shape depends on the covariance type.
    loglik : float
        Sum of weighted per-row log-likelihoods.
    weight : float
        Sum of sample weights.
    count : int
        Number of rows (rows with every value missing are not counted).
    shift : ndarray of shape (n_features,)
    worst : Smallest
        The worst-explained rows (lowest log-likelihood), used to re-seed components
        that lose their mass.
    """

    nk: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    loglik: float
    weight: float
    count: int
    shift: np.ndarray
    worst: Smallest
    ignored: int = 0

    @classmethod
    def zero(cls, n_components: int, n_features: int, covariance_type: str, shift) -> SufficientStats:
        shape = get_covariance(covariance_type).second_moment_shape(n_components, n_features)
        return cls(
            np.zeros(n_components),
            np.zeros((n_components, n_features)),
            np.zeros(shape),
            0.0,
            0.0,
            0,
            np.asarray(shift, dtype=np.float64),
            Smallest.empty(n_features, n_components),
        )

    def __add__(self, other: SufficientStats) -> SufficientStats:
        if not np.array_equal(self.shift, other.shift):
            raise ValueError("expected statistics about the same shift, got two different shifts")
        return SufficientStats(
            self.nk + other.nk,
            self.s1 + other.s1,
            self.s2 + other.s2,
            self.loglik + other.loglik,
            self.weight + other.weight,
            self.count + other.count,
            self.shift,
            self.worst + other.worst,
            self.ignored + other.ignored,
        )

    def __mul__(self, factor: float) -> SufficientStats:
        return dataclasses.replace(
            self,
            nk=self.nk * factor,
            s1=self.s1 * factor,
            s2=self.s2 * factor,
            loglik=self.loglik * factor,
            weight=self.weight * factor,
        )

    __rmul__ = __mul__

    def __sub__(self, other: SufficientStats) -> SufficientStats:
        """These statistics without ``other``'s rows (incremental EM swaps a chunk's old
        statistics for new ones). The worst-explained rows stay ``self``'s."""
        if not np.array_equal(self.shift, other.shift):
            raise ValueError("expected statistics about the same shift, got two different shifts")
        return dataclasses.replace(
            self,
            nk=self.nk - other.nk,
            s1=self.s1 - other.s1,
            s2=self.s2 - other.s2,
            loglik=self.loglik - other.loglik,
            weight=self.weight - other.weight,
            count=self.count - other.count,
            ignored=self.ignored - other.ignored,
        )

    @property
    def mean_loglik(self) -> float:
        return self.loglik / self.weight

    def normalized(self) -> SufficientStats:
        """The statistics per unit of weight (weight 1, count 1): the M-step gives the same
        parameters, and statistics of batches of any size mix as averages."""
        return dataclasses.replace(self * (1.0 / self.weight), weight=1.0, count=1, ignored=0)

    def step(self, batch: SufficientStats, step_size: float) -> SufficientStats:
        """Stepwise EM's running average, :math:`(1 - \\eta)\\, s + \\eta\\, \\hat s(\\text{batch})`,
        both per unit of weight; the worst-explained rows are the batch's (re-seeding uses
        rows of the current parameters)."""
        mixed = self.normalized() * (1.0 - step_size) + batch.normalized() * step_size
        return dataclasses.replace(mixed, weight=1.0, count=1, worst=batch.worst)

    @classmethod
    def implied(cls, params: MixtureParams, shift, reg_covar: float) -> SufficientStats:
        """Statistics per unit of weight whose M-step (with ``reg_covar``) gives back
        ``params``: a starting point that stepwise EM mixes away."""
        covariance = params.covariance
        K, D = params.means.shape
        means_c = params.means - shift
        full = np.stack([covariance.component_covariance(params.covariances, k, D) for k in range(K)])
        full = full - reg_covar * np.eye(D) + means_c[:, :, None] * means_c[:, None, :]
        second = covariance.second_moment_from_full(params.weights[:, None, None] * full)
        zero = cls.zero(K, D, params.covariance_type, shift)
        return dataclasses.replace(zero, nk=params.weights.copy(), s1=params.weights[:, None] * means_c, s2=second,
                                   weight=1.0, count=1)  # fmt: skip


class Accumulator:
    """Float64 running sums of one candidate's statistics over the blocks of a chunk."""

    def __init__(self, n_components, n_features, covariance_type, shift):
        self.covariance = get_covariance(covariance_type)
        self.zero = SufficientStats.zero(n_components, n_features, covariance_type, shift)
        self.nk = np.zeros(n_components)
        self.s1 = np.zeros((n_components, n_features))
        self.s2 = np.zeros_like(self.zero.s2)
        self.loglik = 0.0
        self.worst = Smallest.empty(n_features, n_components)

    def add(self, features, resp, w, log_lik, shift, track_worst=True):
        """Add a block: its ``covariance.features`` (F, n) (ones, the centred rows, extras)
        and responsibilities (K, n) that include the weights."""
        n_features = len(shift)
        moments = products(resp, features)
        self.nk += moments[:, 0]
        self.s1 += moments[:, 1 : 1 + n_features]
        self.s2 += self.covariance.second_moment(moments[:, 1 + n_features :])
        if w is None:
            self.loglik += float(log_lik.sum(dtype=np.float64))
            scores = log_lik
        else:
            self.loglik += float(np.dot(log_lik.astype(np.float64), w))
            scores = np.where(w > 0, log_lik, np.inf)
        if track_worst:  # the block's worst row; the chunk keeps the K worst of its blocks
            self.worst = self.worst + Smallest.select(scores, features[1 : 1 + n_features], shift, 1)

    def add_incomplete(self, X, w, params, shift):
        """Add rows that each miss some values (NaN): the exact E-step of :mod:`streamem.missing`."""
        from .missing import incomplete_estep

        estep = incomplete_estep(X, params, shift, w, per_row=False)
        self.nk += estep.nk
        self.s1 += estep.s1
        self.s2 += self.covariance.second_moment_from_full(estep.s2)
        self.loglik += float(estep.log_lik.sum() if w is None else estep.log_lik @ w)
        scores = estep.log_lik if w is None else np.where(w > 0, estep.log_lik, np.inf)
        if np.isfinite(scores).any():  # the worst-explained row, completed by its expectation
            worst = int(np.argmin(scores))
            completed = incomplete_estep(X[worst : worst + 1], params, shift).completed
            self.worst = self.worst + Smallest.of(scores[worst : worst + 1], completed + shift, 1)

    def result(self, weight, count, ignored=0) -> SufficientStats:
        return dataclasses.replace(
            self.zero, nk=self.nk, s1=self.s1, s2=self.s2, loglik=self.loglik,
            weight=weight, count=count, worst=self.worst, ignored=ignored,
        )  # fmt: skip


def totals(X, sample_weight):
    count = len(X)
    weight = float(count if sample_weight is None else sample_weight.sum(dtype=np.float64))
    return weight, count


def chunk_stats(
    X, sample_weight, params_list: list[MixtureParams], shift, missing: bool = False
) -> list[SufficientStats]:
    """E-step of one chunk for every candidate in ``params_list``, from one read of X.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), float32 or float64
    sample_weight : ndarray of shape (n_rows,) or None
    params_list : list of MixtureParams
    shift : ndarray of shape (n_features,)
    missing : bool
        Rows with NaN are missing those values: their E-step marginalises them. Rows with
        every value missing are ignored and counted.

    Returns
    -------
    list of SufficientStats, one per candidate, in float64.
    """
    check_finite(X, sample_weight, allow_nan=missing)
    if missing:
        nan = np.isnan(X)
        if nan.any():
            return _stats_with_missing(X, sample_weight, params_list, shift, nan)
    sums = _complete_stats(X, sample_weight, params_list, shift)
    weight, count = totals(X, sample_weight)
    return [acc.result(weight, count) for acc in sums]


def _stats_with_missing(X, sample_weight, params_list, shift, nan):
    n_nan = nan.sum(axis=1)
    complete, partial, empty = n_nan == 0, (n_nan > 0) & (n_nan < X.shape[1]), n_nan == X.shape[1]
    w_of = (lambda rows: None) if sample_weight is None else (lambda rows: sample_weight[rows])  # noqa: E731
    sums = _complete_stats(X[complete], w_of(complete), params_list, shift)
    if partial.any():
        X_partial, w = X[partial], w_of(partial)
        w = None if w is None else w.astype(np.float64)
        for params, acc in zip(params_list, sums):
            acc.add_incomplete(X_partial, w, params, shift)
    ignored = int(empty.sum())
    weight, count = totals(X, sample_weight)
    if ignored:
        weight -= ignored if sample_weight is None else float(sample_weight[empty].sum(dtype=np.float64))
        count -= ignored
    return [acc.result(weight, count, ignored=ignored) for acc in sums]


def _complete_stats(X, sample_weight, params_list, shift) -> list[Accumulator]:
    dtype = X.dtype
    kernels = [p.kernel(shift, dtype) for p in params_list]
    sums = [Accumulator(p.n_components, p.n_features, p.covariance_type, shift) for p in params_list]
    for xct, w in iter_blocks(X, sample_weight, shift, block_rows(params_list)):
        wd = None if w is None else w.astype(dtype, copy=False)
        features = {}  # one per covariance type, shared by the candidates
        for kernel, acc in zip(kernels, sums):
            covariance = kernel.covariance
            if covariance.name not in features:
                features[covariance.name] = covariance.features(xct)
            resp = kernel.weighted_log_prob(features[covariance.name])
            log_lik = log_resp_inplace(resp)
            if wd is not None:
                resp *= wd
            acc.add(features[covariance.name], resp, wd, log_lik, shift)
    return sums


def nearest(xct: np.ndarray, centres_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre and the squared distance to it, for each column of
    ``xct`` (rows of the data, transposed, of shape (n_features, n_rows))."""
    d2 = (-2.0 * centres_c) @ xct
    d2 += (centres_c * centres_c).sum(axis=1)[:, None]
    labels = d2.argmin(axis=0)
    d2 = d2[labels, np.arange(xct.shape[1])] + np.einsum("dn,dn->n", xct, xct)
    return labels, np.maximum(d2, 0.0)


def hard_stats(X, sample_weight, centres_list, shift, covariance_type: str) -> list[SufficientStats]:
    """Statistics of hard assignments to the nearest centre, for each centre set.

    ``loglik`` holds minus the weighted sum of squared distances (the k-means cost).
    These are the statistics of a Lloyd pass; their M-step is a mixture with the
    k-means partition as responsibilities.
    """
    check_finite(X, sample_weight)
    dtype = X.dtype
    sums = [Accumulator(len(c), X.shape[1], covariance_type, shift) for c in centres_list]
    centres_c = [(np.asarray(c) - shift).astype(dtype) for c in centres_list]
    covariance = get_covariance(covariance_type)
    for xct, w in iter_blocks(X, sample_weight, shift):
        wd = None if w is None else w.astype(dtype, copy=False)
        features = covariance.features(xct)
        for centres, acc in zip(centres_c, sums):
            labels, d2 = nearest(xct, centres)
            resp = np.zeros((len(centres), xct.shape[1]), dtype=dtype)
            resp[labels, np.arange(xct.shape[1])] = 1.0 if wd is None else wd
            acc.add(features, resp, wd, -d2, shift, track_worst=False)
    weight, count = totals(X, sample_weight)
    return [acc.result(weight, count) for acc in sums]
