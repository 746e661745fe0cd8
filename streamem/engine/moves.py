r"""Split-and-merge moves after convergence (Ueda, Nakano, Ghahramani & Hinton 2000, SMEM).

EM stops at the local maximum nearest its start: two components sharing one cluster while
another component covers two clusters is such a maximum, and no EM step leaves it. A move
merges the first pair into one component and splits the second in two, keeping the number
of components, and EM goes on from there.

One pass gathers what the moves are chosen from (:func:`move_stats_chunk`):

- the **merge** criterion of each pair, the cosine of their responsibility vectors,
  :math:`J_{ij} = \sum_n w_n r_{ni} r_{nj} / \sqrt{\sum_n w_n r_{ni}^2 \sum_n w_n r_{nj}^2}`
  (Ueda et al.'s, normalised): components that explain the same rows;
- the **split** criterion of each component, how far its rows are from a Gaussian by
  Mardia's kurtosis, :math:`|b_k / (D (D + 2)) - 1|`, :math:`b_k` the responsibility-weighted
  mean of the squared Mahalanobis distance squared (:math:`D (D + 2)` for Gaussian rows;
  below for a component over two clusters, above for one over a cluster and far rows) —
  Ueda et al.'s local Kullback-Leibler divergence needs a density estimate per row, this
  needs one number per component;
- each component's scatter about its mean, whose principal axis is the direction a split
  moves the two halves apart in (for every covariance type).

The ``MOVE_CANDIDATES`` best triples (the merge pairs by their criterion, each with the
components to split in the order of theirs) become candidates, of the pairs that share rows
(a criterion of at least ``MERGE_OVERLAP``: on well-separated clusters no pair does, and
merge-and-split moves alone cost the one pass of their statistics): the merged component
moment-matched from the pair, the split one as two of half its weight, means
:math:`\mu \pm a \sqrt{\lambda} v` along its principal axis (:math:`a` = ``SPLIT_OFFSET``)
and covariance :math:`\Sigma - a^2 \lambda v v^T` (the pair's moments are the component's).
**Random swaps** (Zhao, Hautamäki, Kärkkäinen & Fränti 2012, random swap EM) reach the
optima that no merge-and-split pair leads to, and fits of two components, which have no
such pair: a swap removes a component chosen at random and puts a new one at a row drawn
at random (the same pass draws :func:`swap_count` rows for each fit, by priority sampling
keyed by the row's index, so any chunking draws the same rows), with ``SWAP_SPREAD`` times
the covariance of the component that explains that row best and half its weight.

All candidates run EM in the same passes (every component free: in shared passes the whole
model climbs as cheaply as the three moved components would), the best is continued, and
it replaces the fit only when its objective is higher — or, for a fit on a spurious maximum
(a component collapsed onto a few rows, whose likelihood rises without bound), when it has
fewer collapsed components, whatever its objective: the fit leaves the singularity. Of the fits
at one optimum (the ``n_init`` starts that EM took to one place), only the best makes moves
(:func:`_distinct`). Merge-and-split candidates depend on
the fit alone, so they are proposed again only after a fit changed; swaps are drawn anew
every round, and a fit's moves stop after ``PATIENCE`` rounds in a row without a better
candidate (``SMALL_PATIENCE`` on small data with few rows per parameter; or ``MAX_ROUNDS`` rounds).
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np

from streamem.core.covariance import get_covariance
from streamem.core.moments import Moments
from streamem.core.params import MixtureParams
from streamem.core.stats import add_lists, iter_blocks
from streamem.core.validation import check_finite
from streamem.engine.em import FitState, best_by_cell, best_of, first_best
from streamem.engine.starts import priority_chunk, slots

__all__ = [
    "MOVE_CANDIDATES",
    "SWAP_CANDIDATES",
    "MoveStats",
    "move_stats_chunk",
    "proposals",
    "split_merge",
    "swap_count",
    "swaps",
]

#: candidate moves tried at once in each round (Ueda et al. try five in turn)
MOVE_CANDIDATES = 5
#: a split puts the two halves' means this many standard deviations (along the principal
#: axis) either side of the component's
SPLIT_OFFSET = 0.5
#: random swaps tried at once for each fit in each round (fewer on many rows, so that a
#: round's swaps E-step at most ``SWAP_ROWS`` rows a pass, and at least ``MIN_SWAPS``)
SWAP_CANDIDATES, SWAP_ROWS, MIN_SWAPS = 20, 100_000, 2
#: a swap's new component has this many times the covariance of the component that
#: explains its row best (a broad new component finds its cluster; a narrow one stays put)
SWAP_SPREAD = 2.0
#: a fit's moves stop after this many rounds in a row without a better candidate; after
#: ``SMALL_PATIENCE`` on crowded data (:func:`crowded`: fewer than ``SMALL_ROWS`` rows, so
#: that a round costs milliseconds, and fewer than ``ROWS_PER_PARAMETER`` of them per free
#: parameter, so that many local optima lie close together)
PATIENCE, SMALL_PATIENCE, SMALL_ROWS, ROWS_PER_PARAMETER = 3, 10, 10_000, 100
#: rounds of moves at most
MAX_ROUNDS = 30
#: a short-run candidate whose every component is within this many standard deviations of
#: one of its fit's has come back to the fit's optimum, and stops
RETURN_DISTANCE = 1e-2
#: a move is kept when it raises the objective per sample by more than this
MOVE_GAIN = 1e-8
#: a pair is merged only when its merge criterion is at least this: two components that
#: share no rows (well-separated clusters) are not two halves of one cluster, and a fit
#: without such a pair makes no merge-and-split move (one pass, the statistics', and no
#: short runs, unless random swaps run)
MERGE_OVERLAP = 1e-3

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, eq=False)
class MoveStats(Moments):
    """What the moves of one candidate are chosen from, summed over rows: ``gram`` (K, K),
    :math:`\\sum w r_i r_j`; ``nk`` (K,); ``kurtosis`` (K,), :math:`\\sum w r_k m_k^2`;
    ``scatter`` (K, D, D), :math:`\\sum w r_k (x - \\mu_k)(x - \\mu_k)^T`."""

    gram: np.ndarray
    nk: np.ndarray
    kurtosis: np.ndarray
    scatter: np.ndarray

    summed = ("gram", "nk", "kurtosis", "scatter")


def move_stats_chunk(X, sample_weight, params_list: list[MixtureParams]) -> list[MoveStats]:
    """:class:`MoveStats` of a chunk (complete rows) for each candidate."""
    check_finite(X, sample_weight)
    out = []
    for params in params_list:
        K, D = params.means.shape
        gram, nk, kurtosis, scatter = np.zeros((K, K)), np.zeros(K), np.zeros(K), np.zeros((K, D, D))
        for block, w in iter_blocks(X, sample_weight):
            block = np.asarray(block, dtype=np.float64)
            log_prob, distances = _log_prob(params, block)
            resp = np.exp(log_prob - log_prob.max(axis=0))
            resp /= resp.sum(axis=0)
            weighted = resp if w is None else resp * w
            gram += weighted @ resp.T
            nk += weighted.sum(axis=1)
            kurtosis += np.einsum("kn,kn->k", weighted, distances * distances)
            for k in range(K):
                centred = block - params.means[k]
                scatter[k] += (centred * weighted[k][:, None]).T @ centred
        out.append(MoveStats(gram, nk, kurtosis, scatter))
    return out


def _log_prob(params: MixtureParams, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each component's log-weight plus log-density of each row (K, n), and the rows' squared
    Mahalanobis distances (K, n)."""
    K, D = params.means.shape
    covariance = params.covariance
    log_det = np.broadcast_to(covariance.log_det_chol(params.precisions_chol, D), (K,))
    distances = np.empty((K, len(rows)))
    for k in range(K):
        z = covariance.whitened(rows - params.means[k], params.precisions_chol, k)
        distances[k] = np.einsum("nd,nd->n", z, z)
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    return params.log_density_of_mahalanobis(distances, log_det) + log_weights[:, None], distances


