"""StudentTMixture: EM for t mixtures against the paper's formulas written out, robustness
to outliers against the Gaussian fit, chunk invariance, fixed degrees of freedom,
partial_fit, persistence and scikit-learn's checks."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
from scipy import optimize, special

import streamem

from .helpers import COVARIANCE_TYPES, mixture_data

K, D = 3, 3


def _t_log_density(X, mean, scale, nu):
    """log t(x | mean, scale, nu), written out."""
    diff = X - mean
    delta = np.einsum("nd,de,ne->n", diff, np.linalg.inv(scale), diff)
    return (
        special.gammaln((nu + D) / 2)
        - special.gammaln(nu / 2)
        - D / 2 * np.log(nu * np.pi)
        - 0.5 * np.linalg.slogdet(scale)[1]
        - (nu + D) / 2 * np.log1p(delta / nu)
    ), delta


def _direct_ecm(X, weights, means, scales, dof, covariance_type, n_iter, estimate_dof=True, reg_covar=1e-6):
    """Peel & McLachlan's (2000) EM for a t mixture, in memory, the scales in full form."""
    n = len(X)
    for _ in range(n_iter):
        logs, deltas = zip(*(_t_log_density(X, m, s, v) for m, s, v in zip(means, scales, dof)))
        weighted = np.log(weights) + np.stack(logs, 1)
        log_lik = special.logsumexp(weighted, axis=1)
        resp = np.exp(weighted - log_lik[:, None])
        u = (dof + D) / (dof + np.stack(deltas, 1))
        nk = resp.sum(0)
        weights = nk / n
        means = (resp * u).T @ X / (resp * u).sum(0)[:, None]
        full = np.stack(
            [((resp[:, k] * u[:, k])[:, None] * (X - means[k])).T @ (X - means[k]) / nk[k] for k in range(K)]
        )
        if covariance_type == "full":
            scales = full
        elif covariance_type == "tied":
            scales = np.tile((full * nk[:, None, None]).sum(0) / n, (K, 1, 1))
        elif covariance_type == "diag":
            scales = np.stack([np.diag(np.diag(f)) for f in full])
        else:
            scales = np.stack([np.trace(f) / D * np.eye(D) for f in full])
        scales = scales + reg_covar * np.eye(D)
        if estimate_dof:
            new = []
            for k in range(K):
                c = 1 + (resp[:, k] * (np.log(u[:, k]) - u[:, k])).sum() / nk[k]
                c += special.digamma((dof[k] + D) / 2) - np.log((dof[k] + D) / 2)
                new.append(
                    optimize.brentq(
                        lambda v, c=c: -special.digamma(v / 2) + np.log(v / 2) + c, 1e-2, 1e4, xtol=1e-12, rtol=1e-14
                    )
                )
            dof = np.array(new)
    return weights, means, scales, dof, log_lik.mean()


def _full_scales(model):
    c = model.covariances_
    return {
        "full": lambda: c,
        "tied": lambda: np.tile(c, (K, 1, 1)),
        "diag": lambda: np.stack([np.diag(v) for v in c]),
        "spherical": lambda: np.stack([v * np.eye(D) for v in c]),
    }[model.covariance_type]()


