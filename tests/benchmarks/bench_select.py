"""Choosing K in shared passes: data reads and time of K=2..12 against single fits.

Run by hand (not collected by the test run)::

    python tests/benchmarks/bench_select.py                      # 2,000,000 x 8 zarr array on disk
    python tests/benchmarks/bench_select.py --n-samples 20000000

Reads are counted as chunk reads from the zarr store (one per chunk per pass). Prints a
Markdown table: ``select_n_components(range(2, 13))`` against a single fit at the true K
and against fitting each K on its own; then the model table of ``--types`` (default full,
diag and spherical) times K=2..12, by ICL, against fitting each candidate on its own.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import dask.array as da

import streamem


class ReadCounter:
    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, block):
        with self.lock:
            self.count += 1
        return block


def measure(path, fit):
    counter = ReadCounter()
    X = da.from_zarr(str(path), component="X")
    X = X.map_blocks(counter, dtype=X.dtype)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fit(X)
    return counter.count, time.perf_counter() - start, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=2_000_000)
    parser.add_argument("--n-features", type=int, default=8)
    parser.add_argument("--n-components", type=int, default=7, help="true K")
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--types", default="full,diag,spherical", help="covariance types of the model table")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(dir=args.tmp))
    path = directory / "points.zarr"
    try:
        streamem.make_data(path, args.n_samples, args.n_features, args.n_components, chunk_size=250_000, seed=0)
        ks = range(2, 13)
        rows = []
        reads, seconds, chosen = measure(path, lambda X: streamem.select_n_components(X, ks, random_state=0))
        rows.append((f"select_n_components(range(2, 13)) -> K={chosen.n_components}", reads, seconds))
        reads, seconds, _ = measure(path, lambda X: streamem.GaussianMixture(args.n_components, random_state=0).fit(X))
        rows.append((f"one fit, K={args.n_components}", reads, seconds))
        single_reads = reads
        total_reads, total_seconds = 0, 0.0
        for k in ks:
            reads, seconds, _ = measure(path, lambda X, k=k: streamem.GaussianMixture(k, random_state=0).fit(X))
            total_reads, total_seconds = total_reads + reads, total_seconds + seconds
        rows.append(("each K fitted on its own, K=2..12", total_reads, total_seconds))
        types = args.types.split(",")
        if len(types) > 1:
            reads, seconds, chosen = measure(
                path, lambda X: streamem.select_n_components(X, ks, "icl", covariance_type=types, random_state=0)
            )
            rows.append(
                (
                    f"select_n_components(range(2, 13), covariance_type={types}, criterion='icl') -> "
                    f"K={chosen.n_components} {chosen.covariance_type}",
                    reads,
                    seconds,
                )
            )
            total_reads, total_seconds = 0, 0.0
            for t in types:
                for k in ks:
                    fit = lambda X, k=k, t=t: streamem.GaussianMixture(k, covariance_type=t, random_state=0).fit(X)  # noqa: E731
                    reads, seconds, _ = measure(path, fit)
                    total_reads, total_seconds = total_reads + reads, total_seconds + seconds
            rows.append(
                (f"each of the {len(types) * len(ks)} candidates fitted on its own", total_reads, total_seconds)
            )
        n_chunks = -(-args.n_samples // 250_000)
        print(
            f"\n{args.n_samples:,} x {args.n_features} float64 zarr on disk, {n_chunks} chunks, true K={args.n_components}\n"
        )
        print("| fit | chunk reads | passes | seconds | reads / one fit |")
        print("|---|---:|---:|---:|---:|")
        for name, reads, seconds in rows:
            print(f"| {name} | {reads} | {reads / n_chunks:.0f} | {seconds:.1f} | {reads / single_reads:.2f} |")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
