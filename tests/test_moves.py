"""Split-and-merge moves and random swaps: a fit stuck with two components on one cluster
and one over two gets out, and so does a fit of two components with one over two clusters
(no merge-and-split pair there), on every model of the EM core that offers them, in shared
passes."""

from __future__ import annotations

import logging
import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import streamem
from streamem.core.params import CollapsedComponentWarning, MixtureParams
from streamem.engine.moves import SWAP_SPREAD, MoveStats, move_stats_chunk, proposals, swaps


@pytest.fixture(scope="module")
def stuck():
    """Three clusters, and a start with two components on the first and one over the others."""
    rng = np.random.default_rng(0)
    centres = np.array([[-10.0, 0.0], [8.0, 4.0], [8.0, -4.0]])
    X = centres[rng.integers(3, size=3000)] + rng.normal(size=(3000, 2))
    start = np.array([[-10.5, 0.0], [-9.5, 0.0], [8.0, 0.0]])
    return X, centres, start


def _fit(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X)


def _found(means, centres, tol=0.3):
    return all(np.min(np.linalg.norm(means - c, axis=1)) < tol for c in centres)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_a_move_gets_a_stuck_fit_out(stuck, covariance_type):
    X, centres, start = stuck
    common = dict(covariance_type=covariance_type, means_init=start, random_state=0)
    stays = _fit(streamem.GaussianMixture(3, moves=None, **common), X)
    assert not _found(stays.means_, centres)  # EM alone keeps the start's mistake
    moved = _fit(streamem.GaussianMixture(3, **common), X)
    assert _found(moved.means_, centres)
    assert moved.score(X) > stays.score(X) + 0.1
    records = [r for r in moved.history_ if "moved" in r]
    assert records and sorted(records[0]["moved"][:2]) == [0, 1]  # the pair on the first cluster merged
    # the log-likelihood never falls, moves included, and the history counts every pass once
    bounds = np.array(moved.lower_bounds_)
    assert np.all(np.diff(bounds[np.isfinite(bounds)]) >= -1e-12)
    assert moved.history_[-1]["passes"] <= moved.n_passes_


def test_moves_do_not_depend_on_the_chunking(stuck):
    X, _, start = stuck
    fits = [
        _fit(streamem.GaussianMixture(3, means_init=start, random_state=0), da.from_array(X, chunks=(c, 2)))
        for c in (3000, 701)
    ]
    np.testing.assert_allclose(fits[0].means_, fits[1].means_, rtol=1e-9, atol=1e-9)
    assert [r.get("moved") for r in fits[0].history_] == [r.get("moved") for r in fits[1].history_]


def test_moves_on_standardised_features_and_a_saved_history(stuck, tmp_path):
    X, centres, start = stuck
    scaled = X * [100.0, 0.01]
    gm = _fit(streamem.GaussianMixture(3, means_init=start * [100.0, 0.01], standardize=True, random_state=0), scaled)
    assert _found(gm.means_ / [100.0, 0.01], centres)
    gm.save(tmp_path / "m.zarr")
    loaded = streamem.load(tmp_path / "m.zarr")
    assert [r.get("moved") for r in loaded.history_] == [r.get("moved") for r in gm.history_]
    assert any("moved" in r for r in loaded.history_)


def test_the_t_mixture_moves_too(stuck):
    X, centres, start = stuck
    common = dict(means_init=start, degrees_of_freedom=8.0, random_state=0)  # estimated, they creep: no convergence
    stays = _fit(streamem.StudentTMixture(3, moves=None, **common), X)
    moved = _fit(streamem.StudentTMixture(3, **common), X)
    assert not _found(stays.means_, centres) and _found(moved.means_, centres)
    assert moved.lower_bound_ > stays.lower_bound_


