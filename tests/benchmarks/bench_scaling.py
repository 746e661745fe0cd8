"""Scaling on a dask.distributed cluster: worker processes and per-pass overhead.

Run by hand::

    python tests/benchmarks/bench_scaling.py

1. Seconds per EM iteration with 1 and 2 worker processes (one thread each) on the same
   data (4,000,000 x 16 float64 written to zarr and kept in the workers' memory, 32
   chunks), full covariances with K=16 and with K=64 (four times the arithmetic per byte
   read), and the speed-up. The two clusters run side by side and their fits alternate,
   five rounds, so that both see the same machine; the medians are shown. With the
   workers of :func:`streamem.engine.cluster.local_cluster` (the environment of ``streamem fit
   --workers`` and the deploy/ recipes), and for K=16 also with dask's default worker
   environment.
2. For each K, the same ratio for the chunk E-step alone in two plain Python processes (no
   dask, no client): what this machine allows two processes.
3. Overhead of one pass: a pass over 10, 100 and 1,000 chunks whose tasks do almost
   nothing, on the local threaded scheduler and on a 2-process cluster. That time is graph
   building, scheduling and the reduction: what a pass costs beyond the chunk tasks
   themselves. A pass groups its chunks into a few tasks per thread, so the overhead is a
   fixed latency (on a cluster, about a round trip to the scheduler and workers, shown by
   a trivial ``client.submit``) plus a small cost per chunk (graph building), shown per
   100 chunks beyond the 10-chunk pass.
Prints Markdown tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import dask.array as da
import numpy as np

import streamem
from streamem.engine.cluster import WORKER_ENVIRON, local_cluster
from streamem.engine.passes import ChunkedData

N_SAMPLES, N_FEATURES, CHUNK_ROWS = 4_000_000, 16, 125_000
ROUNDS = 5


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


def seconds_per_iteration(X, start, iterations=3) -> float:
    gm = streamem.GaussianMixture(len(start["weights_init"]), max_iter=iterations, tol=0, **start)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    return (time.perf_counter() - t0) / iterations


def alternate(make_cluster, path, start) -> tuple[float, float, float]:
    """Median s per iteration with 1 and 2 workers, and the median of the rounds' ratios."""
    from distributed import Client

    with make_cluster(1) as one, make_cluster(2) as two, Client(one) as c1, Client(two) as c2:
        data = {}
        for client in (c1, c2):
            with client.as_current():
                data[client] = da.from_zarr(str(path), component="X").persist()
                seconds_per_iteration(data[client], start, 1)  # warm up
        rounds = []
        for _ in range(ROUNDS):
            pair = []
            for client in (c1, c2):
                with client.as_current():
                    pair.append(seconds_per_iteration(data[client], start))
            rounds.append(pair)
    rounds = np.array(rounds)
    return *np.median(rounds, axis=0), float(np.median(rounds[:, 0] / rounds[:, 1]))


_ESTEP_PROCESS = """
import sys, warnings
import numpy as np
import streamem
from streamem.core.stats import chunk_stats
warnings.simplefilter("ignore")
X = np.random.default_rng(0).normal(size=({rows}, {features}))
params = streamem.GaussianMixture({k}, max_iter=1, weights_init=np.full({k}, 1 / {k}), means_init=X[:{k}],
                                  precisions_init=np.tile(np.eye({features}), ({k}, 1, 1))).fit(X[:5000]).fitted_params()
chunk_stats(X, None, [params], np.zeros({features}))
print("ready", flush=True)
for line in sys.stdin:
    for _ in range(int(line)):
        chunk_stats(X, None, [params], np.zeros({features}))
    print("done", flush=True)
"""


def plain_processes_ratio(n_components: int, n_chunks: int = 16) -> float:
    """Median over rounds of: n_chunks E-steps in one process / n_chunks/2 in each of two."""
    code = _ESTEP_PROCESS.format(rows=CHUNK_ROWS, features=N_FEATURES, k=n_components)
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **WORKER_ENVIRON}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environ
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready"

        def run(some, n):
            t0 = time.perf_counter()
            for process in some:
                process.stdin.write(f"{n}\n")
                process.stdin.flush()
            for process in some:
                process.stdout.readline()
            return time.perf_counter() - t0

        return float(np.median([run(processes[:1], n_chunks) / run(processes, n_chunks // 2) for _ in range(6)]))
    finally:
        for process in processes:
            process.kill()
            process.wait()


def _streamem_cluster(n_workers):
    return local_cluster(n_workers, dashboard_address=None)


def _dask_default_cluster(n_workers):
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )


def main():
    from distributed import Client

    streamem_env = "streamem (`local_cluster`, `--workers`, deploy/)"
    runs = {
        (16, streamem_env): _streamem_cluster,
        (16, "dask's default"): _dask_default_cluster,
        (64, streamem_env): _streamem_cluster,
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "points.zarr"
        streamem.make_data(path, N_SAMPLES, N_FEATURES, 16, chunk_size=CHUNK_ROWS, seed=0)
        for (k, env), make in runs.items():
            start = {
                "weights_init": np.full(k, 1 / k),
                "means_init": da.from_zarr(str(path), component="X")[:k].compute(),
                "precisions_init": np.tile(np.eye(N_FEATURES), (k, 1, 1)),
            }
            results[k, env] = alternate(make, path, start)
    ceiling = {k: plain_processes_ratio(k) for k in (16, 64)}
    print(
        "| K (full) | worker environment | 1 worker s/iteration | 2 workers s/iteration | speed-up "
        "| E-step alone, two plain processes |"
    )
    print("|---:|---|---:|---:|---:|---:|")
    for (k, env), (one, two, ratio) in results.items():
        print(f"| {k} | {env} | {one:.3f} | {two:.3f} | {ratio:.2f}x | {ceiling[k]:.2f}x |")

    overhead = {"threads": {}, "2 processes": {}}
    for n in (10, 100, 1000):
        overhead["threads"][n] = pass_overhead(n)
    with _streamem_cluster(2) as cluster, Client(cluster) as client:
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
