"""No silent parameter: every constructor parameter of every estimator, walked through
``fit``, ``select_n_components``, save and load, and the command line.

Each parameter has a probe: a value other than its default and what that value must
change (the fitted result, the log, the files written, the cluster that ran the passes),
or an error that names it. A parameter without a probe fails the test, so a new one must
say how it is honoured.
"""

from __future__ import annotations

import logging
import os
import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import streamem

from .helpers import cli, cli_process, free_port, mixture_data

X, _ = mixture_data(400, 2, 2, seed=3, spread=6.0)
OVERLAPPING, _ = mixture_data(400, 2, 3, seed=4, spread=1.0)
MISSING = X.copy()
MISSING[::7, 1] = np.nan


def _xarray():
    xarray = pytest.importorskip("xarray")
    # few rows: read without feature_dim, the array is 2 rows of as many features
    return xarray.DataArray(X[:60].T, dims=("feature", "row"))


def _missing():
    return MISSING


def _dask():
    return da.from_array(X, chunks=(100, 2))


# kind: what the value must change. "result": the fitted arrays, iterations or objective;
# "logs": what the fit logs; "checkpoint": the files it writes; "cluster": the scheduler that
# runs the passes; "error": it raises an error naming the parameter. ``base``: parameters
# both fits share; ``data``: the input (default X).
COMMON = {
    "n_components": dict(value=3, kind="result"),
    "covariance_type": dict(value="diag", kind="result"),
    "tol": dict(value=0.5, kind="result", base=dict(init_params="random")),
    "reg_covar": dict(value=1.0, kind="result"),
    "max_iter": dict(value=2, kind="result"),
    "n_init": dict(value=3, kind="logs", base=dict(verbose=2, verbose_interval=1)),  # a line for each candidate
    "n_starts": dict(value=3, kind="logs", base=dict(verbose=2, verbose_interval=1)),
    "init_iter": dict(value=2, kind="logs", base=dict(n_starts=3, verbose=2, verbose_interval=1)),
    # the moves' candidates log their iterations too; moves follow convergence, which a t
    # mixture's third component on two clusters takes about 300 iterations to reach
    "moves": dict(value=None, kind="logs", base=dict(n_components=3, max_iter=500, verbose=2, verbose_interval=1)),
    "init_params": dict(value="random", kind="result"),
    "weights_init": dict(value=np.array([0.9, 0.1]), kind="result", base=dict(max_iter=1)),
    "means_init": dict(value=np.array([[0.0, 0.0], [1.0, 1.0]]), kind="result"),
    "precisions_init": dict(value=np.stack([np.eye(2) * 9, np.eye(2) * 9]), kind="result", base=dict(max_iter=1)),
    "random_state": dict(value=7, kind="result", base=dict(init_params="random", max_iter=3)),
    "warm_start": dict(value=True, kind="warm"),
    "verbose": dict(value=2, kind="logs"),
    "verbose_interval": dict(value=2, kind="logs", base=dict(verbose=2, init_params="random")),
    "checkpoint": dict(value="CHECKPOINT", kind="checkpoint"),
    "scheduler_address": dict(value="CLUSTER", kind="cluster"),
    "timeout": dict(value=1e-9, kind="error", base=dict(scheduler_address="CLUSTER"), match="timeout"),
    "persist": dict(value=True, kind="logs", data=_dask, logger="streamem.models.batch"),
    "persist_fraction": dict(
        value=1e-12, kind="logs", base=dict(persist="auto"), data=_dask, logger="streamem.models.batch"
    ),
    "accelerate": dict(value=None, kind="result", base=dict(tol=1e-6)),
    "stopping": dict(value="change", kind="result"),
    "missing": dict(value="marginalize", kind="result", data=_missing, default_error="NaN"),
}
STEPWISE = {
    "step_exponent": dict(value=0.9, kind="partial_fit"),
    "step_offset": dict(value=10.0, kind="partial_fit"),
    "forgetting": dict(value=0.9, kind="partial_fit"),
    "warm_up": dict(value=300, kind="partial_fit"),
}
PRIORS = {
    "weight_concentration_prior": dict(value=50.0, kind="result"),
    "mean_prior": dict(value=np.array([30.0, 30.0]), kind="result", base=dict(mean_precision_prior=1e3)),
    "mean_precision_prior": dict(value=1e3, kind="result"),
    "covariance_prior": dict(value=np.eye(2) * 50, kind="result"),
    "degrees_of_freedom_prior": dict(value=300.0, kind="result", base=dict(covariance_prior=np.eye(2))),
}
PROBES = {
    streamem.GaussianMixture: {
        **COMMON,
        **PRIORS,
        "noise": dict(value="uniform", kind="result"),
        "freeze": dict(value=["means"], kind="result", base=dict(means_init=np.array([[0.0, 0.0], [1.0, 1.0]]))),
        "standardize": dict(value=True, kind="scaler"),
        # more rows than this: the starts are explored on a sample, which the fit logs
        "explore_rows": dict(value=100, kind="logs", base=dict(verbose=1), logger="streamem.models.batch"),
        "feature_dim": dict(value="feature", kind="result", data=_xarray, select_default_error="n_samples"),
    },
    streamem.StudentTMixture: {
        **{k: v for k, v in COMMON.items() if k != "missing"},
        **STEPWISE,
        "degrees_of_freedom": dict(value=1.5, kind="result"),
        "degrees_of_freedom_init": dict(value=2.0, kind="result"),
    },
    streamem.BayesianGaussianMixture: {
        **COMMON,
        **PRIORS,
        **STEPWISE,
        "weights_init": dict(value=np.array([0.9, 0.1]), kind="result", base=dict(max_iter=1, moves=None)),
        "weight_concentration_prior": dict(value=50.0, kind="result"),
        "degrees_of_freedom_prior": dict(value=300.0, kind="result"),
        "weight_concentration_prior_type": dict(value="dirichlet_distribution", kind="result"),
        "moves": dict(value=None, kind="result", base=dict(n_components=6)),
    },
    streamem.OnlineGaussianMixture: {
        **{
            k: v
            for k, v in COMMON.items()
            if k
            in (
                "n_components",
                "covariance_type",
                "tol",
                "reg_covar",
                "max_iter",
                "n_init",
                "init_params",
                "weights_init",
                "means_init",
                "precisions_init",
                "random_state",
                "warm_start",
                "verbose",
                "verbose_interval",
                "missing",
            )
        },
        "step_exponent": dict(value=0.9, kind="result"),
        "step_offset": dict(value=10.0, kind="result"),
        "forgetting": dict(value=0.9, kind="result"),
        "warm_up": dict(value=150, kind="result"),
        "batch_size": dict(value=25, kind="result"),
        "algorithm": dict(value="incremental", kind="result"),
        "average_after": dict(value=0, kind="result"),
        "freeze": dict(value=["means"], kind="result", base=dict(means_init=np.array([[0.0, 0.0], [1.0, 1.0]]))),
        "max_iter": dict(value=3, kind="result"),
        "tol": dict(value=1.0, kind="result", base=dict(max_iter=20, batch_size=50)),
        "verbose_interval": dict(value=1, kind="logs", base=dict(verbose=2, max_iter=3)),
        "verbose": dict(value=2, kind="logs", base=dict(verbose_interval=1)),
        # on overlapping clusters, where the warm-up's start shows in the end
        "random_state": dict(value=7, kind="result", base=dict(init_params="random"), data=lambda: OVERLAPPING),
        "n_init": dict(value=3, kind="result", base=dict(init_params="random"), data=lambda: OVERLAPPING),
        "weights_init": dict(value=np.array([0.9, 0.1]), kind="result", data=lambda: OVERLAPPING),
        "precisions_init": dict(
            value=np.stack([np.eye(2) * 9, np.eye(2) * 9]), kind="result", data=lambda: OVERLAPPING
        ),
    },
}
#: parameters every probe of an estimator shares: the online estimator sees the rows in
#: several batches, so that what shapes its steps shows
ESTIMATOR_BASE = {streamem.OnlineGaussianMixture: dict(batch_size=50)}
ESTIMATORS = list(PROBES)


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        yield c


