"""Batch EM speed: streamem against scikit-learn in the same run, and out of core.

Run by hand (not collected by the test run)::

    python tests/benchmarks/bench_core.py                  # W1-W3, float64 and float32
    python tests/benchmarks/bench_core.py --out-of-core 4  # plus a 4 GB zarr array on disk
    python tests/benchmarks/bench_core.py --against DIR    # this checkout against another, alternated

With ``--against DIR`` (another checkout of streamem, for instance ``git worktree add DIR
REV``), each fit runs in a process of its own that imports one checkout's ``streamem``, the
two checkouts' fits alternate (each first in turn), and the best of ``--repeat`` is reported
for each, with the median of the ratios of the pairs.

Each workload is generated from a fixed seed and timed for exactly ``--iterations`` EM
iterations from the same initial parameters, the best of ``--repeat`` runs. scikit-learn's time is its E-step plus
M-step per iteration (its own initialisation and final E-step are left out);
streamem's is its whole ``fit`` divided by the iterations (validation and graph
building included). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

WORKLOADS = {
    "W1": {"n_samples": 1_000_000, "n_features": 16, "n_components": 16, "covariance_type": "full"},
    "W2": {"n_samples": 4_000_000, "n_features": 2, "n_components": 8, "covariance_type": "full"},
    "W3": {"n_samples": 500_000, "n_features": 64, "n_components": 32, "covariance_type": "diag"},
}


def make_data(n_samples, n_features, n_components, seed=0, dtype=np.float64):
    """A Gaussian mixture with well-spread means, generated chunk by chunk."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-6, 6, size=(n_components, n_features))
    X = np.empty((n_samples, n_features), dtype=dtype)
    step = 1 << 18
    for start in range(0, n_samples, step):
        stop = min(start + step, n_samples)
        labels = rng.integers(n_components, size=stop - start)
        X[start:stop] = means[labels] + rng.normal(size=(stop - start, n_features))
    return X


def initial_params(X, n_components, covariance_type, seed=1):
    """Same start for both: random rows as means, equal weights, unit precisions."""
    rng = np.random.default_rng(seed)
    means = X[np.sort(rng.choice(min(len(X), 100_000), n_components, replace=False))].astype(np.float64)
    D = X.shape[1]
    precisions = {
        "full": np.tile(np.eye(D), (n_components, 1, 1)),
        "tied": np.eye(D),
        "diag": np.ones((n_components, D)),
        "spherical": np.ones(n_components),
    }[covariance_type]
    return {
        "weights_init": np.full(n_components, 1.0 / n_components),
        "means_init": means,
        "precisions_init": precisions,
    }


