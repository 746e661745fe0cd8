"""The functional core: run_em with a model, as the estimators use it."""

from __future__ import annotations

import numpy as np
import pytest

import streamem
from streamem.em import FitState, GaussianModel, run_em
from streamem.params import MixtureParams
from streamem.reduce import ChunkedData

from .conftest import mixture_data, sklearn_start


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_run_em_is_the_estimators_loop():
    X, _ = mixture_data(n_samples=3000, n_features=3, n_components=3, seed=2)
    start = sklearn_start(X, 3, "diag")
    estimator = streamem.GaussianMixture(3, covariance_type="diag", max_iter=7, tol=0.0, **start).fit(X)
    params = MixtureParams.from_precisions_chol(
        start["weights_init"], start["means_init"], np.sqrt(start["precisions_init"]), "diag"
    )
    seen = []
    states = [FitState(params), FitState(params)]  # two candidates, the same passes
    model = GaussianModel("diag", 1e-6, start["weights_init"] @ start["means_init"])
    data = ChunkedData(streamem.io.from_numpy(X), None)
    run_em(data, states, model=model, tol=0.0, max_iter=7, on_iteration=lambda n, s: seen.append(n))
    assert seen == list(range(1, 8))
    for state in states:
        assert state.n_iter == 7 and len(state.history) == 7 and len(state.means_history) == 8
        np.testing.assert_allclose(state.params.means, estimator.means_, rtol=1e-12)
        np.testing.assert_allclose(state.objective, estimator.lower_bound_, rtol=1e-12)
