"""Faults of an object store: a fault-injecting proxy (:mod:`tests.faultproxy`) in front of a
real S3 server (moto in server mode, as ``s3_server`` runs it) drops connections, cuts answers
off, answers 500 or 503 and stalls. A fit retries and gives the same result, or ends with one
error that names the place; ``save``, checkpoints and a stream's published model leave the
previous version whole.

Persistent faults run with fewer retries (``few_retries``); the requests a fault hits are
chosen by method, path and header, so each test says which step of a write fails."""

from __future__ import annotations

import re
import time
import urllib.request

import dask.array as da
import numpy as np
import pytest
import zarr

import streamem
from streamem.data.checkpoint import load_state, save_state
from streamem.data.storage import location
from streamem.stream import run
from streamem.stream.sources.memory import MemorySource

from .faultproxy import FaultProxy
from .helpers import cli, free_port, mixture_data, moto_server

s3fs = pytest.importorskip("s3fs")

DATA = "s3://data/x.zarr"
CHUNKS = r"^/data/x\.zarr/c/"  # the requests that read the data's chunks
ROWS = 300  # rows per chunk
MODEL = "s3://data/m.zarr"
CHECKPOINT = "s3://data/ck"
FIT = dict(n_components=2, random_state=0, max_iter=30)
FITTED = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bound_", "n_iter_", "converged_")
ENVIRONMENT = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def moto():
    """One S3 server (moto in server mode, as ``s3_server`` runs it) for the module, emptied
    before each test: starting one per test would take most of the module's time."""
    port = free_port()
    for _port in moto_server(port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def fault_proxy(moto):
    with FaultProxy(moto) as proxy:
        yield proxy


@pytest.fixture
def proxy(moto, fault_proxy, monkeypatch):
    """The :class:`FaultProxy` in front of the S3 server, without faults, an empty bucket
    ``data`` behind it; s3fs talks to it (``AWS_ENDPOINT_URL``)."""
    urllib.request.urlopen(urllib.request.Request(f"{moto}/moto-api/reset", method="POST"), timeout=10).close()
    for name, value in {**ENVIRONMENT, "AWS_ENDPOINT_URL": fault_proxy.url}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("data")
    fault_proxy.clear()
    yield fault_proxy
    fault_proxy.clear()
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def few_retries(monkeypatch):
    """Two attempts per request (botocore's ``AWS_MAX_ATTEMPTS``) and no rounds of s3fs's own
    retries around them, so that a fault that outlasts them ends a test in a second: by
    default s3fs nests its five retries around botocore's five attempts (twice for a read).
    Asked for before ``proxy``, so that the file systems are made once, with it."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def X():
    return mixture_data(n_samples=600, n_features=2, n_components=2)[0]


@pytest.fixture(scope="module")
def reference(X):
    """The fault-free fit, in memory in the same chunks (bit for bit the fit of ``DATA``)."""
    return streamem.GaussianMixture(**FIT).fit(da.from_array(X, chunks=(ROWS, 2)))


@pytest.fixture
def data(proxy, X):
    """``X`` at ``DATA`` in chunks of ``ROWS`` rows, written before any fault."""
    zarr.create_array(location(DATA).zarr_store(read_only=False), shape=X.shape, chunks=(ROWS, 2), dtype="f8")[...] = X
    return X


def assert_same(model, reference) -> None:
    for name in FITTED:
        np.testing.assert_array_equal(getattr(model, name), getattr(reference, name), err_msg=name)


@pytest.fixture(scope="module")
def two_models():
    """Two different fitted models (in memory: no requests). They save packed, in a few
    objects: quicker to copy than a batch model's many, the same to :meth:`Location.commit_from`."""
    X, _ = mixture_data(n_samples=400, n_features=2, n_components=2)
    old = streamem.OnlineGaussianMixture(2, random_state=0).fit(X)
    return old, streamem.OnlineGaussianMixture(2, random_state=1).fit(X + 5)


def assert_same_model(model, expected) -> None:
    """The same arrays and attributes, as saved."""
    (arrays, attrs), (expected_arrays, expected_attrs) = model.state(), expected.state()
    assert attrs == expected_attrs and arrays.keys() == expected_arrays.keys()
    for name, value in expected_arrays.items():
        np.testing.assert_array_equal(arrays[name], value, err_msg=name)


def put_model(model, url, tmp_path) -> None:
    """``model`` saved at ``url`` (saved on local disk and uploaded: quicker than saving to the store)."""
    model.save(tmp_path / "saved.zarr")
    s3fs.S3FileSystem().put(str(tmp_path / "saved.zarr"), url, recursive=True)


def hidden_keys() -> list[str]:
    """Objects under hidden names in the bucket: temporaries, and versions aside."""
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return [key for key in fs.find("data") if "/." in key]


# ------------------------------------------------------------------- retried faults
@pytest.mark.long
def test_transient_faults_while_a_fit_reads_are_retried_and_change_nothing(proxy, data, reference):
    faults = [
        proxy.inject(action, method="GET", path=CHUNKS, times=times, seconds=0.5)
        for action, times in (("503", 2), ("drop", 2), ("500", 1), ("truncate", 1), ("delay", 1))
    ]
    faulted = streamem.GaussianMixture(**FIT).fit(DATA)
    assert [fault.hits for fault in faults] == [fault.times for fault in faults]
    assert_same(faulted, reference)


def test_a_stalled_answer_is_cut_by_the_read_timeout_and_retried(proxy, data, reference):
    stall = proxy.inject("delay", method="GET", path=CHUNKS, times=2, seconds=10)
    start = time.monotonic()
    faulted = streamem.GaussianMixture(**FIT).fit(DATA, storage_options={"config_kwargs": {"read_timeout": 1}})
    assert stall.hits == 2 and time.monotonic() - start < 10
    assert_same(faulted, reference)


def test_transient_faults_while_saving_over_a_model_are_retried(proxy, two_models, tmp_path):
    old, new = two_models
    put_model(old, MODEL, tmp_path)
    faults = [
        proxy.inject("503", method="PUT", path=r"^/data/\.m\.zarr\.tmp-", times=1),  # writing the new version
        proxy.inject("drop", method="PUT", path=r"^/data/\.m\.zarr\.old-", times=1),  # copying the old one aside
        proxy.inject("truncate", method="POST", path=r"\?delete", times=1),  # removing the old one
        proxy.inject("500", method="PUT", path=r"^/data/m\.zarr/", times=1),  # copying the new one into place
        proxy.inject("drop", method="GET", path=r"list-type=2", times=1),  # listings
    ]
    new.save(MODEL)
    assert [fault.hits for fault in faults] == [fault.times for fault in faults]
    proxy.clear()
    assert_same_model(streamem.load(MODEL), new)
    assert hidden_keys() == []


# ------------------------------------------------------------------ persistent faults
@pytest.mark.parametrize("action", ["503", "drop", "truncate"])
def test_a_persistent_fault_ends_the_fit_with_one_error_naming_the_data(few_retries, proxy, data, action):
    proxy.inject(action, method="GET", path=CHUNKS)
    with pytest.raises(OSError, match=r"^cannot read 's3://data/x\.zarr/c/\d/0': ") as caught:
        streamem.GaussianMixture(**FIT).fit(DATA)
    assert len(str(caught.value).splitlines()) == 1


def test_cli_fit_with_a_persistent_fault_exits_1_with_one_line_on_stderr(few_retries, proxy, data):
    proxy.inject("drop", method="GET", path=CHUNKS)
    result = cli("fit", DATA, "--n-components", 2, "--seed", 0, "--out", MODEL, "--quiet")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"error: cannot read 's3://data/x\.zarr/c/\d/0': \S", lines[0]), result.stderr
    proxy.clear()
    assert not location(MODEL).exists() and hidden_keys() == []


