"""Choosing the number of components with every candidate in the same passes."""

from __future__ import annotations

import functools
import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import streamem

from .test_batch import CountingArray


@pytest.fixture(scope="module")
def five():
    """Five round clusters (a fit for every covariance type)."""
    rng = np.random.default_rng(3)
    centres = np.array([[-10, -10], [-10, 10], [0, 0], [10, -10], [10, 10]], dtype=float)
    return centres[rng.integers(5, size=6000)] + rng.normal(size=(6000, 2)) * rng.uniform(0.7, 1.3, size=(6000, 1))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_finds_the_true_number_of_components(five, covariance_type):
    gm = streamem.select_n_components(five, range(1, 9), covariance_type=covariance_type, random_state=0)
    assert gm.n_components == 5 and gm.covariance_type == covariance_type
    assert [row["n_components"] for row in gm.selection_] == list(range(1, 9))
    bics = {row["n_components"]: row["bic"] for row in gm.selection_}
    assert min(bics, key=bics.get) == 5
    assert gm.bic(five) == pytest.approx(bics[5], rel=1e-10)
    aics = {row["n_components"]: row["aic"] for row in gm.selection_}
    assert gm.aic(five) == pytest.approx(aics[5], rel=1e-10)
    assert gm.predict(five).shape == (len(five),)


def test_aic_criterion_and_saved_table(five, tmp_path):
    gm = streamem.select_n_components(five, [2, 5, 3], criterion="aic", random_state=0)
    assert [row["n_components"] for row in gm.selection_] == [2, 3, 5]
    assert gm.n_components == min(gm.selection_, key=lambda row: row["aic"])["n_components"]
    gm.save(tmp_path / "m.zarr")
    assert streamem.load(tmp_path / "m.zarr").selection_ == gm.selection_


