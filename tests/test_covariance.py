"""Each covariance type's log-density against a direct scipy computation."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from streamem.core.kernels import responsibilities_inplace
from streamem.core.params import MixtureParams

from .helpers import COVARIANCE_TYPES


def random_covariances(covariance_type, n_components, n_features, rng):
    if covariance_type == "full":
        a = rng.normal(size=(n_components, n_features, n_features))
        return a @ a.transpose(0, 2, 1) + n_features * np.eye(n_features)
    if covariance_type == "tied":
        a = rng.normal(size=(n_features, n_features))
        return a @ a.T + n_features * np.eye(n_features)
    if covariance_type == "diag":
        return rng.uniform(0.5, 2.0, size=(n_components, n_features))
    return rng.uniform(0.5, 2.0, size=n_components)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("shift", [0.0, 3.0, 1e6])
def test_log_density_matches_scipy(covariance_type, shift):
    rng = np.random.default_rng(0)
    K, D = 4, 3
    covariances = random_covariances(covariance_type, K, D, rng)
    weights = rng.dirichlet(np.ones(K))
    means = rng.normal(size=(K, D)) * 3
    params = MixtureParams.from_covariances(weights, means, covariances, covariance_type)
    X = rng.normal(size=(50, D)) * 3
    c = np.full(D, shift)
    kernel = params.kernel(np.float64, c)
    weighted = kernel.log_prob(X).T
    expected = np.column_stack(
        [np.log(weights[k]) + multivariate_normal(means[k], params.full_covariances[k]).logpdf(X) for k in range(K)]
    )
    np.testing.assert_allclose(weighted, expected, rtol=1e-12, atol=1e-10)
    log_lik = responsibilities_inplace(weighted.T.copy())
    np.testing.assert_allclose(log_lik, np.logaddexp.reduce(expected, axis=1), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_precision_cholesky_round_trip(covariance_type):
    rng = np.random.default_rng(1)
    covariances = random_covariances(covariance_type, 3, 4, rng)
    params = MixtureParams.from_covariances(np.full(3, 1 / 3), np.zeros((3, 4)), covariances, covariance_type)
    cov = params.covariance
    np.testing.assert_allclose(cov.covariances_from_precisions_chol(params.precisions_chol), covariances, rtol=1e-10)
    again = cov.precisions_chol_from_precisions(params.precisions)  # a lower factor, as scikit-learn's
    np.testing.assert_allclose(cov.precisions(again), params.precisions, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov.covariances_from_precisions_chol(again), covariances, rtol=1e-10)


def test_singular_covariance_names_the_remedy():
    with pytest.raises(ValueError, match="increase reg_covar"):
        MixtureParams.from_covariances(np.ones(1), np.zeros((1, 2)), np.zeros((1, 2, 2)), "full")
    with pytest.raises(ValueError, match="increase reg_covar"):
        MixtureParams.from_covariances(np.ones(1), np.zeros((1, 2)), np.zeros((1, 2)), "diag")


def test_unknown_covariance_type():
    from streamem.core.covariance import get_covariance

    with pytest.raises(ValueError, match="expected covariance_type"):
        get_covariance("banana")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_precision_factor_is_scipys_bit_for_bit(dtype):
    """LAPACK called directly (potrf, trtrs) gives scipy.linalg's factors to the last bit,
    and refuses a matrix that is not positive definite, or not finite, by name."""
    from scipy import linalg

    from streamem.core.covariance import _cholesky_of_precision, _cholesky_precision, _covariance_of_chol

    rng = np.random.default_rng(0)
    for n_features in (1, 2, 7, 30):
        root = rng.normal(size=(n_features, n_features))
        covariance = (root @ root.T + 1e-3 * np.eye(n_features)).astype(dtype)
        factor = linalg.cholesky(covariance, lower=True)
        expected = linalg.solve_triangular(factor, np.eye(n_features), lower=True).T
        precision_chol = _cholesky_precision(covariance)
        assert precision_chol.dtype == expected.dtype and np.array_equal(precision_chol, expected)
        assert np.array_equal(_cholesky_of_precision(covariance), factor)
        inverse = linalg.solve_triangular(expected, np.eye(n_features), lower=False)
        assert np.array_equal(_covariance_of_chol(precision_chol), inverse.T @ inverse)
    for bad in ([[1.0, 2.0], [2.0, 1.0]], [[np.nan, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]):
        with pytest.raises(ValueError, match="ill-defined empirical covariance"):
            _cholesky_precision(np.array(bad, dtype=dtype))
        with pytest.raises(ValueError, match="positive-definite precisions"):
            _cholesky_of_precision(np.array(bad, dtype=dtype))
