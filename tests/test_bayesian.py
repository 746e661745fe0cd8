"""BayesianGaussianMixture: scikit-learn's variational mixture on the chunked engine."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.mixture import BayesianGaussianMixture as SkBayesianGaussianMixture
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

import streamem

from .conftest import COVARIANCE_TYPES, mixture_data

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "mean_precision_", "degrees_of_freedom_")


class _GivenResponsibilities(SkBayesianGaussianMixture):
    """scikit-learn's estimator started from given responsibilities (its ``_initialize``)."""

    def _initialize_parameters(self, X, random_state, xp=None):
        self._initialize(X, self.given_resp)


def _start_from(X, resp, covariance_type, reg_covar=1e-6):
    """streamem's initial parameters equivalent to initial responsibilities ``resp``."""
    nk, xk, sk = _estimate_gaussian_parameters(X, resp, reg_covar, covariance_type)
    precisions = np.linalg.inv(sk) if covariance_type in ("full", "tied") else 1.0 / sk
    return {"weights_init": nk / nk.sum(), "means_init": xk, "precisions_init": precisions}


def _data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(m, s, (400, 3)) for m, s in ((-5, 1.0), (0, 0.5), (5, 2.0))])


def _relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_equals_scikit_learn_from_the_same_responsibilities(covariance_type, prior_type):
    X = _data()
    K = 6
    resp = np.random.default_rng(1).dirichlet(np.ones(K), size=len(X))
    params = dict(covariance_type=covariance_type, weight_concentration_prior_type=prior_type, max_iter=15, tol=0.0)
    reference = _GivenResponsibilities(n_components=K, **params)
    reference.given_resp = resp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(X)
        model = streamem.BayesianGaussianMixture(K, **params, **_start_from(X, resp, covariance_type)).fit(X)
    for name in FITTED:
        assert _relative(getattr(model, name), getattr(reference, name)) < 1e-8, name
    assert _relative(np.asarray(model.weight_concentration_), np.asarray(reference.weight_concentration_)) < 1e-8
    assert _relative(model.lower_bound_, np.asarray(reference.lower_bound_).item()) < 1e-8
    assert _relative(model.covariance_prior_, reference.covariance_prior_) < 1e-8
    np.testing.assert_allclose(model.predict_proba(X), reference.predict_proba(X), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.score_samples(X), reference.score_samples(X), rtol=1e-8)
    assert model.n_iter_ == reference.n_iter_ == 15


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_lower_bound_never_decreases(covariance_type):
    X, _ = mixture_data(n_samples=3000, n_components=4, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.BayesianGaussianMixture(8, covariance_type=covariance_type, max_iter=40, tol=0.0,
                                                 random_state=0).fit(X)  # fmt: skip
    bounds = np.array(model.lower_bounds_)
    assert len(bounds) == 40 and np.all(np.isfinite(bounds))
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:])), np.diff(bounds).min()
    assert [h["objective"] for h in model.history_] == model.lower_bounds_


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_chunking_does_not_change_the_fit(prior_type):
    X, _ = mixture_data(n_samples=2300, n_components=3, seed=4)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(X)), size=22, replace=False))
    chunks = tuple(np.diff(np.concatenate([[0], cuts, [len(X)]])))
    params = dict(weight_concentration_prior_type=prior_type, max_iter=10, tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = streamem.BayesianGaussianMixture(5, **params).fit(da.from_array(X, chunks=(len(X), 3)))
        pieces = streamem.BayesianGaussianMixture(5, **params).fit(da.from_array(X, chunks=(chunks, 3)))
    for name in FITTED:
        assert _relative(getattr(pieces, name), getattr(whole, name)) < 1e-10, name
    assert _relative(pieces.lower_bound_, whole.lower_bound_) < 1e-10


def test_unneeded_components_are_unused_and_never_predicted():
    X, _ = mixture_data(n_samples=3000, n_components=3, seed=5, spread=8.0)
    model = streamem.BayesianGaussianMixture(10, weight_concentration_prior=1e-3, max_iter=300, random_state=0).fit(X)
    used = model.weights_ >= 1e-3
    assert model.n_components_effective_ == used.sum() == 3
    labels = model.predict(X)
    assert set(np.unique(labels)) <= set(np.flatnonzero(used))
    assert len(np.unique(labels)) == 3


def test_sample_weights_count_as_repeated_rows():
    X, _ = mixture_data(n_samples=600, n_components=2, seed=6)
    counts = np.random.default_rng(0).integers(0, 3, size=len(X))
    start = _start_from(X, np.eye(2)[(X[:, 0] > X[:, 0].mean()).astype(int)], "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted = streamem.BayesianGaussianMixture(2, max_iter=5, tol=0.0, **start).fit(X, sample_weight=counts)
        repeated = streamem.BayesianGaussianMixture(2, max_iter=5, tol=0.0, **start).fit(np.repeat(X, counts, axis=0))
    for name in FITTED:
        assert _relative(getattr(weighted, name), getattr(repeated, name)) < 1e-9, name


def test_several_candidates_keep_the_best_lower_bound():
    X, _ = mixture_data(n_samples=2000, n_components=3, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = streamem.BayesianGaussianMixture(4, n_init=3, max_iter=20, random_state=0).fit(X)
        singles = [streamem.BayesianGaussianMixture(4, max_iter=20, random_state=seed).fit(X) for seed in range(3)]
    assert best.lower_bound_ >= min(s.lower_bound_ for s in singles)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_save_load_and_scikit_learn_round_trips(tmp_path, covariance_type):
    X, _ = mixture_data(n_samples=1500, n_components=3, seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.BayesianGaussianMixture(4, covariance_type=covariance_type, max_iter=20, random_state=0)
        model.fit(X)
    model.save(tmp_path / "model.zarr")
    loaded = streamem.load(tmp_path / "model.zarr")
    assert type(loaded) is streamem.BayesianGaussianMixture
    for name in (*FITTED, "lower_bound_", "mean_prior_", "covariance_prior_", "n_components_effective_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.history_ == model.history_

    sk = model.to_sklearn()
    np.testing.assert_allclose(sk.predict_proba(X), model.predict_proba(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sk.score_samples(X), model.score_samples(X), rtol=1e-10)
    back = streamem.BayesianGaussianMixture.from_sklearn(sk)
    np.testing.assert_allclose(back.score_samples(X), model.score_samples(X), rtol=1e-12)


def test_a_checkpoint_loads_as_a_bayesian_mixture(tmp_path):
    X, _ = mixture_data(n_samples=1000, n_components=2, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.BayesianGaussianMixture(3, max_iter=6, tol=0.0, random_state=0, checkpoint=tmp_path / "ckpt")
        model.fit(X)
        again = streamem.BayesianGaussianMixture(3, max_iter=6, tol=0.0, random_state=0, checkpoint=tmp_path / "ckpt")
        again.fit(X)  # a finished fit's checkpoint gives its result at once
    np.testing.assert_array_equal(again.means_, model.means_)
    assert again.lower_bound_ == model.lower_bound_
    from_checkpoint = streamem.load(tmp_path / "ckpt")
    assert type(from_checkpoint) is streamem.BayesianGaussianMixture
    np.testing.assert_array_equal(from_checkpoint.weight_concentration_, model.weight_concentration_)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"weight_concentration_prior": -1.0}, "weight_concentration_prior"),
        ({"mean_precision_prior": 0.0}, "mean_precision_prior"),
        ({"degrees_of_freedom_prior": 1.0}, "degrees_of_freedom_prior"),
        ({"covariance_prior": np.eye(2)}, "covariance_prior of shape"),
        ({"covariance_prior": -np.eye(3)}, "positive definite covariance_prior"),
        ({"mean_prior": np.zeros(2)}, "mean_prior of shape"),
        ({"weight_concentration_prior_type": "stick"}, "weight_concentration_prior_type"),
    ],
)
def test_bad_priors_name_the_parameter_and_leave_the_model_untouched(params, match):
    X, _ = mixture_data(n_samples=500, n_components=2, seed=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.BayesianGaussianMixture(2, max_iter=5, random_state=0).fit(X)
    before = {name: np.copy(getattr(model, name)) for name in FITTED}
    model.set_params(**params)
    with pytest.raises(ValueError, match=match):
        model.fit(X)
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(model, name), value)


def _with_holes(X, fraction=0.15, seed=0):
    rng = np.random.default_rng(seed)
    holes = rng.random(X.shape) < fraction
    holes[:3] = True  # rows with nothing observed: ignored and counted
    out = X.copy()
    out[holes] = np.nan
    return out


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_missing_values_keep_the_lower_bound_increasing(covariance_type):
    X, _ = mixture_data(n_samples=1500, n_features=4, n_components=3, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.BayesianGaussianMixture(5, covariance_type=covariance_type, missing="marginalize",
                                                 max_iter=40, tol=0.0, random_state=0).fit(_with_holes(X))  # fmt: skip
    bounds = np.array(model.lower_bounds_)
    assert np.all(np.isfinite(bounds)) and np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:]))
    assert model.n_rows_ignored_ == 3
    assert np.isfinite(model.predict_proba(_with_holes(X))).all()


def test_missing_values_without_holes_change_nothing_and_chunking_changes_nothing():
    X, _ = mixture_data(n_samples=1200, n_features=3, n_components=3, seed=12)
    params = dict(max_iter=8, tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = streamem.BayesianGaussianMixture(4, **params).fit(X)
        marginal = streamem.BayesianGaussianMixture(4, missing="marginalize", **params).fit(X)
        holes = _with_holes(X)
        whole = streamem.BayesianGaussianMixture(4, missing="marginalize", **params)
        whole.fit(da.from_array(holes, chunks=(len(X), 3)))
        pieces = streamem.BayesianGaussianMixture(4, missing="marginalize", **params)
        pieces.fit(da.from_array(holes, chunks=(97, 3)))
    for name in FITTED:
        assert _relative(getattr(marginal, name), getattr(plain, name)) < 1e-12, name
        assert _relative(getattr(pieces, name), getattr(whole, name)) < 1e-10, name


def test_the_command_line_reads_a_saved_variational_fit(tmp_path):
    import subprocess
    import sys

    X, _ = mixture_data(n_samples=800, n_components=2, seed=13)
    np.save(tmp_path / "x.npy", X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.BayesianGaussianMixture(3, max_iter=30, random_state=0).fit(X)
    model.save(tmp_path / "m.zarr")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "streamem", *map(str, args)], capture_output=True, text=True)

    info = cli("info", tmp_path / "m.zarr")
    assert info.returncode == 0 and "BayesianGaussianMixture" in info.stdout
    score = cli("score", tmp_path / "m.zarr", tmp_path / "x.npy")
    assert score.returncode == 0 and "BIC" not in score.stdout
    assert float(score.stdout.split(":")[-1]) == pytest.approx(model.score(X), abs=1e-6)  # printed to 6 places
    assert cli("predict", tmp_path / "m.zarr", tmp_path / "x.npy", "--out", tmp_path / "l.npy").returncode == 0
    np.testing.assert_array_equal(np.load(tmp_path / "l.npy"), model.predict(X))
    with pytest.raises(AttributeError, match="BIC is not defined"):
        model.bic(X)


def test_missing_values_equal_a_direct_variational_step():
    """One iteration with holes against a direct computation, row by row: each row's
    log-density is the expected Gaussian's marginal on its observed values plus the
    E-step constants, its holes their conditional expectation (and covariance) under that
    Gaussian, and the posterior the normal-Wishart update of those statistics."""
    from scipy.special import digamma, logsumexp
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(14)
    X = np.concatenate([rng.normal(m, 1.0, (150, 3)) for m in (-3, 0, 3)])
    X[rng.random(X.shape) < 0.25] = np.nan
    X = X[~np.isnan(X).all(axis=1)]
    params = dict(covariance_type="full", missing="marginalize", tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = streamem.BayesianGaussianMixture(3, max_iter=3, **params).fit(X)
        after = streamem.BayesianGaussianMixture(3, max_iter=4, **params).fit(X)
    K, D = before.means_.shape
    a, b = before.weight_concentration_
    log_pi = digamma(a) - digamma(a + b) + np.hstack((0, np.cumsum(digamma(b) - digamma(a + b))[:-1]))
    nu, beta = before.degrees_of_freedom_, before.mean_precision_
    log_lambda = D * np.log(2) + digamma(0.5 * (nu - np.arange(D)[:, None])).sum(axis=0)
    constants = log_pi - 0.5 * D * np.log(nu) + 0.5 * (log_lambda - D / beta)
    nk, sx, sxx = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D))
    for x in X:
        o = ~np.isnan(x)
        log_rho, filled, extra = np.empty(K), [], []
        for k in range(K):
            mean, cov = before.means_[k], before.covariances_[k]
            log_rho[k] = constants[k] + multivariate_normal(mean[o], cov[np.ix_(o, o)]).logpdf(x[o])
            gain = cov[np.ix_(~o, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
            full = x.copy()
            full[~o] = mean[~o] + gain @ (x[o] - mean[o])
            holes = np.zeros((D, D))
            holes[np.ix_(~o, ~o)] = cov[np.ix_(~o, ~o)] - gain @ cov[np.ix_(o, ~o)]
            filled.append(full)
            extra.append(holes)
        r = np.exp(log_rho - logsumexp(log_rho))
        for k in range(K):
            nk[k] += r[k]
            sx[k] += r[k] * filled[k]
            sxx[k] += r[k] * (np.outer(filled[k], filled[k]) + extra[k])
    nk += 10 * np.finfo(float).eps
    xk = sx / nk[:, None]
    sk = sxx / nk[:, None, None] - xk[:, :, None] * xk[:, None, :] + 1e-6 * np.eye(D)
    beta0, m0, nu0, psi = (
        after.mean_precision_prior_,
        after.mean_prior_,
        after.degrees_of_freedom_prior_,
        after.covariance_prior_,
    )
    beta_new = beta0 + nk
    means = (beta0 * m0 + nk[:, None] * xk) / beta_new[:, None]
    d = xk - m0
    covariances = psi + nk[:, None, None] * sk + (nk * beta0 / beta_new)[:, None, None] * d[:, :, None] * d[:, None, :]
    covariances /= (nu0 + nk)[:, None, None]
    np.testing.assert_allclose(after.mean_precision_, beta_new, rtol=1e-10)
    np.testing.assert_allclose(after.means_, means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(after.covariances_, covariances, rtol=1e-9, atol=1e-12)
