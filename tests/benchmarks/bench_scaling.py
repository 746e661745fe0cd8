"""Scaling on a dask.distributed cluster: worker processes and per-pass overhead.

Run by hand::

    python tests/benchmarks/bench_scaling.py

1. Seconds per EM iteration with 1 and 2 worker processes (one thread each) on the same
   compute-bound data (2,000,000 x 16 float64 in memory, sent to the workers once, K=16
   full, 16 chunks), the speed-up, and how busy each process's CPU was (``psutil``).
2. Overhead of one pass: a pass over 10, 100 and 1,000 chunks whose tasks do almost
   nothing, on the local threaded scheduler and on a 2-process cluster. That time is graph
   building, scheduling and the reduction: what a pass costs beyond the chunk tasks
   themselves. A pass groups its chunks into a few tasks per thread, so the overhead is a
   fixed latency (on a cluster, about a round trip to the scheduler and workers, shown by
   a trivial ``client.submit``) plus a small cost per chunk (graph building), shown per
   100 chunks beyond the 10-chunk pass.
Prints Markdown tables.
"""

from __future__ import annotations

import time
import warnings

import dask.array as da
import numpy as np
import psutil

import streamem
from streamem.reduce import ChunkedData

N_COMPONENTS = 16


def _trivial(X, sample_weight):
    return 1


def pass_overhead(n_chunks: int, repeat: int = 5) -> float:
    X = da.zeros((n_chunks * 8, 2), chunks=(8, 2))
    data = ChunkedData(X)
    data.map_reduce(_trivial)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        data.map_reduce(_trivial)
        best = min(best, time.perf_counter() - t0)
    return best


def seconds_per_iteration(X, start, iterations=5) -> float:
    gm = streamem.GaussianMixture(N_COMPONENTS, max_iter=iterations, tol=0, **start)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    return (time.perf_counter() - t0) / iterations


def main():
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(0)
    centres = rng.uniform(-6, 6, (N_COMPONENTS, 16))
    X = centres[rng.integers(N_COMPONENTS, size=2_000_000)] + rng.normal(size=(2_000_000, 16))
    start = {
        "weights_init": np.full(N_COMPONENTS, 1 / N_COMPONENTS),
        "means_init": X[:N_COMPONENTS],
        "precisions_init": np.tile(np.eye(16), (N_COMPONENTS, 1, 1)),
    }
    data = da.from_array(X, chunks=(125_000, 16))
    timings, busy = {}, {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster):  # fmt: skip
            persisted = data.persist()
            seconds_per_iteration(persisted, start, 1)  # warm up
            processes = [psutil.Process()] + psutil.Process().children(recursive=True)
            before = [sum(p.cpu_times()[:2]) for p in processes]
            t0 = time.perf_counter()
            timings[workers] = min(seconds_per_iteration(persisted, start) for _ in range(2))
            wall = time.perf_counter() - t0
            busy[workers] = [(sum(p.cpu_times()[:2]) - b) / wall for p, b in zip(processes, before)]
    print("| worker processes | s per iteration | speed-up | CPU busy: client and scheduler, workers |")
    print("|---:|---:|---:|---|")
    for workers, seconds in timings.items():
        shares = sorted(busy[workers][1:], reverse=True)[:workers]  # the workers (not the resource tracker)
        print(f"| {workers} | {seconds:.3f} | {timings[1] / seconds:.2f}x | {busy[workers][0]:.0%}, "
              f"{', '.join(f'{share:.0%}' for share in shares)} |")  # fmt: skip

    overhead = {"threads": {}, "2 processes": {}}
    for n in (10, 100, 1000):
        overhead["threads"][n] = pass_overhead(n)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        for n in (10, 100, 1000):
            overhead["2 processes"][n] = pass_overhead(n)
        round_trip = np.inf
        for i in range(10):
            t0 = time.perf_counter()
            client.submit(abs, -i).result()
            round_trip = min(round_trip, time.perf_counter() - t0)
    print("\n| chunks per pass | threaded scheduler ms | 2-process cluster ms | cluster ms per 100 more chunks |")
    print("|---:|---:|---:|---:|")
    for n in (10, 100, 1000):
        local, remote = overhead["threads"][n] * 1e3, overhead["2 processes"][n] * 1e3
        extra = "" if n == 10 else f"{(remote - overhead['2 processes'][10] * 1e3) * 100 / (n - 10):.1f}"
        print(f"| {n} | {local:.1f} | {remote:.1f} | {extra} |")
    print(f"\nA trivial task's round trip on the same cluster (client.submit): {round_trip * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
