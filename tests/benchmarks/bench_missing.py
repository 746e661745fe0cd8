"""Cost of the E-step with missing values against complete data.

Run by hand::

    python tests/benchmarks/bench_missing.py

Seconds per EM iteration (best of 9 alternated fits of 5 iterations from the same start) on complete data
and on the same data with 10% of the entries missing completely at random
(``missing="marginalize"``). Prints a Markdown table.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import streamem

SHAPES = [(500_000, 4, 8), (300_000, 8, 8), (200_000, 16, 16)]
REPEATS = 9


def per_iteration(data, missing, start, n_components):
    gm = streamem.GaussianMixture(n_components, max_iter=5, tol=0, missing=missing, **start)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(data)
    return (time.perf_counter() - t0) / 5


def main():
    print("| N x D, K full | complete s/iter | 10% missing s/iter | ratio | rows with a hole |")
    print("|---|---:|---:|---:|---:|")
    for n_samples, n_features, n_components in SHAPES:
        rng = np.random.default_rng(0)
        centres = rng.uniform(-6, 6, (n_components, n_features))
        X = centres[rng.integers(n_components, size=n_samples)] + rng.normal(size=(n_samples, n_features))
        start = {
            "weights_init": np.full(n_components, 1 / n_components),
            "means_init": X[:n_components],
            "precisions_init": np.tile(np.eye(n_features), (n_components, 1, 1)),
        }
        holes = X.copy()
        holes[rng.random(X.shape) < 0.1] = np.nan
        complete = missing = np.inf
        for _ in range(REPEATS):  # alternated, so that both see the same load of a shared machine
            complete = min(complete, per_iteration(X, "error", start, n_components))
            missing = min(missing, per_iteration(holes, "marginalize", start, n_components))
        share = np.isnan(holes).any(axis=1).mean()
        print(
            f"| {n_samples:,} x {n_features}, K={n_components} | {complete:.3f} | {missing:.3f} | "
            f"{missing / complete:.1f}x | {share:.0%} |"
        )


if __name__ == "__main__":
    main()
