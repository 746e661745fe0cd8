"""A larger-than-memory fit, end to end: make the data, fit, predict, plot.

Writes a generated Gaussian mixture to a zarr store chunk by chunk (``--gigabytes`` of
float64 on disk), fits a mixture over its chunks (memory stays at a few chunks), writes the
labels chunk by chunk, and draws the convergence curve, the means' trajectory and a 2-D
view with the covariance ellipses.

    python examples/larger_than_memory.py --gigabytes 0.05   # ~10 s on 2 cores
    python examples/larger_than_memory.py --gigabytes 40     # more than this machine's memory

Time grows with the size: about 0.25 s per iteration per 16 million values (float64, K=8
full, 2 cores), plus writing the data once.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import dask.array as da

import streamem
from streamem.plot import model_figure, sample_rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=0.05, help="size of the data on disk")
    parser.add_argument("--n-features", type=int, default=8)
    parser.add_argument("--n-components", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="streamem-"))
    workdir.mkdir(parents=True, exist_ok=True)
    n_samples = int(args.gigabytes * 1e9 / (8 * args.n_features))
    data = workdir / "points.zarr"

    start = time.perf_counter()
    streamem.make_data(data, n_samples, args.n_features, args.n_components, chunk_size=250_000, seed=0)
    print(
        f"make-data: {n_samples:,} x {args.n_features} ({args.gigabytes:g} GB) in {time.perf_counter() - start:.1f} s"
    )

    start = time.perf_counter()
    gm = streamem.GaussianMixture(args.n_components, init_params="random_from_data", n_init=3, random_state=0)
    gm.fit(str(data))  # a path: the chunks are read from disk at every pass
    print(
        f"fit: {gm.n_iter_} iterations in {time.perf_counter() - start:.1f} s, converged={gm.converged_}, "
        f"mean log-likelihood {gm.lower_bound_:.4f}"
    )
    gm.save(workdir / "model.zarr")

    start = time.perf_counter()
    labels = gm.predict(str(data))  # lazy: computed chunk by chunk while being written
    da.to_zarr(labels, str(workdir / "labels.zarr"))
    print(f"predict: labels written to {workdir / 'labels.zarr'} in {time.perf_counter() - start:.1f} s")

    points = sample_rows(da.from_zarr(str(data), component="X"), 4000)
    model_figure(gm, points).savefig(workdir / "model.png", dpi=100)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"plot: {workdir / 'model.png'}; peak resident memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
