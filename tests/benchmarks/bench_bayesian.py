"""Variational (Bayesian) mixture speed: streamem against scikit-learn in the same run.

Run by hand (not collected by the test run)::

    python tests/benchmarks/bench_bayesian.py                 # W1 and W3
    python tests/benchmarks/bench_bayesian.py --workloads W1 --iterations 5
    python tests/benchmarks/bench_bayesian.py --online          # partial_fit against the batch fit

Each workload is bench_core's (W1: 1,000,000 x 16, K=16 full; W3: 500,000 x 64, K=32
diag), started from the same responsibilities for both (scikit-learn's ``_initialize``, and
streamem's equivalent ``weights_init``, ``means_init``, ``precisions_init``), with the
Dirichlet-process prior, for exactly ``--iterations`` iterations. scikit-learn's time is
its E-step, M-step and lower bound per iteration; streamem's is its whole ``fit`` divided
by the iterations (validation, the pass for the prior's defaults and graph building
included). The best of ``--repeat`` runs; prints a Markdown table.

With ``--online``: on each workload (its rows in random order), the ELBO per sample
(``BayesianGaussianMixture.elbo``, every constant included) of one pass of ``partial_fit``
over batches of ``--batch-size`` rows against that of the batch fit run to convergence
(``tol=1e-3`` on the total bound, as scikit-learn's, at most 300 iterations), both from
k-means|| and the Dirichlet-process prior's defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_core import WORKLOADS, make_data  # noqa: E402


def initial_responsibilities(X, n_components, seed=1):
    """Hard responsibilities of the nearest of K random rows (the same for both)."""
    rng = np.random.default_rng(seed)
    centres = X[rng.choice(min(len(X), 100_000), n_components, replace=False)]
    labels = np.empty(len(X), dtype=np.int64)
    for start in range(0, len(X), 1 << 16):
        block = X[start : start + (1 << 16)]
        d2 = (block * block).sum(1)[:, None] - 2 * block @ centres.T + (centres * centres).sum(1)
        labels[start : start + len(block)] = d2.argmin(axis=1)
    return np.eye(n_components)[labels]


def time_sklearn(X, spec, resp, iterations):
    from sklearn.mixture import BayesianGaussianMixture

    model = BayesianGaussianMixture(
        n_components=spec["n_components"], covariance_type=spec["covariance_type"], max_iter=1, tol=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model._check_parameters(X)
        model._initialize(X, resp)
        t0 = time.perf_counter()
        for _ in range(iterations):
            log_prob_norm, log_resp = model._e_step(X)
            model._m_step(X, log_resp)
            model._compute_lower_bound(log_resp, log_prob_norm)
    return (time.perf_counter() - t0) / iterations, model


def time_streamem(X, spec, resp, iterations):
    from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

    import streamem

    nk, xk, sk = _estimate_gaussian_parameters(X, resp, 1e-6, spec["covariance_type"])
    precisions = np.linalg.inv(sk) if spec["covariance_type"] in ("full", "tied") else 1.0 / sk
    model = streamem.BayesianGaussianMixture(
        spec["n_components"],
        covariance_type=spec["covariance_type"],
        max_iter=iterations,
        tol=0,
        weights_init=nk / nk.sum(),
        means_init=xk,
        precisions_init=precisions,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model.fit(X)
    return (time.perf_counter() - t0) / iterations, model


def online_against_batch(X, spec, batch_size):
    """ELBO per sample and seconds of the batch fit and of one pass of partial_fit."""
    import streamem

    params = dict(covariance_type=spec["covariance_type"], random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        batch = streamem.BayesianGaussianMixture(spec["n_components"], max_iter=300, **params).fit(X)
        batch_seconds = time.perf_counter() - t0
    online = streamem.BayesianGaussianMixture(spec["n_components"], **params)
    t0 = time.perf_counter()
    for start in range(0, len(X), batch_size):
        online.partial_fit(X[start : start + batch_size])
    online_seconds = time.perf_counter() - t0
    return batch.elbo(X), batch.n_iter_, batch_seconds, online.elbo(X), online_seconds


def main_online(args):
    print(f"\nOne pass of partial_fit ({args.batch_size:,}-row batches) against the batch fit; ELBO per sample\n")
    print("| workload | batch ELBO | iterations | batch s | one-pass ELBO | one-pass s | relative gap |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.workloads:
        spec = WORKLOADS[name]
        X = make_data(spec["n_samples"], spec["n_features"], spec["n_components"])
        batch_elbo, n_iter, batch_seconds, online_elbo, online_seconds = online_against_batch(X, spec, args.batch_size)
        gap = (batch_elbo - online_elbo) / abs(batch_elbo)
        shape = (
            f"{name} N={spec['n_samples']:,} D={spec['n_features']} K={spec['n_components']} {spec['covariance_type']}"
        )
        print(
            f"| {shape} | {batch_elbo:.4f} | {n_iter} | {batch_seconds:.1f} | {online_elbo:.4f} | "
            f"{online_seconds:.1f} | {gap:+.2%} |",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="*", default=["W1", "W3"], choices=list(WORKLOADS))
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--online", action="store_true", help="partial_fit's ELBO against the batch fit's")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    if args.online:
        main_online(args)
        return
    rows = []
    for name in args.workloads:
        spec = WORKLOADS[name]
        X = make_data(spec["n_samples"], spec["n_features"], spec["n_components"])
        resp = initial_responsibilities(X, spec["n_components"])
        sk_time, reference = min(
            (time_sklearn(X, spec, resp, args.iterations) for _ in range(args.repeat)), key=lambda run: run[0]
        )
        st_time, model = min(
            (time_streamem(X, spec, resp, args.iterations) for _ in range(args.repeat)), key=lambda run: run[0]
        )
        agreement = float(np.max(np.abs(model.means_ - reference.means_)))
        rows.append((name, spec, sk_time, st_time, agreement))
        print(f"{name}: scikit-learn {sk_time:.3f} s/iter, streamem {st_time:.3f} s/iter", file=sys.stderr, flush=True)
    print(
        f"\n{args.iterations} variational iterations from the same responsibilities, Dirichlet-process prior; "
        f"seconds per iteration, best of {args.repeat}\n"
    )
    print("| workload | scikit-learn s/iter | streamem s/iter | speed-up | largest difference of the means |")
    print("|---|---:|---:|---:|---:|")
    for name, spec, sk_time, st_time, agreement in rows:
        shape = (
            f"{name} N={spec['n_samples']:,} D={spec['n_features']} K={spec['n_components']} {spec['covariance_type']}"
        )
        print(f"| {shape} | {sk_time:.3f} | {st_time:.3f} | {sk_time / st_time:.1f}x | {agreement:.1e} |")


if __name__ == "__main__":
    main()