def test_no_move_where_components_have_fixed_places(stuck):
    X, _, start = stuck
    y = np.full(len(X), -1)
    for k, centre in enumerate(start):  # a few rows of each component labelled
        y[np.argsort(np.linalg.norm(X - centre, axis=1))[:5]] = k
    labelled = _fit(streamem.GaussianMixture(3, means_init=start, random_state=0), X)
    assert any("moved" in r for r in labelled.history_)
    for model, target in [
        (streamem.GaussianMixture(3, means_init=start, random_state=0), (X, y)),
        (streamem.GaussianMixture(3, means_init=start, noise="uniform", random_state=0), (X,)),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = model.fit(*target)
        assert not any("moved" in r for r in fitted.history_)


def test_the_criteria_pick_the_pair_and_the_component():
    rng = np.random.default_rng(1)
    centres = np.array([[-10.0, 0.0], [8.0, 4.0], [8.0, -4.0]])
    X = centres[rng.integers(3, size=2000)] + rng.normal(size=(2000, 2))
    params = MixtureParams.from_covariances(
        np.array([0.17, 0.16, 0.67]),
        np.array([[-10.3, 0], [-9.7, 0], [8, 0]]),
        np.stack([np.eye(2), np.eye(2), np.diag([1.0, 17.0])]),
        "full",
    )
    (stats,) = move_stats_chunk(X, None, [params])
    halves = move_stats_chunk(X[:777], None, [params])[0] + move_stats_chunk(X[777:], None, [params])[0]
    for name in ("gram", "nk", "kurtosis", "scatter"):
        np.testing.assert_allclose(getattr(stats, name), getattr(halves, name), rtol=1e-10)
    (best, (i, j, k)), *_ = proposals(params, stats, 1e-6)
    assert sorted((i, j)) == [0, 1] and k == 2
    # the merged component holds the pair's moments; the split halves hold the component's
    assert best.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(best.means[i], params.weights[:2] @ params.means[:2] / params.weights[:2].sum())
    assert best.means[j][1] * best.means[k][1] < 0  # the halves either side of the split one's mean
    assert isinstance(stats, MoveStats)


def test_the_halves_of_a_split_t_component_keep_its_degrees_of_freedom():
    from streamem.models.studentt import TParams

    gaussian = MixtureParams.from_covariances(
        np.array([0.2, 0.2, 0.6]),
        np.array([[-10.3, 0], [-9.7, 0], [8, 0]]),
        np.stack([np.eye(2), np.eye(2), np.diag([1.0, 17.0])]),
        "full",
    )
    params = TParams.of(gaussian, [3.0, 5.0, 30.0])
    rng = np.random.default_rng(2)
    X = np.array([[-10.0, 0.0], [8.0, 4.0], [8.0, -4.0]])[rng.integers(3, size=1500)] + rng.normal(size=(1500, 2))
    (stats,) = move_stats_chunk(X, None, [params])
    (moved, (i, j, k)), *_ = proposals(params, stats, 1e-6)
    assert moved.degrees_of_freedom[j] == moved.degrees_of_freedom[k] == 30.0
    assert moved.degrees_of_freedom[i] == params.degrees_of_freedom[i]


def test_no_move_between_components_that_share_no_rows(stuck):
    # at the right answer the clusters are 8 standard deviations apart: no pair of
    # components explains the same rows, so no merge is proposed, and the moves cost only
    # the pass of their statistics
    X, centres, _ = stuck
    common = dict(means_init=centres, random_state=0)
    plain = _fit(streamem.GaussianMixture(3, moves=None, **common), X)
    moved = _fit(streamem.GaussianMixture(3, moves="split-merge", **common), X)
    params = MixtureParams.from_covariances(plain.weights_, plain.means_, plain.covariances_, "full")
    (stats,) = move_stats_chunk(X, None, [params])
    cosine = stats.gram / np.sqrt(np.outer(np.diag(stats.gram), np.diag(stats.gram)))
    assert cosine[np.triu_indices(3, 1)].max() < 1e-3
    assert proposals(params, stats, 1e-6) == []
    assert moved.n_passes_ == plain.n_passes_ + 1
    np.testing.assert_array_equal(moved.means_, plain.means_)


@pytest.fixture(scope="module")
def two_stuck():
    """Three clusters for two components, and a start whose optimum puts one component over
    the first and third (-4.1215 nats per row) where the best puts it over the second and
    third (-4.0038, the best of 20 scikit-learn starts)."""
    rng = np.random.default_rng(0)
    X = np.concatenate(
        [rng.normal(size=(1500, 2)), rng.normal(size=(600, 2)) + [7, 0], 0.5 * rng.normal(size=(300, 2)) + [0, 7]]
    )
    return X, np.array([[0.0, 3.5], [7.0, 0.0]])


def test_a_random_swap_gets_a_two_component_fit_out(two_stuck):
    X, start = two_stuck
    common = dict(means_init=start, random_state=0)
    stays = _fit(streamem.GaussianMixture(2, moves="split-merge", **common), X)  # no pair to merge and split
    swapped = _fit(streamem.GaussianMixture(2, moves="swap", **common), X)
    assert stays.score(X) == pytest.approx(-4.121496, abs=1e-6)
    assert swapped.score(X) == pytest.approx(-4.003765, abs=1e-6)
    (at,) = [i for i, r in enumerate(swapped.history_) if "swapped" in r]
    removed, row = swapped.history_[at]["swapped"]
    assert removed in (0, 1) and 0 <= row < len(X)
    # EM from the swapped parameters (which start below the optimum left) never falls
    assert np.all(np.diff(swapped.lower_bounds_[at:]) >= -1e-12)
    assert swapped.history_[-1]["passes"] < swapped.n_passes_  # (the failed rounds after it)


def test_swaps_do_not_depend_on_the_chunking(two_stuck, tmp_path):
    X, start = two_stuck
    fits = [
        _fit(
            streamem.GaussianMixture(2, means_init=start, moves="swap", random_state=0), da.from_array(X, chunks=(c, 2))
        )
        for c in (2400, 701, 97)
    ]
    for fit in fits[1:]:
        np.testing.assert_allclose(fit.means_, fits[0].means_, rtol=1e-9, atol=1e-9)
        assert [r.get("swapped") for r in fit.history_] == [r.get("swapped") for r in fits[0].history_]
    fits[0].save(tmp_path / "m.zarr")
    loaded = streamem.load(tmp_path / "m.zarr")
    assert [r.get("swapped") for r in loaded.history_] == [r.get("swapped") for r in fits[0].history_]


def test_a_swap_puts_a_broad_component_on_its_row():
    rng = np.random.default_rng(1)
    means = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    covariances = np.stack([np.eye(2), np.diag([2.0, 0.5]), 0.3 * np.eye(2)])
    params = MixtureParams.from_covariances(np.array([0.5, 0.3, 0.2]), means, covariances, "full")
    rows = np.array([[5.2, 0.1], [0.1, -0.2], [0.0, 4.8]])
    candidates = swaps(params, rows, np.array([10, 20, 30]), rng)
    assert len(candidates) == 3
    for (moved, (c, n)), row, owner in zip(candidates, rows, (1, 0, 2)):
        assert n in (10, 20, 30) and 0 <= c < 3
        np.testing.assert_array_equal(moved.means[c], row)
        np.testing.assert_allclose(moved.full_covariances[c], SWAP_SPREAD * covariances[owner], rtol=1e-12)
        np.testing.assert_allclose(moved.weights.sum(), 1.0)
        others = [k for k in range(3) if k != c]
        np.testing.assert_array_equal(moved.means[others], means[others])  # the rest stay
        if owner != c:  # the new component takes half its row's component's weight
            share = np.array([0.5, 0.3, 0.2])
            share[c] = share[owner] = share[owner] / 2
            np.testing.assert_allclose(moved.weights, share / share.sum(), rtol=1e-12)
    assert (
        swaps(MixtureParams.from_covariances(np.ones(1), means[:1], covariances[:1], "full"), rows, np.arange(3), rng)
        == []
    )


def _digits_plane():
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    return PCA(2, svd_solver="full").fit_transform(load_digits().data / 16.0)


@pytest.mark.long
@pytest.mark.slow
def test_a_table_cell_reaches_the_optimum_its_neighbour_shows(monkeypatch):
    """On the digits' first two principal components, seven full components have an optimum
    (-2.10097 nats per row) that few starts reach, and that merging a pair of the eight
    components' optimum reaches: with its neighbours' solutions on offer, the K=7 cell gets
    there and BIC chooses it, as it chooses it where the cell gets there by itself."""
    import streamem.engine.moves

    X = _digits_plane()

    def table(seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = streamem.select_n_components(X, range(6, 9), random_state=seed)
        return model, {row["n_components"]: row["log_likelihood"] for row in model.selection_}

    offered, offered_rows = table(1)
    monkeypatch.setattr(streamem.engine.moves, "_neighbour_offers", lambda *args: iter(()))
    alone, alone_rows = table(1)
    assert alone_rows[7] < offered_rows[7] - 5e-3 and alone.n_components == 8
    assert offered.n_components == 7 and offered_rows[7] == pytest.approx(-2.10097, abs=2e-5)
    for k in (6, 8):  # a cell is replaced only by a better solution
        assert offered_rows[k] >= alone_rows[k] - 1e-9
    assert offered.n_passes_ <= 1.5 * alone.n_passes_  # the offers run in the moves' passes


def test_neighbour_offers_are_split_and_merged_solutions():
    from streamem.engine.em import FitState
    from streamem.engine.moves import split_merge
    from streamem.engine.passes import ChunkedData

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 1.0, (400, 2)) for c in ([-4, 0], [0, 0], [4, 0])])
    chunked = ChunkedData(da.from_array(X, chunks=(300, 2)))
    fits = [streamem.GaussianMixture(k, random_state=0, moves=None, n_starts=1).fit(X) for k in (2, 3, 4)]
    states = [FitState(fit._state_params(), objective=fit.lower_bound_, converged=True) for fit in fits]
    offers = []

    def run(candidates, phase):  # no EM: every offer stays below its cell, so the round ends
        offers.extend(c for c in candidates if "neighbour" in c.move)

    out = split_merge(chunked, states, run, 1e-6, table=True)
    assert all(a is b for a, b in zip(out, states))  # nothing better on offer: the cells stay
    by_cell = {}
    for offer in offers:
        by_cell.setdefault(offer.params.n_components, []).append(offer.move["neighbour"])
    # K=2 from merging K=3's pairs, K=3 from both sides, K=4 from splitting K=3's components
    assert {m["n_components"] for m in by_cell[2]} == {3} and all("merged" in m for m in by_cell[2])
    assert {m["n_components"] for m in by_cell[3]} == {2, 4}
    assert {m["n_components"] for m in by_cell[4]} == {3} and all("split" in m for m in by_cell[4])
    for offer in offers:  # a merge or a split keeps the mixture's weight and mean
        np.testing.assert_allclose(offer.params.weights.sum(), 1.0)
        source = fits[offer.move["neighbour"]["n_components"] - 2]
        np.testing.assert_allclose(
            offer.params.weights @ offer.params.means, source.weights_ @ source.means_, atol=1e-12
        )


