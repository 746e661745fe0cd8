"""MAP estimation with conjugate priors: the M-step against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import streamem
from streamem.core.mstep import m_step
from streamem.core.params import MixtureParams
from streamem.core.prior import Prior
from streamem.core.stats import chunk_stats

from .helpers import COVARIANCE_TYPES, mixture_data

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def psi_for(covariance_type, D):
    return {"full": np.eye(D) * 0.5 + 0.1, "tied": np.eye(D) * 0.5 + 0.1, "diag": np.full(D, 0.7), "spherical": 0.7}[
        covariance_type
    ]


def objective(params, X, resp, prior):
    """Expected complete-data log-likelihood plus log-prior, computed directly."""
    total = 0.0
    for k, full in enumerate(params.full_covariances):
        log_density = multivariate_normal(params.means[k], full).logpdf(X)
        total += resp[:, k] @ (np.log(params.weights[k]) + log_density)
    return total + prior.log_density(params)


def perturbations(params, rng, size=1e-3):
    """Small moves of each parameter group that keep the parameters valid."""
    kind = params.covariance_type
    w = params.weights * np.exp(size * rng.normal(size=params.weights.shape))
    yield MixtureParams.from_covariances(w / w.sum(), params.means, params.covariances, kind)
    yield MixtureParams.from_covariances(
        params.weights, params.means + size * rng.normal(size=params.means.shape), params.covariances, kind
    )
    c = params.covariances
    if kind in ("full", "tied"):
        a = size * rng.normal(size=c.shape)
        moved = c + (a + np.swapaxes(a, -1, -2)) / 2
    else:
        moved = c * np.exp(size * rng.normal(size=c.shape))
    yield MixtureParams.from_covariances(params.weights, params.means, moved, kind)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("with_mean_prior", [True, False])
def test_map_step_maximises_the_posterior(covariance_type, with_mean_prior):
    X, _ = mixture_data(n_samples=400, n_features=3, n_components=3, seed=4)
    D = X.shape[1]
    start = streamem.GaussianMixture(3, covariance_type=covariance_type, max_iter=2, random_state=0).fit(X)
    p0 = start.fitted_params()
    shift = X.mean(axis=0)
    (stats,) = chunk_stats(X, None, [p0], shift)
    prior = Prior(
        3.0,
        np.array([0.5, -0.5, 1.0]),
        2.0 if with_mean_prior else None,
        np.asarray(psi_for(covariance_type, D)),
        D + 2.0,
        covariance_type,
    )
    best, _ = m_step(stats, covariance_type, 0.0, prior)
    resp = start.predict_proba(X)
    f_best = objective(best, X, resp, prior)
    rng = np.random.default_rng(0)
    for _ in range(5):
        for moved in perturbations(best, rng):
            assert objective(moved, X, resp, prior) < f_best


def test_strong_priors_pull_the_estimates():
    X, _ = mixture_data(n_samples=3000, n_features=2, n_components=3, seed=5)
    plain = streamem.GaussianMixture(3, random_state=0).fit(X)
    flat = streamem.GaussianMixture(3, random_state=0, weight_concentration_prior=1.0).fit(X)
    np.testing.assert_allclose(flat.weights_, plain.weights_, rtol=1e-6)
    even = streamem.GaussianMixture(3, random_state=0, weight_concentration_prior=1e7).fit(X)
    np.testing.assert_allclose(even.weights_, 1 / 3, atol=1e-3)
    target = np.array([3.0, -2.0])
    pulled = streamem.GaussianMixture(3, random_state=0, mean_prior=target, mean_precision_prior=1e8).fit(X)
    np.testing.assert_allclose(pulled.means_, np.tile(target, (3, 1)), atol=1e-3)
    psi = np.array([[2.0, 0.3], [0.3, 1.0]])
    nu = 1e7
    shrunk = streamem.GaussianMixture(3, random_state=0, covariance_prior=psi * nu, degrees_of_freedom_prior=nu).fit(X)
    np.testing.assert_allclose(shrunk.covariances_, np.tile(psi, (3, 1, 1)), rtol=1e-3)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_map_em_never_decreases_the_posterior(covariance_type, tmp_path):
    X, _ = mixture_data(n_samples=2000, n_features=3, n_components=3, seed=6)
    gm = streamem.GaussianMixture(
        3,
        covariance_type=covariance_type,
        init_params="random",
        random_state=1,
        max_iter=60,
        tol=1e-9,
        weight_concentration_prior=2.0,
        mean_precision_prior=0.5,
        covariance_prior=psi_for(covariance_type, 3),
        degrees_of_freedom_prior=5.0,
    )
    gm.fit(X)
    assert np.all(np.diff(gm.lower_bounds_) >= -1e-10)
    # the lower bound is the mean log-likelihood plus the log-prior per sample
    p = gm.fitted_params()
    assert gm.history_[-1]["objective"] != gm.history_[-1]["log_likelihood"]
    log_lik = logsumexp(
        np.column_stack(
            [np.log(p.weights[k]) + multivariate_normal(p.means[k], p.full_covariances[k]).logpdf(X) for k in range(3)]
        ),
        axis=1,
    ).mean()
    assert gm.score(X) == pytest.approx(log_lik, rel=1e-10)
    gm.save(tmp_path / "m.zarr")
    loaded = streamem.load(tmp_path / "m.zarr")
    assert loaded.history_ == gm.history_ and loaded.lower_bounds_ == gm.lower_bounds_
    np.testing.assert_array_equal(np.asarray(loaded.covariance_prior), np.asarray(psi_for(covariance_type, 3)))
    assert loaded.degrees_of_freedom_prior == 5.0


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"degrees_of_freedom_prior": 5.0}, "needs covariance_prior"),
        ({"covariance_prior": np.eye(3)}, "shape"),
        ({"covariance_prior": -np.eye(2)}, "increase reg_covar|positive"),
        ({"covariance_prior": np.array([[1.0, 2.0], [0.0, 1.0]])}, "symmetric"),
        ({"covariance_prior": np.array([[1.0, 2.0], [2.0, 1.0]])}, "positive definite covariance_prior"),
        ({"covariance_prior": np.eye(2), "degrees_of_freedom_prior": 0.5}, "degrees_of_freedom_prior"),
        ({"mean_precision_prior": 1.0, "mean_prior": [1.0, 2.0, 3.0]}, "mean_prior"),
        ({"weight_concentration_prior": 0.5}, "weight_concentration_prior"),
        ({"mean_precision_prior": 0.0}, "mean_precision_prior"),
    ],
)
def test_bad_priors(params, match):
    """Each names the parameter to change (a prior that is not positive definite is the
    prior's fault, not reg_covar's)."""
    X, _ = mixture_data(n_samples=200, n_features=2, n_components=2, seed=7)
    with pytest.raises(ValueError, match=match):
        streamem.GaussianMixture(2, **params).fit(X)


@pytest.mark.parametrize(("covariance_type", "psi"), [("diag", np.array([1.0, -1.0])), ("spherical", np.array(0.0))])
def test_bad_prior_scales_of_the_diagonal_types(covariance_type, psi):
    X, _ = mixture_data(n_samples=200, n_features=2, n_components=2, seed=7)
    with pytest.raises(ValueError, match="positive covariance_prior"):
        streamem.GaussianMixture(2, covariance_type=covariance_type, covariance_prior=psi).fit(X)
