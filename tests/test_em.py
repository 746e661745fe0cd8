"""The functional core: run_em with a model, as the estimators use it."""

from __future__ import annotations

import numpy as np
import pytest

import streamem
from streamem.core.params import MixtureParams
from streamem.engine.em import FitState, GaussianModel, run_em
from streamem.engine.passes import ChunkedData

from .helpers import mixture_data, sklearn_start


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_run_em_is_the_estimators_loop():
    X, _ = mixture_data(n_samples=3000, n_features=3, n_components=3, seed=2)
    start = sklearn_start(X, 3, "diag")
    estimator = streamem.GaussianMixture(3, covariance_type="diag", max_iter=7, tol=0.0, accelerate=None, **start).fit(
        X
    )
    params = MixtureParams.from_precisions_chol(
        start["weights_init"], start["means_init"], np.sqrt(start["precisions_init"]), "diag"
    )
    seen = []
    states = [FitState(params), FitState(params)]  # two candidates, the same passes
    model = GaussianModel("diag", 1e-6, start["weights_init"] @ start["means_init"])
    data = ChunkedData(streamem.engine.passes.from_numpy(X), None)
    run_em(data, states, model=model, tol=0.0, max_iter=7, on_iteration=lambda n, s: seen.append(n))
    assert seen == list(range(1, 8))
    for state in states:
        assert state.n_iter == 7 and len(state.history) == 7 and len(state.means_history) == 8
        np.testing.assert_allclose(state.params.means, estimator.means_, rtol=1e-12)
        np.testing.assert_allclose(state.objective, estimator.lower_bound_, rtol=1e-12)


def _same_state(a: FitState, b: FitState) -> None:
    for name in ("weights", "means", "covariances", "precisions_chol"):
        np.testing.assert_array_equal(getattr(a.params, name), getattr(b.params, name))
    assert (a.objective, a.converged, a.n_iter, a.n_rows_ignored) == (
        b.objective,
        b.converged,
        b.n_iter,
        b.n_rows_ignored,
    )
    assert a.history == b.history
    np.testing.assert_array_equal(np.stack(a.means_history), np.stack(b.means_history))


def test_one_serialiser_behind_checkpoints_and_saved_models(tmp_path):
    """A checkpoint's candidate and a saved model are the same FitState written the same way."""
    from streamem.data.checkpoint import load_state, state_to_runs
    from streamem.data.store import read_model

    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(-4, 1, (400, 2)), rng.normal(4, 1, (400, 2))])
    X[::50, 0] = np.nan
    X[7] = np.nan  # a row with nothing observed: counted in n_rows_ignored
    gm = streamem.GaussianMixture(2, missing="marginalize", random_state=0, checkpoint=tmp_path / "ckpt")
    gm.fit(X)
    gm.save(tmp_path / "model.zarr")
    (resumed,), _ = state_to_runs(*load_state(tmp_path / "ckpt"))
    arrays, attrs = read_model(tmp_path / "model.zarr")
    saved = FitState.from_arrays(arrays, attrs["fitted"])
    assert saved.n_rows_ignored == 1 and saved.history[0]["change"] == np.inf
    _same_state(resumed, saved)
    loaded = streamem.load(tmp_path / "model.zarr")
    _same_state(loaded._fit_state(), saved)
    assert loaded.n_rows_ignored_ == 1


def test_fit_state_to_arrays_rejects_wrong_shapes():
    params = MixtureParams.from_covariances(np.full(2, 0.5), np.zeros((2, 3)), np.ones((2, 3)), "diag")
    arrays, meta = FitState(params).to_arrays("run0_")
    arrays["run0_covariances"] = np.ones((2, 4))
    with pytest.raises(ValueError, match="run0_covariances has shape"):
        FitState.from_arrays(arrays, meta, "run0_")