def _resolve(params: dict, cluster, tmp_path) -> dict:
    out = {}
    for name, value in params.items():
        if isinstance(value, str) and value == "CLUSTER":
            value = cluster.scheduler_address
        elif isinstance(value, str) and value == "CHECKPOINT":
            value = str(tmp_path / "checkpoint")
        out[name] = value
    return out


def _signature(model) -> list:
    fitted = sorted(name for name in vars(model) if name.endswith("_") and not name.startswith("_"))
    values = []
    for name in fitted:
        value = getattr(model, name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" or isinstance(value, (int, float)):
            values.append((name, np.asarray(value).tolist()))
    return values


def _fit(estimator, params, data, caplog, logger="streamem"):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=logger), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = estimator(**params).fit(data)
    return model, [r.getMessage() for r in caplog.records]


def _cases(fitting_only=False):
    for estimator, probes in PROBES.items():
        for name in sorted(probes):
            if not (fitting_only and probes[name]["kind"] == "error"):
                yield pytest.param(estimator, name, id=f"{estimator.__name__}-{name}")


def test_every_parameter_has_a_probe():
    for estimator, probes in PROBES.items():
        assert set(probes) == set(estimator().get_params()), estimator.__name__


@pytest.mark.parametrize("estimator, name", list(_cases()))
def test_fit_honours_the_parameter(estimator, name, cluster, tmp_path, caplog):
    probe = PROBES[estimator][name]
    base = _resolve(
        {"n_components": 2, "random_state": 0, **ESTIMATOR_BASE.get(estimator, {}), **probe.get("base", {})},
        cluster,
        tmp_path,
    )
    changed = _resolve({**base, name: probe["value"]}, cluster, tmp_path)
    data = probe.get("data", lambda: X)()
    kind = probe["kind"]
    if kind == "error":
        with pytest.raises((ValueError, TypeError, TimeoutError), match=probe["match"]):
            estimator(**changed).fit(data)
        return
    if kind == "partial_fit":  # a stepwise parameter: it shapes partial_fit, not the batch fit
        first = estimator(**{**base, "warm_up": 100}).partial_fit(X[:200]).partial_fit(X[200:])
        second = estimator(**{**changed, **({} if name == "warm_up" else {"warm_up": 100})})
        second.partial_fit(X[:200]).partial_fit(X[200:])
        assert _signature(first) != _signature(second)
        return
    if "default_error" in probe:  # the default refuses this input; the value makes it fit
        with pytest.raises((ValueError, TypeError), match=probe["default_error"]):
            estimator(**base).fit(data)
        model, _ = _fit(estimator, changed, data, caplog)
        assert all(np.isfinite(np.asarray(v, dtype=float)).all() for _, v in _signature(model))
        return
    logger = probe.get("logger", "streamem")
    default, default_logs = _fit(estimator, base, data, caplog, logger)
    if kind == "cluster":
        before = cluster.scheduler.transition_counter
        model, _ = _fit(estimator, changed, data, caplog)
        assert cluster.scheduler.transition_counter > before  # the passes ran there
        np.testing.assert_allclose(model.means_, default.means_, rtol=1e-10)
        return
    if kind == "warm":  # a second fit goes on from the first: it differs from a fit from scratch
        cold = estimator(**base).fit(data).fit(data)
        warm = estimator(**changed).fit(data).fit(data)
        assert _signature(warm) != _signature(cold)
        return
    model, logs = _fit(estimator, changed, data, caplog, logger)
    if kind == "result":
        assert _signature(model) != _signature(default)
    elif kind == "logs":
        assert logs != default_logs
    elif kind == "checkpoint":
        assert any((tmp_path / "checkpoint").iterdir())
    elif kind == "scaler":
        assert hasattr(model, "scaler_mean_") and not hasattr(default, "scaler_mean_")
    else:
        raise AssertionError(f"unknown probe kind {kind}")


