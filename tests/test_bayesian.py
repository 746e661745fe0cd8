"""BayesianGaussianMixture: scikit-learn's variational mixture on the chunked engine."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.mixture import BayesianGaussianMixture as SkBayesianGaussianMixture
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

import streamem

from .helpers import COVARIANCE_TYPES, cli, mixture_data

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
        model = streamem.BayesianGaussianMixture(
            K, accelerate=None, moves=None, **params, **_start_from(X, resp, covariance_type)
        ).fit(X)
    for name in FITTED:
        assert _relative(getattr(model, name), getattr(reference, name)) < 1e-8, name
    assert _relative(np.asarray(model.weight_concentration_), np.asarray(reference.weight_concentration_)) < 1e-8
    assert _relative(model.lower_bound_, np.asarray(reference.lower_bound_).item()) < 1e-8
    assert _relative(model.covariance_prior_, reference.covariance_prior_) < 1e-8
    np.testing.assert_allclose(model.predict_proba(X), reference.predict_proba(X), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.score_samples(X), reference.score_samples(X), rtol=1e-8)
    assert model.n_iter_ == reference.n_iter_ == 15


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("settings", [dict(accelerate=None, moves=None), {}], ids=["plain", "defaults"])
def test_the_lower_bound_never_decreases(covariance_type, settings):
    X, _ = mixture_data(n_samples=3000, n_components=4, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.BayesianGaussianMixture(
            8, covariance_type=covariance_type, max_iter=40, tol=0.0, random_state=0, **settings
        ).fit(X)
    bounds = np.array(model.lower_bounds_)
    assert len(bounds) == 40 and np.all(np.isfinite(bounds))
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:])), np.diff(bounds).min()
    accepted = [h["objective"] for h in model.history_ if h["accepted"]]
    assert accepted == sorted(accepted) or np.all(np.diff(accepted) >= -1e-9 * np.abs(accepted[-1]))
    if not settings and covariance_type == "full":  # merges: 8 components on 4 clusters
        assert any("merged" in h for h in model.history_)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_start_with_a_singular_covariance_fits_without_reg_covar(covariance_type):
    """The prior regularises the start's covariances: with ``reg_covar=0`` a component of two
    rows in three features (a singular covariance) starts the posterior as scikit-learn's."""
    rng = np.random.default_rng(0)
    X = np.concatenate(
        [rng.normal(0.0, 1.0, (24, 3)), rng.normal(12.0, 1.0, (24, 3)), [[30.0, 30.0, 30.0], [30.5, 29.5, 30.25]]]
    )
    resp = np.zeros((len(X), 3))
    resp[:24, 0], resp[24:48, 1], resp[48:, 2] = 1.0, 1.0, 1.0
    centres = resp.T @ X / resp.sum(axis=0)[:, None]  # they partition X as resp does
    params = dict(covariance_type=covariance_type, reg_covar=0.0, max_iter=10, tol=0.0)
    reference = _GivenResponsibilities(n_components=3, **params)
    reference.given_resp = resp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(X)
        model = streamem.BayesianGaussianMixture(3, accelerate=None, moves=None, means_init=centres, **params).fit(X)
    for name in FITTED:
        assert _relative(getattr(model, name), getattr(reference, name)) < 1e-8, name
    assert _relative(model.lower_bound_, np.asarray(reference.lower_bound_).item()) < 1e-8


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
        model = streamem.BayesianGaussianMixture(
            5, covariance_type=covariance_type, missing="marginalize", max_iter=40, tol=0.0, random_state=0
        ).fit(_with_holes(X))
    bounds = np.array(model.lower_bounds_)
    assert np.all(np.isfinite(bounds)) and np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:]))
    assert model.n_rows_ignored_ == 3
    assert np.isfinite(model.predict_proba(_with_holes(X))).all()


