"""GaussianMixture: parity with scikit-learn, chunk invariance, inputs and outputs."""

from __future__ import annotations

import logging
import os
import threading
import warnings

import dask.array as da
import numpy as np
import pytest
import zarr
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import streamem

from .helpers import COVARIANCE_TYPES, mixture_data, sklearn_start


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def uneven_chunks(n_samples, n_chunks, seed=0):
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, n_samples), n_chunks - 1, replace=False))
    return tuple(np.diff(np.concatenate([[0], cuts, [n_samples]])).tolist())


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_equals_sklearn_from_the_same_start(covariance_type):
    X, _ = mixture_data(n_samples=4000, n_features=4, n_components=4, seed=11)
    start = sklearn_start(X, 4, covariance_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(4, covariance_type=covariance_type, max_iter=25, tol=0, **start).fit(X)
        ours = streamem.GaussianMixture(
            4, covariance_type=covariance_type, max_iter=25, tol=0, accelerate=None, **start
        ).fit(X)
    assert ours.n_iter_ == sk.n_iter_ == 25
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert rel_err(getattr(ours, name), getattr(sk, name)) < 1e-8, name
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-8)
    if hasattr(sk, "lower_bounds_"):  # scikit-learn >= 1.7 (the floor, 1.6, has lower_bound_ alone)
        np.testing.assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=1e-8)
    np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), atol=1e-8)
    assert ours.bic(X) == pytest.approx(sk.bic(X), rel=1e-8)
    assert ours.aic(X) == pytest.approx(sk.aic(X), rel=1e-8)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_convergence_matches_sklearn(covariance_type):
    X, _ = mixture_data(n_samples=3000, seed=12)
    start = sklearn_start(X, 3, covariance_type)
    sk = SkGaussianMixture(3, covariance_type=covariance_type, tol=1e-6, max_iter=500, **start).fit(X)
    ours = streamem.GaussianMixture(
        3, covariance_type=covariance_type, tol=1e-6, max_iter=500, accelerate=None, **start
    ).fit(X)
    assert ours.converged_ and sk.converged_
    assert ours.n_iter_ == sk.n_iter_
    assert rel_err(ours.means_, sk.means_) < 1e-8


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_chunking_does_not_change_the_result(covariance_type):
    X, _ = mixture_data(n_samples=5000, seed=13)
    start = sklearn_start(X, 3, covariance_type)
    fits = []
    for chunks in ((5000,), uneven_chunks(5000, 37)):
        data = da.from_array(X, chunks=(chunks, 3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(
                streamem.GaussianMixture(3, covariance_type=covariance_type, max_iter=15, tol=0, **start).fit(data)
            )
    assert fits[1].n_iter_ == 15
    for name in ("weights_", "means_", "covariances_"):
        assert rel_err(getattr(fits[1], name), getattr(fits[0], name)) < 1e-10, name
    assert fits[1].lower_bound_ == pytest.approx(fits[0].lower_bound_, rel=1e-10)


def test_history_and_monotone_likelihood(blobs):
    X, _ = blobs
    gm = streamem.GaussianMixture(3, init_params="random", random_state=0, tol=1e-8, max_iter=200, accelerate=None).fit(
        X
    )
    assert len(gm.history_) == gm.n_iter_
    assert [h["iteration"] for h in gm.history_] == list(range(1, gm.n_iter_ + 1))
    lls = np.array([h["log_likelihood"] for h in gm.history_])
    assert np.all(np.diff(lls) >= -1e-10)
    assert gm.history_[-1]["log_likelihood"] == gm.lower_bound_
    assert gm.lower_bounds_ == list(lls)
    assert gm.means_history_.shape == (gm.n_iter_ + 1, 3, 3)
    np.testing.assert_array_equal(gm.means_history_[-1], gm.means_)
    assert all(h["seconds"] >= 0 for h in gm.history_)
    np.testing.assert_allclose([h["change"] for h in gm.history_[1:]], np.diff(lls))


def test_dask_in_lazy_out_numpy_in_numpy_out(blobs):
    X, _ = blobs
    data = da.from_array(X, chunks=(700, 3))
    gm = streamem.GaussianMixture(3, random_state=0).fit(data)
    for method in ("predict", "predict_proba", "score_samples"):
        lazy = getattr(gm, method)(data)
        eager = getattr(gm, method)(X)
        assert isinstance(lazy, da.Array) and isinstance(eager, np.ndarray)
        if method == "predict":
            np.testing.assert_array_equal(lazy.compute(), eager)
        else:  # blocks of other sizes: BLAS may round a row's products differently, by eps times the
            # terms of a log-density (here ~1e4, a nearly singular covariance); in a probability, relatively
            tolerance = {"predict_proba": {"rtol": 1e-9, "atol": 0}, "score_samples": {"rtol": 0, "atol": 1e-10}}
            np.testing.assert_allclose(lazy.compute(), eager, **tolerance[method])
    assert gm.predict(X).shape == (len(X),)
    assert gm.predict_proba(X).shape == (len(X), 3)
    assert isinstance(gm.score(data), float)


def test_zarr_array_and_path_inputs(tmp_path, blobs):
    X, _ = blobs
    path = tmp_path / "points.zarr"
    z = zarr.create_array(str(path), shape=X.shape, chunks=(500, 3), dtype="f8")
    z[...] = X
    start = sklearn_start(X, 3, "full")
    ref = streamem.GaussianMixture(3, max_iter=5, tol=0, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = ref.fit(X).means_.copy()
        b = ref.fit(da.from_zarr(str(path))).means_.copy()
        c = ref.fit(zarr.open_array(str(path), mode="r")).means_.copy()
        d = ref.fit(str(path)).means_.copy()
    for other in (b, c, d):
        assert rel_err(other, a) < 1e-10
    assert isinstance(ref.predict(str(path)), da.Array)


def test_float32_is_not_upcast(blobs):
    X, _ = blobs
    X32 = da.from_array(X.astype(np.float32), chunks=(1000, 3))
    seen = []
    lock = threading.Lock()

    def spy(block):
        with lock:
            seen.append(block.dtype)
        return block

    gm = streamem.GaussianMixture(3, random_state=0).fit(X32.map_blocks(spy, dtype=np.float32))
    assert set(seen) == {np.dtype(np.float32)}
    assert gm.means_.dtype == np.float64
    assert gm.predict_proba(X32).dtype == np.float32
    ref = streamem.GaussianMixture(3, random_state=0).fit(X)
    assert gm.score(X) == pytest.approx(ref.score(X), rel=1e-4)


def test_integer_sample_weights_equal_repeated_rows(blobs):
    X, _ = blobs
    w = np.random.default_rng(1).integers(0, 4, len(X))
    start = sklearn_start(X, 3, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = streamem.GaussianMixture(3, max_iter=10, tol=0, **start).fit(X, sample_weight=w)
        repeated = streamem.GaussianMixture(3, max_iter=10, tol=0, **start).fit(np.repeat(X, w, axis=0))
        lazy = streamem.GaussianMixture(3, max_iter=10, tol=0, **start).fit(
            da.from_array(X, chunks=(999, 3)), sample_weight=da.from_array(w, chunks=500)
        )
    for name in ("weights_", "means_", "covariances_"):
        assert rel_err(getattr(weighted, name), getattr(repeated, name)) < 1e-10
        assert rel_err(getattr(lazy, name), getattr(repeated, name)) < 1e-10
    assert weighted.lower_bound_ == pytest.approx(repeated.lower_bound_, rel=1e-10)


@pytest.mark.parametrize("factor", [1e-300, 1e-20, 1e-10, 3.0, 1e100, 1e300])
def test_a_fit_by_likelihood_depends_on_the_weights_ratios_alone(blobs, factor):
    """Weights scaled by any factor give the same fit: they are scaled back by a power of two
    (else weights of 1e-20 vanish beside the 10 eps that keeps a weight positive, and weights
    of 1e300 overflow the moments)."""
    X, _ = blobs
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(X))
    for name, make in {
        "gaussian": streamem.GaussianMixture,
        "t": streamem.StudentTMixture,
        "online": streamem.OnlineGaussianMixture,
    }.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref = make(3, random_state=0, max_iter=20).fit(X, sample_weight=w)
            scaled = make(3, random_state=0, max_iter=20).fit(
                da.from_array(X, chunks=(700, 3)), sample_weight=da.from_array(w * factor, chunks=500)
            )
        for attr in ("weights_", "means_", "covariances_"):
            assert rel_err(getattr(scaled, attr), getattr(ref, attr)) < 1e-9, (name, attr)
        assert scaled.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-9)


def test_information_criteria_count_rows_by_their_weights(blobs):
    """The table of select_n_components scores the data with the weights as given."""
    X, _ = blobs
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(X)) * 1e-30
    model = streamem.select_n_components(X, [2, 3], sample_weight=w, random_state=0)
    for row in model.selection_:
        fitted = streamem.GaussianMixture(row["n_components"], random_state=0).fit(X, sample_weight=w)
        log_lik = float(w @ fitted.score_samples(X))
        expected = -2.0 * log_lik + row["n_parameters"] * np.log(w.sum())
        assert row["bic"] == pytest.approx(expected, rel=1e-6)


def test_a_fit_with_a_prior_counts_rows_and_refuses_weights_that_overflow(blobs):
    X, _ = blobs
    for make, params in [
        (streamem.BayesianGaussianMixture, {}),
        (streamem.GaussianMixture, {"mean_precision_prior": 1.0}),
    ]:
        with pytest.raises(ValueError, match=r"sample_weight holds 1e\+300, above 1\.34e\+154"):
            make(3, random_state=0, **params).fit(X, sample_weight=np.full(len(X), 1e300))
    few = streamem.BayesianGaussianMixture(3, random_state=0).fit(X, sample_weight=np.full(len(X), 1e-6))
    many = streamem.BayesianGaussianMixture(3, random_state=0).fit(X)
    assert not np.allclose(few.weights_, many.weights_)  # 0.003 rows in all: the prior dominates


def test_sample_weights_change_the_fit(blobs):
    X, labels = blobs
    w = np.where(labels == 0, 10.0, 1.0)
    gm = streamem.GaussianMixture(3, random_state=0).fit(X, sample_weight=w)
    plain = streamem.GaussianMixture(3, random_state=0).fit(X)
    heavy = np.argmin(np.abs(gm.means_ - X[labels == 0].mean(axis=0)).sum(axis=1))
    assert gm.weights_[heavy] > plain.weights_.max()


def test_far_from_origin(blobs):
    X, _ = blobs
    start = sklearn_start(X, 3, "full")
    moved = dict(start, means_init=start["means_init"] + 1e7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = streamem.GaussianMixture(3, max_iter=20, tol=0, **start).fit(X)
        b = streamem.GaussianMixture(3, max_iter=20, tol=0, **moved).fit(X + 1e7)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-6)
    np.testing.assert_allclose(b.means_ - 1e7, a.means_, atol=1e-6)
    c = streamem.GaussianMixture(3, random_state=0).fit(X + 1e7)
    d = streamem.GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(c.covariances_, d.covariances_, rtol=1e-5, atol=1e-8)


# "random" starts every component near the global mean and "random_from_data" at K random
# rows, as scikit-learn's do: they may miss clusters, and are tested for validity,
# monotone likelihood, chunk invariance and pass counts instead.
@pytest.mark.parametrize("init_params", ["k-means||", "k-means++", "kmeans"])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_every_initialiser_finds_separated_clusters(init_params, covariance_type):
    X, labels = mixture_data(n_samples=4000, n_components=4, seed=21, spread=12)
    data = da.from_array(X, chunks=(900, 3))
    gm = streamem.GaussianMixture(
        4, covariance_type=covariance_type, init_params=init_params, n_init=3, random_state=0
    ).fit(data)
    true_means = np.stack([X[labels == k].mean(axis=0) for k in range(4)])
    distance = np.abs(gm.means_[:, None] - true_means[None]).sum(axis=2)
    assert np.all(distance.min(axis=0) < 0.3)
    assert gm.converged_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("init_params", ["k-means||", "k-means++", "random", "random_from_data"])
def test_random_initialisation_does_not_depend_on_chunking(init_params):
    X, _ = mixture_data(n_samples=5000, n_components=4, seed=22)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(X))
    fits = []
    for chunks in ((5000,), uneven_chunks(5000, 37, seed=3)):
        gm = streamem.GaussianMixture(
            4, init_params=init_params, n_init=2, random_state=5, tol=1e-6, max_iter=300, accelerate=None
        )
        fits.append(gm.fit(da.from_array(X, chunks=(chunks, 3)), sample_weight=w))
    assert fits[0].n_iter_ == fits[1].n_iter_
    for name in ("weights_", "means_", "covariances_"):
        assert rel_err(getattr(fits[1], name), getattr(fits[0], name)) < 1e-10, name


