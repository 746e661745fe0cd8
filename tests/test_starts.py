"""Diverse starts that share passes: em-EM's short runs, the best continued, duplicates replaced,
and the cells of a model table started as fits of their own."""

from __future__ import annotations

import logging
import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import streamem
from streamem.core.params import InitialParameters, MixtureParams
from streamem.engine.passes import ChunkedData
from streamem.engine.starts import AUTO_STARTS, _candidate_states, initial_states, same_start, start_methods


def _overlapping(seed=0, n=3000):
    """Six overlapping clusters in 3-D, where starts end at different optima."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=2.5, size=(6, 3))
    return means[rng.integers(6, size=n)] + rng.normal(size=(n, 3))


def _separated(seed=0, n=3000):
    """Three clusters far apart: every k-means‖ start ends at one partition."""
    rng = np.random.default_rng(seed)
    means = np.array([[-20.0, 0.0], [0.0, 20.0], [20.0, 0.0]])
    return means[rng.integers(3, size=n)] + rng.normal(size=(n, 2))


def _fit(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X)


def _starts(X, init_params, n, chunks=500):
    chunked = ChunkedData(da.from_array(X, chunks=(chunks, X.shape[1])), None)
    states, _ = initial_states(
        chunked, InitialParameters(None, None, None), init_params, [3] * n, "full", 1e-6, np.random.RandomState(0)
    )
    return [state.params for state in states], chunked.passes


def test_auto_starts_are_of_several_kinds_the_first_k_means_parallel():
    assert start_methods("auto", list(range(4))) == [*AUTO_STARTS, AUTO_STARTS[0]][:4]
    assert start_methods("auto", [0, 1, 2])[0] == "k-means||"
    assert start_methods("auto", [0, 1], robust=True) == ["trimmed-k-means||"] * 2
    assert start_methods("random", [0, 1]) == ["random", "random"]
    assert len(set(AUTO_STARTS)) > 1


def test_one_start_is_the_k_means_parallel_fit():
    X = _overlapping()
    one = _fit(streamem.GaussianMixture(6, n_starts=1, random_state=0), X)
    explicit = _fit(streamem.GaussianMixture(6, n_starts=1, init_params="k-means||", random_state=0), X)
    np.testing.assert_array_equal(one.means_, explicit.means_)


def test_duplicate_starts_are_replaced():
    X = _separated()
    params, passes = _starts(X, "k-means||", 5)
    assert not any(same_start(a, b) for i, a in enumerate(params) for b in params[:i])
    # the same starts without the replacement pass: k-means|| takes them to one partition
    one, one_passes = _starts(X, "k-means||", 1)
    assert same_start(params[0], one[0])
    assert passes == one_passes + 1  # one more pass replaces every duplicate


def test_same_start_pairs_the_components_up():
    X = _separated()
    (params,), _ = _starts(X, "k-means||", 1)
    order = [2, 0, 1]
    permuted = MixtureParams.from_covariances(
        params.weights[order], params.means[order], params.covariances[order], "full"
    )
    assert same_start(params, permuted)
    moved = MixtureParams.from_covariances(params.weights, params.means + [[0.1, 0.0]], params.covariances, "full")
    assert not same_start(params, moved)


def test_the_starts_share_the_passes_of_one():
    X = _overlapping()
    passes = {
        n: _fit(streamem.GaussianMixture(6, n_starts=n, max_iter=0, random_state=0), X).n_passes_ for n in (1, 10)
    }
    assert passes[10] <= passes[1] + 1  # + the pass that replaces duplicates, when there are any


def test_the_best_start_goes_on_alone(caplog):
    X = _overlapping()
    with caplog.at_level(logging.INFO, logger="streamem"):
        short = _fit(streamem.GaussianMixture(6, n_starts=6, init_iter=3, random_state=0), X)
    assert sum("kept the best of 6 starts after 3 iterations" in r.getMessage() for r in caplog.records) == 1
    # every start run three iterations: the kept one is the one with the highest objective
    three = _fit(streamem.GaussianMixture(6, n_starts=6, init_iter=None, max_iter=3, random_state=0), X)
    assert short.lower_bounds_[2] == three.lower_bound_
    assert short.lower_bound_ >= three.lower_bound_


def test_starts_that_can_no_longer_be_chosen_stop_early(monkeypatch):
    # on well-separated clusters the k-means|| start converges in a few iterations while
    # random responsibilities climb slowly far below it: once their last change times the
    # iterations they have left cannot bring them up to it, they stop, and the fit keeps
    # the same start in fewer passes
    import streamem.models.batch

    X = _separated()
    early = _fit(streamem.GaussianMixture(3, moves=None, random_state=0), X)
    monkeypatch.setattr(streamem.models.batch, "_settled", lambda states, **_: [])
    every = _fit(streamem.GaussianMixture(3, moves=None, random_state=0), X)
    np.testing.assert_array_equal(early.means_, every.means_)
    assert early.lower_bound_ == every.lower_bound_
    assert early.n_passes_ < every.n_passes_


def test_more_starts_reach_a_better_optimum():
    gaps = []
    for seed in range(6):
        X = _overlapping(seed)
        one = _fit(streamem.GaussianMixture(6, n_starts=1, moves=None, random_state=seed), X).score(X)
        many = _fit(streamem.GaussianMixture(6, moves=None, random_state=seed), X).score(X)
        gaps.append(many - one)
    assert min(gaps) > -1e-3  # never noticeably worse
    assert max(gaps) > 1e-3  # and better somewhere


@pytest.mark.long
@pytest.mark.slow
def test_more_initialisations_never_end_lower():
    for seed in range(3):
        X = _overlapping(seed)
        one = _fit(streamem.GaussianMixture(6, random_state=seed), X)
        three = _fit(streamem.GaussianMixture(6, n_init=3, random_state=seed), X)
        assert three.lower_bound_ >= one.lower_bound_


def test_every_start_to_convergence_with_init_iter_none():
    X = _overlapping()
    every = _fit(streamem.GaussianMixture(6, n_starts=4, init_iter=None, max_iter=1000, random_state=0), X)
    # the first start, alone, with the same moves (short runs of 10 iterations)
    first = _fit(streamem.GaussianMixture(6, n_starts=1, init_iter=None, max_iter=1000, random_state=0), X)
    assert every.converged_ and every.lower_bound_ >= first.lower_bound_


def test_each_number_of_components_draws_the_seeds_of_its_own_fit():
    seeds = [rs.randint(1 << 30) for rs in _candidate_states(np.random.RandomState(5), [2, 2, 3, 3, 3])]
    alone = [rs.randint(1 << 30) for rs in _candidate_states(np.random.RandomState(5), [3, 3, 3])]
    assert seeds[2:] == alone and seeds[:2] == alone[:2]


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.parametrize("covariance_type", ["full", ["full", "diag"]])
def test_every_cell_of_the_table_is_its_dedicated_fit(covariance_type):
    X = _overlapping(1, 2000)
    table = streamem.select_n_components(X, range(2, 8), covariance_type=covariance_type, random_state=3)
    for row in table.selection_:
        dedicated = _fit(
            streamem.GaussianMixture(row["n_components"], covariance_type=row["covariance_type"], random_state=3), X
        )
        assert row["log_likelihood"] >= dedicated.score(X) - 1e-8, row


def _two_components(second_covariance, second_weight=0.04):
    covariances = np.stack([np.eye(2), second_covariance])
    weights = np.array([1.0 - second_weight, second_weight])
    return MixtureParams.from_covariances(weights, np.array([[0.0, 0.0], [3.0, 0.0]]), covariances, "full")


def test_a_collapsed_component_is_spurious():
    assert not _two_components(np.diag([1.0, 0.5])).collapsed(1000) > 0
    assert _two_components(np.diag([1.0, 1e-6])).collapsed(1000) > 0  # rows that share a value
    assert (
        not _two_components(np.diag([1.0, 1e-6]), second_weight=0.5).collapsed(1000) > 0
    )  # half the rows: a real mass
    # ... unless its rows share a value: its variance is reg_covar's floor in that direction
    assert _two_components(np.diag([1.0, 1.5e-6]), second_weight=0.5).collapsed(1000, reg_covar=1e-6) > 0
    assert not _two_components(np.diag([1.0, 1.5e-6]), second_weight=0.5).collapsed(1000, reg_covar=1e-7) > 0
    # the floor is the component's own smallest variance, whatever the directions the others
    # squeeze least in (iris: a fifth of the rows sharing a petal width, beside correlated components)
    correlated = np.array([[1.0, 0.9], [0.9, 1.0]])
    squeezed = MixtureParams.from_covariances(
        np.array([0.8, 0.2]), np.array([[0.0, 0.0], [3.0, 0.0]]), np.stack([correlated, np.diag([1.0, 1.5e-6])]), "full"
    )
    assert squeezed.collapsed(1000, reg_covar=1e-6) == 1 and squeezed.collapsed(1000, reg_covar=1e-7) == 0
    far = MixtureParams.from_covariances(
        np.array([0.5, 0.5]), np.array([[-300.0, 0], [300.0, 0]]), np.stack([np.eye(2), 1e-3 * np.eye(2)]), "full"
    )
    assert not far.collapsed(1000) > 0  # far apart and of different spreads, but not collapsed
    assert _two_components(np.eye(2), second_weight=0.005).collapsed(1000) > 0  # five rows: fewer than 2 (D + 1)
    assert not _two_components(np.eye(2), second_weight=0.007).collapsed(1000) > 0


def test_a_thin_component_of_few_rows_beside_tight_ones_is_spurious():
    """Beside tight components the pooled variance is small too: a component of a few rows
    close to a line is measured against the mixture's total variance (the data's)."""

    def params(weights):
        means = np.array([[0.0, 0.0], [0.0, 3.0], [3.0, 0.0]])
        covariances = np.stack([1e-2 * np.eye(2), 1e-2 * np.eye(2), np.diag([1e-2, 2e-5])])
        return MixtureParams.from_covariances(np.asarray(weights), means, covariances, "full")

    # 10.5 of 150 rows (at least 2 (D + 1), fewer than 4 (D + 1); a weight above 5%), with a
    # variance 2e-3 times the pooled and 1e-5 times the total in its thin direction
    assert params([0.45, 0.48, 0.07]).collapsed(150) == 1
    assert params([0.4, 0.3, 0.3]).collapsed(150) == 0  # 45 rows: a real mass
    assert params([0.45, 0.48, 0.07]).collapsed(1500) == 0  # 105 rows


def test_a_collapsed_candidate_loses_to_a_lower_sound_one():
    from streamem.engine.em import FitState, best_cells

    sound = FitState(_two_components(np.diag([1.0, 0.5])), objective=-3.0)
    collapsed = FitState(_two_components(np.diag([1.0, 1e-6])), objective=-2.0)
    count = lambda params: params.collapsed(1000)  # noqa: E731
    assert best_cells([collapsed, sound], count)[("full", 2)] is sound
    assert best_cells([collapsed, sound], None)[("full", 2)] is collapsed  # a model that does not tell them
    worse = FitState(_two_components(np.diag([1.0, 1e-7])), objective=-2.5)
    assert best_cells([collapsed, worse], count)[("full", 2)] is collapsed  # all collapsed: the highest
    tied = FitState(_two_components(np.diag([1.0, 0.5])), objective=-3.0 + 1e-12)
    assert best_cells([sound, tied], count)[("full", 2)] is sound  # within rounding: the first


def test_a_fit_that_collapses_says_so():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(600, 2)), rng.normal(size=(600, 2)) + [4.0, 0.0]])
    X[:40, 1] = 0.25  # rows that share one value: a component collapses onto them
    with pytest.warns(UserWarning, match="collapsed"):  # EM's own maximum, without moves
        gm = _fit(streamem.GaussianMixture(3, random_state=0, moves=None), X)
    assert gm.covariances_[:, 1, 1].min() < 1e-3
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _fit(streamem.GaussianMixture(2, random_state=0), X)  # two sound components: no warning
        # the moves leave the spurious maximum for three sound components
        gm = _fit(streamem.GaussianMixture(3, random_state=0), X)
    assert gm.covariances_[:, 1, 1].min() > 0.1


def test_the_history_counts_the_passes_of_the_short_runs_once():
    X = _overlapping()
    gm = _fit(streamem.GaussianMixture(6, n_starts=5, init_iter=3, random_state=0, moves=None), X)
    passes = [record["passes"] for record in gm.history_]
    assert passes[-1] == gm.n_passes_ and np.all(np.diff(passes) == 1)