def _with_outliers(seed, n=6000, fraction=0.05):
    X, labels = mixture_data(n, D, K, seed=seed)
    rng = np.random.default_rng(seed)
    n_out = int(fraction * n)
    outliers = rng.uniform(X.min(0) - 30, X.max(0) + 30, (n_out, D))
    return np.concatenate([X, outliers]), labels


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_equals_the_papers_formulas_from_the_same_start(covariance_type):
    X, _ = _with_outliers(1, n=1500)
    start = streamem.GaussianMixture(K, covariance_type=covariance_type, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start.fit(X)
        init = {"weights_init": start.weights_, "means_init": start.means_, "precisions_init": start.precisions_}
        model = streamem.StudentTMixture(
            K, covariance_type=covariance_type, max_iter=6, tol=0, accelerate=None, degrees_of_freedom_init=8.0, **init
        ).fit(X)
    weights, means, scales, dof, log_lik = _direct_ecm(
        X, start.weights_, start.means_, _full_scales(start), np.full(K, 8.0), covariance_type, 6
    )
    np.testing.assert_allclose(model.weights_, weights, rtol=1e-8)
    np.testing.assert_allclose(model.means_, means, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(_full_scales(model), scales, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model.degrees_of_freedom_, dof, rtol=1e-8)
    assert model.history_[-1]["log_likelihood"] == pytest.approx(log_lik, rel=1e-10)
    assert np.all(np.diff(model.lower_bounds_) > -1e-12)  # EM: the likelihood never decreases


def test_fixed_degrees_of_freedom_stay_and_the_rest_follows_the_formulas():
    X, _ = _with_outliers(2, n=1500)
    start = streamem.GaussianMixture(K, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start.fit(X)
        init = {"weights_init": start.weights_, "means_init": start.means_, "precisions_init": start.precisions_}
        model = streamem.StudentTMixture(K, degrees_of_freedom=4.0, max_iter=5, tol=0, accelerate=None, **init).fit(X)
    weights, means, scales, dof, _ = _direct_ecm(
        X, start.weights_, start.means_, start.covariances_, np.full(K, 4.0), "full", 5, estimate_dof=False
    )
    np.testing.assert_array_equal(model.degrees_of_freedom_, np.full(K, 4.0))
    np.testing.assert_allclose(model.means_, means, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.covariances_, scales, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("seed", [3, 5, 7])
def test_outliers_move_the_gaussian_means_but_not_the_t_means(seed):
    X, labels = mixture_data(6000, D, K, seed=seed, spread=10.0)
    true_means = np.stack([X[labels == k].mean(0) for k in range(K)])
    true_std = np.stack([X[labels == k].std(0) for k in range(K)])
    rng = np.random.default_rng(seed)
    outliers = rng.uniform(X.min(0) - 20, X.max(0) + 20, (300, D))  # 5% gross outliers
    data = np.concatenate([X, outliers])[rng.permutation(len(X) + 300)]
    start = {"means_init": true_means + rng.normal(0, 0.5, true_means.shape)}  # the same for both models

    def error(model):
        fitted = model.means_
        order = [int(np.argmin(np.linalg.norm(fitted - m, axis=1))) for m in true_means]
        return np.max(np.abs(fitted[order] - true_means) / true_std)

    t_model = streamem.StudentTMixture(K, **start).fit(data)
    t_error, gaussian_error = error(t_model), error(streamem.GaussianMixture(K, **start).fit(data))
    assert t_error < 0.1 < gaussian_error, (t_error, gaussian_error)
    assert t_model.degrees_of_freedom_.min() < 2  # one component's heavy tails take the outliers


def test_each_component_its_own_fixed_degrees_of_freedom():
    X, _ = _with_outliers(9, n=1500)
    model = streamem.StudentTMixture(K, degrees_of_freedom=[2.0, 5.0, 30.0], random_state=0).fit(X)
    np.testing.assert_array_equal(model.degrees_of_freedom_, [2.0, 5.0, 30.0])
    free = streamem.StudentTMixture(K, random_state=0).fit(X)
    assert not np.array_equal(free.degrees_of_freedom_, model.degrees_of_freedom_)
    # BIC counts the estimated degrees of freedom, not the fixed ones
    log_lik = free.score(X) * len(X)
    assert free.bic(X) == pytest.approx(-2 * log_lik + (free.fitted_params().n_parameters() + K) * np.log(len(X)))


def test_the_chunking_and_sample_weights_change_nothing():
    X, _ = _with_outliers(4, n=3000)
    params = dict(max_iter=15, tol=0, random_state=0, init_params="random_from_data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 15 iterations, converged or not
        whole = streamem.StudentTMixture(K, **params).fit(X)
        chunked = streamem.StudentTMixture(K, **params).fit(da.from_array(X, chunks=(271, D)))
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-10, atol=1e-12)
    # a large number of degrees of freedom is the root of a flat function: the statistics'
    # last-digit differences between chunkings move it ~1e4 times more (seen: 1.8e-10 at nu = 72)
    np.testing.assert_allclose(chunked.degrees_of_freedom_, whole.degrees_of_freedom_, rtol=1e-9)
    start = {"weights_init": whole.weights_, "means_init": whole.means_, "precisions_init": whole.precisions_}
    counts = np.random.default_rng(5).integers(0, 3, len(X))
    weighted = streamem.StudentTMixture(K, max_iter=3, tol=0, **start).fit(X, sample_weight=counts)
    repeated = streamem.StudentTMixture(K, max_iter=3, tol=0, **start).fit(np.repeat(X, counts, axis=0))
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-10)
    np.testing.assert_allclose(weighted.degrees_of_freedom_, repeated.degrees_of_freedom_, rtol=1e-8)


def test_partial_fit_one_pass_near_the_batch_fit_and_continues_after_loading(tmp_path):
    X, labels = mixture_data(12_000, D, K, seed=6, spread=10.0)
    rng = np.random.default_rng(6)
    start = {"means_init": np.stack([X[labels == k].mean(0) for k in range(K)]) + rng.normal(0, 0.5, (K, D))}
    X = np.concatenate([X, rng.uniform(X.min(0) - 20, X.max(0) + 20, (600, D))])
    X = X[rng.permutation(len(X))]
    batch = streamem.StudentTMixture(K, **start).fit(X)
    online = streamem.StudentTMixture(K, **start)
    halves = [X[i : i + 630] for i in range(0, len(X), 630)]
    for part in halves[:10]:
        online.partial_fit(part)
    online.save(tmp_path / "t.zarr")
    loaded = streamem.load(tmp_path / "t.zarr")
    for part in halves[10:]:
        online.partial_fit(part)
        loaded.partial_fit(part)
    np.testing.assert_array_equal(loaded.means_, online.means_)
    np.testing.assert_array_equal(loaded.degrees_of_freedom_, online.degrees_of_freedom_)
    assert online.n_samples_seen_ == len(X)
    assert online.score(X) == pytest.approx(batch.score(X), rel=0.01)


def test_save_load_and_predictions(tmp_path):
    X, _ = _with_outliers(7, n=2000)
    model = streamem.StudentTMixture(K, covariance_type="diag", degrees_of_freedom=5.0, random_state=0).fit(X)
    model.save(tmp_path / "t.zarr")
    loaded = streamem.load(tmp_path / "t.zarr")
    assert type(loaded) is streamem.StudentTMixture and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(model.predict_proba(X).sum(1), 1.0)
    samples, labels = model.sample(500)
    assert samples.shape == (500, D) and set(np.unique(labels)) <= set(range(K))
    with pytest.raises(TypeError, match="no scikit-learn equivalent"):
        model.to_onnx()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"degrees_of_freedom": 0.0}, "degrees_of_freedom"),
        ({"degrees_of_freedom": -2.0}, "degrees_of_freedom"),
        ({"degrees_of_freedom": [3.0, 4.0]}, r"degrees_of_freedom of shape \(3,\)"),
        ({"degrees_of_freedom": [3.0, -1.0, 4.0]}, "expected degrees_of_freedom > 0"),
        ({"degrees_of_freedom_init": 0.0}, "degrees_of_freedom_init"),
    ],
)
def test_bad_degrees_of_freedom_name_the_parameter_and_leave_the_model_untouched(params, match):
    X, _ = _with_outliers(8, n=1000)
    model = streamem.StudentTMixture(K, random_state=0).fit(X)
    means = model.means_.copy()
    model.set_params(**params)
    with pytest.raises(ValueError, match=match):
        model.fit(X)
    np.testing.assert_array_equal(model.means_, means)
    online = streamem.StudentTMixture(K, **params)
    with pytest.raises(ValueError, match=match):
        online.partial_fit(X[:10])  # checked at the first batch, before any is buffered
    assert not hasattr(online, "n_batches_")