def _reads(data, fit) -> int:
    """Chunk reads of ``fit`` over ``data`` in chunks of 1,000 rows."""
    source = CountingArray(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit(da.from_array(source, chunks=(1000, 2), asarray=False))
    return source.reads


def test_candidates_share_the_passes(five):
    reads = functools.partial(_reads, five)
    plain = dict(random_state=0, accelerate=None)  # scikit-learn's stopping rule: passes end where the fits end
    together = reads(lambda X: streamem.select_n_components(X, range(2, 7), **plain))
    separate = sum(reads(lambda X, k=k: streamem.GaussianMixture(k, **plain).fit(X)) for k in range(2, 7))
    assert together < separate / 2


def test_bad_arguments(five):
    with pytest.raises(ValueError, match="criterion"):
        streamem.select_n_components(five, [2, 3], criterion="cv")
    with pytest.raises(ValueError, match="integers >= 1"):
        streamem.select_n_components(five, [0, 2])
    with pytest.raises(ValueError, match="integers >= 1"):
        streamem.select_n_components(five, [])
    with pytest.raises(ValueError, match="means_init"):
        streamem.select_n_components(five, [2, 3], means_init=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        streamem.select_n_components(five[:4], [2, 5])


def _entropy(resp, weights=None):
    terms = -resp * np.log(np.where(resp > 0, resp, 1.0))
    return float(terms.sum() if weights is None else (terms.sum(axis=1) @ weights))


def test_a_table_of_covariance_types_and_icl(five):
    X = five[:3000]
    types = ["full", "diag", "spherical"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = streamem.select_n_components(X, range(1, 7), criterion="icl", covariance_type=types, random_state=0)
    assert [(row["covariance_type"], row["n_components"]) for row in gm.selection_] == [
        (t, k) for t in types for k in range(1, 7)
    ]
    chosen = min(gm.selection_, key=lambda row: row["icl"])
    assert (gm.covariance_type, gm.n_components) == (chosen["covariance_type"], chosen["n_components"])
    assert gm.n_components == 5 and gm.selection_criterion_ == "icl"
    # ICL = BIC + 2 x the entropy of the responsibilities, against a direct computation
    assert chosen["icl"] == pytest.approx(gm.bic(X) + 2 * _entropy(gm.predict_proba(X)), rel=1e-10)
    assert chosen["n_parameters"] == gm._n_parameters()
    for row in gm.selection_:
        assert row["icl"] >= row["bic"] - 1e-6 * abs(row["bic"])
        assert row["icl"] == pytest.approx(row["bic"], abs=1e-6 * abs(row["bic"])) or row["n_components"] > 1


def test_icl_entropy_with_weights_and_missing_values():
    from streamem.core.stats import chunk_stats

    rng = np.random.default_rng(4)
    X = np.concatenate([rng.normal(m, s, (1500, 4)) for m, s in ((-2, 1.0), (0, 0.7), (2, 1.5))])
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:900, 1] = np.nan  # a frequent pattern of holes too
    weights = rng.integers(0, 3, len(X)).astype(float)
    observed = ~np.isnan(X).all(axis=1)
    for covariance_type in ("full", "tied", "diag", "spherical"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm = streamem.GaussianMixture(3, covariance_type=covariance_type, missing="marginalize", random_state=0)
            gm.fit(X)
        params = gm.fitted_params()
        (stats,) = chunk_stats(X, weights, [params], np.nanmean(X, axis=0), True)
        direct = _entropy(gm.predict_proba(X)[observed], weights[observed])  # rows with nothing observed: ignored
        assert stats.entropy(params) == pytest.approx(direct, rel=1e-10)


def test_several_types_share_the_passes(five):
    reads = functools.partial(_reads, five)
    types = ["full", "diag", "spherical"]
    plain = dict(random_state=0, accelerate=None)
    table = reads(lambda X: streamem.select_n_components(X, range(2, 7), covariance_type=types, **plain))
    one = reads(lambda X: streamem.select_n_components(X, range(2, 7), covariance_type="full", **plain))
    assert table < 2 * one  # three types' cells in the passes of about one type's


def test_bad_covariance_types(five):
    with pytest.raises(ValueError, match="covariance_type among"):
        streamem.select_n_components(five, [2, 3], covariance_type=["full", "round"])
    with pytest.raises(ValueError, match="a prior fixes one covariance type"):
        streamem.select_n_components(five, [2, 3], covariance_type=["full", "diag"], mean_precision_prior=1.0)


def test_standardize_fits_the_table_on_standardised_features(five):
    """``standardize=True`` is honoured: the table equals the one fitted on the standardised
    data (log-likelihoods moved by the scaling's Jacobian), and the model keeps its scaler."""
    X = five * np.array([1.0, 1000.0])  # features of very different spreads
    mean, scale = X.mean(0), X.std(0)
    standard = streamem.select_n_components((X - mean) / scale, [2, 4, 5], random_state=0)
    scaled = streamem.select_n_components(X, [2, 4, 5], random_state=0, standardize=True)
    np.testing.assert_allclose(scaled.scaler_mean_, mean, rtol=1e-12)
    np.testing.assert_allclose(scaled.scaler_scale_, scale, rtol=1e-12)
    jacobian = np.log(scale).sum()
    for row, reference in zip(scaled.selection_, standard.selection_):
        assert row["n_components"] == reference["n_components"]
        np.testing.assert_allclose(row["log_likelihood"], reference["log_likelihood"] - jacobian, rtol=1e-9)
    np.testing.assert_allclose(scaled.means_, standard.means_ * scale + mean, rtol=1e-8)
    np.testing.assert_allclose(scaled.predict_proba(X), standard.predict_proba((X - mean) / scale), atol=1e-9)


@pytest.mark.slow
def test_a_checkpointed_table_resumes(five, tmp_path):
    """``checkpoint`` is honoured: an interrupted table (max_iter reached) resumes from its
    checkpoint and ends as one uninterrupted fit; another table refuses the checkpoint."""
    whole = streamem.select_n_components(five, [2, 5], random_state=0, n_init=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        streamem.select_n_components(five, [2, 5], random_state=0, n_init=2, checkpoint=tmp_path / "c", max_iter=2)
    resumed = streamem.select_n_components(five, [2, 5], random_state=0, n_init=2, checkpoint=tmp_path / "c")
    np.testing.assert_array_equal(resumed.means_, whole.means_)
    assert [row["log_likelihood"] for row in resumed.selection_] == [row["log_likelihood"] for row in whole.selection_]
    with pytest.raises(ValueError, match="another fit"):
        streamem.select_n_components(five, [2, 3], random_state=0, n_init=2, checkpoint=tmp_path / "c")


def test_noise_and_storage_options_reach_the_table(five):
    model = streamem.select_n_components(five, [4, 5], random_state=0, noise="uniform", storage_options={})
    assert model.noise_weight_ >= 0 and all(np.isfinite(row["bic"]) for row in model.selection_)


def test_a_spurious_maximum_is_not_chosen():
    # four copies of one row: a single k-means|| start puts a third component on them, with
    # reg_covar's variance, a likelihood far above any sound fit's and the table's lowest BIC
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal((6, 0), 1, (200, 2)), np.full((4, 2), 20.0)])
    for seed in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = streamem.select_n_components(X, [2, 3], random_state=seed, n_starts=1, moves=None)
        rows = {row["n_components"]: row for row in model.selection_}
        assert rows[3]["collapsed"] == 1 and rows[2]["collapsed"] == 0
        assert rows[3]["bic"] < rows[2]["bic"] - 100
        assert model.n_components == 2
        assert np.allclose(sorted(model.means_[:, 0]), [0, 6], atol=0.5)


def test_the_plot_chooses_as_the_table_and_crosses_a_spurious_cell_out():
    pytest.importorskip("matplotlib")  # the plot extra (the test extra brings it; the floors' run has none)
    from streamem.plot import bic_figure

    table = [
        {"covariance_type": "full", "n_components": k, "bic": bic, "collapsed": c}
        for k, bic, c in ((1, 900.0, 0), (2, 800.0, 0), (3, 650.0, 1))
    ]
    (ax,) = bic_figure(table).axes
    assert ax.get_title() == "Lowest BIC at K=2"
    assert [list(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "x"] == [[3]]
