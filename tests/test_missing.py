"""EM with missing values: the marginal E-step against a direct computation, and fits."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import streamem
from streamem.core.missing import incomplete_estep
from streamem.core.packed import lower_slots, sweep
from streamem.core.stats import chunk_stats

from .helpers import COVARIANCE_TYPES, mixture_data

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def holes(X, fraction, seed=0):
    """X with a random fraction of its entries missing completely at random."""
    rng = np.random.default_rng(seed)
    out = X.copy()
    out[rng.random(X.shape) < fraction] = np.nan
    return out


@pytest.mark.parametrize("by_pattern", [True, False], ids=["as-marginal-mixtures", "row-by-row"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("D", [4, 20, 50])  # patterns kept as 16-bit integers, as floats, as bytes
def test_marginal_estep_against_a_direct_computation(covariance_type, by_pattern, D, monkeypatch):
    # every pattern fitted as a marginal mixture, or every row on its own
    monkeypatch.setattr(streamem.core.missing, "FREQUENT_PATTERN_ROWS", 0 if by_pattern else 10**9)
    X, _ = mixture_data(n_samples=300, n_features=D, n_components=3, seed=1)
    X += np.random.default_rng(1).normal(scale=0.3, size=X.shape)  # covariances far from singular in 50-D too
    gm = streamem.GaussianMixture(3, covariance_type=covariance_type, random_state=0, n_starts=1, moves=None).fit(X)
    p = gm.fitted_params()
    Xm = holes(X, 0.3, seed=2)
    Xm[0] = np.nan  # a row with nothing observed
    shift = X.mean(axis=0)
    weights = np.random.default_rng(3).uniform(0.5, 2.0, len(Xm))
    estep = incomplete_estep(Xm, p, shift, weights)
    full = [*p.full_covariances]
    expected_s1, expected_s2 = np.zeros((3, D)), np.zeros((3, D, D))
    for i, row in enumerate(Xm):
        o = ~np.isnan(row)
        m = ~o
        densities = np.array(
            [
                p.weights[k]
                * (multivariate_normal(p.means[k][o], full[k][np.ix_(o, o)]).pdf(row[o]) if o.any() else 1.0)
                for k in range(3)
            ]
        )
        resp = densities / densities.sum()
        assert estep.log_lik[i] == pytest.approx(np.log(densities.sum()), rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(estep.resp[i], resp, rtol=1e-8, atol=1e-12)
        completed = np.zeros(D)
        for k in range(3):
            mean = p.means[k].copy()
            cov = np.zeros((D, D))
            if m.any():
                gain = full[k][np.ix_(m, o)] @ np.linalg.inv(full[k][np.ix_(o, o)])
                mean[m] = p.means[k][m] + gain @ (row[o] - p.means[k][o])
                cov[np.ix_(m, m)] = full[k][np.ix_(m, m)] - gain @ full[k][np.ix_(o, m)]
            mean[o] = row[o]
            centred = mean - shift
            completed += resp[k] * centred
            expected_s1[k] += weights[i] * resp[k] * centred
            expected_s2[k] += weights[i] * resp[k] * (np.outer(centred, centred) + cov)
        np.testing.assert_allclose(estep.completed[i], completed, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(estep.nk, (weights[:, None] * estep.resp).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(estep.s1, expected_s1, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(estep.s2, expected_s2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_sweep_inverts_a_batch_of_small_matrices(m):
    # the packed lower triangles of 3 x 4 SPD matrices become their negated inverses
    rng = np.random.default_rng(m)
    a = rng.normal(size=(3, 4, m, m))
    spd = a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(m)
    _, slots = lower_slots(m)
    entries = np.stack([spd[..., i, j] for i, j in slots])
    log_det = sweep(entries, m)
    inverse = np.linalg.inv(spd)
    np.testing.assert_allclose(entries, np.stack([-inverse[..., i, j] for i, j in slots]), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(spd)[1], rtol=1e-12)
    entries = np.stack([spd[..., i, j] for i, j in slots])
    entries[0, 1, 2] = -1.0  # one matrix with a negative diagonal entry
    with pytest.raises(ValueError, match="not positive definite"):
        sweep(entries, m)


def test_without_nan_marginalize_is_the_default_fit(blobs):
    X, _ = blobs
    a = streamem.GaussianMixture(3, random_state=0).fit(X)
    b = streamem.GaussianMixture(3, random_state=0, missing="marginalize").fit(X)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_recovers_the_complete_data_fit_and_never_decreases(covariance_type):
    X, _ = mixture_data(n_samples=8000, n_features=4, n_components=3, seed=3, spread=8)
    complete = streamem.GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    Xm = holes(X, 0.1, seed=4)
    Xm[:20] = np.nan  # rows with nothing observed are ignored and counted
    data = da.from_array(Xm, chunks=(1500, 4))
    gm = streamem.GaussianMixture(
        3, covariance_type=covariance_type, missing="marginalize", random_state=0, tol=1e-8, max_iter=300, n_starts=1
    ).fit(data)
    assert gm.n_rows_ignored_ == np.isnan(Xm).all(axis=1).sum() >= 20
    assert np.all(np.diff(gm.lower_bounds_) >= -1e-10)
    order = [np.argmin(np.abs(gm.means_ - m).sum(axis=1)) for m in complete.means_]
    np.testing.assert_allclose(gm.means_[order], complete.means_, atol=0.1)
    np.testing.assert_allclose(gm.weights_[order], complete.weights_, atol=0.02)
    np.testing.assert_allclose(gm.covariances_[order], complete.covariances_, atol=0.15)


def test_chunking_and_weights_with_missing_values():
    X, _ = mixture_data(n_samples=3000, n_features=3, n_components=2, seed=5)
    Xm = holes(X, 0.15, seed=6)
    w = np.random.default_rng(0).integers(0, 3, len(X))
    start = {"weights_init": [0.5, 0.5], "means_init": X[:2], "precisions_init": np.tile(np.eye(3), (2, 1, 1))}
    fits = [
        streamem.GaussianMixture(2, missing="marginalize", max_iter=10, tol=0, **start).fit(
            da.from_array(Xm, chunks=(chunks, 3)), sample_weight=w
        )
        for chunks in (3000, 317)
    ]
    np.testing.assert_allclose(fits[1].means_, fits[0].means_, rtol=1e-10)
    repeated = streamem.GaussianMixture(2, missing="marginalize", max_iter=10, tol=0, **start).fit(
        np.repeat(Xm, w, axis=0)
    )
    np.testing.assert_allclose(repeated.covariances_, fits[0].covariances_, rtol=1e-10)
    (stats,) = chunk_stats(Xm, w.astype(float), [fits[0].fitted_params()], X.mean(axis=0), True)
    parts = [
        chunk_stats(Xm[a:b], w[a:b].astype(float), [fits[0].fitted_params()], X.mean(axis=0), True)[0]
        for a, b in ((0, 1000), (1000, 3000))
    ]
    np.testing.assert_allclose((parts[0] + parts[1]).s2, stats.s2, rtol=1e-12)


def test_impute_and_score_samples_with_missing_values(blobs):
    X, _ = blobs
    gm = streamem.GaussianMixture(3, random_state=0, missing="marginalize").fit(X)
    Xm = holes(X, 0.2, seed=7)
    filled = gm.impute(Xm)
    observed = ~np.isnan(Xm)
    np.testing.assert_array_equal(filled[observed], X[observed])
    assert not np.isnan(filled).any()
    # the conditional expectation is closer to the truth than the column means
    column_means = np.where(observed, Xm, np.nanmean(Xm, axis=0))
    assert np.abs(filled - X)[~observed].mean() < 0.8 * np.abs(column_means - X)[~observed].mean()
    lazy = gm.impute(da.from_array(Xm, chunks=(700, 3)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), filled)
    scores = gm.score_samples(Xm)
    assert np.all(np.isfinite(scores))
    one = Xm[~np.isnan(Xm).all(axis=1)][:1]
    o = ~np.isnan(one[0])
    direct = np.log(
        sum(
            gm.weights_[k] * multivariate_normal(gm.means_[k][o], gm.covariances_[k][np.ix_(o, o)]).pdf(one[0][o])
            for k in range(3)
        )
    )
    assert gm.score_samples(one)[0] == pytest.approx(direct, rel=1e-10)
    assert gm.predict(Xm).shape == (len(X),)
    np.testing.assert_allclose(gm.predict_proba(Xm).sum(axis=1), 1.0)


def test_missing_error_is_the_default(blobs):
    X = holes(blobs[0], 0.1)
    with pytest.raises(ValueError, match="NaN"):
        streamem.GaussianMixture(3).fit(X)
    with pytest.raises(ValueError, match="missing='marginalize'"):
        streamem.GaussianMixture(3).fit(da.from_array(X, chunks=(500, 3)))
    with pytest.raises(ValueError, match="missing"):
        streamem.GaussianMixture(3, missing="drop").fit(blobs[0])


@pytest.mark.long
@pytest.mark.slow
def test_rows_ignored_are_kept_by_model_selection_and_by_save_and_load(tmp_path):
    X, _ = mixture_data(n_samples=1500, n_features=3, n_components=2, seed=5, spread=8)
    Xm = holes(X, 0.05, seed=6)
    Xm[:7] = np.nan
    chosen = streamem.select_n_components(Xm, [1, 2, 3], missing="marginalize", random_state=0)
    assert chosen.n_rows_ignored_ == 7
    chosen.save(tmp_path / "model.zarr")
    assert streamem.load(tmp_path / "model.zarr").n_rows_ignored_ == 7
