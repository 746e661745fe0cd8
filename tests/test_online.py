"""OnlineGaussianMixture: stepwise EM quality, drift tracking, input errors, state and resume."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError

import streamem
from streamem import GaussianMixture, OnlineGaussianMixture

TYPES = ["full", "tied", "diag", "spherical"]


def _blobs(n=60_000, d=6, k=6, seed=0):
    X, _ = make_blobs(n, n_features=d, centers=k, cluster_std=1.5, random_state=seed)
    return X


def _state(model):
    arrays, attrs = model.state()
    return arrays, attrs["fitted"]


def _given(X, k, covariance_type="full", seed=0):
    """Initial parameters fixed in advance, so that two models start alike whatever their warm-up."""
    ref = GaussianMixture(k, covariance_type=covariance_type, max_iter=2, tol=0, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X[:5000])
    return dict(weights_init=ref.weights_, means_init=ref.means_, precisions_init=ref.precisions_)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
@pytest.mark.parametrize("seed", [0, 1])
def test_one_pass_within_one_percent_of_batch_em(covariance_type, seed):
    X = _blobs(seed=seed)
    batch = GaussianMixture(6, covariance_type=covariance_type, random_state=seed, tol=1e-6, max_iter=500).fit(X)
    online = OnlineGaussianMixture(6, covariance_type=covariance_type, batch_size=1000, max_iter=1, random_state=seed)
    online.fit(X)
    assert online.n_iter_ == 1 and online.n_samples_seen_ == len(X)
    reference, reached = batch.score(X), online.score(X)
    assert abs(reached - reference) <= 0.01 * abs(reference), (reached, reference)


def test_partial_fit_stream_matches_fit_over_the_same_batches():
    X = _blobs(20_000)
    a = OnlineGaussianMixture(6, batch_size=1000, max_iter=1, random_state=3).fit(X)
    b = OnlineGaussianMixture(6, batch_size=1000, random_state=3)
    for start in range(0, len(X), 1000):
        assert b.partial_fit(X[start : start + 1000]) is b
    assert a.n_batches_ == b.n_batches_ == 20
    np.testing.assert_allclose(a.means_, b.means_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=0, atol=1e-12)


def test_not_fitted_until_warm_up_then_buffered_batches_are_used():
    X = _blobs(5000)
    model = OnlineGaussianMixture(3, warm_up=1500, random_state=0)
    model.partial_fit(X[:1000])
    with pytest.raises(NotFittedError):
        model.predict(X[:10])
    model.partial_fit(X[1000:2000])
    assert model.n_samples_seen_ == 2000 and model.n_batches_ == 2
    assert model.predict(X[:10]).shape == (10,)


def test_drifting_stream_tracked_with_forgetting_not_with_decaying_step():
    rng = np.random.default_rng(0)
    start = np.array([[-4.0, 0.0], [4.0, 0.0]])
    velocity = np.array([[0.0, 0.02], [0.0, -0.02]])  # per batch

    def batch(t):
        centres = start + t * velocity
        return centres[rng.integers(0, 2, 500)] + rng.normal(0, 0.5, (500, 2))

    decaying = OnlineGaussianMixture(2, warm_up=500, random_state=0)
    forgetting = OnlineGaussianMixture(2, warm_up=500, random_state=0, forgetting=0.1)
    errors = {"decaying": [], "forgetting": []}
    for t in range(600):
        X = batch(t)
        for name, model in (("decaying", decaying), ("forgetting", forgetting)):
            model.partial_fit(X)
            truth = start + t * velocity
            means = model.means_[np.argsort(model.means_[:, 0])]
            errors[name].append(np.abs(means - truth).max())
    late = slice(400, 600)
    assert max(errors["forgetting"][late]) < 0.5  # the centres moved 12 units; the lag stays bounded
    assert np.mean(errors["decaying"][late]) > 4 * np.mean(errors["forgetting"][late])
    assert errors["decaying"][-1] > errors["decaying"][300]  # and keeps growing


@pytest.mark.parametrize("covariance_type", TYPES)
def test_every_covariance_type_fits_and_predicts(covariance_type):
    X = _blobs(10_000, d=3, k=3)
    model = OnlineGaussianMixture(3, covariance_type=covariance_type, random_state=0, max_iter=3).fit(X)
    assert model.predict(X).shape == (len(X),)
    np.testing.assert_allclose(model.predict_proba(X).sum(axis=1), 1.0)
    assert np.isfinite(model.score(X)) and np.isfinite(model.bic(X))
    assert model.score(X) > GaussianMixture(1, covariance_type=covariance_type).fit(X).score(X)


def test_step_sizes():
    model = OnlineGaussianMixture(step_exponent=0.7, step_offset=3.0)
    assert model.step_size(1) == pytest.approx(4**-0.7)
    assert model.step_size(100) == pytest.approx(103**-0.7)
    assert OnlineGaussianMixture(forgetting=0.05).step_size(10_000) == 0.05
    with pytest.raises(ValueError, match="step_exponent"):
        OnlineGaussianMixture(step_exponent=0.5).partial_fit(np.zeros((10, 2)))


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (np.empty((0, 3)), "empty"),
        (np.ones((2, 3)), "at least n_components=3 rows"),
        (np.ones((50, 4)), "X has 4 features, but OnlineGaussianMixture is expecting 3 features"),
        (np.full((50, 3), np.nan), "NaN"),
        (np.full((50, 3), np.inf), "infinity"),
        (None, "got None"),
    ],
)
def test_bad_batches_raise_and_leave_the_model_unchanged(batch, message):
    X = _blobs(3000, d=3, k=3)
    model = OnlineGaussianMixture(3, warm_up=1000, random_state=0).partial_fit(X[:1000]).partial_fit(X[1000:2000])
    before, fitted_before = _state(model)
    with pytest.raises(ValueError, match=message):
        model.partial_fit(batch)
    after, fitted_after = _state(model)
    assert fitted_after == fitted_before
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    model.partial_fit(X[2000:])  # and it goes on
    assert model.n_batches_ == 3


def test_sample_weight_equals_repeated_rows():
    X = _blobs(4000, d=2, k=3)
    given = _given(X, 3)
    counts = np.random.default_rng(0).integers(0, 3, len(X))
    a = OnlineGaussianMixture(3, warm_up=10, **given).partial_fit(X[:2000], sample_weight=counts[:2000])
    a.partial_fit(X[2000:], sample_weight=counts[2000:])
    b = OnlineGaussianMixture(3, warm_up=10, **given).partial_fit(np.repeat(X[:2000], counts[:2000], axis=0))
    b.partial_fit(np.repeat(X[2000:], counts[2000:], axis=0))
    np.testing.assert_allclose(a.means_, b.means_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=0, atol=1e-10)


def test_polyak_ruppert_average_of_the_iterates():
    X = _blobs(12_000, d=2, k=2)
    model = OnlineGaussianMixture(2, warm_up=1000, average_after=4, **_given(X, 2))
    iterates = []
    for start in range(0, len(X), 1000):
        model.partial_fit(X[start : start + 1000])
        iterates.append(model._iterate.means.copy())
    np.testing.assert_allclose(model.means_, np.mean(iterates[4:], axis=0), atol=1e-12)
    assert not np.allclose(model.means_, iterates[-1], atol=1e-9)


def test_incremental_em_converges_in_fewer_passes_than_batch_em():
    X = _blobs(40_000, d=4, k=5, seed=2)
    given = _given(X, 5, seed=2)
    batch = GaussianMixture(5, tol=1e-6, max_iter=500, **given).fit(X)
    incremental = OnlineGaussianMixture(5, algorithm="incremental", batch_size=2000, tol=1e-6, max_iter=500, **given)
    incremental.fit(X)
    assert incremental.converged_ and incremental.n_iter_ < batch.n_iter_
    assert incremental.score(X) == pytest.approx(batch.score(X), rel=1e-5)


def test_save_load_continues_exactly(tmp_path):
    X = _blobs(8000, d=3, k=3)
    whole = OnlineGaussianMixture(3, warm_up=1000, random_state=0, average_after=2)
    part = clone(whole)
    for start in range(0, 4000, 1000):
        whole.partial_fit(X[start : start + 1000])
        part.partial_fit(X[start : start + 1000])
    part.save(tmp_path / "m.zarr")
    loaded = streamem.load(tmp_path / "m.zarr")
    assert isinstance(loaded, OnlineGaussianMixture) and loaded.n_batches_ == 4
    for start in range(4000, 8000, 1000):
        whole.partial_fit(X[start : start + 1000])
        loaded.partial_fit(X[start : start + 1000])
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(whole, name), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="OnlineGaussianMixture"):
        GaussianMixture.load(tmp_path / "m.zarr")


def test_missing_values_marginalized():
    X = _blobs(20_000, d=4, k=3)
    holes = X.copy()
    holes[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        OnlineGaussianMixture(3, random_state=0).fit(holes)
    model = OnlineGaussianMixture(3, random_state=0, missing="marginalize", max_iter=2).fit(holes)
    complete = OnlineGaussianMixture(3, random_state=0, max_iter=2).fit(X)
    order = lambda m: m.means_[np.lexsort(m.means_.T)]  # noqa: E731
    np.testing.assert_allclose(order(model), order(complete), atol=0.1)


def test_dask_and_zarr_input(tmp_path):
    import dask.array as da

    X = _blobs(10_000, d=3, k=3)
    a = OnlineGaussianMixture(3, random_state=0, max_iter=2).fit(X)
    b = OnlineGaussianMixture(3, random_state=0, max_iter=2).fit(da.from_array(X, chunks=(1700, 3)))
    np.testing.assert_allclose(a.means_, b.means_, atol=1e-12)
    assert b.n_samples_seen_ == 2 * len(X)