# ------------------------------------------------------- the previous version stays whole
SAVE_FAULTS = {  # every request of the kind fails after the first few
    "writing the new version": dict(method="PUT", path=r"^/data/\.m\.zarr\.tmp-", after=1),
    "copying it into place": dict(
        method="PUT", path=r"^/data/m\.zarr/", header=("x-amz-copy-source", r"\.tmp-"), after=1
    ),
    "removing the old version": dict(method="POST", path=r"^/data\?delete", times=2),  # then the store recovers
}


@pytest.mark.parametrize("stage", SAVE_FAULTS)
def test_a_save_that_fails_part_way_leaves_the_previous_model_whole(few_retries, proxy, two_models, tmp_path, stage):
    old, new = two_models
    put_model(old, MODEL, tmp_path)
    fault = proxy.inject("503", **SAVE_FAULTS[stage])
    with pytest.raises(OSError, match=r"^cannot write 's3://data/\.?m\.zarr"):
        new.save(MODEL)
    assert fault.hits
    proxy.clear()
    assert_same_model(streamem.load(MODEL), old)
    assert hidden_keys() == []


def test_when_the_previous_model_cannot_be_put_back_the_error_names_where_it_is_kept(
    few_retries, proxy, two_models, tmp_path
):
    old, new = two_models
    put_model(old, MODEL, tmp_path)
    proxy.inject("503", method="PUT", path=r"^/data/m\.zarr/", after=1)  # the copies into place, and back
    with pytest.raises(OSError, match=r"^cannot write 's3://data/m\.zarr' \(.+\), nor put back") as caught:
        new.save(MODEL)
    kept = re.search(r"kept whole at '(s3://data/\.m\.zarr\.old-\w+)'", str(caught.value)).group(1)
    proxy.clear()
    assert_same_model(streamem.load(kept), old)
    with pytest.raises(ValueError, match="is not a streamem model"):  # no model there, rather than half of one
        streamem.load(MODEL)