def test_far_tight_components_are_exact_about_their_groups_centres():
    # components 1e6 from the origin, far apart against their spreads: the shared kernel
    # takes each one's distances about a centre near it (its group's), so the E-step keeps
    # the precision of a computation about each component's own mean
    rng = np.random.default_rng(3)
    centres = 1e6 + np.array([[0.0, 0.0, 0.0], [40.0, -30.0, 10.0], [-25.0, 60.0, 35.0]])
    X = np.concatenate([c + rng.standard_t(6, size=(500, D)) * s for c, s in zip(centres, (0.01, 0.05, 0.02))])
    start = streamem.GaussianMixture(K, max_iter=3, random_state=0, reg_covar=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start.fit(X)
        init = {"weights_init": start.weights_, "means_init": start.means_, "precisions_init": start.precisions_}
        model = streamem.StudentTMixture(
            K, max_iter=4, tol=0, accelerate=None, degrees_of_freedom_init=8.0, reg_covar=1e-9, **init
        ).fit(X)
    # the reference, on the rows less 1e6 (exact in float64; EM commutes with the translation)
    weights, means, scales, dof, log_lik = _direct_ecm(
        X - 1e6, start.weights_, start.means_ - 1e6, _full_scales(start), np.full(K, 8.0), "full", 4, reg_covar=1e-9
    )
    np.testing.assert_allclose(model.weights_, weights, rtol=1e-8)
    np.testing.assert_allclose(model.means_ - 1e6, means, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(_full_scales(model), scales, rtol=1e-7, atol=1e-14)
    np.testing.assert_allclose(model.degrees_of_freedom_, dof, rtol=1e-7)
    assert model.history_[-1]["log_likelihood"] == pytest.approx(log_lik, rel=1e-9)
