"""Letting the data choose the number of clusters, two ways, on a zarr store read chunk by chunk.

Writes a mixture with a number of clusters the fits are not told (``streamem.make_data``,
chunk by chunk, so ``--n-samples`` can exceed memory) and answers "how many clusters?" twice:

1. ``streamem.BayesianGaussianMixture`` with a Dirichlet-process prior and more components
   than needed: the unneeded ones end with vanishing weights (``n_components_effective_``).
2. ``streamem.select_n_components`` with ``criterion="icl"`` over a model table of covariance
   types and K, every candidate in the same passes over the store.

Prints both answers side by side and draws the ICL against K, one line per covariance type,
next to the variational fit's expected weights.

    python examples/automatic_k.py                              # ~1 min on 2 cores
    python examples/automatic_k.py --n-samples 20000000         # 640 MB on disk, read chunk by chunk
    python examples/automatic_k.py --n-samples 50000 --max-k 8 --out automatic_k.png
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import streamem
from streamem.plot import bic_figure


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--n-features", type=int, default=4)
    parser.add_argument("--true-k", type=int, default=6, help="clusters in the generated data")
    parser.add_argument("--max-k", type=int, default=12)
    parser.add_argument("--max-iter", type=int, default=500, help="variational iterations at most")
    parser.add_argument("--workdir", default=None, help="where the zarr store goes (default: a temporary folder)")
    parser.add_argument("--out", default="automatic_k.png")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp())
    store = workdir / "points.zarr"
    if not store.exists():
        streamem.make_data(store, args.n_samples, args.n_features, args.true_k, chunk_size=100_000, seed=1)
    print(f"data: {args.n_samples:,} x {args.n_features} in {store} (read chunk by chunk)")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        bayes = streamem.BayesianGaussianMixture(
            args.max_k, weight_concentration_prior=1e-3, max_iter=args.max_iter, random_state=0
        ).fit(store)
        bayes_seconds = time.perf_counter() - start
        start = time.perf_counter()
        table = streamem.select_n_components(
            store, range(1, args.max_k + 1), "icl", covariance_type=["full", "diag", "spherical"], random_state=0
        )
        table_seconds = time.perf_counter() - start

    print(f"{'method':<48} {'clusters':>8} {'seconds':>8}")
    print(
        f"{'Dirichlet-process variational fit (K <= ' + str(args.max_k) + ')':<48} "
        f"{bayes.n_components_effective_:>8} {bayes_seconds:>8.1f}"
    )
    print(
        f"{'ICL over ' + str(len(table.selection_)) + ' (covariance type, K) candidates':<48} "
        f"{table.n_components:>8} {table_seconds:>8.1f}"
    )
    print(
        f"ICL's choice: K={table.n_components}, {table.covariance_type} covariances; "
        f"true number of clusters: {args.true_k}"
    )
    weights = np.sort(bayes.weights_)[::-1]
    print("variational expected weights: " + " ".join(f"{w:.3f}" for w in weights))
    print(
        f"components holding at least 1% of the data: {int((weights >= 0.01).sum())} "
        f"(pruning by the prior is slow: {bayes.n_iter_} iterations, converged={bayes.converged_})"
    )

    figure = bic_figure(table.selection_, "icl")
    ax = figure.add_axes([0.62, 0.55, 0.3, 0.3])
    ax.bar(np.arange(1, len(weights) + 1), weights, color="tab:orange")
    ax.set(title="Dirichlet process: expected weights", xlabel="component", ylabel="weight")
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return bayes.n_components_effective_, table.n_components


if __name__ == "__main__":
    main()
