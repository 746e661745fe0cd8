"""Starts explored on a sample of the rows (``explore_rows``): one pass draws the sample, the
starts, their short runs and the moves run on it in memory, and only the best of each cell
goes on over all the rows."""

from __future__ import annotations

import logging
import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import streamem
from streamem.engine.passes import ChunkedData
from streamem.engine.starts import priority_sample

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _clusters(seed=0, n=20_000, spread=2.5, n_clusters=6, n_features=3):
    """Overlapping clusters (``spread`` apart, in units of their own standard deviation)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=spread, size=(n_clusters, n_features))
    return means[rng.integers(n_clusters, size=n)] + rng.normal(size=(n, n_features))


def _fit(model, X, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **fit_params)


def _chunked(X, chunks, weights=None):
    w = None if weights is None else da.from_array(weights, chunks=chunks)
    return ChunkedData(da.from_array(X, chunks=(chunks, X.shape[1])), w)


# ---------------------------------------------------------------------------- the sample


def test_the_sample_is_the_same_rows_on_any_chunking():
    X = _clusters(n=5000)
    drawn = [priority_sample(_chunked(X, chunks), 400, seed=7) for chunks in (5000, 777, 64)]
    for rows, weights in drawn[1:]:
        np.testing.assert_array_equal(rows, drawn[0][0])
        np.testing.assert_array_equal(weights, drawn[0][1])
    rows, weights = drawn[0]
    index = [int(np.flatnonzero((X == row).all(axis=1))[0]) for row in rows]
    assert len(rows) == 400 and index == sorted(set(index))  # distinct rows of X, in its order
    # unweighted rows are a uniform sample, each standing for about n / size rows
    assert np.ptp(weights) == 0 and weights[0] == pytest.approx(5000 / 400, rel=0.1)
    assert not np.array_equal(priority_sample(_chunked(X, 777), 400, seed=8)[0], rows)


def test_the_sample_follows_the_weights_and_its_sums_are_unbiased():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 2))
    w = rng.exponential(size=4000)
    w[:100] = 0.0  # never drawn
    w[100:110] = 1e4  # always drawn, each standing for itself alone
    totals = []
    for seed in range(200):
        rows, weights = priority_sample(_chunked(X, 500, w), 300, seed)
        kept = {tuple(r) for r in rows}
        assert not kept & {tuple(r) for r in X[:100]}
        assert {tuple(r) for r in X[100:110]} <= kept
        heavy = np.isin(rows[:, 0], X[100:110, 0])
        np.testing.assert_array_equal(weights[heavy], 1e4)
        totals.append([weights.sum(), weights @ rows[:, 0]])
    estimate, spread = np.mean(totals, axis=0), np.std(totals, axis=0) / np.sqrt(len(totals))
    truth = np.array([w.sum(), w @ X[:, 0]])
    assert np.all(np.abs(estimate - truth) < 4 * spread + 1e-9)


def test_no_more_rows_than_the_sample_are_all_the_rows():
    X = _clusters(n=300)
    rows, weights = priority_sample(_chunked(X, 64), 500, seed=0)
    np.testing.assert_array_equal(rows, X)
    np.testing.assert_array_equal(weights, 1.0)


# ---------------------------------------------------------------------------- the fit


def test_a_fit_explored_on_a_sample_reaches_the_optimum_in_fewer_passes(caplog):
    X = _clusters(seed=3, spread=4.0)
    common = dict(random_state=0)
    with caplog.at_level(logging.INFO, logger="streamem"):
        explored = _fit(streamem.GaussianMixture(6, explore_rows=3000, verbose=2, verbose_interval=1, **common), X)
    everywhere = _fit(streamem.GaussianMixture(6, explore_rows=None, **common), X)
    assert "explored the starts on a sample of 3000 rows of 20000" in caplog.text
    lines = [record.getMessage() for record in caplog.records if "iteration" in record.getMessage()]
    # the sample's iterations say so; the others are one per pass over all the rows (the
    # first pass may have two candidates: the sample's optima before and after its moves)
    assert any(line.startswith("sample: candidate") for line in lines)
    passes = {line.split("(pass ")[1].split(")")[0] for line in lines if line.startswith("candidate")}
    assert len(passes) == explored.n_iter_
    # one pass draws the sample; every other pass is an EM iteration over all the rows
    assert explored.n_passes_ == 1 + explored.n_iter_
    assert explored.n_passes_ < everywhere.n_passes_ / 2
    # stopped where the gain still to come is below tol / 10, as the fit over all the rows was
    assert explored.converged_ and explored.lower_bound_ >= everywhere.lower_bound_ - explored.tol / 10
    order = lambda m: np.argsort(m.means_[:, 0])  # noqa: E731
    np.testing.assert_allclose(explored.means_[order(explored)], everywhere.means_[order(everywhere)], atol=1e-2)


def test_fewer_rows_than_the_sample_are_fitted_as_before():
    X = _clusters(n=2000)
    default = _fit(streamem.GaussianMixture(4, random_state=0), X)
    everywhere = _fit(streamem.GaussianMixture(4, random_state=0, explore_rows=None), X)
    np.testing.assert_array_equal(default.means_, everywhere.means_)
    assert default.n_passes_ == everywhere.n_passes_


def test_an_explored_fit_does_not_depend_on_the_chunks():
    X = _clusters(seed=4)
    fits = [
        _fit(streamem.GaussianMixture(5, explore_rows=2500, random_state=1), da.from_array(X, chunks=(c, 3)))
        for c in (20_000, 3000, 777)
    ]
    for other in fits[1:]:
        assert other.n_iter_ == fits[0].n_iter_
        np.testing.assert_allclose(other.means_, fits[0].means_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(other.lower_bound_, fits[0].lower_bound_, rtol=1e-10)


def test_weighted_missing_and_standardised_fits_are_explored_too():
    rng = np.random.default_rng(5)
    X = _clusters(seed=5, spread=6.0, n_clusters=3) * np.array([1.0, 100.0, 0.01])
    weights = rng.uniform(0.5, 2.0, size=len(X))
    holed = X.copy()
    holed[rng.random(X.shape) < 0.05] = np.nan
    cases = [
        (dict(), dict(sample_weight=weights)),
        (dict(missing="marginalize"), dict()),
        (dict(standardize=True), dict()),
    ]
    for params, fit_params in cases:
        data = holed if params.get("missing") else X
        explored = _fit(streamem.GaussianMixture(3, explore_rows=2000, random_state=0, **params), data, **fit_params)
        everywhere = _fit(streamem.GaussianMixture(3, explore_rows=None, random_state=0, **params), data, **fit_params)
        assert explored.n_passes_ < everywhere.n_passes_, params
        assert explored.lower_bound_ == pytest.approx(everywhere.lower_bound_, abs=1e-5), params


def test_given_starts_labels_and_warm_starts_are_not_explored():
    X = _clusters(n=8000, spread=6.0, n_clusters=3)
    first = _fit(streamem.GaussianMixture(3, random_state=0, explore_rows=None), X)
    labels = np.full(len(X), -1)
    labels[:300] = first.predict(X[:300])
    cases = [(dict(means_init=first.means_), dict()), (dict(), dict(y=labels))]
    for params, fit_params in cases:
        small = _fit(streamem.GaussianMixture(3, explore_rows=100, random_state=0, **params), X, **fit_params)
        none = _fit(streamem.GaussianMixture(3, explore_rows=None, random_state=0, **params), X, **fit_params)
        np.testing.assert_array_equal(small.means_, none.means_)
        assert small.n_passes_ == none.n_passes_
    warm = [first, _fit(streamem.GaussianMixture(3, random_state=0, explore_rows=None), X)]
    warm[0].set_params(explore_rows=100, warm_start=True)
    warm[1].set_params(warm_start=True)
    refits = [_fit(model, X + 0.1) for model in warm]  # each goes on from its fitted parameters
    np.testing.assert_array_equal(refits[0].means_, refits[1].means_)
    assert refits[0].n_passes_ == refits[1].n_passes_


@pytest.mark.long
@pytest.mark.slow
def test_the_table_is_explored_on_one_sample_for_every_cell():
    X = _clusters(seed=6, spread=8.0, n_clusters=3)
    common = dict(covariance_type=["full", "diag"], random_state=0)
    explored = streamem.select_n_components(X, range(1, 6), explore_rows=3000, **common)
    everywhere = streamem.select_n_components(X, range(1, 6), explore_rows=None, **common)
    assert (explored.n_components, explored.covariance_type) == (everywhere.n_components, everywhere.covariance_type)
    assert explored.n_components == 3
    assert explored.n_passes_ < everywhere.n_passes_
    for mine, theirs in zip(explored.selection_, everywhere.selection_):
        # the same optimum where the model is well posed; a spare component wanders a flat ridge
        gap = 1e-5 if mine["n_components"] <= 3 else explored.tol
        assert mine["log_likelihood"] >= theirs["log_likelihood"] - gap, (mine, theirs)


@pytest.mark.long
@pytest.mark.slow
def test_a_resumed_explored_fit_ends_as_an_uninterrupted_one(tmp_path):
    X = _clusters(seed=7)
    common = dict(explore_rows=2000, random_state=0, tol=0)
    reference = _fit(streamem.GaussianMixture(5, max_iter=12, **common), X)
    _fit(streamem.GaussianMixture(5, max_iter=5, checkpoint=tmp_path / "ck", **common), X)
    resumed = _fit(streamem.GaussianMixture(5, max_iter=12, checkpoint=tmp_path / "ck", **common), X)
    np.testing.assert_array_equal(resumed.means_, reference.means_)
    assert resumed.lower_bounds_ == reference.lower_bounds_ and resumed.n_passes_ == reference.n_passes_


@pytest.mark.parametrize("value", [0, -5, 2.5, "many"])
def test_a_bad_explore_rows_is_refused(value):
    with pytest.raises(ValueError, match="explore_rows"):
        streamem.GaussianMixture(2, explore_rows=value).fit(_clusters(n=200))


@pytest.mark.long
@pytest.mark.cluster
def test_an_explored_fit_on_a_cluster_is_the_local_fit():
    from distributed import LocalCluster

    X = _clusters(seed=8, n=12_000)
    params = dict(explore_rows=2000, random_state=0)
    local = _fit(streamem.GaussianMixture(4, **params), X)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        remote = _fit(streamem.GaussianMixture(4, scheduler_address=cluster.scheduler_address, **params), X)
    assert remote.n_passes_ == local.n_passes_ and remote.n_iter_ == local.n_iter_
    np.testing.assert_allclose(remote.means_, local.means_, rtol=1e-10, atol=1e-12)