def test_a_move_leaves_a_spurious_maximum_and_never_lands_in_one():
    from types import SimpleNamespace

    from streamem.engine.moves import _replaces

    def fit(n_collapsed, objective, failure=None):
        return SimpleNamespace(params=n_collapsed, objective=objective, failure=failure)

    def count(params):
        return params

    # between sound fits, an objective higher by more than the gain
    assert _replaces(count, fit(0, 1.0), fit(0, 0.0), 0.1)
    assert not _replaces(count, fit(0, 0.05), fit(0, 0.0), 0.1)
    # fewer collapsed components, whatever the objective: the fit leaves a spurious maximum
    assert _replaces(count, fit(0, -5.0), fit(1, 0.0), 0.1) and _replaces(count, fit(1, -5.0), fit(2, 0.0), 0.1)
    # as many or more, never (a likelier spurious maximum: the likelihood rises as a component shrinks)
    assert not _replaces(count, fit(1, 9.0), fit(1, 0.0), 0.1) and not _replaces(count, fit(1, 9.0), fit(0, 0.0), 0.1)
    assert not _replaces(count, fit(0, 9.0, failure="singular"), fit(1, 0.0), 0.1)
    assert _replaces(None, fit(3, 1.0), fit(0, 0.0), 0.1)  # a model that does not tell