#: GaussianMixture's parameters that fix one fit, which select_n_components refuses
REFUSED_BY_SELECT = {"weights_init", "means_init", "precisions_init", "warm_start"}
#: select_n_components' own arguments (the table's axes)
SELECT_AXES = {"n_components", "covariance_type"}


@pytest.mark.parametrize("name", sorted(set(PROBES[streamem.GaussianMixture]) - SELECT_AXES))
def test_select_n_components_honours_or_refuses_the_parameter(name, cluster, tmp_path, caplog):
    probe = PROBES[streamem.GaussianMixture][name]
    base = _resolve({"random_state": 0, **probe.get("base", {})}, cluster, tmp_path)
    base.pop("n_components", None)
    changed = _resolve({**base, name: probe["value"]}, cluster, tmp_path)
    data = probe.get("data", lambda: X)()

    def select(params):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=probe.get("logger", "streamem")), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = streamem.select_n_components(data, [2, 3], **params)
        return model, [r.getMessage() for r in caplog.records]

    if name in REFUSED_BY_SELECT:
        base.pop("freeze", None)
        with pytest.raises(ValueError, match=name):
            select(changed)
        return
    kind = probe["kind"]
    if kind == "error":
        with pytest.raises((ValueError, TypeError, TimeoutError), match=probe["match"]):
            select(changed)
        return
    if "default_error" in probe or "select_default_error" in probe:
        with pytest.raises(
            (ValueError, TypeError), match=probe.get("select_default_error", probe.get("default_error"))
        ):
            select(base)
        model, _ = select(changed)
        assert np.isfinite(model.means_).all()
        return
    if name == "freeze":  # freezing needs initial parameters, which fix one number of components
        with pytest.raises(ValueError, match="means_init"):
            select(changed)
        return
    default, default_logs = select(base)
    model, logs = select(changed)
    if kind == "result":
        assert [row["log_likelihood"] for row in model.selection_] != [
            row["log_likelihood"] for row in default.selection_
        ]
    elif kind == "logs":
        assert logs != default_logs
    elif kind == "checkpoint":
        assert any((tmp_path / "checkpoint").iterdir())
    elif kind == "cluster":
        np.testing.assert_allclose(model.means_, default.means_, rtol=1e-10)
    elif kind == "scaler":
        assert hasattr(model, "scaler_mean_") and not hasattr(default, "scaler_mean_")
    assert model.get_params()[name] is probe["value"] or np.array_equal(
        np.asarray(model.get_params()[name], dtype=object), np.asarray(changed[name], dtype=object)
    )