@pytest.mark.parametrize("init_params", ["k-means||", "k-means++", "random", "random_from_data"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_initial_parameters_are_valid(init_params, covariance_type, blobs):
    X, _ = blobs
    gm = streamem.GaussianMixture(
        3, covariance_type=covariance_type, init_params=init_params, max_iter=0, random_state=0
    ).fit(X)
    assert gm.n_iter_ == 0 and gm.lower_bound_ == -np.inf
    assert gm.weights_.sum() == pytest.approx(1.0) and np.all(gm.weights_ > 0)
    assert np.all(gm.means_ >= X.min(axis=0)) and np.all(gm.means_ <= X.max(axis=0))
    assert len({tuple(m) for m in gm.means_.round(8)}) == 3
    for value in (gm.covariances_, gm.precisions_cholesky_):
        assert np.all(np.isfinite(value))


def test_same_random_state_same_fit(blobs):
    X, _ = blobs
    a = streamem.GaussianMixture(3, n_init=2, random_state=7).fit(X)
    b = streamem.GaussianMixture(3, n_init=2, random_state=7).fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)


class CountingArray:
    """An array-like that counts reads, to count passes over the data."""

    def __init__(self, X):
        self.X, self.shape, self.dtype, self.ndim = X, X.shape, X.dtype, X.ndim
        self.reads = 0
        self.lock = threading.Lock()

    def __getitem__(self, key):
        out = self.X[key]
        if out.size:  # dask reads an empty slice once to learn the type
            with self.lock:
                self.reads += 1
        return out


def test_restarts_share_the_passes(blobs):
    X, _ = blobs
    counts = {}
    for n_init in (1, 4):
        source = CountingArray(X)
        data = da.from_array(source, chunks=(500, 3), asarray=False)
        gm = streamem.GaussianMixture(3, n_init=n_init, init_params="random", max_iter=10, tol=0, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(data)
        counts[n_init] = source.reads
    n_chunks = 6
    # summary pass, random-responsibility pass, then one pass per iteration
    assert counts[1] == counts[4] == n_chunks * (2 + 10)


def test_best_restart_is_kept(caplog):
    """Of the ``n_init`` candidates, whose last log-likelihoods the log gives, the fit keeps
    the best; on four overlapping clusters they end at different optima, none collapsed."""
    X, _ = mixture_data(3000, 2, 4, seed=0, spread=2.0)
    with caplog.at_level(logging.INFO, logger="streamem"):
        many = streamem.GaussianMixture(
            4,
            n_init=5,
            n_starts=1,
            moves=None,
            init_params="random",
            random_state=3,
            max_iter=300,
            verbose=2,
            verbose_interval=1,
        ).fit(X)
    last = {}
    for record in caplog.records:
        data = getattr(record, "streamem", None)
        if data is not None and "candidate" in data:
            last[data["candidate"]] = data["log_likelihood"]
    assert sorted(last) == [0, 1, 2, 3, 4]
    assert max(last.values()) - min(last.values()) > 1e-3  # the choice matters
    assert many.lower_bound_ == max(last.values())


def test_warm_start_continues(blobs):
    X, _ = blobs
    start = sklearn_start(X, 3, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        once = streamem.GaussianMixture(3, max_iter=8, tol=0, **start).fit(X)
        twice = streamem.GaussianMixture(3, max_iter=4, tol=0, warm_start=True, **start).fit(X).fit(X)
    assert rel_err(twice.means_, once.means_) < 1e-10


def test_empty_component_is_reseeded(caplog, tmp_path):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (1000, 2)), rng.normal(20, 1, (5, 2))])
    means = np.array([[0.0, 0.0], [0.5, 0.5], [1e4, 1e4]])
    gm = streamem.GaussianMixture(
        3,
        weights_init=np.full(3, 1 / 3),
        means_init=means,
        precisions_init=np.ones((3, 2)),
        covariance_type="diag",
        max_iter=50,
    )
    with caplog.at_level("WARNING", logger="streamem"):
        gm.fit(X)
    assert any("re-seeded" in r.message for r in caplog.records)
    assert any(h.get("reseeded") == [2] for h in gm.history_)
    for value in (gm.weights_, gm.means_, gm.covariances_, gm.precisions_cholesky_):
        assert np.all(np.isfinite(value))
    # the re-seeded component moved to the far cluster the start missed
    assert np.min(np.abs(gm.means_ - 20).sum(axis=1)) < 2.5
    gm.save(tmp_path / "m.zarr")
    assert streamem.load(tmp_path / "m.zarr").history_ == gm.history_