def test_when_cleaning_up_fails_too_the_error_still_names_where_the_previous_model_is_kept(
    few_retries, proxy, two_models, tmp_path
):
    old, new = two_models
    put_model(old, MODEL, tmp_path)
    proxy.inject("503", method="POST", path=r"^/data\?delete")  # objects can no longer be removed in bulk
    with pytest.raises(OSError, match=r"kept whole at 's3://data/\.m\.zarr\.old-\w+'"):
        new.save(MODEL)


def test_a_checkpoint_whose_new_state_fails_part_way_leaves_the_previous_state(few_retries, proxy):
    before = {"x": np.arange(3.0)}
    save_state(CHECKPOINT, 1, before, {"step": 1}, pack=True)
    fault = proxy.inject("drop", method="PUT", path=r"^/data/ck/state-000002-", after=1)
    with pytest.raises(OSError, match=r"^cannot write 's3://data/ck/state-000002-"):
        save_state(CHECKPOINT, 2, {"x": np.arange(5.0)}, {"step": 2}, pack=True)
    assert fault.hits
    proxy.clear()
    arrays, attrs = load_state(CHECKPOINT)
    assert attrs["step"] == 1
    np.testing.assert_array_equal(arrays["x"], before["x"])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_fit_whose_checkpoint_fails_resumes_from_the_last_whole_state_to_the_same_result(few_retries, proxy, data):
    short = {**FIT, "max_iter": 1}  # checkpoints after the start and after one iteration
    expected = streamem.GaussianMixture(**short).fit(da.from_array(data, chunks=(ROWS, 2)))
    fault = proxy.inject("503", method="PUT", path=r"^/data/ck/LATEST$", after=1)  # the second checkpoint fails
    with pytest.raises(OSError, match=r"^cannot write 's3://data/ck/LATEST': "):
        streamem.GaussianMixture(**short, checkpoint=CHECKPOINT).fit(DATA)
    assert fault.hits
    proxy.clear()
    assert streamem.load(CHECKPOINT).n_iter_ == 0  # the first, whole
    assert_same(streamem.GaussianMixture(**short, checkpoint=CHECKPOINT).fit(DATA), expected)


def stream_once(out, offset=0.0):
    """Two batches of a stream (of rows shifted by ``offset``), its model published once at ``out``."""
    X, _ = mixture_data(n_samples=1000, n_features=2, n_components=2, offset=offset)
    model = streamem.OnlineGaussianMixture(2, random_state=0, warm_up=200)
    return run(
        MemorySource(np.split(X, 10), 2),
        model,
        None,
        out,
        batch_size=100,
        checkpoint_every=2,
        checkpoint_interval=None,
        max_batches=2,
    )


PUBLISH_FAULTS = {  # every request of the kind fails after the first few
    "writing the new version": dict(method="PUT", path=r"^/data/\.m\.zarr\.versions/", after=1),
    "switching to it": dict(method="PUT", path=r"^/data/m\.zarr/zarr\.json$"),
}


def test_a_stream_whose_publishing_fails_leaves_the_published_model_whole(few_retries, proxy):
    stream_once(MODEL)
    published = streamem.load(MODEL)
    for stage, where in PUBLISH_FAULTS.items():
        fault = proxy.inject("503", **where)
        with pytest.raises(OSError, match=r"^cannot write 's3://data/\.?m\.zarr"):
            stream_once(MODEL, offset=5.0)
        assert fault.hits, stage
        proxy.clear()
        assert_same_model(streamem.load(MODEL), published)


def test_a_stream_publishing_over_a_saved_model_keeps_it_until_the_first_version_is_whole(
    few_retries, proxy, two_models, tmp_path
):
    saved, _ = two_models
    put_model(saved, MODEL, tmp_path)
    proxy.inject("503", method="PUT", path=r"^/data/\.m\.zarr\.versions/", after=1)
    with pytest.raises(OSError, match=r"^cannot write 's3://data/\.m\.zarr\.versions/"):
        stream_once(MODEL)
    proxy.clear()
    assert_same_model(streamem.load(MODEL), saved)