def _merge_order(stats: MoveStats) -> list[tuple[int, int]]:
    """The pairs of components by their merge criterion, highest first; only those that
    share rows (a criterion of at least :data:`MERGE_OVERLAP`)."""
    norms = np.sqrt(np.clip(np.diag(stats.gram), 1e-300, None))
    cosine = stats.gram / np.outer(norms, norms)
    K = len(norms)
    pairs = [(i, j) for i in range(K) for j in range(i + 1, K) if cosine[i, j] >= MERGE_OVERLAP]
    return sorted(pairs, key=lambda pair: -cosine[pair])


def _split_order(stats: MoveStats, n_features: int) -> list[int]:
    """The components by their split criterion, highest first (empty ones last)."""
    D = n_features
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.abs(stats.kurtosis / stats.nk / (D * (D + 2)) - 1.0)
    deviation = np.where(stats.nk > 0, deviation, -np.inf)
    return [int(k) for k in np.argsort(-deviation, kind="stable")]


def _merged(weights, means, full, i: int, j: int):
    """The weight, mean and covariance of components ``i`` and ``j`` moment-matched into one."""
    w = weights[i] + weights[j]
    mean = (weights[i] * means[i] + weights[j] * means[j]) / w
    spread = [means[c] - mean for c in (i, j)]
    covariance = (
        weights[i] * (full[i] + np.outer(spread[0], spread[0]))
        + weights[j] * (full[j] + np.outer(spread[1], spread[1]))
    ) / w
    return w, mean, covariance