@pytest.mark.parametrize("estimator, name", list(_cases(fitting_only=True)))  # an "error" value has no model
def test_save_and_load_keep_the_parameter(estimator, name, cluster, tmp_path):
    probe = PROBES[estimator][name]
    params = _resolve(
        {
            "n_components": 2,
            "random_state": 0,
            **ESTIMATOR_BASE.get(estimator, {}),
            **probe.get("base", {}),
            name: probe["value"],
        },
        cluster,
        tmp_path,
    )
    data = probe.get("data", lambda: X)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = estimator(**params).fit(data)
    model.save(tmp_path / "model.zarr")
    loaded = streamem.load(tmp_path / "model.zarr")
    for key, value in params.items():
        got = loaded.get_params()[key]
        if isinstance(value, np.ndarray) or isinstance(got, np.ndarray):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(value))
        elif isinstance(value, (list, tuple)):
            assert list(got) == list(value), key
        else:
            assert got == value, key
    np.testing.assert_array_equal(loaded.means_, model.means_)


#: ``streamem fit`` options and the GaussianMixture parameter each sets, with a value
CLI_OPTIONS = {
    "--n-components": ("n_components", "3"),
    "--covariance-type": ("covariance_type", "diag"),
    "--max-iter": ("max_iter", "7"),
    "--tol": ("tol", "0.01"),
    "--reg-covar": ("reg_covar", "0.001"),
    "--n-init": ("n_init", "2"),
    "--n-starts": ("n_starts", "3"),
    "--init-iter": ("init_iter", "5"),
    "--moves": ("moves", "none"),
    "--explore-rows": ("explore_rows", "300"),
    "--accelerate": ("accelerate", "quasi-newton"),
    "--stopping": ("stopping", "change"),
    "--init": ("init_params", "k-means++"),
    "--seed": ("random_state", "5"),
    "--checkpoint": ("checkpoint", "CHECKPOINT"),
    "--scheduler": ("scheduler_address", None),
}
#: GaussianMixture parameters ``streamem fit`` does not offer, and why
NOT_ON_THE_COMMAND_LINE = {
    "weights_init": "arrays: fit in Python, or start from a saved model",
    "means_init": "arrays: fit in Python, or start from a saved model",
    "precisions_init": "arrays: fit in Python, or start from a saved model",
    "warm_start": "each command is a new process; --checkpoint resumes a fit",
    "verbose": "the command always logs (--quiet, --log-json)",
    "verbose_interval": "the command logs every pass",
    "persist": "the data are read at every pass (a command fits data larger than memory)",
    "persist_fraction": "as persist",
    "timeout": "dask's own settings (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT)",
    "feature_dim": "the command reads tables and arrays with rows as samples (--columns chooses features)",
    "missing": "the command fits complete rows",
    "noise": "Python API",
    "freeze": "needs initial parameters (Python API)",
    "weight_concentration_prior": "priors: Python API",
    "mean_prior": "priors: Python API",
    "mean_precision_prior": "priors: Python API",
    "covariance_prior": "priors: Python API",
    "degrees_of_freedom_prior": "priors: Python API",
}
CLI_FLAGS = {"--standardize": "standardize"}