def test_missing_values_without_holes_change_nothing_and_chunking_changes_nothing():
    X, _ = mixture_data(n_samples=1200, n_features=3, n_components=3, seed=12)
    params = dict(max_iter=8, tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = streamem.BayesianGaussianMixture(4, moves=None, **params).fit(X)  # merges need complete rows
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

    X, _ = mixture_data(n_samples=800, n_components=2, seed=13)
    np.save(tmp_path / "x.npy", X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.BayesianGaussianMixture(3, max_iter=30, random_state=0).fit(X)
    model.save(tmp_path / "m.zarr")

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


# ------------------------------------------------------------------ the ELBO and partial_fit


def _fitted_model(model):
    """The variational model of a fitted estimator (its prior, about the data's centre)."""
    prior = streamem.models.bayesian.VariationalPrior(
        model.weight_concentration_prior_type,
        model.weight_concentration_prior_,
        model.mean_precision_prior_,
        model.mean_prior_,
        model.degrees_of_freedom_prior_,
        np.asarray(model.covariance_prior_),
    )
    return streamem.models.bayesian.VariationalModel(model.covariance_type, model.reg_covar, model.mean_prior_, prior)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_the_divergence_from_the_prior_equals_a_monte_carlo_estimate(prior_type):
    from scipy import stats
    from scipy.special import betaln

    X = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.BayesianGaussianMixture(
            4, weight_concentration_prior_type=prior_type, max_iter=3, random_state=0
        ).fit(X)
    prior = _fitted_model(model).prior
    rng = np.random.default_rng(0)
    N, D = 6000, X.shape[1]
    log_ratio = np.zeros(N)  # log q(theta) - log p(theta) at draws from q
    if prior_type == "dirichlet_process":
        alpha0 = prior.weight_concentration
        for a, b in zip(*model.weight_concentration_):  # Beta sticks, their logs formed stably from gamma draws
            ga, gb = rng.gamma(a, size=N), rng.gamma(b, size=N)
            log_v, log_1v = np.log(ga) - np.log(ga + gb), np.log(gb) - np.log(ga + gb)
            log_ratio += (a - 1) * log_v + (b - 1) * log_1v - betaln(a, b) - ((alpha0 - 1) * log_1v - betaln(1, alpha0))
    else:
        alpha = model.weight_concentration_
        pi = np.clip(rng.dirichlet(alpha, N), 1e-300, None).T
        alpha0 = np.full(4, prior.weight_concentration)
        log_ratio += stats.dirichlet.logpdf(pi, alpha) - stats.dirichlet.logpdf(pi, alpha0)
    W0 = np.linalg.inv(prior.covariance)
    for k in range(4):
        nu, beta = model.degrees_of_freedom_[k], model.mean_precision_[k]
        W = model.precisions_[k] / nu
        L = stats.wishart.rvs(df=nu, scale=W, size=N, random_state=rng)
        log_ratio += stats.wishart.logpdf(L.transpose(1, 2, 0), df=nu, scale=W)
        log_ratio -= stats.wishart.logpdf(L.transpose(1, 2, 0), df=prior.degrees_of_freedom, scale=W0)
        chol = np.linalg.cholesky(beta * L)  # mu ~ N(m_k, (beta Lambda)^-1): m + chol^-T z
        z = rng.standard_normal((N, D, 1))
        mu = model.means_[k] + np.linalg.solve(np.swapaxes(chol, 1, 2), z)[:, :, 0]
        d1, d0 = mu - model.means_[k], mu - prior.mean
        q1, q0 = np.einsum("nd,nde,ne->n", d1, L, d1), np.einsum("nd,nde,ne->n", d0, L, d0)
        log_ratio += 0.5 * D * np.log(beta / prior.mean_precision) - 0.5 * beta * q1 + 0.5 * prior.mean_precision * q0
    standard_error = log_ratio.std() / np.sqrt(N)
    kl = _fitted_model(model).kl_divergence(model._state_params())
    assert abs(kl - log_ratio.mean()) < 5 * standard_error + 1e-6, (kl, log_ratio.mean(), standard_error)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_the_elbo_of_the_data_never_decreases_along_the_iterations(covariance_type):
    X = _data()
    model = streamem.BayesianGaussianMixture(
        6, covariance_type=covariance_type, max_iter=1, init_params="random", random_state=0, warm_start=True
    )
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(12):
            values.append(model.fit(X).elbo(X))
    assert np.all(np.diff(values) > -1e-10), np.diff(values)
    # the data term is the sum of score_samples, the rest the divergence from the prior
    kl = _fitted_model(model).kl_divergence(model._state_params())
    np.testing.assert_allclose(values[-1] * len(X), model.score_samples(X).sum() - kl, rtol=1e-12)


def _workload(seed, n=20_000, d=4, k=5):
    X, _ = mixture_data(n, d, k, seed=seed)
    return X[np.random.default_rng(seed).permutation(len(X))]


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_pass_of_partial_fit_is_within_one_percent_of_the_batch_elbo(covariance_type, prior_type):
    """From the same start (k-means centres and weights): the overlapping clusters of these
    workloads have several optima, among which fits from different starts differ by more."""
    from sklearn.cluster import KMeans

    seed = COVARIANCE_TYPES.index(covariance_type) + 10 * PRIOR_TYPES.index(prior_type)
    X = _workload(seed)
    kmeans = KMeans(8, n_init=1, random_state=0).fit(X)
    params = dict(
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        random_state=0,
        means_init=kmeans.cluster_centers_,
        weights_init=np.bincount(kmeans.labels_, minlength=8) / len(X),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # coordinate ascent, as partial_fit's steps (merges prune further)
        batch = streamem.BayesianGaussianMixture(8, max_iter=300, moves=None, **params).fit(X)
    online = streamem.BayesianGaussianMixture(8, **params)
    for start in range(0, len(X), 500):
        online.partial_fit(X[start : start + 500])
    assert online.n_samples_seen_ == len(X) and online.n_batches_ == len(X) // 500
    assert online.elbo(X) == pytest.approx(batch.elbo(X), rel=0.01)
    # lower_bound_ is scikit-learn's bound for the rows seen, as the batch fit's for its rows
    assert online.lower_bound_ / len(X) == pytest.approx(batch.lower_bound_ / len(X), abs=0.05)


def test_partial_fit_continues_exactly_after_save_and_load(tmp_path):
    X = _workload(5, n=8000)
    batches = [X[i : i + 400] for i in range(0, len(X), 400)]
    whole = streamem.BayesianGaussianMixture(6, random_state=0, forgetting=0.02)
    for batch in batches:
        whole.partial_fit(batch)
    first = streamem.BayesianGaussianMixture(6, random_state=0, forgetting=0.02)
    for batch in batches[:10]:
        first.partial_fit(batch)
    first.save(tmp_path / "m.zarr")
    second = streamem.load(tmp_path / "m.zarr")
    assert type(second) is streamem.BayesianGaussianMixture and second.n_batches_ == 10
    for batch in batches[10:]:
        second.partial_fit(batch)
    for name in FITTED:
        np.testing.assert_array_equal(getattr(second, name), getattr(whole, name), err_msg=name)
    assert second.lower_bound_ == whole.lower_bound_ and second.n_samples_seen_ == len(X)


def test_partial_fit_prunes_like_the_batch_fit_and_fit_starts_again():
    X = _workload(6)
    online = streamem.BayesianGaussianMixture(10, weight_concentration_prior=1e-3, random_state=0)
    for start in range(0, len(X), 1000):
        online.partial_fit(X[start : start + 1000])
    assert online.n_components_effective_ == 5
    assert set(np.unique(online.predict(X))) <= set(np.flatnonzero(online.weights_ >= 1e-3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        online.fit(X[:2000])
    assert not online.initialised and not hasattr(online, "n_batches_")
    online.partial_fit(X[:3000])  # after a batch fit, partial_fit starts a new stream
    assert online.n_batches_ == 1 and online.n_samples_seen_ == 3000


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (np.ones((500, 3)), "X has 3 features, but BayesianGaussianMixture is expecting 4 features"),
        (np.full((500, 4), np.nan), "NaN"),
        (np.ones((2, 4)), "at least n_components=6 rows"),
    ],
)
def test_a_bad_batch_names_the_problem_and_leaves_the_posterior_untouched(batch, match):
    X = _workload(7, n=4000)
    model = streamem.BayesianGaussianMixture(6, random_state=0).partial_fit(X[:2000]).partial_fit(X[2000:])
    before = model.state()
    with pytest.raises(ValueError, match=match):
        model.partial_fit(batch)
    after = model.state()
    assert before[1] == after[1]
    for name, value in before[0].items():
        np.testing.assert_array_equal(after[0][name], value, err_msg=name)


# ------------------------------------------------------------------ merge moves


def _separated(n_samples=4000, n_features=4, n_clusters=3, seed=10):
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 6.0, (n_clusters, n_features))
    return means[rng.integers(n_clusters, size=n_samples)] + rng.normal(size=(n_samples, n_features))


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_merges_prune_surplus_components_in_tens_of_passes(prior_type):
    """8 components on 3 separated clusters, from the same k-means responsibilities:
    coordinate ascent keeps all 8 after 100 passes (scikit-learn needs well over a thousand
    iterations to prune); the defaults merge them to 3 within 100 passes, to an ELBO at least
    scikit-learn's after 1,800 iterations, never decreasing on the way."""
    from sklearn.cluster import KMeans

    X = _separated()
    resp = np.eye(8)[KMeans(8, n_init=1, random_state=0).fit(X).labels_]
    params = dict(weight_concentration_prior=1e-3, weight_concentration_prior_type=prior_type)
    reference = _GivenResponsibilities(n_components=8, max_iter=1800, tol=1e-10, **params)
    reference.given_resp = resp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(X)
        slow = streamem.BayesianGaussianMixture(
            8, accelerate=None, moves=None, **params, **_start_from(X, resp, "full")
        )
        slow.fit(X)
    model = streamem.BayesianGaussianMixture(8, **params, **_start_from(X, resp, "full")).fit(X)
    assert slow.n_components_effective_ > 3 and not slow.converged_
    assert model.converged_ and model.n_passes_ <= 100 and model.n_components_effective_ == 3
    assert model.lower_bound_ >= reference.lower_bound_ - 1e-6 * abs(reference.lower_bound_)
    merged = [pair for record in model.history_ for pair in record.get("merged", [])]
    assert len(merged) == 5
    bounds = np.array(model.lower_bounds_)
    assert np.all(np.diff(bounds) >= -1e-9 * np.abs(bounds[1:]))
    assert set(np.unique(model.predict(X))) == set(np.flatnonzero(model.weights_ >= 1e-3))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_merge_elbo_equals_a_direct_computation(covariance_type):
    """The ELBO a merge is judged by, from the statistics and the pass's merge terms, equals
    the bound computed from the merged responsibilities themselves."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    from streamem.core.stats import chunk_stats
    from streamem.models.bayesian import merged_stats

    X = _separated(n_samples=1500, n_features=3, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = streamem.BayesianGaussianMixture(
            5, covariance_type=covariance_type, max_iter=3, moves=None, random_state=0
        ).fit(X)
    model, params = _fitted_model(fitted), fitted._state_params()
    pairs = np.array([[0, 1], [2, 4], [1, 3]])
    centre = X.mean(axis=0)
    (stats,) = chunk_stats(X, None, [params.gaussian()], centre, False, [pairs])
    parts = [
        chunk_stats(X[a : a + 400], None, [params.gaussian()], centre, False, [pairs])[0] for a in range(0, 1500, 400)
    ]
    np.testing.assert_allclose(sum(parts[1:], parts[0]).merge_terms, stats.merge_terms, rtol=1e-12)
    # the responsibilities, directly: the E-step's Gaussians of weights exp(c_k)
    gaussian = params.gaussian()
    covariances = gaussian.covariance.full_covariances(gaussian.covariances, 5, 3)
    log_rho = np.log(gaussian.weights) + np.stack(
        [multivariate_normal(m, c).logpdf(X) for m, c in zip(gaussian.means, covariances)], axis=1
    )
    resp = np.exp(log_rho - logsumexp(log_rho, axis=1, keepdims=True))
    for j, k in pairs:
        merged_resp = resp.copy()
        merged_resp[:, j] += merged_resp[:, k]
        merged_resp[:, k] = 0.0
        nk, xk, sk = _estimate_gaussian_parameters(X, merged_resp, fitted.reg_covar, covariance_type)
        direct = model.posterior(nk, xk - centre, sk, centre)
        entropy = -float(np.sum(merged_resp[merged_resp > 0] * np.log(merged_resp[merged_resp > 0])))
        expected = model.bound(entropy, direct)
        K = params.n_components
        p = [tuple(q) for q in pairs.tolist()].index((j, k))
        loss = stats.merge_terms[j] + stats.merge_terms[k] - stats.merge_terms[K + p]
        judged = model.bound(model.entropy(stats, params) + loss, model.update(merged_stats(stats, [(j, k)])))
        assert judged == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("stop_after", [2, 3])
def test_a_fit_with_merges_resumes_from_its_checkpoint_as_if_never_stopped(tmp_path, stop_after):
    """The candidates and the memo of evaluated merges are part of the checkpoint: stopped
    right after the pass that gathered merge terms (2) or merged (3), the resumed fit equals
    the uninterrupted one, its history (``merged``, ``reordered``) included."""
    X = _separated(n_samples=3000, seed=12)
    common = dict(tol=0.0, random_state=0, weight_concentration_prior=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = streamem.BayesianGaussianMixture(8, max_iter=12, **common).fit(X)
        checkpoint = tmp_path / "ck"
        streamem.BayesianGaussianMixture(8, max_iter=stop_after, checkpoint=checkpoint, **common).fit(X)
        resumed = streamem.BayesianGaussianMixture(8, max_iter=12, checkpoint=checkpoint, **common).fit(X)
    assert any("merged" in record for record in reference.history_)
    np.testing.assert_array_equal(resumed.means_, reference.means_)
    assert resumed.lower_bounds_ == reference.lower_bounds_
    drop = ("seconds", "passes")  # a resumed fit reads the data once more, for the prior's defaults
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed.history_] == [
        {k: v for k, v in r.items() if k not in drop} for r in reference.history_
    ]
    assert resumed.n_passes_ == reference.n_passes_ + 1


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_fewer_rows_than_features_fit_as_scikit_learn_does(covariance_type):
    """The prior's default scale from two rows in three dimensions is singular: a merge that
    would leave a component with the prior alone is not a candidate, and the fit goes on."""
    from sklearn.mixture import BayesianGaussianMixture as SkBGM

    X = np.random.default_rng(0).normal(size=(2, 3))
    ours = streamem.BayesianGaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    theirs = SkBGM(n_components=2, covariance_type=covariance_type, random_state=0).fit(X)
    assert np.isfinite(ours.means_).all() and np.isfinite(ours.precisions_cholesky_).all()
    assert ours.lower_bound_ >= theirs.lower_bound_ - 1e-6  # the same bound, as high
