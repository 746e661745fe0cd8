"""Initialisers by name, each a few passes over the chunks, for several candidates at once.

Every pass reads each chunk once and serves all candidates (restarts) together.

``"k-means||"``
    Scalable k-means++ (Bahmani et al., 2012, "Scalable K-Means++"): a first centre drawn
    at random, then ``rounds`` passes that each add ``oversampling * K`` rows drawn with
    probability proportional to ``w d^2`` (weighted sampling without replacement through
    exponential keys, which merge exactly across chunks), a pass that weights the drawn
    rows by the mass nearest to them, k-means++ with Lloyd iterations on those few
    weighted rows on the client, and then Lloyd passes over the data.
``"trimmed-k-means||"``
    k-means‖ that outliers cannot capture: trimmed k-means (Cuesta-Albertos, Gordaliza &
    Matrán 1997; García-Escudero et al. 2008, TCLUST), where every step leaves out the rows
    farther from their nearest centre than :data:`TRIM_SCALE` times the median squared
    distance, estimated from a weighted random sample of :data:`TRIM_SAMPLE_ROWS` rows drawn
    in the first pass (a limit that follows the clusters' own spread, where a fixed share
    of trimmed rows would drop a small cluster whole). The draws start from ``2K`` rows of
    that sample and their squared distances are capped at :data:`DRAW_SCALE` times the
    median, so far rows are drawn in proportion to their weight, not their distance (a
    cluster of many rows outweighs as many scattered outliers); the drawn rows, weighted by
    the rows within the limit, are clustered by trimmed weighted k-means on the client
    (several restarts, the lowest trimmed cost). The start is the M-step of the last
    trimmed partition. Default for the estimators whose models expect outliers
    (:class:`~streamem.StudentTMixture`, ``noise="uniform"``).
``"k-means++"``
    Exact k-means++ seeding (Arthur & Vassilvitskii, 2007): one pass per centre, then the
    partition of the data by the nearest centre.
``"random"``
    Random responsibilities, as in scikit-learn.
``"random_from_data"``
    ``K`` distinct rows drawn at random as centres, then the partition by the nearest one.

``"auto"`` (the estimators' default) is ``"trimmed-k-means||"`` for a model that expects
outliers and ``"k-means||"`` otherwise; ``"kmeans"`` (scikit-learn's name) is ``"k-means||"``.

Each returns a :class:`~streamem.core.params.MixtureParams` per candidate: the M-step of the
statistics of its final partition (hard responsibilities), as scikit-learn does for
``init_params="kmeans"``.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from streamem.core.covariance import get_covariance
from streamem.core.mstep import m_step
from streamem.core.params import InitialParameters, MixtureParams, NoisyParams
from streamem.core.stats import (
    BLOCK_ROWS,
    Accumulator,
    LowestScoringRows,
    SufficientStats,
    add_lists,
    centred,
    iter_blocks,
    labelled_stats,
    totals,
)
from streamem.core.validation import check_finite, check_total_weight
from streamem.engine.em import FitState
from streamem.engine.passes import ChunkedData

__all__ = [
    "INIT_METHODS",
    "data_box",
    "initial_states",
    "init_method",
    "initialise",
    "labelled_start",
    "priority_chunk",
    "priority_sample",
    "row_uniforms",
    "sklearn_init_params",
    "slots",
    "summarise",
    "with_noise",
]

INIT_METHODS = ("auto", "k-means||", "trimmed-k-means||", "k-means++", "random", "random_from_data", "kmeans")
KMEANS_PARALLEL_ROUNDS = 5
OVERSAMPLING = 2
LLOYD_PASSES = 5
LLOYD_TOL = 1e-4
#: a trimmed start leaves out the rows farther from their nearest centre than this many
#: times the median squared distance
TRIM_SCALE = 100.0
#: a trimmed start draws the rows farther than this many times the median squared distance
#: from the drawn ones in proportion to their weight alone
DRAW_SCALE = 10.0
#: the rows of the first pass's weighted random sample that estimate a trimmed start's quantile
TRIM_SAMPLE_ROWS = 1000
#: restarts of the trimmed k-means on the client's drawn rows, at each of at most
#: ``TRIM_ROUNDS`` limits
TRIM_RESTARTS = 10
TRIM_ROUNDS = 5
#: the kinds of start ``init_params="auto"`` gives the candidates in turn (the first a k-means‖
#: start), for a model that expects no outliers: chosen on the catalogue of
#: ``tests/benchmarks/bench_optima.py``
AUTO_STARTS = ("k-means||", "random", "random_from_data")
#: two starts are one when their means lie within this share of the data's spread
DUPLICATE_RTOL = 1e-6

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class Summary:
    """Totals of a first pass: weight, rows, weighted sum of X, and random picks."""

    weight: float
    count: int
    sum_x: np.ndarray
    picks: list[LowestScoringRows]

    def __add__(self, other: Summary) -> Summary:
        return Summary(
            self.weight + other.weight,
            self.count + other.count,
            self.sum_x + other.sum_x,
            add_lists(self.picks, other.picks),
        )

    @property
    def mean(self) -> np.ndarray:
        return self.sum_x / self.weight


_HARD_BLOCK_ROWS = 1 << 16  # a Lloyd pass goes through a block's rows component by component


def nearest(xct: np.ndarray, centres_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre and the squared distance to it, for each column of
    ``xct`` (rows of the data minus a centre, transposed, of shape (n_features, n_rows), in
    float64), with ``centres_c`` the centres minus the same centre.

    The nearest centre comes from the expanded form, one GEMM; the distance to it is then
    computed directly, so that it is exact however far the rows are from the centre.
    """
    d2 = (-2.0 * centres_c) @ xct
    d2 += (centres_c * centres_c).sum(axis=1)[:, None]
    labels = d2.argmin(axis=0)
    difference = xct - centres_c[labels].T
    return labels, np.einsum("dn,dn->n", difference, difference)


