"""The declared contract of a mixture on the EM core (``streamem.engine.contract``): every
estimator's model keeps it, the registry finds estimators by name, and a new mixture — the
toy of ``examples/adding_a_mixture.py`` — is one module and a registration that the fit,
``load``, the model table and the command line find."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import streamem
import streamem.engine.em
from streamem.engine.contract import MODEL_METHODS, MixtureModel, Parameters, Statistics
from streamem.engine.em import FitState, run_em
from streamem.engine.passes import ChunkedData, from_numpy
from streamem.models.base import MixtureBase, estimator_class, estimator_names

from .helpers import cli, cli_process, mixture_data

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "adding_a_mixture.py")

#: each estimator of streamem, and the Gaussian mixture's variants that change its model
FITS = {
    "gaussian": (streamem.GaussianMixture, {}),
    "gaussian-standardized": (streamem.GaussianMixture, {"standardize": True}),
    "gaussian-prior": (streamem.GaussianMixture, {"mean_precision_prior": 1.0}),
    "gaussian-noise": (streamem.GaussianMixture, {"noise": "uniform"}),
    "online": (streamem.OnlineGaussianMixture, {}),
    "bayesian": (streamem.BayesianGaussianMixture, {}),
    "t": (streamem.StudentTMixture, {}),
}


def _protocol_arguments(method) -> list[str]:
    return [name for name in inspect.signature(method).parameters if name != "self"]


def _models_of(cls, params, X, monkeypatch) -> list:
    """The models ``cls(**params).fit(X)`` hands to the EM loop."""
    seen = []
    check = streamem.engine.em.check_model

    def recording(model):
        seen.append(model)
        check(model)

    monkeypatch.setattr(streamem.engine.em, "check_model", recording)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator = cls(3, random_state=0, max_iter=20, **params).fit(X)
    return seen, estimator


@pytest.mark.parametrize("fit", FITS)
def test_every_estimator_runs_a_model_that_keeps_the_contract(fit, monkeypatch):
    cls, params = FITS[fit]
    X = mixture_data(1200, 2, 3, seed=1)[0]
    models, estimator = _models_of(cls, params, X, monkeypatch)
    assert models, f"{fit} ran no model through run_em"
    for model in models:
        assert isinstance(model, MixtureModel), type(model)
        for name in MODEL_METHODS:
            declared = _protocol_arguments(getattr(MixtureModel, name))
            assert _protocol_arguments(getattr(model, name)) == declared, (type(model).__name__, name)
    assert isinstance(estimator.fitted_params(), Parameters)

    # mergeable statistics: the E-step of two parts, added, is the E-step of the whole (a
    # standardised fit's statistics carry the whole data's Jacobian: its model in the
    # data's units is the one whose parts add)
    model, fitted = models[-1], estimator._state_params()  # (a variational fit: its posterior)
    if params.get("standardize"):
        model = model.in_data_units()
    whole = model.estep(ChunkedData(from_numpy(X)), [fitted])[0]
    first, second = (model.estep(ChunkedData(from_numpy(part)), [fitted])[0] for part in (X[:500], X[500:]))
    assert isinstance(whole, Statistics) and whole.weight == pytest.approx(len(X))
    merged = first + second
    np.testing.assert_allclose(
        model.objective(merged, fitted)["log_likelihood"], model.objective(whole, fitted)["log_likelihood"], rtol=1e-12
    )
    after_merged, after_whole = model.mstep(merged, fitted)[0], model.mstep(whole, fitted)[0]
    np.testing.assert_allclose(model.to_vector(after_merged), model.to_vector(after_whole), rtol=1e-9, atol=1e-12)
    # and the flat vector goes back to the same parameters
    np.testing.assert_allclose(
        model.to_vector(model.from_vector(model.to_vector(fitted), fitted)),
        model.to_vector(fitted),
        rtol=1e-12,
        atol=1e-14,
    )


def test_run_em_refuses_what_is_not_a_model():
    class NoMstep:
        reg_covar = 1e-6

        def estep(self, data, params_list): ...

        def objective(self, stats, params): ...

        def to_vector(self, params): ...

        def from_vector(self, vector, like): ...

    X = mixture_data(300, 2, 2)[0]
    start = streamem.GaussianMixture(2, max_iter=50, random_state=0).fit(X).fitted_params()
    with pytest.raises(TypeError, match="without mstep"):
        run_em(ChunkedData(from_numpy(X)), [FitState(start)], model=NoMstep(), tol=1e-3, max_iter=5)


def test_the_registry_finds_every_estimator_by_name():
    assert estimator_class("gaussian") is streamem.GaussianMixture
    assert estimator_class("StudentTMixture") is streamem.StudentTMixture
    assert {"gaussian", "online", "bayesian", "t"} <= set(estimator_names())
    assert {"online", "bayesian", "t"} <= set(estimator_names(streams=True))
    assert "gaussian" not in estimator_names(streams=True)
    with pytest.raises(ValueError, match="expected one of bayesian, gaussian, online, t"):
        estimator_class("k-means")
    with pytest.raises(TypeError, match="estimator's name"):
        estimator_class(streamem.GaussianMixture)


def test_a_second_estimator_cannot_take_a_name_already_taken():
    with pytest.raises(ValueError, match="expected a new estimator name, got 't'"):

        class Another(streamem.GaussianMixture):  # noqa: F841
            model_name = "t"

    assert estimator_class("t") is streamem.StudentTMixture


# ------------------------------------------------------------------- a new mixture, the toy


@pytest.fixture(scope="module")
def toy():
    """``examples/adding_a_mixture.py`` imported as a module (which registers its
    estimator), and unregistered afterwards."""
    spec = importlib.util.spec_from_file_location("adding_a_mixture", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["adding_a_mixture"] = module
    spec.loader.exec_module(module)
    yield module
    MixtureBase._estimators.pop("EqualWeightsMixture")
    del sys.modules["adding_a_mixture"]


def test_the_toy_equals_the_gaussian_mixture_with_its_weights_held_equal(toy):
    # with every weight held at 1/K from an equal start, the M-step of the means and the
    # covariances is the Gaussian one: the toy is GaussianMixture(freeze="weights")
    X = mixture_data(2000, 3, 3, seed=2)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = streamem.GaussianMixture(3, max_iter=2, random_state=0, moves=None).fit(X)
        given = dict(weights_init=np.full(3, 1 / 3), means_init=start.means_, precisions_init=start.precisions_)
        fitted = toy.EqualWeightsMixture(3, moves=None, max_iter=50, tol=1e-8, **given).fit(X)
        held = streamem.GaussianMixture(3, moves=None, max_iter=50, tol=1e-8, freeze="weights", **given).fit(X)
    assert isinstance(fitted, toy.EqualWeightsMixture)
    np.testing.assert_array_equal(fitted.weights_, np.full(3, 1 / 3))
    np.testing.assert_allclose(fitted.means_, held.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fitted.covariances_, held.covariances_, rtol=1e-8, atol=1e-10)
    assert fitted.lower_bound_ == pytest.approx(held.lower_bound_, rel=1e-10)


def test_the_toy_climbs_saves_loads_and_fills_a_model_table(toy, tmp_path):
    X = mixture_data(2000, 2, 3, seed=3)[0]
    plain = toy.EqualWeightsMixture(3, accelerate=None, moves=None, random_state=0, tol=1e-6).fit(X)
    # the start's weights are k-means'; from the first M-step on, the objective never falls
    bounds = np.array(plain.lower_bounds_[1:])
    assert plain.converged_ and (np.diff(bounds) >= -1e-12 * np.abs(bounds[1:])).all()
    plain.save(tmp_path / "toy.zarr")
    loaded = streamem.load(tmp_path / "toy.zarr")
    assert type(loaded) is toy.EqualWeightsMixture
    np.testing.assert_array_equal(loaded.means_, plain.means_)
    table = streamem.select_n_components(X, range(1, 5), model="equal-weights", random_state=0)
    assert type(table) is toy.EqualWeightsMixture and table.n_components == 3
    for k in range(1, 5):
        row = next(row for row in table.selection_ if row["n_components"] == k)
        assert np.isfinite(row["bic"])
    np.testing.assert_array_equal(table.weights_, np.full(3, 1 / 3))


def test_the_command_line_fits_the_toy_by_its_name(toy, tmp_path):
    np.save(tmp_path / "X.npy", mixture_data(1500, 2, 3, seed=4)[0])
    result = cli(
        "fit",
        tmp_path / "X.npy",
        "--n-components",
        3,
        "--model",
        "equal-weights",
        "--seed",
        0,
        "--out",
        tmp_path / "m.zarr",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    model = streamem.load(tmp_path / "m.zarr")
    assert type(model) is toy.EqualWeightsMixture
    np.testing.assert_array_equal(model.weights_, np.full(3, 1 / 3))
    result = cli(
        "fit", tmp_path / "X.npy", "--n-components", "2,3", "--model", "equal-weights", "--out", tmp_path / "n.zarr"
    )
    assert result.returncode == 0, result.stderr
    assert type(streamem.load(tmp_path / "n.zarr")) is toy.EqualWeightsMixture


@pytest.mark.slow
def test_an_installed_plugin_is_found_by_a_new_process(tmp_path):
    # a package that declares its estimator in the entry-point group streamem.models: the
    # command line of a fresh process finds it by name, and load gives it back
    site = tmp_path / "site"
    (site / "equal_weights_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "adding_a_mixture.py").write_text(open(EXAMPLE).read())
    info = site / "equal_weights_plugin-0.1.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: equal-weights-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[streamem.models]\nequal-weights = adding_a_mixture:EqualWeightsMixture\n")
    np.save(tmp_path / "X.npy", mixture_data(1500, 2, 3, seed=5)[0])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    result = cli_process(
        "fit",
        tmp_path / "X.npy",
        "--n-components",
        3,
        "--model",
        "equal-weights",
        "--seed",
        0,
        "--out",
        tmp_path / "m.zarr",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    result = cli_process("info", tmp_path / "m.zarr", env=env)
    assert result.returncode == 0 and "EqualWeightsMixture" in result.stdout, result.stderr
    result = cli_process(
        "fit", tmp_path / "X.npy", "--n-components", 3, "--model", "equal-weights", "--out", tmp_path / "n.zarr"
    )
    assert result.returncode == 2 and "expected one of bayesian, gaussian, online, t" in result.stderr
