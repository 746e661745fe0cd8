"""Starts that outliers cannot capture: k-means‖ against trimmed k-means‖ on clusters with
gross outliers, for the models that expect outliers (the t mixture, a uniform noise
component), ten seeds each.

A seed *finds every cluster* when each true centre's matched mean is within 0.1 of its
cluster's standard deviation. Passes count the initialisation's and EM's together.

    python tests/benchmarks/bench_robust_start.py            # the catalogue (about 15 minutes)
    python tests/benchmarks/bench_robust_start.py --quick    # the issue's four cases only
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning

import streamem

#: name, n_components, n_features, outliers' share, box (times the clusters' span),
#: ratio of the largest to the smallest sd, anisotropy, cluster proportions
CASES = [
    ("issue, 5%", 3, 2, 0.05, 10, 1, 1, None),
    ("issue, 20%", 3, 2, 0.2, 10, 1, 1, None),
    ("issue D=5, 5%", 3, 5, 0.05, 10, 1, 1, None),
    ("issue D=5, 20%", 3, 5, 0.2, 10, 1, 1, None),
    ("K=5, 5%", 5, 2, 0.05, 10, 1, 1, None),
    ("K=5 D=10, 20%", 5, 10, 0.2, 10, 1, 1, None),
    ("K=8 D=5, 20%", 8, 5, 0.2, 10, 1, 1, None),
    ("near outliers (box 3x), 20%", 3, 3, 0.2, 3, 1, 1, None),
    ("sd ratio 3, 10%", 4, 4, 0.1, 10, 3, 1, None),
    ("anisotropic 10:1, 10%", 3, 3, 0.1, 10, 1, 10, None),
    ("sizes .6/.3/.1, 20%", 3, 2, 0.2, 10, 1, 1, (0.6, 0.3, 0.1)),
    ("sizes .8/.15/.05, 20%", 3, 2, 0.2, 10, 1, 1, (0.8, 0.15, 0.05)),
    ("sizes .9/.08/.02, 5%", 3, 2, 0.05, 10, 1, 1, (0.9, 0.08, 0.02)),
    ("sizes .9/.08/.02, clean", 3, 2, 0.0, 10, 1, 1, (0.9, 0.08, 0.02)),
]
N_ROWS = 27_000


def make_data(seed, n_components, n_features, fraction, box, sd_ratio, anisotropy, proportions):
    """Gaussian clusters at least five (summed) sds apart, and ``fraction`` of the rows
    uniform over ``box`` times their span; the centres and sds."""
    rng = np.random.default_rng(10_000 + seed)
    sds = np.exp(rng.uniform(0, np.log(sd_ratio), n_components))
    while True:
        centres = rng.normal(0, 4 * n_components**0.5, (n_components, n_features))
        if all(
            np.linalg.norm(centres[i] - centres[j]) > 5 * (sds[i] + sds[j])
            for i in range(n_components)
            for j in range(i)
        ):
            break
    proportions = proportions or [1 / n_components] * n_components
    parts = []
    for centre, sd, share in zip(centres, sds, proportions):
        rotation = np.linalg.qr(rng.normal(size=(n_features, n_features)))[0]
        scales = sd * np.exp(rng.uniform(-np.log(anisotropy) / 2, np.log(anisotropy) / 2, n_features))
        parts.append(centre + (rng.normal(size=(int(N_ROWS * share), n_features)) * scales) @ rotation.T)
    X = np.concatenate(parts)
    low, high = X.min(0), X.max(0)
    middle, span = (low + high) / 2, high - low
    n_out = int(round(fraction * len(X) / (1 - fraction)))
    X = np.concatenate([X, rng.uniform(middle - box / 2 * span, middle + box / 2 * span, (n_out, n_features))])
    return X[rng.permutation(len(X))], centres, sds


def worst_error(means, centres, sds):
    cost = np.linalg.norm(centres[:, None] - means[None], axis=2) / sds[:, None]
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].max()


def model(kind, n_components, init, seed):
    if kind == "t":
        return streamem.StudentTMixture(n_components, init_params=init, random_state=seed)
    return streamem.GaussianMixture(n_components, noise="uniform", init_params=init, random_state=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the issue's four cases only")
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    cases = CASES[:4] if args.quick else CASES
    print(
        "| data | model | k-means‖: seeds finding every cluster | worst error | passes (median) "
        "| trimmed k-means‖: seeds | worst error | passes (median) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    start = time.perf_counter()
    for name, k, d, fraction, box, sd_ratio, anisotropy, proportions in cases:
        for kind in ("t", "noise"):
            if kind == "noise" and fraction == 0:
                continue
            cells = []
            for init in ("k-means||", "trimmed-k-means||"):
                errors, passes = [], []
                for seed in range(args.seeds):
                    X, centres, sds = make_data(seed, k, d, fraction, box, sd_ratio, anisotropy, proportions)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        fitted = model(kind, k, init, seed).fit(X)
                    errors.append(worst_error(fitted.means_, centres, sds))
                    passes.append(fitted.n_passes_)
                errors = np.array(errors)
                cells += [
                    f"{int(np.sum(errors < 0.1))}/{args.seeds}",
                    f"{errors.max():.3g}",
                    f"{int(np.median(passes))}",
                ]
            print(f"| {name} | {'t' if kind == 't' else 'noise=uniform'} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
