"""Frozen parameters: held to the bit through EM (batch and online), the others equal to a
direct computation given them."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest

import streamem

from .helpers import COVARIANCE_TYPES, full_covariances, mixture_data, reference_em

K, D = 3, 3


def _start(covariance_type, seed=0):
    """Initial parameters away from the optimum, every component with some mass: weights,
    means (the true ones moved) and precisions in the type's shape."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.2, 0.3, 0.5])
    X, labels = mixture_data(300, D, K, seed=1)
    means = np.stack([X[labels == k].mean(0) for k in range(K)]) + rng.uniform(-0.5, 0.5, (K, D))
    precisions = {
        "full": np.stack([np.diag(rng.uniform(0.5, 2, D)) for _ in range(K)]),
        "tied": np.diag(rng.uniform(0.5, 2, D)),
        "diag": rng.uniform(0.5, 2, (K, D)),
        "spherical": rng.uniform(0.5, 2, K),
    }[covariance_type]
    return {"weights_init": weights, "means_init": means, "precisions_init": precisions}


@pytest.mark.parametrize("freeze", [("means",), ("weights",), ("covariances",), ("weights", "means")])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_frozen_parameters_keep_their_bits_and_the_others_equal_a_direct_step(covariance_type, freeze):
    X, _ = mixture_data(2000, D, K, seed=1)
    params = dict(covariance_type=covariance_type, **_start(covariance_type))
    start = streamem.GaussianMixture(K, max_iter=0, **params).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one iteration does not converge
        one = streamem.GaussianMixture(K, max_iter=1, tol=0, freeze=freeze, **params).fit(X)
    direct = reference_em(
        X,
        start.weights_,
        start.means_,
        full_covariances(start.covariances_, covariance_type, K, D),
        covariance_type=covariance_type,
        freeze=freeze,
    )
    np.testing.assert_allclose(one.weights_, direct["weights"], rtol=1e-10)
    np.testing.assert_allclose(one.means_, direct["means"], rtol=1e-10, atol=1e-10)
    if "covariances" in freeze:
        np.testing.assert_array_equal(one.covariances_, start.covariances_)
        np.testing.assert_array_equal(one.precisions_cholesky_, start.precisions_cholesky_)
    else:
        np.testing.assert_allclose(one.covariances_, direct["covariances"], rtol=1e-10)
    many = streamem.GaussianMixture(K, max_iter=30, freeze=freeze, **params).fit(X)
    for name in freeze:
        attribute = f"{name}_"
        np.testing.assert_array_equal(getattr(many, attribute), getattr(start, attribute), err_msg=name)
    assert np.all(np.diff(many.lower_bounds_) > -1e-10)  # still EM: the likelihood never decreases


def test_frozen_fit_does_not_depend_on_the_chunking():
    X, _ = mixture_data(3000, D, K, seed=2)
    params = dict(freeze=("means",), max_iter=20, **_start("full"))
    whole = streamem.GaussianMixture(K, **params).fit(X)
    chunked = streamem.GaussianMixture(K, **params).fit(da.from_array(X, chunks=(317, D)))
    np.testing.assert_array_equal(chunked.means_, whole.means_)
    np.testing.assert_allclose(chunked.covariances_, whole.covariances_, rtol=1e-10)
    np.testing.assert_allclose(chunked.weights_, whole.weights_, rtol=1e-10)


def test_online_fits_keep_frozen_parameters():
    X, _ = mixture_data(6000, D, K, seed=3)
    start = _start("diag")
    online = streamem.OnlineGaussianMixture(
        K, covariance_type="diag", freeze=("means", "weights"), warm_up=500, **start
    )
    for i in range(0, len(X), 500):
        online.partial_fit(X[i : i + 500])
        np.testing.assert_array_equal(online.means_, start["means_init"])
        np.testing.assert_array_equal(online.weights_, start["weights_init"])
    assert online.n_batches_ == 12
    free = streamem.OnlineGaussianMixture(K, covariance_type="diag", warm_up=500, **start)
    for i in range(0, len(X), 500):
        free.partial_fit(X[i : i + 500])
    assert not np.array_equal(free.covariances_, online.covariances_)
    incremental = streamem.OnlineGaussianMixture(K, algorithm="incremental", freeze=("covariances",), **_start("full"))
    incremental.fit(X)
    np.testing.assert_array_equal(
        incremental.precisions_cholesky_, np.linalg.cholesky(_start("full")["precisions_init"])
    )


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"freeze": ("mean",)}, "freeze among weights, means, covariances, got 'mean'"),
        ({"freeze": ("means",), "means_init": None}, "give means_init"),
        ({"freeze": "covariances", "precisions_init": None}, "give precisions_init"),
        ({"freeze": ("means",), "mean_precision_prior": 1.0}, "cannot be combined with a prior"),
    ],
)
def test_bad_freeze_names_the_problem_and_leaves_the_model_untouched(params, match):
    X, _ = mixture_data(1000, D, K, seed=4)
    model = streamem.GaussianMixture(K, random_state=0).fit(X)
    means = model.means_.copy()
    model.set_params(**{**_start("full"), **params})
    with pytest.raises(ValueError, match=match):
        model.fit(X)
    np.testing.assert_array_equal(model.means_, means)
    if "mean_precision_prior" not in params:  # the online model has no prior
        online = streamem.OnlineGaussianMixture(K, **{**_start("full"), **params})
        with pytest.raises(ValueError, match=match):
            online.partial_fit(X)
        assert not hasattr(online, "means_")


def test_a_saved_model_keeps_freeze(tmp_path):
    X, _ = mixture_data(1000, D, K, seed=5)
    model = streamem.GaussianMixture(K, freeze=("means", "weights"), **_start("full")).fit(X)
    model.save(tmp_path / "m.zarr")
    loaded = streamem.load(tmp_path / "m.zarr")
    assert loaded.get_params()["freeze"] == ("means", "weights")
    loaded.set_params(warm_start=True).fit(X)  # goes on with the same parameters held
    np.testing.assert_array_equal(loaded.means_, model.means_)