def test_a_fit_on_a_spurious_maximum_leaves_it():
    """Seven full components on iris (150 rows, rounded to 0.1 cm), seed 2: EM from the
    default start ends with a component on 4 rows, fewer than the 10 its covariance needs;
    the swaps leave that spurious maximum for a fit without one, of a lower likelihood
    (with short runs of 10 iterations; of 30, they find a sound fit of a higher one)."""
    from sklearn.datasets import load_iris

    X = load_iris().data
    fits = {}
    for moves in (None, "swap"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fits[moves] = fit = streamem.GaussianMixture(7, random_state=2, moves=moves, init_iter=10).fit(X)
        params = MixtureParams.from_covariances(fit.weights_, fit.means_, fit.covariances_, "full")
        collapsed = params.collapsed(len(X), fit.reg_covar)
        assert collapsed == (1 if moves is None else 0), moves
        assert any(issubclass(w.category, CollapsedComponentWarning) for w in caught) == (moves is None)
    assert fits["swap"].score(X) < fits[None].score(X)
    assert fits["swap"].weights_.min() * len(X) > 10


def test_swaps_leave_a_collapsed_fit_for_a_sound_one():
    """Four full components on the 13 standardised wine features (178 rows): the fit of
    seed 4 without swaps (and short runs of 10 iterations) keeps a component on fewer than
    the 28 rows its covariance needs; the swaps leave it, for a fit without one, rather
    than for likelier spurious maxima (a component on 8 rows, 0.7 nats per row higher)."""
    from sklearn.datasets import load_wine

    X = load_wine().data
    X = (X - X.mean(0)) / X.std(0)
    common = dict(covariance_type="full", random_state=4, init_iter=10)
    for moves, expected in (("split-merge", 1), ("swap", 0)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = streamem.GaussianMixture(4, moves=moves, **common).fit(X)
        params = MixtureParams.from_covariances(fit.weights_, fit.means_, fit.covariances_, "full")
        assert params.collapsed(len(X), fit.reg_covar) == expected, moves
        assert fit.weights_.min() * len(X) > (20 if moves == "swap" else 0)


def test_small_data_with_few_rows_per_parameter_tries_more_rounds_of_swaps():
    from streamem.engine.moves import PATIENCE, ROWS_PER_PARAMETER, SMALL_PATIENCE, SMALL_ROWS, patience

    assert patience(150, 59) == SMALL_PATIENCE > PATIENCE  # iris, four full components
    assert patience(SMALL_ROWS - 1, SMALL_ROWS) == SMALL_PATIENCE
    assert patience(SMALL_ROWS, 10 * SMALL_ROWS) == PATIENCE  # many rows: a round costs a pass over them
    assert patience(3000, 3000 // ROWS_PER_PARAMETER) == PATIENCE  # enough rows per parameter
    assert patience(3000, 3000 // ROWS_PER_PARAMETER + 1) == SMALL_PATIENCE


def test_init_iter_auto_runs_longer_short_runs_on_crowded_data(caplog):
    """``init_iter="auto"``: 30 iterations for every start's and move's short run where the
    rows are crowded with local optima (few rows per parameter, a round costing
    milliseconds), 10 elsewhere; the same fit as the number given."""
    from streamem.engine.moves import crowded

    rng = np.random.default_rng(0)
    n_parameters = 3 * (2 + 3) + 2  # three full components in 2-D
    few, many = rng.normal(size=(300, 2)), rng.normal(size=(3000, 2))
    assert crowded(len(few), n_parameters) and not crowded(len(many), n_parameters)
    for X, expected in ((few, 30), (many, 10)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="streamem"):
            auto = streamem.GaussianMixture(3, random_state=0).fit(X)
        assert f"starts after {expected} iterations" in caplog.text
        same = streamem.GaussianMixture(3, init_iter=expected, random_state=0).fit(X)
        np.testing.assert_array_equal(auto.means_, same.means_)
        assert auto.n_passes_ == same.n_passes_


def test_starts_at_one_optimum_make_one_fits_moves():
    """Of the ``n_init`` fits that EM took to the same optimum (in any component order),
    only the one of the highest objective makes moves (the first, of equal ones); a different
    optimum, another number of components or another covariance type makes its own."""
    from streamem.engine.em import FitState
    from streamem.engine.moves import _distinct

    def state(means, variances, covariance_type="spherical"):
        K, variances = len(means), np.asarray(variances, dtype=float)
        covariances = variances if covariance_type == "spherical" else np.repeat(variances[:, None], 2, axis=1)
        return FitState(
            MixtureParams.from_covariances(np.full(K, 1.0 / K), np.asarray(means, float), covariances, covariance_type)
        )

    one = [[0.0, 0.0], [10.0, 0.0]]
    states = [
        state(one, [4.0, 1.0]),
        state(one[::-1], [1.0, 4.0]),  # the same optimum, components in the other order
        state([[0.0, 3.0], [10.0, 0.0]], [4.0, 1.0]),  # another optimum
        state(one, [4.0, 1.0]),
        state([*one, [5.0, 5.0]], [4.0, 1.0, 1.0]),  # three components
        state(one, [4.0, 1.0], "diag"),
    ]
    assert _distinct(states, list(range(len(states)))) == [0, 2, 4, 5]
    assert _distinct(states, [1, 3]) == [1]
    # of one optimum, the state of the highest objective (its cell's lead) is kept
    states[3].objective = 1e-9
    assert _distinct(states, list(range(len(states)))) == [2, 3, 4, 5]


def test_a_short_run_back_at_its_fits_optimum_stops():
    """A short-run candidate stops once it cannot beat its fit: its last change times the
    iterations left cannot lift it above the fit's objective plus the gain a move needs, or
    every component of it is back within ``RETURN_DISTANCE`` standard deviations of a
    different one of the fit's (EM from there returns to the fit's optimum). Before three
    iterations, or while still climbing fast and elsewhere, it goes on."""
    from streamem.engine.em import FitState
    from streamem.engine.moves import RETURN_DISTANCE, _back, _hopeless

    fit = MixtureParams.from_covariances(
        np.array([0.5, 0.5]), np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([4.0, 1.0]), "spherical"
    )

    def moved(shift, order=(0, 1)):
        means = fit.means[list(order)] + np.asarray(shift)
        return MixtureParams.from_covariances(fit.weights, means, np.array([4.0, 1.0])[list(order)], "spherical")

    assert _back(moved(0.0), fit) and _back(moved(0.0, order=(1, 0)), fit)  # in any order
    # the distance is in each fit component's own standard deviations (2 and 1 here)
    assert _back(moved([[1.9 * RETURN_DISTANCE, 0.0], [0.0, 0.0]]), fit)
    assert not _back(moved([[0.0, 0.0], [1.1 * RETURN_DISTANCE, 0.0]]), fit)
    two_on_one = MixtureParams.from_covariances(fit.weights, np.zeros((2, 2)), np.array([4.0, 4.0]), "spherical")
    assert not _back(two_on_one, fit)  # both near the same component of the fit

    def candidate(params, objectives):
        history = [{"change": b - a, "accepted": True} for a, b in zip(objectives, objectives[1:])]
        return FitState(params, objective=objectives[-1], n_iter=len(history), history=history)

    climbing = [-2.0, -1.5, -1.25, -1.125]  # last change 0.125: up to -1.125 + 0.875 with 7 iterations left
    cases = {
        "back": candidate(moved(0.0), climbing),
        "elsewhere": candidate(moved([[3.0, 3.0], [0.0, 0.0]]), climbing),
        "too early": candidate(moved(0.0), climbing[:3]),
        "below for good": candidate(moved([[3.0, 3.0], [0.0, 0.0]]), [-2.0, -1.99, -1.985, -1.984]),
    }
    targets = {id(c): (-1.0, 0, fit) for c in cases.values()}
    assert _hopeless(list(cases.values()), targets, short_iter=10) == [cases["back"], cases["below for good"]]
