"""Partial labels (semi-supervised EM): known rows count for their component alone, against
a direct computation; accuracy with 1% of the rows labelled; bad labels."""

from __future__ import annotations

import itertools
import warnings

import dask.array as da
import numpy as np
import pytest

import streamem

from .helpers import COVARIANCE_TYPES, reference_em


def _parallel_clusters(seed, n=20_000):
    """Three long parallel clusters, close across their short axis: unsupervised EM splits
    them along the long axis instead."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(3, size=n)
    X = np.column_stack([rng.normal(0, 6, n), rng.normal(0, 0.6, n) + 1.8 * truth])
    return X, truth


def _partial(truth, fraction, seed):
    rng = np.random.default_rng(seed)
    y = np.full(len(truth), -1)
    known = rng.random(len(truth)) < fraction
    y[known] = truth[known]
    return y, known


def test_known_rows_count_for_their_component_alone_as_a_direct_computation():
    X, truth = _parallel_clusters(0, n=3000)
    y, _ = _partial(truth, 0.05, 1)
    start = {
        "weights_init": np.full(3, 1 / 3),
        "means_init": np.array([[-3.0, 0.0], [0.0, 2.0], [3.0, 4.0]]),
        "precisions_init": np.tile(np.eye(2), (3, 1, 1)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = streamem.GaussianMixture(3, max_iter=5, tol=0, accelerate=None, **start).fit(X, y)
    direct = reference_em(X, start["weights_init"], start["means_init"], np.tile(np.eye(2), (3, 1, 1)), 5, labels=y)
    np.testing.assert_allclose(model.weights_, direct["weights"], rtol=1e-10)
    np.testing.assert_allclose(model.means_, direct["means"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.covariances_, direct["covariances"], rtol=1e-10)
    assert model.lower_bound_ == pytest.approx(direct["log_likelihood"], rel=1e-12)
    assert np.all(np.diff(model.lower_bounds_) > -1e-12)  # EM: the objective never decreases


def test_one_percent_of_labels_lifts_the_accuracy_on_the_unknown_rows():
    X, truth = _parallel_clusters(1)
    # plain EM stopped by scikit-learn's rule, without moves, ends between the clusters (the default
    # fit, which does not stop while it is still moving and then tries moves, finds them without labels)
    unsupervised = streamem.GaussianMixture(3, random_state=0, accelerate=None, moves=None).fit(X).predict(X)
    best = max(np.mean(np.array(p)[unsupervised] == truth) for p in itertools.permutations(range(3)))
    y, known = _partial(truth, 0.01, 2)
    model = streamem.GaussianMixture(3, random_state=0).fit(X, y)
    accuracy = np.mean(model.predict(X)[~known] == truth[~known])
    assert best < 0.5 and accuracy > 0.88, (best, accuracy)
    # the components are the labels' (no permutation), and more labels do no worse
    more = streamem.GaussianMixture(3, random_state=0).fit(X, _partial(truth, 0.05, 3)[0])
    assert np.mean(more.predict(X)[~known] == truth[~known]) >= accuracy - 0.01


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_labels_as_a_dask_array_and_the_chunking_change_nothing(covariance_type):
    X, truth = _parallel_clusters(2, n=4000)
    y, _ = _partial(truth, 0.02, 4)
    whole = streamem.GaussianMixture(3, covariance_type=covariance_type).fit(X, y)
    chunked = streamem.GaussianMixture(3, covariance_type=covariance_type)
    chunked.fit(da.from_array(X, chunks=(333, 2)), da.from_array(y, chunks=(1000,)))
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-10, atol=1e-12)
    assert chunked.n_iter_ == whole.n_iter_


def test_a_target_without_unknown_rows_is_ignored_as_by_scikit_learn():
    X, truth = _parallel_clusters(3, n=2000)
    plain = streamem.GaussianMixture(3, random_state=0).fit(X)
    with_target = streamem.GaussianMixture(3, random_state=0).fit(X, truth)  # no -1: a target, not labels
    np.testing.assert_array_equal(with_target.means_, plain.means_)


@pytest.mark.parametrize(
    ("y", "error", "match"),
    [
        (np.full(1999, -1), ValueError, r"expected y of shape \(2000,\)"),
        (np.r_[np.full(1999, -1), 3], ValueError, r"expected labels in -1..2 .* got 3"),
        (np.r_[np.full(1999, -1), -2], ValueError, r"expected labels in -1..2 .* got -2"),
        (np.r_[np.full(1999, -1.0), 0.5], TypeError, "expected y of integers"),
        (np.r_[np.full(1998, -1), 0, 0], ValueError, r"none for components \[1, 2\]"),
    ],
)
def test_bad_labels_name_the_problem_and_leave_the_model_untouched(y, error, match):
    X, _ = _parallel_clusters(4, n=2000)
    model = streamem.GaussianMixture(3, random_state=0).fit(X)
    means = model.means_.copy()
    with pytest.raises(error, match=match):
        model.fit(X, y)
    np.testing.assert_array_equal(model.means_, means)