def hard_stats(X, sample_weight, centres_list, centre, covariance_type: str, limits=None) -> list[SufficientStats]:
    """Statistics of hard assignments to the nearest centre, for each centre set, each
    component's about its own centre.

    ``loglik`` holds minus the weighted sum of squared distances (the k-means cost).
    These are the statistics of a Lloyd pass; their M-step is a mixture with the
    k-means partition as responsibilities. ``centre`` (n_features,) is the data's centre.
    ``limits`` (one per centre set, or None): rows farther than this squared distance from
    their nearest centre are left out (a trimmed Lloyd pass).
    """
    check_finite(X, sample_weight)
    centre = np.asarray(centre, dtype=np.float64)
    centres_list = [np.asarray(c, dtype=np.float64) for c in centres_list]
    limits = [np.inf] * len(centres_list) if limits is None else limits
    sums = [Accumulator(len(c), X.shape[1], covariance_type, c) for c in centres_list]
    covariance = get_covariance(covariance_type)
    for block, w in iter_blocks(X, sample_weight, _HARD_BLOCK_ROWS):
        xct = centred(block, centre)
        for centres, acc, limit in zip(centres_list, sums, limits):
            labels, d2 = nearest(xct, centres - centre)
            kept, kept_w = block, w
            if limit < np.inf:
                inside = d2 <= limit
                kept, labels, d2 = block[inside], labels[inside], d2[inside]
                kept_w = None if w is None else w[inside]
            order = np.argsort(labels, kind="stable")
            counts = np.bincount(labels, minlength=len(centres))
            for k, stop in zip(np.flatnonzero(counts), np.cumsum(counts)[counts > 0]):
                rows = order[stop - counts[k] : stop]
                features = covariance.centred_features(kept[rows], centres[k], np.float64)
                weights = np.ones((1, len(rows))) if kept_w is None else kept_w[rows][None, :].astype(np.float64)
                acc.add_moments([k], weights, features)
            acc.add_rows(-d2, kept_w, kept, track_worst=False)
    weight, count = totals(X, sample_weight)
    return [acc.result(weight, count) for acc in sums]


@dataclasses.dataclass(frozen=True, eq=False)
class PrioritySample:
    """The ``size`` rows of highest priority seen so far (lowest ``scores``, ties by row
    index), with their indices and weights: adds like the statistics, so any chunking keeps
    the same rows."""

    scores: np.ndarray
    index: np.ndarray
    rows: np.ndarray
    weights: np.ndarray
    size: int

    @classmethod
    def of(cls, scores, index, rows, weights, size: int) -> PrioritySample:
        keep = np.lexsort((index, scores))[:size]
        return cls(scores[keep], index[keep], rows[keep], weights[keep], size)

    def __add__(self, other: PrioritySample) -> PrioritySample:
        return PrioritySample.of(
            *(
                np.concatenate([getattr(self, name), getattr(other, name)])
                for name in ("scores", "index", "rows", "weights")
            ),
            self.size,
        )


def priority_chunk(X, sample_weight, start, seed, size):
    """The chunk's ``size`` rows of highest priority ``w / (1 - u)`` (scores ``log(1 - u) - log(w)``)."""
    weight = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    with np.errstate(divide="ignore"):
        scores = np.log1p(-row_uniforms(seed, start, len(X))[:, 0]) - np.log(weight)
    keep = np.flatnonzero(np.isfinite(scores))  # (a row of weight 0 is never drawn)
    if len(keep) > size:
        keep = keep[np.argpartition(scores[keep], size - 1)[:size]]
    return PrioritySample.of(scores[keep], start + keep, np.asarray(X)[keep], weight[keep], size)


