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


@pytest.fixture
def blobs():
    return mixture_data()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process, name: str, seconds: float = 15.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {seconds} s")


def _server(command: list[str], port: int, name: str):
    import subprocess

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, name)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def redis_server():
    """A real redis-server on a free loopback port, without persistence; yields the port."""
    port = free_port()
    yield from _server(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no"], port, "redis-server")  # fmt: skip


@pytest.fixture
def nats_server(tmp_path):
    """A real nats-server with JetStream on a free loopback port; yields the port."""
    port = free_port()
    store = tmp_path / "jetstream"
    yield from _server(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)], port,
                       "nats-server")  # fmt: skip


@pytest.fixture
def s3_server(monkeypatch):
    """A real S3-compatible server (moto in server mode) on a free loopback port, with a
    bucket ``data`` and the usual environment pointing at it (``AWS_ENDPOINT_URL``, keys,
    region); yields the endpoint URL."""
    import sys

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    for _port in _server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, "moto"):
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("data")
        yield endpoint
        s3fs.S3FileSystem.clear_instance_cache()