def time_sklearn(X, spec, start, iterations):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(
        spec["n_components"],
        covariance_type=spec["covariance_type"],
        max_iter=1,
        tol=0,
        init_params="random_from_data",
        **start,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm._initialize_parameters(X, np.random.RandomState(0))
    t0 = time.perf_counter()
    for _ in range(iterations):
        _, log_resp = gm._e_step(X)
        gm._m_step(X, log_resp)
    return (time.perf_counter() - t0) / iterations, gm


def time_streamem(X, spec, start, iterations):
    from sklearn.exceptions import ConvergenceWarning

    import streamem

    gm = streamem.GaussianMixture(
        spec["n_components"], covariance_type=spec["covariance_type"], max_iter=iterations, tol=0, **start
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        gm.fit(X)
    return (time.perf_counter() - t0) / iterations, gm


def best_of(repeat, timer, *args):
    """The fastest of ``repeat`` runs (the machine is shared: the minimum is the least noisy)."""
    runs = [timer(*args) for _ in range(repeat)]
    return min(runs, key=lambda run: run[0])


def dgemm_rate(threads: int) -> float:
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((4096, 2048))
    b = np.random.default_rng(1).random((2048, 2048))
    with threadpool_limits(threads, "blas"):
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(3))
    return 2 * 4096 * 2048 * 2048 / best / 1e9


def _timed(func):
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def multiply_adds(spec) -> float:
    """Multiply-adds of one full-covariance iteration of streamem's kernel."""
    N, D, K = spec["n_samples"], spec["n_features"], spec["n_components"]
    P = D * (D + 1) // 2
    return N * (2 * K * P + 2 * K * D + P)


def in_memory(args):
    rows = []
    for name in args.workloads:
        spec = WORKLOADS[name]
        X = make_data(spec["n_samples"], spec["n_features"], spec["n_components"])
        start = initial_params(X, spec["n_components"], spec["covariance_type"])
        sk_time, sk = best_of(args.repeat, time_sklearn, X, spec, start, args.iterations)
        ours_time, ours = best_of(args.repeat, time_streamem, X, spec, start, args.iterations)
        diff = np.abs(ours.means_ - sk.means_).max() / np.abs(sk.means_).max()
        del sk
        X32 = X.astype(np.float32)
        del X
        f32_time, _ = best_of(args.repeat, time_streamem, X32, spec, start, args.iterations)
        rows.append((name, spec, sk_time, ours_time, f32_time, diff))
        print(
            f"{name}: scikit-learn {sk_time:.3f} s/it, streamem {ours_time:.3f} s/it, float32 {f32_time:.3f} s/it",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"\n{args.iterations} EM iterations from the same start; seconds per iteration, best of {args.repeat}; "
        f"{os.cpu_count()} cores\n"
    )
    columns = ["workload", "scikit-learn", "streamem float64", "ratio", "streamem float32", "float64/float32"]
    print("| " + " | ".join(columns + ["max rel. diff of means"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, spec, sk_time, ours_time, f32_time, diff in rows:
        shape = (
            f"{name} N={spec['n_samples']:,} D={spec['n_features']} K={spec['n_components']} {spec['covariance_type']}"
        )
        print(
            f"| {shape} | {sk_time:.3f} | {ours_time:.3f} | 1/{sk_time / ours_time:.1f} | {f32_time:.3f} | "
            f"{ours_time / f32_time:.2f}x | {diff:.1e} |"
        )
    w1 = [r for r in rows if r[0] == "W1"]
    if w1:
        rate1, rate2 = dgemm_rate(1), dgemm_rate(2)
        madds = multiply_adds(WORKLOADS["W1"])
        floor = 2 * madds / (rate2 * 1e9)
        print(
            f"\nW1: {madds / 1e9:.2f} G multiply-adds per iteration; dgemm here {rate1:.0f} GFLOP/s on 1 core, "
            f"{rate2:.0f} GFLOP/s on 2; floor {floor:.3f} s per iteration; measured {w1[0][3]:.3f} s "
            f"({w1[0][3] / floor:.1f}x the floor)"
        )


def _child_fit(path, iterations, in_memory_copy):
    """Runs in a subprocess, so that its peak resident memory is its own."""
    import dask.array as da

    import streamem

    spec = WORKLOADS["W1"]
    X = da.from_zarr(path)
    if in_memory_copy:
        X = X.compute()
    start = initial_params(np.asarray(X[:100_000]), spec["n_components"], "full")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        streamem.GaussianMixture(spec["n_components"], max_iter=iterations, tol=0, **start).fit(X)
    seconds = (time.perf_counter() - t0) / iterations
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{seconds} {peak}")


def out_of_core(args):
    import zarr

    spec = WORKLOADS["W1"]
    D = spec["n_features"]
    n_samples = int(args.out_of_core * 1e9 / (8 * D))
    chunk = 250_000
    directory = tempfile.mkdtemp(dir=args.tmp)
    path = os.path.join(directory, "points.zarr")
    try:
        z = zarr.create_array(path, shape=(n_samples, D), chunks=(chunk, D), dtype="f8", compressors=None)
        rng = np.random.default_rng(0)
        means = rng.uniform(-6, 6, size=(spec["n_components"], D))
        for start in range(0, n_samples, chunk):
            stop = min(start + chunk, n_samples)
            z[start:stop] = means[rng.integers(spec["n_components"], size=stop - start)] + rng.normal(
                size=(stop - start, D)
            )
        results = {}
        for label, copy in (("zarr on disk", False), ("same data in memory", True)):
            if not copy:
                _drop_page_cache()
            out = subprocess.run(
                [sys.executable, __file__, "--child", path, str(args.iterations_ooc), str(int(copy))],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            results[label] = (float(out[0]), float(out[1]))
        print(
            f"\nOut of core: {n_samples:,} x {D} float64 ({n_samples * D * 8 / 1e9:.1f} GB), K=16 full, "
            f"{args.iterations_ooc} iterations, chunks of {chunk:,} rows\n"
        )
        print("| data | s per iteration | peak resident memory |")
        print("|---|---:|---:|")
        for label, (seconds, peak) in results.items():
            print(f"| {label} | {seconds:.2f} | {peak / 1024:.2f} GB |")
        disk, mem = results["zarr on disk"][0], results["same data in memory"][0]
        print(f"\nout of core runs at {mem / disk:.0%} of the in-memory speed")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _drop_page_cache():
    """Make the first pass read from disk, where the machine lets us (root on Linux)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        print("(could not drop the page cache: later passes may read from memory)", file=sys.stderr)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _child_time(root, data_path, start_path, covariance_type, iterations):
    """Runs in a subprocess that imports the ``streamem`` of the checkout at ``root``."""
    sys.path.insert(0, root)
    import streamem

    if not os.path.abspath(streamem.__file__).startswith(os.path.abspath(root) + os.sep):
        raise RuntimeError(f"imported {streamem.__file__}, not the checkout at {root}")
    X = np.load(data_path)
    start = dict(np.load(start_path))
    spec = {"n_components": len(start["weights_init"]), "covariance_type": covariance_type}
    print(time_streamem(X, spec, start, iterations)[0])


def against(args):
    """This checkout against the one at ``args.against``: fits alternated, each in its own process."""
    rows = []
    directory = tempfile.mkdtemp(dir=args.tmp)
    try:
        for name in args.workloads:
            spec = WORKLOADS[name]
            X = make_data(spec["n_samples"], spec["n_features"], spec["n_components"])
            start = initial_params(X, spec["n_components"], spec["covariance_type"])
            start_path = os.path.join(directory, "start.npz")
            np.savez(start_path, **start)
            for dtype in (np.float64, np.float32):
                data_path = os.path.join(directory, "X.npy")
                np.save(data_path, X.astype(dtype))
                times = {"this": [], "other": []}
                for repeat in range(args.repeat):  # each checkout first in turn
                    for label, root in (("other", args.against), ("this", ROOT))[:: 1 if repeat % 2 else -1]:
                        command = [
                            sys.executable,
                            __file__,
                            "--time",
                            root,
                            data_path,
                            start_path,
                            spec["covariance_type"],
                            str(args.iterations),
                        ]
                        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                        times[label].append(float(out.split()[-1]))
                this, other = min(times["this"]), min(times["other"])
                paired = float(np.median(np.divide(times["this"], times["other"])))
                rows.append((name, spec, np.dtype(dtype).name, other, this, paired))
                print(
                    f"{name} {np.dtype(dtype).name}: other {times['other']}, this {times['this']}",
                    file=sys.stderr,
                    flush=True,
                )
        del X
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"\n{args.iterations} EM iterations from the same start; seconds per iteration, best of {args.repeat} "
        f"alternated runs; this checkout against {args.against}; the last column is the median of the "
        f"ratios of runs next to each other (less sensitive to one lucky run)\n"
    )
    print("| workload | dtype | other s/iter | this s/iter | this / other | median paired ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for name, spec, dtype, other, this, paired in rows:
        shape = (
            f"{name} N={spec['n_samples']:,} D={spec['n_features']} K={spec['n_components']} {spec['covariance_type']}"
        )
        print(f"| {shape} | {dtype} | {other:.3f} | {this:.3f} | {this / other:.2f} | {paired:.2f} |")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_fit(sys.argv[2], int(sys.argv[3]), bool(int(sys.argv[4])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--time":
        _child_time(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timing; the fastest is reported")
    parser.add_argument("--out-of-core", type=float, default=0.0, metavar="GB", help="also fit a zarr array of GB")
    parser.add_argument("--iterations-ooc", type=int, default=3)
    parser.add_argument("--tmp", default=None, help="directory for the out-of-core array and compared data")
    parser.add_argument("--against", metavar="DIR", help="time this checkout against the checkout in DIR")
    args = parser.parse_args()
    if args.against:
        against(args)
    elif args.workloads:
        in_memory(args)
    if args.out_of_core:
        out_of_core(args)


if __name__ == "__main__":
    main()