def test_every_parameter_is_on_the_command_line_or_said_not_to_be():
    offered = {name for name, _ in CLI_OPTIONS.values()} | set(CLI_FLAGS.values())
    assert offered.isdisjoint(NOT_ON_THE_COMMAND_LINE)
    assert offered | set(NOT_ON_THE_COMMAND_LINE) == set(streamem.GaussianMixture().get_params())


def test_the_command_line_sets_each_parameter_it_offers(tmp_path):
    np.save(tmp_path / "x.npy", X)
    arguments = ["fit", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m.zarr"), "--quiet", "--standardize"]
    expected = {"standardize": True}
    for option, (name, value) in CLI_OPTIONS.items():
        if value is None:
            continue
        value = str(tmp_path / "checkpoint") if value == "CHECKPOINT" else value
        arguments += [option, value]
        expected[name] = value
    result = cli(*arguments)
    assert result.returncode == 0, result.stderr
    params = streamem.load(tmp_path / "m.zarr").get_params()
    for name, value in expected.items():
        assert str(params[name]).lower() == str(value).lower(), name
    assert any((tmp_path / "checkpoint").iterdir())


def test_the_command_line_runs_on_the_scheduler_it_is_given(tmp_path, cluster):
    np.save(tmp_path / "x.npy", X)
    before = cluster.scheduler.transition_counter
    result = cli(
        "fit",
        tmp_path / "x.npy",
        "--n-components",
        2,
        "--out",
        tmp_path / "m.zarr",
        "--scheduler",
        cluster.scheduler_address,
    )
    assert result.returncode == 0, result.stderr
    assert cluster.scheduler.transition_counter > before + 20  # the passes ran there


@pytest.mark.slow  # the client tries for 30 s before it gives up
def test_an_unreachable_scheduler_is_one_line_and_writes_nothing(tmp_path):
    np.save(tmp_path / "x.npy", X)
    port = free_port()
    result = cli_process(
        "fit",
        tmp_path / "x.npy",
        "--n-components",
        2,
        "--out",
        tmp_path / "m.zarr",
        "--scheduler",
        f"tcp://127.0.0.1:{port}",
        timeout=120,
        env={**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"},
    )
    assert result.returncode == 1 and str(port) in result.stderr and len(result.stderr.splitlines()) == 1
    assert "after 2 s" in result.stderr  # dask's connect timeout is honoured, not replaced
    assert not (tmp_path / "m.zarr").exists()