def _halves(weights, means, full, stats: MoveStats, k: int, reg_covar: float):
    """The two halves of component ``k``: their weight, means and covariance (the pair's
    moments are the component's), apart along the principal axis of its scatter."""
    own = stats.scatter[k] / max(stats.nk[k], 1e-300) if stats.nk[k] > 0 else full[k]
    values, vectors = np.linalg.eigh(own)
    offset = SPLIT_OFFSET * np.sqrt(max(values[-1], 0.0)) * vectors[:, -1]
    halved = _at_least(full[k] - np.outer(offset, offset), reg_covar)
    return weights[k] / 2, means[k] + offset, means[k] - offset, halved


def _new_params(params: MixtureParams, weights, means, full, origin) -> MixtureParams:
    covariances = get_covariance(params.covariance_type).from_full(full, weights)
    return params.with_components(weights, means, covariances, origin=origin)


def _moved(params: MixtureParams, stats: MoveStats, i: int, j: int, k: int, reg_covar: float) -> MixtureParams:
    """``params`` with components ``i`` and ``j`` merged and ``k`` split (the merged one in
    ``i``'s place, the halves of ``k`` in ``j``'s and ``k``'s)."""
    K = params.n_components
    weights, means, full = params.weights.copy(), params.means.copy(), params.full_covariances.copy()
    halves = _halves(weights, means, full, stats, k, reg_covar)
    weights[i], means[i], full[i] = _merged(weights, means, full, i, j)
    weights[j] = weights[k] = halves[0]
    means[j], means[k] = halves[1], halves[2]
    full[j] = full[k] = halves[3]
    return _new_params(params, weights, means, full, origin=[k if c == j else c for c in range(K)])


def _merged_one(params: MixtureParams, i: int, j: int) -> MixtureParams:
    """``params`` with components ``i`` and ``j`` merged (in ``i``'s place): one component fewer."""
    weights, means, full = params.weights.copy(), params.means.copy(), params.full_covariances.copy()
    weights[i], means[i], full[i] = _merged(weights, means, full, i, j)
    keep = [c for c in range(params.n_components) if c != j]
    return _new_params(params, weights[keep], means[keep], full[keep], origin=keep)


def _split_one(params: MixtureParams, stats: MoveStats, k: int, reg_covar: float) -> MixtureParams:
    """``params`` with component ``k`` split (one half in its place, the other last): one more."""
    weights, means, full = params.weights.copy(), params.means.copy(), params.full_covariances.copy()
    w, plus, minus, halved = _halves(weights, means, full, stats, k, reg_covar)
    weights[k], means[k], full[k] = w, plus, halved
    return _new_params(
        params,
        np.append(weights, w),
        np.vstack([means, minus]),
        np.concatenate([full, halved[None]]),
        origin=[*range(params.n_components), k],
    )