def priority_sample(data: ChunkedData, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One pass: ``size`` rows drawn at random in proportion to their weights, and weights
    that make any sum over them an unbiased estimate of the same sum over all the rows
    (priority sampling, Duffield, Lund & Thorup 2007): each row's priority is ``w / (1 - u)``,
    ``u`` uniform and keyed by the row's index (:func:`row_uniforms`: any chunking draws the
    same rows); the ``size`` of highest priority are kept, each weighing ``max(w, tau)``,
    ``tau`` the next priority. Without weights, a uniform sample of rows that weigh
    ``tau``, about ``n_rows / size``, each. The rows come in the data's order; all of them,
    with their own weights, when there are no more than ``size``."""
    drawn = data.map_reduce(priority_chunk, seed, size + 1, with_index=True)
    order = np.argsort(drawn.index[:size], kind="stable")
    weights = drawn.weights[:size]
    if len(drawn.scores) > size:
        weights = np.maximum(weights, np.exp(-drawn.scores[size]))
    return drawn.rows[:size][order], weights[order]


def _race_scores(u, *weights):
    """Exponential keys ``-log(u) / w`` (``w`` the product of ``weights``), in log space:
    the ``m`` smallest are a weighted sample of ``m`` rows without replacement, and the
    smallest of a union is the smallest of the smallest (Efraimidis & Spirakis, 2006).
    Logarithms keep the order of keys whose quotient would overflow (weights near 1e-300)
    or whose product would underflow; a weight of 0 gives +inf, never drawn."""
    with np.errstate(divide="ignore"):
        score = np.log(-np.log(u))
        for w in weights:
            score -= np.log(w)
    return score


def row_uniforms(seed: int, start: int, n_rows: int, per_row: int = 1) -> np.ndarray:
    """Uniform draws in [0, 1), ``per_row`` for each of the rows ``start .. start + n_rows``.

    Row ``i`` always gets the draws at positions ``i * per_row ...`` of one Philox stream
    keyed by ``seed`` (a counter-based generator that jumps ahead for free), so the draws,
    and the fit, do not depend on how the rows are split into chunks and blocks.
    """
    first = int(start) * int(per_row)  # Python integers: Philox.advance takes no numpy ones
    bitgen = np.random.Philox(key=seed)
    bitgen.advance(first // 4)  # one counter step is four 64-bit outputs
    raw = bitgen.random_raw(int(n_rows) * int(per_row) + first % 4)[first % 4 :]
    return ((raw >> np.uint64(11)) * (1.0 / (1 << 53))).reshape(n_rows, per_row)


def _summary_chunk(X, sample_weight, start, seeds, n_picks):
    check_finite(X, sample_weight)
    if sample_weight is None:
        weight = np.ones(len(X))
        sum_x = X.sum(axis=0, dtype=np.float64)
    else:
        weight = sample_weight.astype(np.float64)
        sum_x = weight @ X.astype(np.float64)
    picks = []
    for seed in seeds:
        scores = _race_scores(row_uniforms(seed, start, len(X))[:, 0], weight)
        picks.append(LowestScoringRows.select(scores, X, n_picks))
    return Summary(float(weight.sum()), len(X), sum_x, picks)


def summarise(data: ChunkedData, seeds, n_picks: int) -> Summary:
    """One pass: totals, the data's centre, and ``n_picks`` weighted random rows per seed."""
    return data.map_reduce(_summary_chunk, seeds, n_picks, with_index=True)


def _d2_race_chunk(X, sample_weight, start, centres_list, shift, seeds, n_picks_list, caps=None):
    """Rows drawn with probability proportional to ``w d^2`` (``d^2`` capped at ``caps``)."""
    uniforms = [row_uniforms(seed, start, len(X))[:, 0] for seed in seeds]
    picks = [LowestScoringRows.empty(X.shape[1], n_picks) for n_picks in n_picks_list]
    caps = [np.inf] * len(centres_list) if caps is None else caps
    for offset, (block, w) in zip(range(0, len(X), BLOCK_ROWS), iter_blocks(X, sample_weight)):
        xct = centred(block, shift)  # once for every candidate
        for i, (centres, u, n_picks, cap) in enumerate(zip(centres_list, uniforms, n_picks_list, caps)):
            d2 = np.minimum(nearest(xct, centres - shift)[1], cap)
            scores = _race_scores(u[offset : offset + len(d2)], *((d2,) if w is None else (d2, w)))
            picks[i] = picks[i] + LowestScoringRows.select(scores, block, n_picks)
    return picks


def _nearest_mass_chunk(X, sample_weight, centres_list, shift, limits=None):
    """The weight nearest to each centre (of the rows within squared distance ``limits``)."""
    out = [np.zeros(len(centres)) for centres in centres_list]
    limits = [np.inf] * len(centres_list) if limits is None else limits
    for block, w in iter_blocks(X, sample_weight):
        xct = centred(block, shift)  # once for every candidate
        for centres, mass, limit in zip(centres_list, out, limits):
            labels, d2 = nearest(xct, centres - shift)
            inside = d2 <= limit
            weights = inside if w is None else np.where(inside, w, 0.0)
            mass += np.bincount(labels, weights=weights, minlength=len(centres))
    return out


