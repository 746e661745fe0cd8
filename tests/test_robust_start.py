"""A start that outliers cannot capture (``init_params="trimmed-k-means||"``): every cluster
found among gross outliers by the models that expect them, in no more passes than k-means‖,
independent of the chunking; the Gaussian default unchanged."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning

import streamem
from streamem.engine.starts import INIT_METHODS, _trimmed_kmeans, init_method


def _contaminated(seed, fraction, n_per_cluster=3000, n_features=2):
    """Three unit-variance clusters at least 6 apart, and a ``fraction`` of the rows
    uniform over a box ten times the clusters' span."""
    rng = np.random.default_rng(seed)
    while True:
        centres = rng.normal(0, 8, (3, n_features))
        if min(np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i)) > 6:
            break
    X = np.concatenate([rng.normal(c, 1.0, (n_per_cluster, n_features)) for c in centres])
    low, high = X.min(0), X.max(0)
    middle, span = (low + high) / 2, high - low
    n_out = int(round(fraction * len(X) / (1 - fraction)))
    X = np.concatenate([X, rng.uniform(middle - 5 * span, middle + 5 * span, (n_out, n_features))])
    return X[rng.permutation(len(X))], centres


def _worst_error(means, centres):
    """The largest distance (in cluster sd) between a true centre and its matched mean."""
    cost = np.linalg.norm(centres[:, None] - means[None], axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].max()


def _fit(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X)


@pytest.mark.parametrize("fraction", [0.05, 0.2])
@pytest.mark.parametrize(
    "make",
    [
        lambda seed: streamem.StudentTMixture(3, random_state=seed),
        lambda seed: streamem.GaussianMixture(3, noise="uniform", random_state=seed),
    ],
    ids=["t", "noise"],
)
def test_defaults_find_every_cluster_among_gross_outliers(make, fraction):
    for seed in range(3):
        X, centres = _contaminated(seed, fraction)
        model = _fit(make(seed), X)
        assert model.init_params == "auto"
        assert _worst_error(model.means_, centres) < 0.15, seed


@pytest.mark.parametrize("fraction", [0.05, 0.2])
def test_k_means_parallel_is_captured_where_the_trimmed_start_is_not(fraction):
    """The data are hard: the untrimmed start puts a centre among the outliers."""
    errors = {}
    for init in ("k-means||", "trimmed-k-means||"):
        errors[init] = [
            _worst_error(
                _fit(
                    streamem.GaussianMixture(3, noise="uniform", init_params=init, random_state=s),
                    _contaminated(s, fraction)[0],
                ).means_,
                _contaminated(s, fraction)[1],
            )
            for s in range(3)
        ]
    assert max(errors["trimmed-k-means||"]) < 0.15
    assert max(errors["k-means||"]) > 3.0


def test_the_trimmed_start_costs_no_more_passes_than_k_means_parallel():
    X, _ = _contaminated(0, 0.05)
    passes = {
        init: _fit(streamem.GaussianMixture(3, init_params=init, max_iter=0, random_state=0), X).n_passes_
        for init in ("k-means||", "trimmed-k-means||")
    }
    assert passes["trimmed-k-means||"] <= passes["k-means||"]


def test_the_gaussian_default_is_k_means_parallel_without_noise():
    X, _ = _contaminated(1, 0.0)
    auto = _fit(streamem.GaussianMixture(3, n_starts=1, random_state=0), X)
    explicit = _fit(streamem.GaussianMixture(3, n_starts=1, init_params="k-means||", random_state=0), X)
    np.testing.assert_array_equal(auto.means_, explicit.means_)
    assert init_method("auto") == "k-means||" and init_method("kmeans") == "k-means||"
    assert init_method("auto", robust=True) == "trimmed-k-means||"
    assert init_method("k-means++", robust=True) == "k-means++"


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_the_trimmed_start_does_not_depend_on_the_chunking(covariance_type):
    X, _ = _contaminated(2, 0.2, n_per_cluster=1000)
    fits = [
        _fit(
            streamem.GaussianMixture(3, covariance_type=covariance_type, noise="uniform", random_state=3, max_iter=3),
            data,
        )
        for data in (X, da.from_array(X, chunks=(337, 2)), da.from_array(X, chunks=(2000, 2)))
    ]
    for fit in fits[1:]:
        np.testing.assert_allclose(fit.means_, fits[0].means_, rtol=1e-10)
        np.testing.assert_allclose(fit.covariances_, fits[0].covariances_, rtol=1e-10)


def test_trimmed_kmeans_leaves_light_far_points_out():
    """On the client: two heavy clusters of drawn rows and many light far ones; the two
    centres go to the heavy ones (plain weighted k-means puts one among the far rows)."""
    rng = np.random.default_rng(0)
    heavy = np.concatenate([rng.normal(-5, 0.5, (10, 2)), rng.normal(5, 0.5, (10, 2))])
    far = rng.uniform(-500, 500, (20, 2))
    points = np.concatenate([heavy, far])
    mass = np.concatenate([np.full(20, 4.0), np.full(20, 1.0)])
    sample = np.concatenate([rng.normal(-5, 1, (400, 2)), rng.normal(5, 1, (400, 2)), rng.uniform(-500, 500, (100, 2))])
    centres = _trimmed_kmeans(points, mass, sample, 2, np.random.RandomState(0))
    np.testing.assert_allclose(np.sort(centres[:, 0]), [-5, 5], atol=0.5)


def test_weights_are_honoured_by_the_trimmed_start():
    """A dense cluster of rows of weight zero is not there: no centre goes to it."""
    X, centres = _contaminated(3, 0.05, n_per_cluster=1000)
    ghost = np.random.default_rng(1).normal(200, 1.0, (3000, 2))
    weights = np.concatenate([np.ones(len(X)), np.zeros(len(ghost))])
    start = _fit(streamem.StudentTMixture(3, random_state=0, max_iter=0), np.concatenate([X, ghost]))
    assert _worst_error(start.means_, centres) > 100  # unweighted, the ghost cluster takes a centre
    start.fit(np.concatenate([X, ghost]), sample_weight=weights)
    assert _worst_error(start.means_, centres) < 0.5


def test_the_cli_offers_every_initialiser():
    from streamem.cli.commands import INIT_CHOICES

    assert sorted(INIT_CHOICES) == sorted(INIT_METHODS)
