"""Data where users keep it: a fit reading its chunks from an S3-compatible server against
the same fit on local disk, and the cost of standardisation.

Run by hand::

    python tests/benchmarks/bench_storage.py [--gigabytes 2]

1. A zarr array of ``--gigabytes`` GB (float64, 16 features, chunks of 250,000 rows, 32 MB)
   written once to local disk and once to a local S3-compatible server (moto in server
   mode on a loopback port, started here). The same fit (K=8 full, the same initial
   means, ``tol=0``, 3 iterations, one pass each, nothing kept in memory between passes)
   reads it from each, alternately, 3 rounds; the table shows the median seconds of an EM
   pass (the fits' ``history_``) and the ratio.
2. ``standardize=True`` against the same fit without it, on a 2,000,000 x 16 zarr array on
   disk (K=8 full, 8 iterations from the same initial means, alternately, 5 rounds): the
   median seconds of an EM pass (the fits' ``history_``), the whole fit's seconds, and the
   passes each fit made (the first pass over the features' moments is the one more).
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings

import dask.array as da
import numpy as np
import zarr

import streamem
from streamem.data.storage import location
from streamem.engine.passes import ChunkedData

N_FEATURES, K, CHUNK_ROWS = 16, 8, 250_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3():
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=0.5)
            break
        except OSError:
            time.sleep(0.05)
    import s3fs

    s3fs.S3FileSystem().mkdir("bench")
    return server


def data(n_samples: int) -> da.Array:
    X, _, _ = streamem.data.generate.mixture_data(n_samples, N_FEATURES, K, CHUNK_ROWS, seed=0)
    return X


def write(X: da.Array, where: str) -> None:
    store = location(where).zarr_store(read_only=False)
    array = zarr.create_array(store, shape=X.shape, chunks=(CHUNK_ROWS, N_FEATURES), dtype="f8", overwrite=True)
    da.store(X, array, lock=False)


def iteration_seconds(where: str, means, n_iter: int, **params) -> tuple[float, float]:
    """Median seconds of the fit's EM passes (its ``history_``) and of the whole fit."""
    gm = streamem.GaussianMixture(K, means_init=means, tol=0, max_iter=n_iter, **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(where)
    return float(np.median([record["seconds"] for record in gm.history_])), time.perf_counter() - start


def object_store_table(gigabytes: float) -> None:
    n_samples = int(gigabytes * 1e9 / 8 / N_FEATURES) // CHUNK_ROWS * CHUNK_ROWS
    X = data(n_samples)
    server = start_s3()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            disk = os.path.join(tmp, "points.zarr")
            for where in (disk, "s3://bench/points.zarr"):
                start = time.perf_counter()
                write(X, where)
                print(f"wrote {X.nbytes / 1e9:.2f} GB to {where} in {time.perf_counter() - start:.1f} s")
            means = np.asarray(X[:CHUNK_ROWS][:: CHUNK_ROWS // K][:K].compute())
            times = {disk: [], "s3://bench/points.zarr": []}
            for _ in range(3):
                for where in times:
                    times[where].append(iteration_seconds(where, means, 3)[0])
            local, remote = np.median(times[disk]), np.median(times["s3://bench/points.zarr"])
            print(
                f"\n| {n_samples:,} x {N_FEATURES} float64 ({X.nbytes / 1e9:.2f} GB, {X.numblocks[0]} chunks), "
                f"K={K} full | s per EM pass (median of 3 fits) |"
            )
            print("|---|---:|")
            print(f"| local disk | {local:.2f} |")
            print(f"| local S3-compatible server (moto) | {remote:.2f} |")
            print(f"| ratio S3 / disk | {remote / local:.2f} |")
    finally:
        server.terminate()
        server.wait(10)


def standardize_table() -> None:
    X = data(2_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        where = os.path.join(tmp, "points.zarr")
        write(X, where)
        means = np.asarray(X[:CHUNK_ROWS][:: CHUNK_ROWS // K][:K].compute())
        passes, original = {}, ChunkedData.map_reduce

        def counting(self, *args, **kwargs):
            passes[counting.key] = passes.get(counting.key, 0) + 1
            return original(self, *args, **kwargs)

        ChunkedData.map_reduce = counting
        n_iter, times, totals = 8, {False: [], True: []}, {False: [], True: []}
        for _ in range(5):
            for standardize in (False, True):
                counting.key, passes[standardize] = standardize, 0
                per_pass, total = iteration_seconds(where, means, n_iter, standardize=standardize)
                times[standardize].append(per_pass)
                totals[standardize].append(total)
        ChunkedData.map_reduce = original
    plain, scaled = np.median(times[False]), np.median(times[True])
    print(
        f"\n| 2,000,000 x {N_FEATURES} zarr on disk, K={K} full, {n_iter} iterations, alternated, medians of 5 "
        "| s per EM pass | whole fit, s | passes |"
    )
    print("|---|---:|---:|---:|")
    print(f"| standardize=False | {plain:.3f} | {np.median(totals[False]):.2f} | {passes[False]} |")
    print(f"| standardize=True | {scaled:.3f} | {np.median(totals[True]):.2f} | {passes[True]} |")
    print(f"| extra cost per EM pass | {100 * (scaled / plain - 1):+.1f}% | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--only", choices=["s3", "standardize"], default=None)
    args = parser.parse_args()
    if args.only in (None, "s3"):
        object_store_table(args.gigabytes)
    if args.only in (None, "standardize"):
        standardize_table()


if __name__ == "__main__":
    main()
