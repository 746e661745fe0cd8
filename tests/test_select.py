"""Choosing the number of components with every candidate in the same passes."""

from __future__ import annotations

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


def test_candidates_share_the_passes(five):
    def reads(fit):
        source = CountingArray(five)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit(da.from_array(source, chunks=(1000, 2), asarray=False))
        return source.reads

    together = reads(lambda X: streamem.select_n_components(X, range(2, 7), random_state=0))
    separate = sum(reads(lambda X, k=k: streamem.GaussianMixture(k, random_state=0).fit(X)) for k in range(2, 7))
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
