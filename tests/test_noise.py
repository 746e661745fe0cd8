"""A uniform noise component: EM against a direct computation, labels -1 for the noise,
chunk invariance, persistence and bad input."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

import streamem

from .helpers import COVARIANCE_TYPES, mixture_data, reference_em

K, D = 3, 2


def _noisy_data(seed, n=4000, n_noise=400):
    X, labels = mixture_data(n, D, K, seed=seed, spread=8.0)
    rng = np.random.default_rng(seed)
    noise = rng.uniform(X.min(0) - 15, X.max(0) + 15, (n_noise, D))
    return np.concatenate([X, noise]), np.concatenate([labels, np.full(n_noise, -1)])


def test_equals_em_with_a_uniform_component_written_out():
    X, _ = _noisy_data(0, n=2000, n_noise=200)
    start = {
        "weights_init": np.full(K, 1 / K),
        "means_init": mixture_data(300, D, K, seed=0, spread=8.0)[0][:K],
        "precisions_init": np.tile(np.eye(D), (K, 1, 1)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.GaussianMixture(K, noise="uniform", max_iter=6, tol=0, accelerate=None, **start).fit(X)
    direct = reference_em(
        X, start["weights_init"] * 0.95, start["means_init"], np.tile(np.eye(D), (K, 1, 1)), 6, noise_weight=0.05
    )
    np.testing.assert_allclose(model.weights_, direct["weights"], rtol=1e-10)
    assert model.noise_weight_ == pytest.approx(direct["noise_weight"], rel=1e-10)
    np.testing.assert_allclose(model.means_, direct["means"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.covariances_, direct["covariances"], rtol=1e-10)
    assert model.history_[-1]["log_likelihood"] == pytest.approx(direct["log_likelihood"], rel=1e-12)
    assert model.weights_.sum() + model.noise_weight_ == pytest.approx(1.0)
    assert model.noise_density_ == pytest.approx(1 / np.prod(X.max(0) - X.min(0)))
    np.testing.assert_array_equal(model.noise_box_, np.stack([X.min(0), X.max(0)]))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_noise_rows_get_label_minus_one_and_the_means_stay(covariance_type):
    X, truth = _noisy_data(1)
    model = streamem.GaussianMixture(K, covariance_type=covariance_type, noise="uniform", random_state=0).fit(X)
    labels = model.predict(X)
    clusters = truth >= 0
    # the clusters' covariances are full: the other types' fits leave more of their tails to the noise
    tails = 0.01 if covariance_type == "full" else 0.04
    assert np.mean(labels[~clusters] == -1) > 0.9 and np.mean(labels[clusters] == -1) < tails
    assert model.noise_weight_ == pytest.approx(400 / 4400, rel=0.1 if covariance_type == "full" else 0.5)
    assert np.all(np.diff(model.lower_bounds_) > -1e-12)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), K + 1)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(np.where(proba.argmax(1) == K, -1, proba.argmax(1)), labels)


def test_the_chunking_changes_nothing_and_the_model_saves():
    X, _ = _noisy_data(2)
    whole = streamem.GaussianMixture(K, noise="uniform", random_state=0).fit(X)
    chunked = streamem.GaussianMixture(K, noise="uniform", random_state=0).fit(da.from_array(X, chunks=(613, D)))
    np.testing.assert_allclose(chunked.means_, whole.means_, rtol=1e-10, atol=1e-12)
    assert chunked.noise_weight_ == pytest.approx(whole.noise_weight_, rel=1e-10)


def test_persistence_sampling_and_criteria(tmp_path):
    X, _ = _noisy_data(3)
    model = streamem.GaussianMixture(K, noise="uniform", random_state=0).fit(X)
    model.save(tmp_path / "m.zarr")
    loaded = streamem.load(tmp_path / "m.zarr")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.noise_weight_ == model.noise_weight_
    samples, labels = model.sample(2000)
    assert samples.shape == (2000, D) and 0 < np.mean(labels == -1) < 0.3
    plain = streamem.GaussianMixture(K, random_state=0).fit(X)
    assert model.bic(X) < plain.bic(X)  # the noise component is worth its one parameter here
    with pytest.raises(TypeError, match="noise component has no scikit-learn equivalent"):
        model.to_onnx()


@pytest.mark.parametrize(
    ("params", "X", "match"),
    [
        ({}, np.column_stack([np.arange(100.0), np.ones(100)]), r"constant features \[1\]"),
        ({"mean_precision_prior": 1.0}, None, "cannot be combined with a prior"),
        ({"missing": "marginalize"}, None, "cannot be combined with missing"),
        ({"noise": "gaussian"}, None, "noise"),
    ],
)
def test_bad_input_names_the_problem_and_leaves_the_model_untouched(params, X, match):
    data = _noisy_data(4, n=500, n_noise=50)[0] if X is None else X
    model = streamem.GaussianMixture(2, random_state=0).fit(_noisy_data(5, n=500, n_noise=50)[0])
    means = model.means_.copy()
    model.set_params(**{"noise": "uniform", **params})
    with pytest.raises(ValueError, match=match):
        model.fit(data)
    np.testing.assert_array_equal(model.means_, means)
