"""scikit-learn's own estimator checks."""

from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

import streamem


def test_check_estimator():
    check_estimator(streamem.GaussianMixture())


def test_check_estimator_bayesian():
    check_estimator(streamem.BayesianGaussianMixture())


def test_check_estimator_with_components():
    # With several components the initialisation draws rows at random, so a fit on
    # shuffled weighted rows starts elsewhere than a fit on the repeated rows; the
    # weighted statistics themselves equal repetition (test_batch and test_stats).
    check_estimator(
        streamem.GaussianMixture(n_components=2, covariance_type="diag", random_state=0),
        expected_failed_checks={
            "check_sample_weight_equivalence_on_dense_data": "random initialisation depends on row order"
        },
    )


def test_clone_keeps_parameters():
    gm = streamem.GaussianMixture(4, covariance_type="tied", n_init=3, random_state=1)
    assert clone(gm).get_params() == gm.get_params()