def _at_least(matrix: np.ndarray, floor: float) -> np.ndarray:
    """``matrix`` with its eigenvalues raised to ``floor`` at least."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.maximum(values, max(floor, 1e-12 * values.max(initial=1.0)))) @ vectors.T


def proposals(params: MixtureParams, stats: MoveStats, reg_covar: float, n_candidates: int = MOVE_CANDIDATES):
    """The candidate moves, best first: ``(params, (i, j, k))`` for merging ``i`` and ``j`` and
    splitting ``k``."""
    K, D = params.means.shape
    if K < 3:
        return []
    splits = _split_order(stats, D)
    out = []
    for i, j in _merge_order(stats):
        for k in splits:
            if k not in (i, j) and stats.nk[k] > 0:
                out.append((_moved(params, stats, i, j, k, reg_covar), (i, j, k)))
                break
        if len(out) == n_candidates:
            break
    return out


def swaps(params: MixtureParams, rows: np.ndarray, index: np.ndarray, rng: np.random.Generator):
    """Random swaps: for each row of ``rows`` (at ``index`` in the data), ``(params, (c, n))``
    with a component ``c`` drawn at random removed and a new one in its place centred on the
    row, with :data:`SWAP_SPREAD` times the covariance of the component that explains the row
    best and half its weight (the whole weight of ``c`` when that component is ``c``)."""
    K = params.n_components
    if K < 2 or not len(rows):
        return []
    owners = np.argmax(_log_prob(params, rows)[0], axis=0)
    removed = rng.integers(K, size=len(rows))
    full = params.full_covariances
    out = []
    for row, n, c, owner in zip(rows, index, removed, owners):
        weights, means, covariances = params.weights.copy(), params.means.copy(), full.copy()
        if owner != c:
            weights[c] = weights[owner] = weights[owner] / 2
        means[c], covariances[c] = row, SWAP_SPREAD * full[owner]
        weights /= weights.sum()
        # (the new component keeps the place's other parameters: a t component's degrees of freedom)
        out.append((_new_params(params, weights, means, covariances, list(range(K))), (int(c), int(n))))
    return out


def crowded(n_rows: int, n_parameters: int) -> bool:
    """Whether ``n_rows`` rows for a model of ``n_parameters`` free parameters are crowded
    with local optima and cheap to search: fewer than :data:`SMALL_ROWS` rows and fewer
    than :data:`ROWS_PER_PARAMETER` per parameter. On the catalogue of
    ``tests/benchmarks/bench_optima.py``, 126 of the 131 default fits that ended below the
    best known optimum with three rounds of moves and short runs of 10 iterations had fewer
    than 100 rows per parameter."""
    return n_rows < SMALL_ROWS and n_rows < ROWS_PER_PARAMETER * n_parameters


def patience(n_rows: int, n_parameters: int) -> int:
    """Rounds in a row without a better candidate after which a fit's swaps stop, on
    ``n_rows`` rows for a model of ``n_parameters`` free parameters: :data:`SMALL_PATIENCE`
    where they are :func:`crowded`, :data:`PATIENCE` otherwise."""
    return SMALL_PATIENCE if crowded(n_rows, n_parameters) else PATIENCE


def swap_count(n_rows: int) -> int:
    """Random swaps per fit and round on ``n_rows`` rows (:data:`SWAP_CANDIDATES`, fewer
    from ``SWAP_ROWS / SWAP_CANDIDATES`` rows on: the swaps' work is computation)."""
    return int(min(SWAP_CANDIDATES, max(MIN_SWAPS, SWAP_ROWS // max(n_rows, 1))))


def _round_chunk(X, sample_weight, start, params_list, seeds, size):
    """A round's statistics of a chunk: the :class:`MoveStats` of each candidate, and for
    each seed the chunk's ``size`` rows of highest priority (:func:`~streamem.engine.starts.priority_chunk`)."""
    return move_stats_chunk(X, sample_weight, params_list), [
        priority_chunk(X, sample_weight, start, seed, size) for seed in seeds
    ]


def _add_rounds(a, b):
    return add_lists(a[0], b[0]), add_lists(a[1], b[1])


def _swap_seed(seed: int, state, slot: int, round_: int) -> int:
    """The seed of a fit's swaps in a round: of the fit's covariance type, number of
    components and place among the fits of that cell, so that a cell of a model table draws
    the swaps of its dedicated fit."""
    kind = sum(ord(c) << (8 * i) for i, c in enumerate(state.params.covariance_type[:4]))
    key = [seed, kind, state.params.n_components, slot, round_]
    return int(np.random.SeedSequence(key).generate_state(1, np.uint32)[0])


def split_merge(
    data,
    states: list,
    run,
    reg_covar: float,
    scaling=None,
    collapsed=None,
    max_rounds: int = MAX_ROUNDS,
    table: bool = False,
    seed: int | None = None,
    min_gain: float = MOVE_GAIN,
    short_iter: int | None = None,
) -> list:
    """Moves on ``states`` (the :class:`~streamem.engine.em.FitState` of a fit's candidates) until
    none raises a state's objective, all states' moves in the same passes: each round one
    pass of :class:`MoveStats` of the converged states (over ``data``, whose rows are in
    the data's units when the states are in ``scaling``'s standardised ones), then
    ``run(candidates, phase)`` (EM of the candidates in shared passes: ``phase``
    ``"short"`` for the comparison, ``"long"`` for the winners' convergence).

    - ``collapsed(params)``: how many components have collapsed (:func:`_replaces`: a
      candidate with fewer than its fit replaces it, whatever its objective; one with a
      collapsed component never replaces a fit with as many);
    - ``seed``: random swaps (:func:`swaps`) besides the merge-and-split moves, their rows
      drawn in the same pass, until :func:`patience` rounds in a row bring nothing better;
      None: merge-and-split moves alone, until none helps;
    - ``min_gain``: a move is kept when it raises the objective by more than this (at least
      :data:`MOVE_GAIN`; a fit's ``tol / 10``, since a smaller gain is within the precision
      its stopping rule promises);
    - ``short_iter``: the iterations of a short run; given, ``run`` also gets ``settled``
      (:func:`_hopeless`: the candidates that can no longer beat their fit, which stop there,
      as em-EM's starts do);
    - ``table`` (the cells of a model table: states of several numbers of components): each
      cell's lead (:func:`~streamem.engine.em.best_by_cell`) is also offered its neighbours'
      solutions in the same round (:func:`_neighbour_offers`), so that an optimum one cell
      found reaches the next.

    Returns the states, each replaced by the candidate of every move that raised its
    objective."""
    states = list(states)
    places = slots([(state.params.covariance_type, state.params.n_components) for state in states])
    smallest = 3 if seed is None else 2

    def movable(n):
        return (
            states[n].converged and states[n].failure is None and (table or states[n].params.n_components >= smallest)
        )

    active = _distinct(states, [n for n in range(len(states)) if movable(n)])
    changed, fails = set(active), dict.fromkeys(active, 0)
    n_rows = data.X.shape[0]
    n_swaps = 0 if seed is None else swap_count(n_rows)
    for round_ in range(max_rounds):
        if not active:
            break
        count = _counted(collapsed)  # each fit's and candidate's collapsed components, counted once a round
        passed = [states[n].params for n in active]
        if scaling is not None:
            passed = [params.affine(scaling.mean, scaling.scale) for params in passed]
        seeds = [_swap_seed(seed, states[n], places[n], round_) for n in active] if n_swaps else []
        totals, drawn = data.map_reduce(_round_chunk, passed, seeds, n_swaps, combine=_add_rounds, with_index=True)
        if scaling is not None:  # the scatter and the rows in the standardised units
            scale = np.outer(scaling.scale, scaling.scale)
            totals = [dataclasses.replace(t, scatter=t.scatter / scale) for t in totals]
        candidates: dict[int, list] = {}
        for place, (n, stats) in enumerate(zip(active, totals)):
            cell = []
            if n in changed:  # (merge-and-split moves depend on the fit alone)
                cell = [
                    _moved_state(states[n], params, {"moved": [int(v) for v in triple]})
                    for params, triple in proposals(states[n].params, stats, reg_covar)
                ]
            if n_swaps:
                sample = drawn[place]
                rows = np.asarray(sample.rows, dtype=np.float64)
                if scaling is not None:
                    rows = (rows - scaling.mean) / scaling.scale
                rng = np.random.default_rng(seeds[place])
                cell += [
                    _moved_state(states[n], params, {"swapped": list(pair)})
                    for params, pair in swaps(states[n].params, rows, sample.index, rng)
                ]
            candidates[n] = cell
        if table:
            offers = _neighbour_offers(states, dict(zip(active, totals)), reg_covar, count, changed)
            for target, offer in offers:
                candidates.setdefault(target, []).append(offer)
        flat = [candidate for cell in candidates.values() for candidate in cell]
        if not flat:
            break
        gain = max(min_gain, MOVE_GAIN)
        if short_iter is None:
            run(flat, "short")
        else:
            # a candidate can win a fit on a spurious maximum by leaving it: none is hopeless there
            bars = {n: -np.inf if _collapsed(count, states[n]) else states[n].objective + gain for n in candidates}
            targets = {id(c): (bars[n], c.n_iter, states[n].params) for n, cell in candidates.items() for c in cell}
            run(flat, "short", settled=functools.partial(_hopeless, targets=targets, short_iter=short_iter))
        winners = {}
        for n, cell in candidates.items():
            kept = [c for c in cell if _replaces(count, c, states[n], gain)]
            if kept:
                winners[n] = best_of(kept, count)
        if winners:
            run(list(winners.values()), "long")
        winners = {n: best for n, best in winners.items() if _replaces(count, best, states[n], gain)}
        for n, best in winners.items():
            record = best.history[states[n].n_iter]
            move = next(key for key in ("moved", "swapped", "neighbour") if key in record)
            logger.info(
                "%s %s: objective %.8g -> %.8g",
                _MOVE_NAMES[move],
                record[move],
                states[n].objective,
                best.objective,
            )
            states[n] = best
        for n in set(active) | set(winners):
            fails[n] = 0 if n in winners else fails.get(n, 0) + 1
        changed = set(winners)
        # swaps are drawn anew each round; merge-and-split moves only change with the fit
        again = [
            n
            for n in set(active) | changed
            if (fails[n] < patience(n_rows, states[n].params.n_parameters()) if n_swaps else n in changed)
        ]
        active = _distinct(states, sorted(n for n in again if movable(n)))
    return states


def _distinct(states: list, indices: list[int]) -> list[int]:
    """``indices`` (of ``states``, in order) with one state of each optimum of a cell
    (:func:`_back`), the one :func:`~streamem.engine.em.first_best` prefers, so that a cell's
    lead (:func:`~streamem.engine.em.best_by_cell`) stays: the starts of ``n_init`` that EM
    took to the same optimum would each make a fit's moves, at a fit's cost, from one place."""
    kept: list[int] = []
    left = list(indices)
    while left:
        best = first_best([states[n] for n in left])
        n = next(n for n in left if states[n] is best)
        kept.append(n)
        params = best.params
        left = [
            m
            for m in left
            if m != n
            and not (states[m].params.covariance_type == params.covariance_type and _back(states[m].params, params))
        ]
    return sorted(kept)


_MOVE_NAMES = {"moved": "split-and-merge move", "swapped": "random swap", "neighbour": "a neighbour's solution"}


def _neighbour_offers(states: list, stats: dict, reg_covar: float, collapsed=None, changed=None):
    """``(target, candidate)`` pairs: each cell's lead (a state of each (covariance type, K),
    :func:`~streamem.engine.em.best_by_cell`) whose :class:`MoveStats` are in ``stats`` (by index),
    split (its ``MOVE_CANDIDATES`` components least like a Gaussian, one at a time) as a
    start for the lead of the K + 1 cell, and merged (its ``MOVE_CANDIDATES`` pairs that
    share the most rows, of those that share any) as one for the K - 1 cell's (K - 1 >= 2).
    With ``changed`` (indices), only the leads in it offer (the others' offers were made)."""
    index = {id(state): n for n, state in enumerate(states)}
    leads = {key: index[id(lead)] for key, lead in best_by_cell(states, collapsed).items()}
    for (kind, K), n in leads.items():
        if n not in stats or (changed is not None and n not in changed):
            continue
        params, own = states[n].params, stats[n]
        above, below = leads.get((kind, K + 1)), leads.get((kind, K - 1))
        if above is not None and states[above].failure is None:
            for k in [k for k in _split_order(own, params.n_features) if own.nk[k] > 0][:MOVE_CANDIDATES]:
                move = {"neighbour": {"n_components": K, "split": k}}
                yield above, _moved_state(states[above], _split_one(params, own, k, reg_covar), move)
        if below is not None and K > 2 and states[below].failure is None:
            for i, j in _merge_order(own)[:MOVE_CANDIDATES]:
                move = {"neighbour": {"n_components": K, "merged": [i, j]}}
                yield below, _moved_state(states[below], _merged_one(params, i, j), move)


def _hopeless(running: list, targets: dict, short_iter: int) -> list:
    """The short-run candidates that can no longer beat their fit (``targets``, by ``id``:
    the fit's objective plus the gain a move needs, the iteration the candidate started
    from, and the fit's parameters), after three iterations from the move at least:

    - its objective plus its last change for each iteration left of the short run stays at
      most that target (EM's changes shrink near a maximum; em-EM's starts stop by the same
      rule);
    - or it is back at its fit's optimum (:func:`_back`): a candidate that climbs back there
      is not stopped by the first rule, since its last change times the iterations left
      overestimates what it has left to gain. (Aitken's tighter bound on that gain, the
      stopping rule's, would stop it, but also the candidates that climb slowly after a
      fast start to a better optimum than the fit's.)
    """
    out = []
    for candidate in running:
        if id(candidate) not in targets or candidate.converged or candidate.failure is not None:
            continue
        target, started, fit = targets[id(candidate)]
        done = candidate.n_iter - started
        record = candidate.history[-1] if candidate.history else {}
        if done < 3 or not record.get("accepted", True) or "change" not in record:
            continue
        if candidate.objective + max(record["change"], 0.0) * max(short_iter - done, 0) <= target or _back(
            candidate.params, fit
        ):
            out.append(candidate)
    return out


def _back(params: MixtureParams, fit: MixtureParams) -> bool:
    """Whether every component of ``params`` is within :data:`RETURN_DISTANCE` standard
    deviations (Mahalanobis, in the metric of the fit's component, :func:`_log_prob`) of a
    different component of ``fit``: the candidate has come back to the fit's optimum, to
    which EM from there converges."""
    if params.means.shape != fit.means.shape:
        return False
    distance = np.sqrt(_log_prob(fit, params.means)[1].T)  # (candidate's component, fit's)
    nearest = distance.argmin(1)
    return len(set(nearest.tolist())) == len(nearest) and bool(distance.min(1).max() < RETURN_DISTANCE)


def _counted(collapsed):
    """``collapsed`` (or None) remembering its count of each parameters object it was given
    (which it keeps, so that no other object takes its ``id``)."""
    if collapsed is None:
        return None
    counts: dict = {}

    def count(params) -> int:
        if id(params) not in counts:
            counts[id(params)] = params, collapsed(params)
        return counts[id(params)][1]

    return count


def _collapsed(collapsed, state) -> int:
    """How many of ``state``'s components have collapsed (none counted without ``collapsed``)."""
    return 0 if collapsed is None else collapsed(state.params)


def _replaces(collapsed, candidate, state, gain: float) -> bool:
    """Whether a move's ``candidate`` replaces ``state``: it has fewer collapsed components,
    whatever its objective (a spurious maximum, whose likelihood rises without bound as a
    component shrinks onto its rows, is no better optimum: a fit on one leaves it), or none
    and an objective above ``state``'s by more than ``gain``."""
    if candidate.failure is not None:
        return False
    before, after = _collapsed(collapsed, state), _collapsed(collapsed, candidate)
    return after < before or (after == 0 and candidate.objective > state.objective + gain)


def _moved_state(state, params, move: dict):
    """A candidate that goes on from ``state``'s history with moved parameters; its first
    record says which move (``moved``: merged ``i`` and ``j``, split ``k``; ``neighbour``:
    the neighbouring cell's solution it comes from, and the pair merged or the component split)."""
    return FitState(
        params,
        n_iter=state.n_iter,
        history=list(state.history),
        means_history=list(state.means_history),
        n_passes=state.n_passes,
        move=move,
    )
