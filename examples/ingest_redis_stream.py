"""Clustering a Redis stream as it arrives, with checkpoints and a live model.

A producer appends entries to a Redis stream (each entry carries rows of little-endian
float64 values in its field ``x``), one of them malformed; ``streamem stream`` consumes the
stream through a consumer group, updates an online mixture every batch, checkpoints, and
publishes the current model, which this script reads while the stream runs. The components
of the generated data drift slowly; ``--forgetting`` keeps the model on them.

Starts its own ``redis-server`` on a free loopback port unless ``--redis HOST:PORT`` is given.

    python examples/ingest_redis_stream.py                     # ~15 s
    python examples/ingest_redis_stream.py --redis 127.0.0.1:6379 --records 5000
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import redis

import streamem
from streamem.stream.sources import encode_rows

D, K = 4, 3


def start_redis() -> tuple[subprocess.Popen, int]:
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not on the PATH (apt-get install redis-server), or give --redis HOST:PORT")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            return server, port
        except redis.ConnectionError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")


def produce(client, stream: str, n_records: int, rows_per_record: int, seed: int) -> np.ndarray:
    """Entries of drifting mixture rows, a malformed one among them; the final true means."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(-6, 6, (K, D))
    velocity = rng.normal(0, 2.0 / n_records, (K, D))
    for i in range(n_records):
        means = start + i * velocity
        rows = means[rng.integers(K, size=rows_per_record)] + rng.normal(0, 0.7, (rows_per_record, D))
        client.xadd(stream, {"x": encode_rows(rows)})
        if i == n_records // 2:
            client.xadd(stream, {"x": b"not rows"})
        if i % 200 == 0:
            time.sleep(0.01)  # a stream arrives over time
    return start + (n_records - 1) * velocity


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=None, help="HOST:PORT of a running Redis (default: start one)")
    parser.add_argument("--records", type=int, default=3000, help="entries to produce")
    parser.add_argument("--rows-per-record", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None, help="where the checkpoint and model go")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    server = None
    if args.redis:
        host, port = args.redis.rsplit(":", 1)
    else:
        server, port = start_redis()
        host = "127.0.0.1"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="streamem-"))
    stream = f"points-{args.seed}-{time.time_ns()}"
    client = redis.Redis(host=host, port=int(port))
    try:
        truth = {}
        producer = threading.Thread(
            target=lambda: truth.update(final=produce(client, stream, args.records, args.rows_per_record, args.seed))
        )
        producer.start()
        command = [
            sys.executable,
            "-m",
            "streamem",
            "stream",
            f"redis://{host}:{port}/{stream}?group=clusters",
            "--n-features",
            str(D),
            "--n-components",
            str(K),
            "--checkpoint",
            str(workdir / "checkpoint"),
            "--out",
            str(workdir / "model.zarr"),
            "--batch-size",
            "500",
            "--checkpoint-interval",
            "0.5",
            "--forgetting",
            "0.3",
            "--stop-after-idle",
            "2",
            "--seed",
            str(args.seed),
        ]
        print("$", " ".join(command[1:]))
        runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while runner.poll() is None:  # the published model can be read at any time
            time.sleep(1.0)
            if (workdir / "model.zarr").exists():
                model = streamem.load(workdir / "model.zarr")
                print(f"  live model: {model.n_samples_seen_:>7,} rows seen, {model.n_batches_} batches")
        out, err = runner.communicate()
        producer.join()
        if runner.returncode != 0:
            sys.exit(err)
        print(out.strip())
        model = streamem.load(workdir / "model.zarr")
        final = truth["final"]
        error = np.abs(model.means_[:, None, :] - final[None]).max(axis=2).min(axis=0).max()
        print(
            f"rows in the model: {model.n_samples_seen_:,} of {args.records * args.rows_per_record:,} sent; "
            f"dead letters: {client.xlen(stream + ':dlq')}"
        )
        print(f"largest distance from a true (drifted) mean to the model's: {error:.3f}")
        print(f"checkpoint and model in {workdir}; run the same command again to resume")
    finally:
        client.delete(stream, stream + ":dlq")
        if server is not None:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