def test_verbose_logs_iterations(blobs, caplog):
    X, _ = blobs
    with caplog.at_level("INFO", logger="streamem"):
        streamem.GaussianMixture(3, verbose=2, verbose_interval=1, random_state=0).fit(X)
    lines = [r.message for r in caplog.records]
    assert any("iteration 1 (pass " in line and "log-likelihood" in line for line in lines)
    assert any(line.startswith("fit done") for line in lines)


@pytest.mark.long
@pytest.mark.cluster
def test_runs_unchanged_on_a_distributed_cluster(blobs):
    from distributed import Client, LocalCluster

    X, _ = blobs
    data = da.from_array(X, chunks=(700, 3))
    start = sklearn_start(X, 3, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = streamem.GaussianMixture(3, max_iter=10, tol=0, **start).fit(data)
        seeded_local = streamem.GaussianMixture(3, random_state=0).fit(data)
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            ) as cluster,
            Client(cluster),
        ):
            remote = streamem.GaussianMixture(3, max_iter=10, tol=0, **start).fit(data)
            seeded_remote = streamem.GaussianMixture(3, random_state=0).fit(data)
            labels = remote.predict(data).compute()
    assert rel_err(remote.means_, local.means_) < 1e-10
    assert rel_err(remote.covariances_, local.covariances_) < 1e-10
    assert rel_err(seeded_remote.means_, seeded_local.means_) < 1e-10
    np.testing.assert_array_equal(labels, local.predict(X))


