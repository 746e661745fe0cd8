"""A fit on a real multi-process cluster: the same bits as on threads, and after the loss of a worker."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import streamem

pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.cluster]


class _IterationWatch(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.reached = threading.Event()
        self.last = 0

    def emit(self, record):
        data = getattr(record, "streamem", None)
        if data is not None:
            self.last = data["iteration"]
            if data["iteration"] >= 2:
                self.reached.set()


@pytest.mark.long
@pytest.mark.slow
def test_scheduler_address_runs_the_fit_there(tmp_path, blobs):
    from distributed import LocalCluster

    X, _ = blobs
    local = streamem.GaussianMixture(3, random_state=0).fit(X)
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        before = cluster.scheduler.transition_counter
        remote = streamem.GaussianMixture(3, random_state=0, scheduler_address=cluster.scheduler_address).fit(X)
        assert cluster.scheduler.transition_counter > before + 20  # the passes ran on that cluster
    np.testing.assert_allclose(remote.means_, local.means_, rtol=1e-10)


@pytest.mark.long
def test_worker_killed_mid_fit(tmp_path):
    from distributed import Client, LocalCluster

    data = tmp_path / "points.zarr"
    streamem.make_data(data, 300_000, 6, 5, chunk_size=20_000, seed=4)
    params = dict(init_params="random", max_iter=25, tol=0, random_state=1, verbose=2, verbose_interval=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = streamem.GaussianMixture(5, **params).fit(str(data))

    watch = _IterationWatch()
    logger = logging.getLogger("streamem")
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    killed = []
    try:
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):

            def kill_one_worker():
                if watch.reached.wait(timeout=120):
                    pid = next(iter(client.run(os.getpid).values()))
                    os.kill(pid, signal.SIGKILL)
                    killed.append(watch.last)

            killer = threading.Thread(target=kill_one_worker)
            killer.start()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = streamem.GaussianMixture(5, **params).fit(str(data))
            killer.join()
    finally:
        logger.removeHandler(watch)
    assert killed and killed[0] < 20, f"no worker was killed in the middle of the fit: {killed}"
    assert model.n_iter_ == reference.n_iter_ == 25
    for name in ("weights_", "means_", "covariances_"):  # the chunks' results are added on the same tree
        np.testing.assert_array_equal(getattr(model, name), getattr(reference, name), err_msg=name)


@pytest.mark.long
def test_larger_than_worker_memory_is_read_at_every_pass(tmp_path, caplog):
    from distributed import Client

    from streamem.engine.cluster import local_cluster

    data = tmp_path / "big.zarr"
    streamem.make_data(data, 10_000_000, 8, 4, chunk_size=250_000, seed=1)  # 640 MB of float64
    with local_cluster(2, memory_limit="600MB", dashboard_address=None) as cluster, Client(cluster) as client:
        workers_before = set(client.scheduler_info()["workers"])
        with caplog.at_level("INFO", logger="streamem"):
            gm = streamem.GaussianMixture(
                4, init_params="random", max_iter=2, tol=0, random_state=0, persist="auto", explore_rows=None
            )  # every pass over all the rows
            gm.fit(str(data))
        assert any("does not fit" in r.message for r in caplog.records)
        assert set(client.scheduler_info()["workers"]) == workers_before  # no worker restarted
        spilled = client.run(lambda dask_worker: dask_worker.data.spilled_total.disk)
        assert all(v == 0 for v in spilled.values()), spilled
        caplog.clear()
        small = streamem.make_data(tmp_path / "small.zarr", 20_000, 8, 4, chunk_size=5_000, seed=2)
        with caplog.at_level("INFO", logger="streamem"):
            streamem.GaussianMixture(4, max_iter=3, random_state=0, persist="auto").fit(str(small))
        assert any("keeping" in r.message for r in caplog.records)
    assert gm.n_iter_ == 2 and np.all(np.isfinite(gm.means_))


def test_local_cluster_workers_start_with_the_worker_environment(monkeypatch):
    from distributed import Client

    from streamem.engine.cluster import WORKER_ENVIRON, local_cluster

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as a dask nanny started here before leaves it
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    with local_cluster(2, dashboard_address=None) as cluster, Client(cluster) as client:
        assert os.environ.get("MALLOC_TRIM_THRESHOLD_") == "65536" and "MALLOC_MMAP_THRESHOLD_" not in os.environ
        killed = next(iter(client.run(os.getpid).values()))
        os.kill(killed, signal.SIGKILL)  # its nanny starts it again
        deadline = time.monotonic() + 60
        while len(pids := client.run(os.getpid, on_error="ignore")) < 2 or killed in pids.values():
            assert time.monotonic() < deadline, "the killed worker did not start again"
            time.sleep(0.2)
        seen = client.run(lambda: {name: os.environ.get(name) for name in WORKER_ENVIRON})
    assert list(seen.values()) == [WORKER_ENVIRON] * 2


def test_local_cluster_refuses_to_start_its_workers_later():
    from streamem.engine.cluster import local_cluster

    with pytest.raises(ValueError, match="asynchronous"):
        local_cluster(1, asynchronous=True)


def _start_cluster(tmp_path):
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "cluster.log", "w")  # noqa: SIM115
    scheduler = subprocess.Popen(
        ["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", "127.0.0.1:0"],
        stdout=log,
        stderr=log,
    )
    worker = subprocess.Popen(
        ["dask", "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--dashboard-address", "127.0.0.1:0"],
        stdout=log,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while "Starting established connection" not in (tmp_path / "cluster.log").read_text():
        assert time.monotonic() < deadline, (tmp_path / "cluster.log").read_text()
        time.sleep(0.1)
    return address, scheduler, worker


@pytest.mark.long
@pytest.mark.parametrize(("how", "error"), [("stop", TimeoutError), ("kill", ConnectionError)])
def test_losing_the_scheduler_raises_instead_of_hanging(tmp_path, how, error):
    address, scheduler, worker = _start_cluster(tmp_path)
    streamem.make_data(tmp_path / "points.zarr", 400_000, 8, 4, chunk_size=20_000, seed=0)
    watch = _IterationWatch()
    logger = logging.getLogger("streamem")
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    outcome = {}

    def fit():
        gm = streamem.GaussianMixture(
            4,
            init_params="random",
            max_iter=500,
            tol=0,
            timeout=20.0,  # (a pass on a loaded 2-core machine takes seconds)
            verbose=2,
            verbose_interval=1,
            scheduler_address=address,
        )
        try:
            gm.fit(str(tmp_path / "points.zarr"))
        except Exception as exc:  # the outcome is checked below
            outcome["error"] = exc

    try:
        thread = threading.Thread(target=fit)
        thread.start()
        assert watch.reached.wait(timeout=120), outcome
        os.kill(scheduler.pid, signal.SIGSTOP if how == "stop" else signal.SIGKILL)
        thread.join(timeout=90)
        assert not thread.is_alive(), "the fit hangs"
        assert isinstance(outcome.get("error"), error), outcome
    finally:
        logger.removeHandler(watch)
        for process in (scheduler, worker):
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.long
@pytest.mark.slow
def test_chunks_anywhere_on_the_workers_give_the_bits_of_threads(monkeypatch):
    """Chunks kept on the workers are added where they are, one partial sum per worker:
    wherever they were put (all on one worker, where dask put them, by the fit itself), the
    fit has the bits of the threaded scheduler with the same chunking. Small chunks go in
    runs of four here (whole runs on each worker), stacked for the E-step."""
    import dask
    import dask.array as da
    from distributed import Client

    import streamem.engine.passes as passes
    from streamem.engine.cluster import local_cluster
    from streamem.engine.passes import ChunkedData, persist

    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(loc, 1.0, size=(6000, 3)) for loc in (-4.0, 0.0, 4.0)])
    data = da.from_array(X, chunks=(450, 3))
    monkeypatch.setattr(passes, "RUN_VALUES", 4 * 450 * 3)
    assert ChunkedData(data).level == 2
    settings = dict(n_components=3, max_iter=8, tol=0, random_state=0)
    with dask.config.set(scheduler="threads"):
        local = streamem.GaussianMixture(**settings).fit(data)
    with local_cluster(2, dashboard_address=None) as cluster, Client(cluster) as client:
        workers = sorted(client.nthreads())
        placed = {
            "all on one worker": client.persist(data, workers=workers[:1]),
            "where dask put them": data.persist(),
        }
        fits = {where: streamem.GaussianMixture(**settings).fit(array) for where, array in placed.items()}
        fits["again"] = streamem.GaussianMixture(**settings).fit(placed["all on one worker"])
        fits["kept by the fit"] = streamem.GaussianMixture(persist=True, **settings).fit(data)
        chunked = ChunkedData(persist(data))
        _, groups = chunked._groups()  # where a pass runs: chunks found elsewhere are copied once
        holders = client.who_has([chunked._graph[key] for key in chunked.x_keys])
        sequence = [holders[key][0] for key in chunked.x_keys]
    changes = sum(a != b for a, b in zip(sequence, sequence[1:]))
    assert changes == 1 and set(sequence) == set(workers)  # each worker's chunks consecutive
    assert sorted(len(members) for _, members in groups) == [20, 20]  # one task per worker thread
    for where, model in fits.items():
        for name in ("weights_", "means_", "covariances_", "lower_bound_"):
            np.testing.assert_array_equal(getattr(model, name), getattr(local, name), err_msg=f"{where}: {name}")


@pytest.mark.long
def test_the_same_chunking_gives_the_same_bits_on_any_scheduler(tmp_path):
    """A pass's statistics are added on one binary tree over the chunks, whatever tasks the
    chunks are grouped into and whichever worker runs them: threads and worker processes in
    any number give the same bits; another chunking agrees to rounding."""
    import dask
    import dask.array as da
    import zarr
    from distributed import Client, LocalCluster

    data = tmp_path / "points.zarr"
    streamem.make_data(data, 60_000, 4, 4, chunk_size=2_500, seed=5)  # 24 chunks
    params = dict(n_components=4, covariance_type="full", max_iter=15, tol=0, random_state=0)
    fits = {}
    for threads in (1, 2, 4):
        with dask.config.set(scheduler="threads", num_workers=threads):
            fits[f"{threads} threads"] = streamem.GaussianMixture(**params).fit(str(data))
    for workers in (1, 4):
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            ) as cluster,
            Client(cluster),
        ):
            fits[f"{workers} workers"] = streamem.GaussianMixture(**params).fit(str(data))
    reference = fits.pop("1 threads")
    for where, model in fits.items():
        for name in ("weights_", "means_", "covariances_", "lower_bound_"):
            np.testing.assert_array_equal(getattr(model, name), getattr(reference, name), err_msg=f"{where}: {name}")
    rows = zarr.open_group(str(data), mode="r")["X"][:]
    rechunked = streamem.GaussianMixture(**params).fit(da.from_array(rows, chunks=(7_001, -1)))
    np.testing.assert_allclose(rechunked.means_, reference.means_, rtol=1e-10)
    np.testing.assert_allclose(rechunked.covariances_, reference.covariances_, rtol=1e-10)