def _random_resp_chunk(X, sample_weight, start, seeds, ks, shift, covariance_type):
    out = []
    for seed, n_components in zip(seeds, ks):
        acc = Accumulator(n_components, X.shape[1], covariance_type, shift)
        for offset, (block, w) in zip(range(0, len(X), BLOCK_ROWS), iter_blocks(X, sample_weight)):
            features = acc.covariance.centred_features(block, shift, np.float64)
            resp = row_uniforms(seed, start + offset, len(block), n_components).T.copy()
            resp /= resp.sum(axis=0)
            if w is not None:
                resp *= w
            acc.add_moments(slice(None), resp, features)
        out.append(acc.result(*totals(X, sample_weight)))
    return out


def _seeds(random_states):
    return [int(rs.randint(np.iinfo(np.int32).max)) for rs in random_states]


def _first_pass_chunk(X, sample_weight, start, centres_list, centre, covariance_type, limits, random_seeds, random_ks):
    """A first Lloyd pass (:func:`hard_stats`) and the statistics of random responsibilities
    (:func:`_random_resp_chunk`) from one read of the chunk."""
    hard = hard_stats(X, sample_weight, centres_list, centre, covariance_type, limits) if centres_list else []
    return hard + _random_resp_chunk(X, sample_weight, start, random_seeds, random_ks, centre, covariance_type)


def _partition_params(
    data, centres_list, shift, covariance_type, reg_covar, lloyd_passes, cholesky=True, samples=None, random=None
):
    """Lloyd passes from ``centres_list``; the M-step of the last partition of each.

    ``lloyd_passes``: the passes at most, one number for every centre set or one each.
    ``samples`` (one array of rows per centre set, or None for one that is not trimmed): each
    pass is trimmed, leaving out the rows farther from their nearest centre than the limit of
    :func:`_trim_limit`. ``random``: ``(seeds, ks)`` of starts from random responsibilities,
    whose statistics the first pass gathers too; their M-steps follow the centre sets'.
    """
    n_sets = len(centres_list)
    passes = [lloyd_passes] * n_sets if np.isscalar(lloyd_passes) else list(lloyd_passes)
    samples = [None] * n_sets if samples is None else samples
    seeds, random_ks = random if random is not None else ([], [])
    active = list(range(n_sets))
    centres_list = [np.array(c, dtype=np.float64) for c in centres_list]
    final: dict[int, SufficientStats] = {}
    previous_cost = {i: np.inf for i in active}
    for n_pass in range(max([1, *passes])):
        limits = [np.inf if samples[i] is None else _trim_limit(samples[i], centres_list[i]) for i in active]
        centres = [centres_list[i] for i in active]
        if n_pass == 0 and seeds:
            stats = data.map_reduce(
                _first_pass_chunk,
                centres,
                shift,
                covariance_type,
                limits,
                seeds,
                random_ks,
                combine=add_lists,
                with_index=True,
            )
            stats, drawn = stats[: len(active)], stats[len(active) :]
        else:
            stats = data.map_reduce(hard_stats, centres, shift, covariance_type, limits, combine=add_lists)
        still = []
        for i, s in zip(active, stats):
            final[i] = s
            cost = -s.loglik
            moved = s.nk > 0
            centres_list[i][moved] += s.s1[moved] / s.nk[moved, None]  # statistics about the centres
            if n_pass + 1 < passes[i] and previous_cost[i] - cost > LLOYD_TOL * max(cost, 1e-300):
                still.append(i)
            previous_cost[i] = cost
        active = still
        if not active:
            break
    partitions = [final[i] for i in range(n_sets)] + (drawn if seeds else [])
    return [_start_params(s, covariance_type, reg_covar, cholesky) for s in partitions]


def _start_params(stats: SufficientStats, covariance_type: str, reg_covar: float, cholesky: bool):
    """The M-step of a start's statistics, or the error that says why it has none (an
    ill-defined covariance: random responsibilities over far clusters)."""
    try:
        return m_step(stats, covariance_type, reg_covar, cholesky=cholesky)[0]
    except ValueError as error:
        return error


def _repeated(points, n_components):
    """``n_components`` centres from no more drawn rows than that: the rows, repeated."""
    reps = -(-n_components // max(len(points), 1))
    return np.tile(points, (reps, 1))[:n_components]


def _recluster(candidates, mass, n_components, seed):
    """Weighted k-means on the few drawn rows, on the client."""
    keep = mass > 0
    candidates, mass = candidates[keep], mass[keep]
    if len(candidates) <= n_components:
        return _repeated(candidates, n_components)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_components, init="k-means++", n_init=1, random_state=seed)
        return km.fit(candidates, sample_weight=mass).cluster_centers_