def test_convergence_warning(blobs):
    X, _ = blobs
    with pytest.warns(ConvergenceWarning):
        streamem.GaussianMixture(3, max_iter=1, tol=0, random_state=0).fit(X)


def test_sample(blobs):
    X, _ = blobs
    gm = streamem.GaussianMixture(3, random_state=0).fit(X)
    Xs, ys = gm.sample(2000)
    assert Xs.shape == (2000, 3) and ys.shape == (2000,)
    assert set(np.unique(ys)) <= {0, 1, 2}
    np.testing.assert_allclose(Xs.mean(axis=0), gm.weights_ @ gm.means_, atol=0.3)


def test_fit_predict_equals_fit_then_predict(blobs):
    X, _ = blobs
    labels = streamem.GaussianMixture(3, random_state=0).fit_predict(X)
    np.testing.assert_array_equal(labels, streamem.GaussianMixture(3, random_state=0).fit(X).predict(X))


def test_pipeline_and_grid_search(blobs):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, _ = blobs
    pipe = make_pipeline(StandardScaler(), streamem.GaussianMixture(random_state=0))
    search = GridSearchCV(pipe, {"gaussianmixture__n_components": [1, 3]}, cv=2).fit(X)
    assert search.best_params_["gaussianmixture__n_components"] == 3


def test_blas_threads_per_task_never_more_than_set_and_one_on_small_tasks():
    """``blas_per_task`` shares the cores among a pass's chunk tasks: one BLAS thread for a
    small task (OpenBLAS's threads spin waiting for each other over the M-step's small
    triangular solves), and never more threads than BLAS had (on two cores a fit over one
    chunk once raised a user's ``OPENBLAS_NUM_THREADS=1`` to two)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from streamem.engine.rows import SMALL_TASK_VALUES, blas_per_task

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl controls")
    with threadpool_limits(limits=2, user_api="blas"):
        with blas_per_task(1, SMALL_TASK_VALUES - 1):
            assert blas_threads() == {1}
        with blas_per_task(2, 2 * SMALL_TASK_VALUES):
            assert blas_threads() == {max(1, min(2, (os.cpu_count() or 1) // 2))}
        assert blas_threads() == {2}
    with threadpool_limits(limits=1, user_api="blas"):
        with blas_per_task(1, 100 * SMALL_TASK_VALUES):
            assert blas_threads() == {1}
        assert blas_threads() == {1}
