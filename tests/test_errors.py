"""Bad input gets a clear ValueError naming the problem."""

import dask.array as da
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import streamem


@pytest.fixture
def fitted(blobs):
    return streamem.GaussianMixture(3, random_state=0).fit(blobs[0])


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize(("value", "word"), [(np.nan, "NaN"), (np.inf, "infinity")])
def test_non_finite_values(blobs, lazy, value, word):
    X = blobs[0].copy()
    X[1234, 1] = value
    data = da.from_array(X, chunks=(500, 3)) if lazy else X
    with pytest.raises(ValueError, match=word):
        streamem.GaussianMixture(3).fit(data)


@pytest.mark.parametrize("lazy", [False, True])
def test_non_finite_at_predict(fitted, blobs, lazy):
    X = blobs[0].copy()
    X[5, 0] = np.nan
    data = da.from_array(X, chunks=(500, 3)) if lazy else X
    with pytest.raises(ValueError, match="NaN"):
        result = fitted.predict(data)
        if lazy:
            result.compute()


@pytest.mark.parametrize("lazy", [False, True])
def test_wrong_number_of_features_at_predict(fitted, blobs, lazy):
    X = blobs[0][:, :2]
    data = da.from_array(X) if lazy else X
    for method in ("predict", "predict_proba", "score_samples", "score"):
        with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3"):
            getattr(fitted, method)(data)


@pytest.mark.parametrize("lazy", [False, True])
def test_fewer_samples_than_components(lazy):
    X = np.random.default_rng(0).normal(size=(3, 2))
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        streamem.GaussianMixture(5).fit(da.from_array(X) if lazy else X)


@pytest.mark.parametrize("lazy", [False, True])
def test_empty_input(lazy):
    X = np.empty((0, 3))
    with pytest.raises(ValueError, match="0 sample"):
        streamem.GaussianMixture(1).fit(da.from_array(X) if lazy else X)


@pytest.mark.parametrize("lazy", [False, True])
def test_non_numeric_dtype(lazy):
    X = np.array([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match="could not convert|numeric"):
        streamem.GaussianMixture(1).fit(da.from_array(X) if lazy else X)


@pytest.mark.parametrize("lazy", [False, True])
def test_one_dimensional_input(lazy):
    X = np.arange(10.0)
    with pytest.raises(ValueError, match="2D array"):
        streamem.GaussianMixture(1).fit(da.from_array(X) if lazy else X)


def test_complex_input():
    with pytest.raises(ValueError, match="[Cc]omplex"):
        streamem.GaussianMixture(1).fit(np.ones((5, 2), dtype=complex))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_components": 0}, "n_components"),
        ({"covariance_type": "banana"}, "covariance_type"),
        ({"init_params": "nope"}, "init_params"),
        ({"tol": -1.0}, "tol"),
        ({"reg_covar": -1.0}, "reg_covar"),
        ({"max_iter": -1}, "max_iter"),
        ({"n_init": 0}, "n_init"),
        ({"weights_init": [0.5, 0.6, -0.1]}, "weights_init"),
        ({"weights_init": [0.5, 0.5]}, "weights_init"),
        ({"means_init": np.zeros((3, 2))}, "means_init"),
        ({"precisions_init": np.ones((3, 2))}, "precisions_init"),
        ({"precisions_init": -np.ones((3, 3)), "covariance_type": "diag"}, "precisions_init"),
    ],
)
def test_bad_hyper_parameters(blobs, params, match):
    kwargs = {"n_components": 3, **params}
    with pytest.raises(ValueError, match=match):
        streamem.GaussianMixture(**kwargs).fit(blobs[0])


def test_bad_sample_weight(blobs):
    X = blobs[0]
    for weights in (-np.ones(len(X)), da.from_array(-np.ones(len(X)), chunks=700)):
        with pytest.raises(ValueError, match="[Nn]egative"):
            streamem.GaussianMixture(3).fit(X, sample_weight=weights)
    with pytest.raises(ValueError, match="shape"):
        streamem.GaussianMixture(3).fit(X, sample_weight=np.ones(5))
    with pytest.raises(ValueError, match="non-zero|positive sum"):
        streamem.GaussianMixture(3).fit(X, sample_weight=np.zeros(len(X)))
    zeros = da.zeros(len(X), chunks=700)
    with pytest.raises(ValueError, match="positive sum"):
        streamem.GaussianMixture(3).fit(X, sample_weight=zeros)
    start = {"weights_init": np.full(3, 1 / 3), "means_init": X[:3], "precisions_init": np.ones(3)}
    with pytest.raises(ValueError, match="positive sum"):
        streamem.GaussianMixture(3, covariance_type="spherical", **start).fit(X, sample_weight=zeros)


def test_unfitted(blobs):
    with pytest.raises(NotFittedError):
        streamem.GaussianMixture(3).predict(blobs[0])


def test_missing_zarr_path(tmp_path):
    with pytest.raises(ValueError, match="no such file or directory"):
        streamem.GaussianMixture(1).fit(str(tmp_path / "nothing.zarr"))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fewer_distinct_rows_than_components_without_regularisation(covariance_type, dtype):
    """Really ill-posed: a component's covariance can only be zero; the error names reg_covar."""
    X = np.repeat([[0.0, 0.0], [5.0, 5.0]], 50, axis=0).astype(dtype)
    with pytest.raises(ValueError, match="reg_covar"):
        streamem.GaussianMixture(3, covariance_type=covariance_type, reg_covar=0.0, random_state=0).fit(X)
