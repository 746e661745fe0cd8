"""The fixtures of the test suite; what the tests share otherwise is in helpers.py."""

from __future__ import annotations

import pytest

from .helpers import free_port, mixture_data, moto_server, run_server, server_binary, streamem_logger_kept

#: fixtures that start a server (Redis, NATS, S3): their tests carry the ``server`` marker
SERVER_FIXTURES = {"redis_server", "nats_server", "s3_server", "moto"}
#: fixtures that start a dask.distributed cluster: their tests carry the ``cluster`` marker
CLUSTER_FIXTURES = {"cluster"}


def pytest_collection_modifyitems(items):
    """The ``server`` and ``cluster`` markers on every test that uses such a fixture; tests
    that start one themselves carry the marker in their module."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SERVER_FIXTURES:
            item.add_marker(pytest.mark.server)
        if used & CLUSTER_FIXTURES:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(autouse=True)
def _streamem_logger():
    """The "streamem" logger as it was before each test (a command run in-process through
    click's runner sets it)."""
    with streamem_logger_kept():
        yield


@pytest.fixture
def blobs():
    return mixture_data()


@pytest.fixture
def redis_server():
    """A real Redis-compatible server on a free loopback port, without persistence; yields
    the port."""
    port = free_port()
    command = [server_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    yield from run_server([*command, "--appendonly", "no"], port, "redis-server")


@pytest.fixture
def nats_server(tmp_path):
    """A real nats-server with JetStream on a free loopback port; yields the port."""
    import gc

    port = free_port()
    store = tmp_path / "jetstream"
    command = [server_binary("nats-server"), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)]
    yield from run_server(command, port, "nats-server")
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
    for _port in moto_server(port):
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem().mkdir("data")
        yield endpoint
        s3fs.S3FileSystem.clear_instance_cache()