def _kmeans_parallel_centres(data, summary, shift, random_states, ks):
    centres = [p.points[:1] for p in summary.picks]
    n_picks = [OVERSAMPLING * k for k in ks]
    for _ in range(KMEANS_PARALLEL_ROUNDS):
        picks = data.map_reduce(
            _d2_race_chunk, centres, shift, _seeds(random_states), n_picks, combine=add_lists, with_index=True
        )
        centres = [np.vstack([c, p.points]) for c, p in zip(centres, picks)]
    mass = data.map_reduce(_nearest_mass_chunk, centres, shift, combine=add_lists)
    return [_recluster(c, m, k, seed) for c, m, k, seed in zip(centres, mass, ks, _seeds(random_states))]


def _nearest_points(points, centres) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest` for a few rows on the client: each point's nearest centre and the
    squared distance to it."""
    centre = centres.mean(axis=0)
    return nearest((points - centre).T, centres - centre)


def _squared_distances(points, centres) -> np.ndarray:
    """Each point's squared distance to its nearest centre."""
    return _nearest_points(points, centres)[1]


def _trim_limit(sample, centres, scale=None) -> float:
    """The squared distance to the nearest centre beyond which a trimmed step leaves rows
    out: ``scale`` (:data:`TRIM_SCALE`) times the median of a random sample's."""
    return (TRIM_SCALE if scale is None else scale) * float(np.median(_squared_distances(sample, centres)))


def _capped_kmeans(points, mass, n_components, limit, rng, max_iter=100):
    """Weighted k-means on a few rows whose squared distances are capped at ``limit`` (the
    rows beyond it left out of the means), from k-means++ on the capped distances; the
    centres and their cost."""
    centres = points[[rng.choice(len(points), p=mass / mass.sum())]]
    while len(centres) < n_components:
        capped = mass * np.minimum(_squared_distances(points, centres), limit)
        if capped.sum() <= 0:  # fewer distinct points than components
            centres = np.vstack([centres, points[rng.choice(len(points), n_components - len(centres))]])
            break
        centres = np.vstack([centres, points[rng.choice(len(points), p=capped / capped.sum())]])
    for _ in range(max_iter):
        labels, d2 = _nearest_points(points, centres)
        kept = np.where(d2 <= limit, mass, 0.0)
        sums = np.bincount(labels, weights=kept, minlength=n_components)
        moved = centres.copy()
        for k in np.flatnonzero(sums > 0):
            moved[k] = kept[labels == k] @ points[labels == k] / sums[k]
        if np.array_equal(moved, centres):
            break
        centres = moved
    return centres, float(mass @ np.minimum(d2, limit))


def _trimmed_kmeans(points, mass, sample, n_components, rng):
    """Trimmed k-means on the drawn rows (``points``, weighted by the ``mass`` nearest to
    them), on the client: :data:`TRIM_RESTARTS` starts of capped k-means at one limit, the
    lowest cost kept, then the limit of those centres (:func:`_trim_limit` of ``sample``,
    rows of the data), until the limit settles."""
    keep = mass > 0
    points, mass = points[keep], mass[keep]
    if len(points) <= n_components:
        return _repeated(points, n_components)
    limit, best = _trim_limit(sample, points), None
    for _ in range(TRIM_ROUNDS):
        best = min(
            (_capped_kmeans(points, mass, n_components, limit, rng) for _ in range(TRIM_RESTARTS)),
            key=lambda result: result[1],
        )[0]
        limit, previous = _trim_limit(sample, best), limit
        if abs(limit - previous) <= 0.01 * previous:
            break
    return best


def _trimmed_kmeans_parallel_centres(data, samples, shift, random_states, ks):
    """k-means‖ from ``samples`` (a weighted random sample of rows per candidate), whose
    draws are capped at the trimming limit, and whose drawn rows are clustered by trimmed
    k-means."""
    n_picks = [OVERSAMPLING * k for k in ks]
    centres = [s[:n] for s, n in zip(samples, n_picks)]
    for _ in range(KMEANS_PARALLEL_ROUNDS):
        caps = [_trim_limit(s, c, DRAW_SCALE) for s, c in zip(samples, centres)]
        picks = data.map_reduce(
            _d2_race_chunk, centres, shift, _seeds(random_states), n_picks, caps, combine=add_lists, with_index=True
        )
        centres = [np.vstack([c, p.points]) for c, p in zip(centres, picks)]
    limits = [_trim_limit(s, c) for s, c in zip(samples, centres)]
    mass = data.map_reduce(_nearest_mass_chunk, centres, shift, limits, combine=add_lists)
    return [
        _trimmed_kmeans(c, m, sample, k, np.random.RandomState(seed))
        for c, m, sample, k, seed in zip(centres, mass, samples, ks, _seeds(random_states))
    ]


def _kmeans_plusplus_centres(data, summary, shift, random_states, ks):
    """One pass per centre; a candidate with fewer components stops growing earlier."""
    centres = [p.points[:1] for p in summary.picks]
    for n_pass in range(1, max(ks)):
        growing = [i for i, k in enumerate(ks) if k > n_pass]
        picks = data.map_reduce(
            _d2_race_chunk,
            [centres[i] for i in growing],
            shift,
            _seeds([random_states[i] for i in growing]),
            [1] * len(growing),
            combine=add_lists,
            with_index=True,
        )
        for i, p in zip(growing, picks):
            # a draw is empty only when every row already is a centre: repeat one
            centres[i] = np.vstack([centres[i], p.points if len(p.points) else centres[i][-1:]])
    return centres


def initialise(
    data: ChunkedData,
    method: str,
    n_components: int | list[int],
    covariance_type: str,
    reg_covar: float,
    random_states: list[np.random.RandomState],
    means_init=None,
    cholesky: bool = True,
) -> tuple[list[MixtureParams], np.ndarray]:
    """Initial parameters for each candidate, and the data's centre (the pass shift).

    Parameters
    ----------
    data : ChunkedData
    method : one of :data:`INIT_METHODS`, or a list of them (one per candidate)
        Candidates may start by different methods: they share every pass (the k-means‖
        rounds only the candidates that need them; the first Lloyd pass gathers the
        random responsibilities' statistics too).
    n_components : int, or list of int (one per candidate)
        Candidates may have different numbers of components: they share every pass.
    covariance_type : str
    reg_covar : float
    random_states : list of numpy RandomState, one per candidate
    means_init : ndarray of shape (n_components, n_features), optional
        When given, every candidate starts from the partition by these centres.
    cholesky : bool
        False: the covariances of the partition as they are, without their precisions'
        Cholesky factors (:func:`~streamem.core.mstep.m_step`), for a variational start.
    """
    n = len(random_states)
    ks = [n_components] * n if np.isscalar(n_components) else list(n_components)
    methods = [method] * n if isinstance(method, str) else list(method)
    n_picks = max(_picks_needed(m, k) for m, k in zip(methods, ks))
    summary = summarise(data, _seeds(random_states), n_picks)
    check_total_weight(summary.weight)
    shift = summary.mean
    if means_init is not None:
        centres = [np.asarray(means_init, dtype=np.float64)] * n
        return _partition_params(data, centres, shift, covariance_type, reg_covar, 1, cholesky), shift
    centred_starts = {}  # candidate -> (centres, Lloyd passes, trimming sample or None)
    for name in dict.fromkeys(methods):
        index = [i for i in range(n) if methods[i] == name]
        if name == "random":
            continue
        states, sub_ks = [random_states[i] for i in index], [ks[i] for i in index]
        sub = dataclasses.replace(summary, picks=[summary.picks[i] for i in index])
        samples = [None] * len(index)
        passes = LLOYD_PASSES if name in ("k-means||", "trimmed-k-means||") else 1
        if name == "random_from_data":
            centres = [p.points[:k] for p, k in zip(sub.picks, sub_ks)]
            if any(len(c) < k for c, k in zip(centres, sub_ks)):
                raise ValueError(
                    f"expected at least n_components={max(sub_ks)} rows with positive weight, "
                    f"got {min(len(c) for c in centres)}"
                )
        elif name == "k-means++":
            centres = _kmeans_plusplus_centres(data, sub, shift, states, sub_ks)
        elif name == "trimmed-k-means||":
            samples = [p.points[:TRIM_SAMPLE_ROWS] for p in sub.picks]
            centres = _trimmed_kmeans_parallel_centres(data, samples, shift, states, sub_ks)
        else:
            centres = _kmeans_parallel_centres(data, sub, shift, states, sub_ks)
        centred_starts.update(zip(index, zip(centres, [passes] * len(index), samples)))
    drawn = [i for i in range(n) if methods[i] == "random"]
    order = list(centred_starts) + drawn
    centres, passes, samples = zip(*centred_starts.values()) if centred_starts else ((), (), ())
    random = (_seeds([random_states[i] for i in drawn]), [ks[i] for i in drawn]) if drawn else None
    params = _partition_params(
        data, list(centres), shift, covariance_type, reg_covar, list(passes), cholesky, list(samples), random
    )
    by_candidate = dict(zip(order, params))
    return [by_candidate[i] for i in range(n)], shift


def _picks_needed(method: str, n_components: int) -> int:
    """The weighted random rows a start by ``method`` takes from the first pass."""
    return {"random_from_data": n_components, "trimmed-k-means||": TRIM_SAMPLE_ROWS}.get(method, 1)


def _labelled_moments(X, sample_weight, n_components, covariance_type, labels=None):
    """A chunk's statistics of its labelled rows, each component's about their mean in the chunk."""
    known = labels >= 0
    rows, y = X[known], labels[known]
    w = None if sample_weight is None else sample_weight[known]
    shift = np.zeros((n_components, X.shape[1]))
    for k in np.unique(y):
        shift[k] = rows[y == k].mean(axis=0, dtype=np.float64)
    return labelled_stats(rows, w, y, covariance_type, shift)


def labelled_start(data: ChunkedData, n_components: int, covariance_type: str, reg_covar: float) -> MixtureParams:
    """The parameters of the labelled rows of ``data`` (its ``labels``), one pass: each
    component's weight, mean and covariance from the rows labelled with it."""
    stats = data.map_reduce(_labelled_moments, n_components, covariance_type, with_labels=True)
    unlabelled = np.flatnonzero(stats.nk <= 0).tolist()
    if unlabelled:
        raise ValueError(
            f"expected labelled rows for every component to start from, got none for components {unlabelled}: "
            "label some of their rows, or give weights_init, means_init and precisions_init"
        )
    return m_step(stats, covariance_type, reg_covar)[0]


#: the noise component's weight before the first iteration
NOISE_WEIGHT_INIT = 0.05


def _box_chunk(X, sample_weight):
    return np.stack([X.min(axis=0), X.max(axis=0)]).astype(np.float64)


def _box_union(a, b):
    return np.stack([np.minimum(a[0], b[0]), np.maximum(a[1], b[1])])


def data_box(data: ChunkedData) -> np.ndarray:
    """The lowest and highest value of each feature, array of shape (2, n_features) (one
    pass): the support of a uniform noise component."""
    box = data.map_reduce(_box_chunk, combine=_box_union)
    flat = np.flatnonzero(box[1] <= box[0])
    if flat.size:
        raise ValueError(
            f"expected features that vary for a noise component's box, got constant features {flat.tolist()}"
        )
    return box


def with_noise(params: MixtureParams, box: np.ndarray, noise_weight: float = NOISE_WEIGHT_INIT) -> NoisyParams:
    """``params`` with a uniform noise component over ``box`` of weight ``noise_weight`` (the
    Gaussians' weights scaled to the rest)."""
    scaled = dataclasses.replace(params, weights=params.weights * (1.0 - noise_weight))
    return NoisyParams.of(scaled, noise_weight, box)


def sklearn_init_params(init_params: str) -> str:
    """scikit-learn's name for the initialiser ``init_params`` names (its ``"kmeans"`` for
    every k-means‖)."""
    return init_params if init_params in ("k-means++", "random", "random_from_data") else "kmeans"


def init_method(init_params: str, robust: bool = False) -> str:
    """The initialiser that ``init_params`` names, for a model that expects outliers when
    ``robust``: ``"auto"`` is ``"trimmed-k-means||"`` for one and ``"k-means||"`` otherwise,
    ``"kmeans"`` (scikit-learn's name) is ``"k-means||"``."""
    if init_params == "auto":
        return "trimmed-k-means||" if robust else "k-means||"
    return "k-means||" if init_params == "kmeans" else init_params


def initial_states(
    data: ChunkedData,
    initial: InitialParameters,
    init_params: str,
    ks: list[int],
    covariance_type: str,
    reg_covar: float,
    random_state: np.random.RandomState,
    missing: bool = False,
    cholesky: bool = True,
    robust: bool = False,
) -> tuple[list[FitState], np.ndarray]:
    """The candidates EM starts from, and the data's centre: the user's parameters when all
    three are given (one candidate), otherwise one candidate per entry of ``ks`` (its number
    of components) initialised by ``init_params`` (:func:`init_method`, with ``robust``)
    from the complete rows when ``missing``, with the given weights, means or precisions in
    place of the initialiser's. Each candidate draws its own random state from
    ``random_state``. ``cholesky=False``: see :func:`initialise`."""
    weights, means, precisions_chol = initial
    if weights is not None and means is not None and precisions_chol is not None:
        params = MixtureParams.from_precisions_chol(weights, means, precisions_chol, covariance_type)
        return [FitState(params)], weights @ means
    if means is not None:  # every start would be the partition by these means: one is enough
        ks = list(dict.fromkeys(ks))
    random_states = _candidate_states(random_state, ks)
    methods = start_methods(init_params, slots(ks), robust)
    source = data.complete_rows() if missing else data
    params_list, shift = initialise(source, methods, ks, covariance_type, reg_covar, random_states, means, cholesky)
    failed = {i: p for i, p in enumerate(params_list) if isinstance(p, ValueError)}
    if failed and not _each_k_starts(params_list, ks):
        raise next(iter(failed.values()))
    if failed:
        logger.warning("%d starts of %d failed: %s", len(failed), len(params_list), next(iter(failed.values())))
    params_list = _replace_duplicates(source, params_list, shift, covariance_type, reg_covar, random_states, cholesky)
    states = []
    for i, params in enumerate(params_list):
        if i in failed:  # kept in its place, out of the running, with a sibling's parameters
            sibling = next(p for p, k in zip(params_list, ks) if k == ks[i] and not isinstance(p, ValueError))
            states.append(FitState(sibling, converged=True, failure=str(failed[i])))
            continue
        if means is not None or weights is not None:
            params = dataclasses.replace(
                params,
                weights=params.weights if weights is None else weights,
                means=params.means if means is None else means,
            )
        if precisions_chol is not None:
            params = MixtureParams.from_precisions_chol(params.weights, params.means, precisions_chol, covariance_type)
        states.append(FitState(params))
    return states, shift


def _each_k_starts(params_list: list, ks: list[int]) -> bool:
    """Whether every number of components keeps a start (``params_list`` holding errors)."""
    return all(any(k == kk and not isinstance(p, ValueError) for p, kk in zip(params_list, ks)) for k in set(ks))


def slots(cells: list) -> list[int]:
    """Each candidate's place among the candidates of its cell (``cells``: each candidate's,
    any hashable: its number of components, or its covariance type and number)."""
    seen: dict = {}
    places = []
    for cell in cells:
        places.append(seen.get(cell, 0))
        seen[cell] = places[-1] + 1
    return places


def _candidate_states(random_state: np.random.RandomState, ks: list[int]) -> list[np.random.RandomState]:
    """One random state per candidate: the ``j``-th candidate with ``K`` components draws
    the ``j``-th seed of ``random_state``, whatever the other numbers of components, so that
    each ``K`` of a table starts as a fit of that ``K`` alone would (``random_state``
    advances by the most candidates of one ``K``)."""
    places = slots(ks)
    draws = [random_state.randint(np.iinfo(np.int32).max) for _ in range(max(places, default=-1) + 1)]
    return [np.random.RandomState(draws[place]) for place in places]


def start_methods(init_params: str, slots: list[int], robust: bool = False) -> list[str]:
    """The initialiser of each candidate, by its slot (:func:`slots`): ``init_params``
    (:func:`init_method`) for all, or with ``"auto"`` and a model without outliers the
    kinds of :data:`AUTO_STARTS` in turn, the first a k-means‖ start."""
    if init_params != "auto" or robust:
        return [init_method(init_params, robust)] * len(slots)
    return [AUTO_STARTS[slot % len(AUTO_STARTS)] for slot in slots]


def same_start(a: MixtureParams, b: MixtureParams, rtol: float = DUPLICATE_RTOL) -> bool:
    """Whether two starts are one: the same number of components whose means, paired up,
    lie within ``rtol`` times the data's spread (the mixture's standard deviation, averaged
    over the features) of each other."""
    if a.n_components != b.n_components:
        return False
    from scipy.optimize import linear_sum_assignment

    d2 = ((a.means[:, None, :] - b.means[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(d2)
    return bool(np.sqrt(d2[rows, cols].max()) <= rtol * _spread(a))


def _spread(params: MixtureParams) -> float:
    """The mixture's standard deviation, averaged over the features (its variance's mean)."""
    K, D = params.means.shape
    full = params.covariance.full_covariances(params.covariances, K, D)
    second = params.weights @ (np.diagonal(full, axis1=1, axis2=2) + params.means**2)
    variance = second - (params.weights @ params.means) ** 2
    return float(np.sqrt(max(variance.mean(), 0.0)))


def _replace_duplicates(data, params_list, shift, covariance_type, reg_covar, random_states, cholesky):
    """The starts with every duplicate (:func:`same_start` as an earlier one) replaced by a
    start from random responsibilities, drawn by the duplicate's own random state (one more
    pass, only when there are duplicates); failed starts (errors) stay as they are."""
    starts = [(i, p) for i, p in enumerate(params_list) if not isinstance(p, ValueError)]
    duplicates = [i for n, (i, p) in enumerate(starts) if any(same_start(q, p) for _, q in starts[:n])]
    if not duplicates:
        return params_list
    ks = [params_list[i].n_components for i in duplicates]
    seeds = _seeds([random_states[i] for i in duplicates])
    fresh = _partition_params(data, [], shift, covariance_type, reg_covar, 1, cholesky, random=(seeds, ks))
    logger.info("replaced %d duplicate starts (of %d) by random responsibilities", len(duplicates), len(params_list))
    params_list = list(params_list)
    for i, params in zip(duplicates, fresh):
        if not isinstance(params, ValueError):  # (a random start that fails leaves the duplicate)
            params_list[i] = params
    return params_list
