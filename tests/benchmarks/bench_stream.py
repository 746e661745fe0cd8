"""Streaming: records per second, checkpoint overhead, and passes to converge.

Run by hand (needs ``redis-server`` on the PATH for the Redis rows)::

    python tests/benchmarks/bench_stream.py

1. Records (rows) per second through :func:`streamem.stream.runner.run` for D=16, K=16 full
   covariance, batches of 1,000 and 10,000 rows, from an in-memory source and from a Redis
   stream (entries of 100 rows, read through a consumer group), best of 3 runs. For scale,
   scikit-learn's batch EM in the same run: rows per second of one EM iteration.
2. Checkpoint overhead: the same in-memory run (10,000-row batches, ~15 s) with a
   checkpoint and a published model every second, against none (alternated, best of 3).
3. Passes over a finite array to converge (change of the mean log-likelihood < 1e-4) from
   the same start: batch EM, incremental EM, stepwise EM.

``--against DIR`` times the in-memory runs of 1 and 2 (without Redis) for this checkout
and the one at ``DIR`` (``git worktree add DIR REV``) instead, alternated, each run in its
own process, each checkout first in turn.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import streamem
from streamem.stream import run
from streamem.stream.sources import encode_rows
from streamem.stream.sources.memory import MemorySource

D, K = 16, 16
ROWS_PER_ENTRY = 100


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-6, 6, (K, D))
    return centres[rng.integers(K, size=n)] + rng.normal(size=(n, D))


def given_start(X):
    ref = streamem.GaussianMixture(K, max_iter=2, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X[:20_000])
    return {"weights_init": ref.weights_, "means_init": ref.means_, "precisions_init": ref.precisions_}


def model(batch_size, start):
    return streamem.OnlineGaussianMixture(K, batch_size=batch_size, warm_up=1, **start)


def records(X, n_rows):
    """``n_rows`` rows as records of 100 rows, cycling over X."""
    per = ROWS_PER_ENTRY
    blocks = [X[i : i + per] for i in range(0, len(X), per)]
    return itertools.islice(itertools.cycle(blocks), n_rows // per)


def in_memory(X, batch_size, n_rows, start, **options):
    source = MemorySource(records(X, n_rows), D)
    t0 = time.perf_counter()
    result = run(
        source, model(batch_size, start), batch_size=batch_size, stop_after_idle=0.0, poll_timeout=0.0, **options
    )
    seconds = time.perf_counter() - t0
    assert result.rows == n_rows, result
    return n_rows / seconds, result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def from_redis(X, batch_size, n_rows, start, port, group):
    t0 = time.perf_counter()
    result = run(
        f"redis://127.0.0.1:{port}/points?group={group}",
        model(batch_size, start),
        n_features=D,
        batch_size=batch_size,
        stop_after_idle=0.3,
        poll_timeout=0.1,
    )
    seconds = time.perf_counter() - t0 - 0.3  # the idle wait at the end is not work
    assert result.rows == n_rows, result
    return n_rows / seconds


def sklearn_rows_per_second(X):
    from sklearn.mixture import GaussianMixture

    start = given_start(X)
    gm = GaussianMixture(
        K,
        max_iter=3,
        tol=0,
        weights_init=start["weights_init"],
        means_init=start["means_init"],
        precisions_init=start["precisions_init"],
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    return 3 * len(X) / (time.perf_counter() - t0)


def throughput(X, start):
    n_rows = 2_000_000
    print("| source | batch rows | records/s (best of 3) |")
    print("|---|---:|---:|")
    for batch_size in (1000, 10_000):
        best = max(in_memory(X, batch_size, n_rows, start)[0] for _ in range(3))
        print(f"| in memory | {batch_size:,} | {best:,.0f} |")
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        n_redis = 500_000
        pipe = client.pipeline(transaction=False)
        for record in records(X, n_redis):
            pipe.xadd("points", {"x": encode_rows(record)})
        pipe.execute()
        for batch_size in (1000, 10_000):
            best = max(from_redis(X, batch_size, n_redis, start, port, f"g{batch_size}-{i}") for i in range(3))
            print(f"| Redis stream (entries of {ROWS_PER_ENTRY} rows) | {batch_size:,} | {best:,.0f} |")
    finally:
        server.terminate()
        server.wait()
    print(f"\nscikit-learn batch EM, same data: {sklearn_rows_per_second(X[:500_000]):,.0f} rows/s per iteration")


def checkpoint_overhead(X, start):
    n_rows = 30_000_000
    plain = saved = 0.0
    for _ in range(3):  # alternated, best of 3 each: the machine is shared
        plain = max(plain, in_memory(X, 10_000, n_rows, start)[0])
        with tempfile.TemporaryDirectory() as tmp:
            rate, result = in_memory(
                X,
                10_000,
                n_rows,
                start,
                checkpoint=Path(tmp) / "ckpt",
                out=Path(tmp) / "m.zarr",
                checkpoint_every=10**9,
                checkpoint_interval=1.0,
            )
        saved = max(saved, rate)
    seconds = n_rows / saved
    print(f"\n| run (10,000-row batches, {n_rows:,} rows) | records/s | checkpoints |")
    print("|---|---:|---:|")
    print(f"| no checkpoint | {plain:,.0f} | 0 |")
    print(f"| checkpoint + published model every second | {saved:,.0f} | {result.checkpoints} in {seconds:.1f} s |")
    print(f"\ncheckpoint overhead: {100 * (plain / saved - 1):.1f}%")


def passes_to_converge(X, start):
    tol = 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = streamem.GaussianMixture(K, tol=tol, max_iter=500, **start).fit(X)
        incremental = streamem.OnlineGaussianMixture(
            K, algorithm="incremental", batch_size=10_000, tol=tol, max_iter=500, **start
        ).fit(X)
        stepwise = streamem.OnlineGaussianMixture(K, batch_size=10_000, tol=tol, max_iter=500, **start).fit(X)
    print(f"\n| {len(X):,} x {D}, K={K} full, tol {tol} | passes | mean log-likelihood |")
    print("|---|---:|---:|")
    for name, m in (
        ("batch EM", batch),
        ("incremental EM (10,000-row batches)", incremental),
        ("stepwise EM (10,000-row batches)", stepwise),
    ):
        print(f"| {name} | {m.n_iter_} | {m.score(X):.6f} |")


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGAINST_RUNS = {  # name: batch rows, rows, checkpoint every second
    "in memory, 1,000-row batches": (1000, 4_000_000, False),
    "in memory, 10,000-row batches": (10_000, 10_000_000, False),
    "10,000-row batches, checkpoint + published model every second": (10_000, 20_000_000, True),
}


def _child_rate(root, start_path, name):
    """Runs in a subprocess that imports the ``streamem`` of the checkout at ``root``."""
    sys.path.insert(0, root)
    for module in [m for m in sys.modules if m == "streamem" or m.startswith("streamem.")]:
        del sys.modules[module]
    global streamem, MemorySource, encode_rows, run
    import streamem
    from streamem.stream import run
    from streamem.stream.sources.memory import MemorySource

    if not os.path.abspath(streamem.__file__).startswith(os.path.abspath(root) + os.sep):
        raise RuntimeError(f"imported {streamem.__file__}, not the checkout at {root}")
    batch_size, n_rows, saving = AGAINST_RUNS[name]
    start = dict(np.load(start_path))
    X = data(1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        options = (
            dict(
                checkpoint=Path(tmp) / "ckpt", out=Path(tmp) / "m.zarr", checkpoint_every=10**9, checkpoint_interval=1.0
            )
            if saving
            else {}
        )
        print(in_memory(X, batch_size, n_rows, start, **options)[0])


def against(directory: str, repeat: int) -> None:
    """Records per second of this checkout and the one at ``directory``, alternated."""
    with tempfile.TemporaryDirectory() as tmp:
        start_path = os.path.join(tmp, "start.npz")
        np.savez(start_path, **given_start(data(1_000_000)))
        rows = []
        for name in AGAINST_RUNS:
            rates = {"this": [], "other": []}
            for i in range(repeat):
                for label, root in (("other", directory), ("this", ROOT))[:: 1 if i % 2 else -1]:
                    out = subprocess.run(
                        [sys.executable, __file__, "--rate", root, start_path, name],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    rates[label].append(float(out.split()[-1]))
            paired = float(np.median(np.divide(rates["this"], rates["other"])))
            rows.append((name, max(rates["other"]), max(rates["this"]), paired))
            print(f"{name}: other {rates['other']}, this {rates['this']}", file=sys.stderr, flush=True)
    print(
        f"\nRecords per second (D={D}, K={K} full), best of {repeat} alternated runs; this checkout against "
        f"{directory}; the last column is the median ratio of runs next to each other\n"
    )
    print("| run | other records/s | this records/s | this / other | median paired ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, other, this, paired in rows:
        print(f"| {name} | {other:,.0f} | {this:,.0f} | {this / other:.2f} | {paired:.2f} |")


def main():
    logging.disable(logging.WARNING)
    if len(sys.argv) > 1 and sys.argv[1] == "--rate":
        _child_rate(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", metavar="DIR", help="time this checkout against the checkout in DIR")
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    if args.against:
        against(args.against, args.repeat)
        return
    X = data(1_000_000)
    start = given_start(X)
    throughput(X, start)
    checkpoint_overhead(X, start)
    passes_to_converge(X[:500_000], given_start(X[:500_000]))


if __name__ == "__main__":
    main()
