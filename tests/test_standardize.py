"""standardize=True: the features' mean and spread from the first pass, the fit on
standardised data, the parameters reported in the data's units."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import streamem
from streamem.core.stats import FeatureMoments
from streamem.engine.passes import ChunkedData

from .helpers import cli


def scaled_data(seed=0):
    """Two clusters in features of very different units and offsets."""
    rng = np.random.default_rng(seed)
    a = rng.normal([0.0, 1e4, -3e-3], [1.0, 300.0, 1e-3], (1800, 3))
    b = rng.normal([6.0, 1.4e4, 2e-3], [2.0, 200.0, 1e-3], (1400, 3))
    return np.concatenate([a, b])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
@pytest.mark.parametrize("chunk_rows", [3200, 700, 333])
def test_matches_standard_scaler_then_sklearn_from_the_same_start(covariance_type, chunk_rows):
    X = scaled_data()
    scaler = StandardScaler().fit(X)
    Z = scaler.transform(X)
    start = SkGaussianMixture(2, covariance_type=covariance_type, max_iter=2, random_state=0).fit(Z)
    sk = SkGaussianMixture(
        2,
        covariance_type=covariance_type,
        tol=0,
        max_iter=30,
        weights_init=start.weights_,
        means_init=start.means_,
        random_state=0,
    ).fit(Z)
    gm = streamem.GaussianMixture(
        2,
        covariance_type=covariance_type,
        tol=0,
        max_iter=30,
        standardize=True,
        weights_init=start.weights_,
        means_init=scaler.inverse_transform(start.means_),
    )
    gm.fit(da.from_array(X, chunks=(chunk_rows, 3)))
    np.testing.assert_allclose(gm.scaler_mean_, scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose(gm.scaler_scale_, scaler.scale_, rtol=1e-12)
    # the parameters in the data's units: the scaler's map applied to scikit-learn's
    np.testing.assert_allclose((gm.means_ - scaler.mean_) / scaler.scale_, sk.means_, rtol=1e-8, atol=1e-8)
    s = scaler.scale_
    expected = sk.covariances_ * (s**2 if covariance_type == "diag" else np.outer(s, s))
    np.testing.assert_allclose(gm.covariances_, expected, rtol=1e-8)
    # predictions on the raw data equal the pipeline's; densities are those of the data itself
    np.testing.assert_array_equal(gm.predict(X), sk.predict(Z))
    np.testing.assert_allclose(gm.predict_proba(X), sk.predict_proba(Z), atol=1e-8)
    np.testing.assert_allclose(gm.score_samples(X), sk.score_samples(Z) - np.log(s).sum(), rtol=1e-8)
    assert gm.lower_bound_ == pytest.approx(sk.score(Z) - np.log(s).sum(), rel=1e-8)


def test_weighted_moments_and_missing_values_match_a_direct_computation():
    rng = np.random.default_rng(1)
    X = rng.normal(5e6, 3.0, (5000, 4)).astype(np.float32)  # float32 at a large offset
    w = rng.uniform(0, 2, 5000)
    X64 = X.astype(np.float64)
    centre = X64[0]  # a direct computation, centred
    mean = centre + np.average(X64 - centre, axis=0, weights=w)
    std = np.sqrt(np.average((X64 - mean) ** 2, axis=0, weights=w))
    chunked = ChunkedData(da.from_array(X, chunks=(617, 4)), da.from_array(w, chunks=617))
    moments = chunked.map_reduce(lambda x, sw: FeatureMoments.of(x, sw))
    np.testing.assert_allclose(moments.mean, mean, rtol=1e-15)  # a few ulps
    np.testing.assert_allclose(moments.scale(), std, rtol=1e-12)
    holes = X64.copy()
    holes[rng.random(holes.shape) < 0.1] = np.nan
    split = FeatureMoments.of(holes[:1234]) + FeatureMoments.of(holes[1234:])
    np.testing.assert_allclose(split.mean, np.nanmean(holes, axis=0), rtol=1e-15)
    np.testing.assert_allclose(split.scale(), np.nanstd(holes, axis=0), rtol=1e-12)
    np.testing.assert_array_equal(FeatureMoments.of(np.ones((10, 2))).scale(), [1.0, 1.0])  # constant features


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_one_pass_more_than_without_whatever_the_iterations(monkeypatch):
    X = da.from_array(scaled_data(), chunks=(800, 3))
    passes = []
    original = ChunkedData.map_reduce
    monkeypatch.setattr(ChunkedData, "map_reduce", lambda self, *a, **k: passes.append(1) or original(self, *a, **k))
    counts = {}
    for standardize in (False, True):
        for max_iter in (3, 8):
            passes.clear()
            streamem.GaussianMixture(
                2, tol=0, max_iter=max_iter, means_init=[[0, 1e4, 0], [6, 1.4e4, 0]], standardize=standardize
            ).fit(X)
            counts[standardize, max_iter] = len(passes)
    assert counts[True, 3] == counts[False, 3] + 1 and counts[True, 8] == counts[False, 8] + 1


def test_saved_model_keeps_the_transform_and_a_checkpoint_loads_in_data_units(tmp_path):
    X = scaled_data()
    gm = streamem.GaussianMixture(2, standardize=True, random_state=0, checkpoint=tmp_path / "ck").fit(X)
    gm.save(tmp_path / "m.zarr")
    loaded = streamem.load(tmp_path / "m.zarr")
    np.testing.assert_array_equal(loaded.scaler_scale_, gm.scaler_scale_)
    assert loaded.standardize is True
    np.testing.assert_array_equal(loaded.predict(X), gm.predict(X))
    np.testing.assert_allclose(streamem.load(tmp_path / "ck").means_, gm.means_, rtol=1e-12)
    again = streamem.GaussianMixture(2, standardize=True, random_state=0, checkpoint=tmp_path / "ck").fit(X)
    np.testing.assert_allclose(again.means_, gm.means_, rtol=1e-12)  # resumed, the same units


def test_in_a_pipeline_and_cloned():
    X = scaled_data()
    pipeline = make_pipeline(streamem.GaussianMixture(2, standardize=True, random_state=0)).fit(X)
    truth = np.repeat([0, 1], [1800, 1400])
    labels = pipeline.predict(X)
    assert max(np.mean(labels == truth), np.mean(labels != truth)) > 0.99
    assert clone(pipeline).steps[0][1].get_params()["standardize"] is True


def test_warm_start_continues_in_the_standardised_units():
    X = scaled_data()
    gm = streamem.GaussianMixture(2, standardize=True, random_state=0, tol=1e-8, max_iter=200).fit(X)
    again = clone(gm).set_params(warm_start=True, max_iter=200)
    again.__dict__.update({k: v for k, v in gm.__dict__.items() if k.endswith("_")})
    again.fit(X)
    np.testing.assert_allclose(again.means_, gm.means_, rtol=1e-6)


def test_spherical_is_refused_before_any_pass():
    with pytest.raises(ValueError, match="spherical"):
        streamem.GaussianMixture(2, covariance_type="spherical", standardize=True).fit(scaled_data())


def test_cli_fit_standardize(tmp_path):
    np.save(tmp_path / "x.npy", scaled_data())
    command = [
        "fit",
        str(tmp_path / "x.npy"),
        "--n-components",
        "2",
        "--seed",
        "0",
        "--standardize",
        "--out",
        str(tmp_path / "m.zarr"),
        "--quiet",
    ]
    result = cli(*command)
    assert result.returncode == 0, result.stderr
    model = streamem.load(tmp_path / "m.zarr")
    np.testing.assert_allclose(model.scaler_mean_, scaled_data().mean(axis=0), rtol=1e-12)
    several = cli(*command[:3], "2:3", *command[4:])
    assert several.returncode == 0, several.stderr  # the table standardises too
    chosen = streamem.load(tmp_path / "m.zarr")
    np.testing.assert_allclose(chosen.scaler_mean_, scaled_data().mean(axis=0), rtol=1e-12)
    assert [row["n_components"] for row in chosen.selection_] == [2, 3]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_with_missing_values_equals_the_fit_on_standardised_data():
    X = scaled_data()
    rng = np.random.default_rng(3)
    X[rng.random(X.shape) < 0.05] = np.nan
    mean, std = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
    Z = (X - mean) / std
    start = dict(
        n_components=2, missing="marginalize", tol=0, max_iter=15, means_init=[[0, 1e4, -3e-3], [6, 1.4e4, 2e-3]]
    )
    on_z = streamem.GaussianMixture(**{**start, "means_init": (np.asarray(start["means_init"]) - mean) / std}).fit(Z)
    gm = streamem.GaussianMixture(**start, standardize=True).fit(da.from_array(X, chunks=(500, 3)))
    np.testing.assert_allclose((gm.means_ - mean) / std, on_z.means_, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(gm.covariances_, on_z.covariances_ * np.outer(std, std), rtol=1e-8)
    # the data's own log-likelihood: each row's moves by the log-scales of its observed features
    observed = ~np.isnan(X)
    assert gm.lower_bound_ == pytest.approx(on_z.lower_bound_ - (observed @ np.log(std)).mean(), rel=1e-10)
    np.testing.assert_allclose(gm.score_samples(X), on_z.score_samples(Z) - observed @ np.log(std), rtol=1e-8)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_statistics_of_the_data_mapped_equal_those_of_standardised_data(covariance_type):
    from streamem.core.params import MixtureParams
    from streamem.core.stats import chunk_stats

    X = scaled_data()
    mean, scale = X.mean(axis=0), X.std(axis=0)
    Z = (X - mean) / scale
    rng = np.random.default_rng(0)
    covariances = {
        "full": np.stack([np.cov(Z[:1800].T), np.cov(Z[1800:].T)]),
        "tied": np.cov(Z.T),
        "diag": np.stack([Z[:1800].var(axis=0), Z[1800:].var(axis=0)]),
    }[covariance_type]
    params_z = MixtureParams.from_covariances([0.6, 0.4], rng.normal(size=(2, 3)), covariances, covariance_type)
    params_x = params_z.affine(mean, scale)
    (direct,) = chunk_stats(Z, None, [params_z], Z.mean(axis=0))
    (mapped,) = chunk_stats(X, None, [params_x], X.mean(axis=0))
    mapped = mapped.affine(-mean / scale, 1 / scale, len(X) * np.log(scale).sum()).recentred(direct.shift)
    np.testing.assert_allclose(mapped.nk, direct.nk, rtol=1e-10)
    np.testing.assert_allclose(mapped.s1, direct.s1, rtol=1e-8, atol=1e-8 * len(X))
    np.testing.assert_allclose(mapped.s2, direct.s2, rtol=1e-8, atol=1e-8 * len(X))
    assert mapped.loglik == pytest.approx(direct.loglik, rel=1e-10)
