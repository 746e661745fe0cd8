"""The scheduler a fit runs on: a client of a given scheduler (:func:`connected`), the memory
its chunks could be kept in, and dask worker processes: the environment they start with,
and a local cluster.

glibc's ``malloc`` serves large arrays with ``mmap`` and, by default, raises that
threshold to the size of the large arrays a program frees (up to 32 MiB), so that the
temporaries of a loop are reused from the heap. A dask nanny starts its worker process with
``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``), and setting any
of these variables fixes the threshold at 128 KiB: every array over 128 KiB is then a fresh
``mmap`` whose pages are faulted in and zeroed on first touch. The E-step makes a few
temporaries of a few MiB per block of rows, and on such a worker it takes about twice as
long per chunk. :data:`WORKER_ENVIRON` sets the threshold back to 32 MiB and trims the
heap beyond 64 MiB of free memory at its top (what glibc does by itself once a program has
freed a 32 MiB array): the E-step of rows with missing values keeps a few pieces of about
8 MiB of per-row values, and a lower limit returns their pages to the system and faults
them in again for every piece.
"""

from __future__ import annotations

import contextlib
import logging
import os

import dask

from streamem.engine.passes import distributed_client

__all__ = ["WORKER_ENVIRON", "connected", "local_cluster", "memory_capacity"]

logger = logging.getLogger(__name__)

WORKER_ENVIRON = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "67108864"}


def local_cluster(n_workers: int, threads_per_worker: int = 1, **kwargs):
    """A ``distributed.LocalCluster`` of worker processes on 127.0.0.1 whose workers start
    with :data:`WORKER_ENVIRON`, also when a restarted worker starts again.

    The variables are set in this process's environment only while the workers start (a
    nanny gives its worker the variables it sees then, and those of
    ``distributed.nanny.pre-spawn-environ``); a nanny started earlier here leaves its own
    ``MALLOC_TRIM_THRESHOLD_`` behind. Workers added later (``cluster.scale``) start with
    dask's defaults. For other settings, start a ``LocalCluster``.

    Parameters
    ----------
    n_workers : int
    threads_per_worker : int, default=1
    **kwargs
        Passed to ``LocalCluster`` (e.g. ``memory_limit``, ``dashboard_address``).

    Examples
    --------
    >>> from distributed import Client
    >>> with local_cluster(2, dashboard_address=None) as cluster, Client(cluster):  # doctest: +SKIP
    ...     streamem.GaussianMixture(4).fit(X)
    """
    from distributed import LocalCluster

    if kwargs.get("asynchronous"):
        raise ValueError("local_cluster starts its workers before it returns; expected asynchronous=False")
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENVIRON}
    kwargs = {"host": "127.0.0.1", "processes": True, **kwargs}
    saved = {name: os.environ.get(name) for name in WORKER_ENVIRON}
    os.environ.update(WORKER_ENVIRON)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            return LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, **kwargs)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def memory_capacity() -> float:
    """Bytes of memory the chunks could be kept in: the workers' limits on a distributed
    cluster, the available memory on the local scheduler."""
    client = distributed_client()
    if client is not None:
        workers = client.scheduler_info()["workers"].values()
        return float(sum(w.get("memory_limit") or 0 for w in workers))
    import psutil

    return float(psutil.virtual_memory().available)


def client_of(address: str, **kwargs):
    """A client of the scheduler at ``address`` that waits for it as long as dask's
    ``distributed.comm.timeouts.connect`` setting says (30 s unless set)."""
    from distributed import Client

    return Client(address, timeout=dask.config.get("distributed.comm.timeouts.connect", "30s"), **kwargs)


@contextlib.contextmanager
def connected(address: str | None):
    """Run inside a client of the scheduler at ``address`` (or of dask's ``scheduler-address``
    setting) unless a client is already active; otherwise leave the scheduler alone."""
    address = address or dask.config.get("scheduler-address", None)
    if not address:
        yield
        return
    if distributed_client() is not None:  # a client is active: it runs the fit
        yield
        return
    with client_of(address, set_as_default=True) as c:
        logger.info("dask dashboard: %s", c.dashboard_link)
        yield
