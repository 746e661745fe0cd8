"""Passes over the data to the optimum: accelerated EM against plain EM and scikit-learn.

Run by hand (not collected by the test run)::

    python tests/benchmarks/bench_passes.py                       # every case, about 15-30 minutes on 2 cores
    python tests/benchmarks/bench_passes.py --quick               # every N / 10, 200 iterations at most: a smoke run
    python tests/benchmarks/bench_passes.py --cases issue,iris    # a subset (``--list`` names the cases)
    python tests/benchmarks/bench_passes.py --per-pass 5 --cases issue,C4-diag,W3   # seconds per pass, paired

The cases: bench_core's W1 (1,000,000 x 16, K=16 full) and W3 (500,000 x 64, K=32 diag);
overlapping clusters of our own (``overlapping``: means drawn from ``N(0, spread^2 I)``, components of
unit scale, from strongly overlapping to moderately), among them the issue's 200,000 x 8 rows
from 8 overlapping clusters; a t mixture (``StudentTMixture``), 10% missing values
(``missing="marginalize"``), a variational mixture (``BayesianGaussianMixture``, 8 components on
3 separated clusters, ``weight_concentration_prior=1e-3``), and scikit-learn's iris, wine,
breast cancer and digits.

Each case is fitted from one start, the same for every fit: the weights, means and precisions
of k-means clusters (``KMeans(K, n_init=1)`` on up to 100,000 rows, then every row to its
nearest centre), given as ``weights_init``, ``means_init`` and ``precisions_init``. With the
three given the Gaussian and t fits spend no pass before EM; the variational fit spends one
(its prior's defaults). Passes are counted from the first EM record of ``history_`` (the notes
print how many came before). The k-means seeds were picked by trying a few: the overlapping
cases are slow (plain EM needs hundreds of passes) or moderately fast, W1 and W3 start at their
clusters and are fast (k-means seeds that merge two clusters there take plain EM thousands of
passes at a second or two each).

- **L*** (the optimum): plain EM (``accelerate=None, stopping="change"``, ``tol`` of
  ``--exhaust-tol`` nats per row, ``--max-iter`` iterations at most) run to exhaustion; L* is
  its last bound per row (for the variational mixture the ELBO, scikit-learn's total, over the
  rows). ‡ marks a run stopped by ``--max-iter``.
- **passes** to the first accepted record of ``history_`` within ``--within`` (1e-6) nats per
  row of L* from which on every accepted record stays within (an extrapolated point may score
  above the EM steps that follow it: the notes count such drops), and the **seconds** of
  ``history_`` up to it, for: plain EM (that same run); accelerated EM
  (``accelerate="squarem", stopping="aitken"``, the same tiny ``tol``, also to exhaustion: its
  last bound is **L*_acc**); the quasi-Newton acceleration (``accelerate="quasi-newton"``, the
  same; its passes only, and in the notes its rejected points and its final bound against L*);
  and scikit-learn's ``GaussianMixture`` (``BayesianGaussianMixture``
  from the same responsibilities for the variational case; none for the t mixture and missing
  values). scikit-learn's sequence is its ``fit`` loop run by hand (``_e_step``, ``_m_step``,
  ``_compute_lower_bound``, one EM iteration each, timed; its initialisation and final E-step
  left out), until within reach, ``--sklearn-seconds`` or, for W1 and W3, 5 iterations; cut
  short, it reports plain EM's passes and seconds extrapolated from its median seconds per
  iteration (marked †): its iterates are plain EM's (the notes give the largest difference of
  the bounds over the iterations run). ``--sklearn-threads`` limits its BLAS threads (streamem
  gives each of its concurrent chunk tasks its share of the cores).
- **default**: a fit with the defaults (``accelerate="squarem", stopping="auto", tol=1e-3,
  max_iter=100``) from the same start: its ``n_passes_``, whether it converged, and its gap
  ``L*_acc - lower_bound_`` per row (the target: at most ``tol / 10`` = 1e-4). The notes add its
  gap to the limit of its own path (the same fit continued with the tiny ``tol``): where that
  path ends at another optimum than the accelerated run's, this one is the stopping rule's error.
- **per-pass time**: the median seconds of a pass of the accelerated run over plain EM's (first
  passes left out).
- **pruning** (the variational case, in its note): plain and accelerated runs there are coordinate
  ascent (``moves=None``); the default fit merges. The note gives the components of expected
  weight 1e-3 or more the default fit keeps and its passes and ELBO per row, coordinate ascent's
  after 100 passes, and scikit-learn's after ``--sklearn-iterations`` (1,800) iterations.

Each case's row is printed when it is done (flushed), then the notes, the median ratios over the
slow (plain EM > 100 passes) and the fast cases, whether every default gap is at most 1e-4, and
any case where accelerated EM needed more passes than plain EM or ended below its optimum.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_core import make_data  # noqa: E402

WITHIN = 1e-6  # nats per row
DEFAULT_TOL = 1e-3


# ---------------------------------------------------------------------------- data


def overlapping(n_samples, n_features, n_components, spread, covariance_type, seed, dof=None):
    """Rows of a Gaussian mixture with means drawn from ``N(0, spread^2 I)`` (two of them about
    ``spread * sqrt(2 D)`` apart), components of unit scale (covariances of ``covariance_type``,
    eigenvalues in [0.5, 2]) and Dirichlet weights: means 2-3 apart overlap strongly, 5-7 apart
    moderately (or strongly, when there are many components). With ``dof``, a mixture
    of t distributions of ``dof`` degrees of freedom (each row's deviation scaled by
    ``sqrt(dof / chi2(dof))``)."""
    rng = np.random.default_rng(seed)
    D, K = n_features, n_components
    means = rng.normal(0.0, spread, (K, D))
    weights = rng.dirichlet(np.full(K, 5.0))

    def root():
        q, r = np.linalg.qr(rng.normal(size=(D, D)))
        return (q * np.sign(np.diag(r))) * np.sqrt(rng.uniform(0.5, 2.0, D))

    if covariance_type == "full":
        roots = [root() for _ in range(K)]
    elif covariance_type == "tied":
        roots = [root()] * K
    elif covariance_type == "diag":
        roots = [np.diag(np.sqrt(rng.uniform(0.5, 2.0, D))) for _ in range(K)]
    else:
        roots = [np.eye(D) * np.sqrt(rng.uniform(0.5, 2.0)) for _ in range(K)]
    labels = rng.choice(K, size=n_samples, p=weights)
    X = rng.normal(size=(n_samples, D))
    if dof is not None:
        X *= np.sqrt(dof / rng.chisquare(dof, n_samples))[:, None]
    for k in range(K):
        rows = labels == k
        X[rows] = X[rows] @ roots[k].T + means[k]
    return X


def with_holes(X, fraction, seed):
    """X with ``fraction`` of its entries NaN at random (each row keeps one value at least)."""
    rng = np.random.default_rng(seed)
    X = X.copy()
    holes = rng.random(X.shape) < fraction
    holes[holes.all(axis=1), 0] = False
    X[holes] = np.nan
    return X


def separated(n_samples, n_features, n_clusters, seed):
    """Rows of ``n_clusters`` well-separated unit Gaussians (the variational case)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 6.0, (n_clusters, n_features))
    return means[rng.integers(n_clusters, size=n_samples)] + rng.normal(size=(n_samples, n_features))


def bundled(name):
    """One of scikit-learn's bundled data sets; wine and breast cancer standardised, digits
    scaled to [0, 1] (it has constant pixels)."""
    from sklearn import datasets

    X = getattr(datasets, f"load_{name}")().data.astype(np.float64)
    if name in ("wine", "breast_cancer"):
        X = (X - X.mean(0)) / X.std(0)
    elif name == "digits":
        X = X / 16.0
    return X


# ---------------------------------------------------------------------------- cases


@dataclasses.dataclass
class Case:
    name: str
    make: Callable[[int | None], np.ndarray]  # the rows, from their number (None: a bundled data set)
    n_samples: int | None
    n_components: int
    covariance_type: str
    kind: str = "gaussian"  # "t", "missing", "variational"
    seed: int = 0  # the start's k-means seed
    sklearn: str = "run"  # "run": to within reach; "sample": 5 iterations, extrapolated; "": none
    quick_seed: int | None = None  # with --quick, when the seed's start differs on fewer rows
    about: str = ""


def _cases() -> list[Case]:
    def workload(n_features, n_components):
        return lambda n: make_data(n, n_features, n_components)

    def mixture(*spec, **kwargs):
        return lambda n: overlapping(n, *spec, **kwargs)

    def apart(n_features, spread):
        return f"spread {spread}: means about {spread * (2 * n_features) ** 0.5:.1f} apart"

    def holed(n):
        return with_holes(overlapping(n, 4, 4, 1.2, "full", 9), 0.1, 9)

    return [
        Case("W1", workload(16, 16), 1_000_000, 16, "full", sklearn="sample", about="bench_core's W1"),
        Case("W3", workload(64, 32), 500_000, 32, "diag", sklearn="sample", quick_seed=2, about="bench_core's W3"),
        Case("issue", mixture(8, 8, 1.0, "full", 1), 200_000, 8, "full", about=apart(8, 1.0)),
        Case("C2-full", mixture(2, 3, 1.5, "full", 2), 150_000, 3, "full", about=apart(2, 1.5)),
        Case("C3-spherical", mixture(4, 5, 1.3, "spherical", 3), 100_000, 5, "spherical", about=apart(4, 1.3)),
        Case("C4-diag", mixture(16, 12, 0.5, "diag", 4), 150_000, 12, "diag", about=apart(16, 0.5)),
        Case("C5-tied", mixture(32, 6, 0.6, "tied", 5), 100_000, 6, "tied", about=apart(32, 0.6)),
        Case("C6-full", mixture(6, 16, 2.0, "full", 6), 100_000, 16, "full", about=apart(6, 2.0)),
        Case("C7-diag", mixture(12, 4, 0.6, "diag", 7), 200_000, 4, "diag", about=apart(12, 0.6)),
        Case(
            "t",
            mixture(4, 4, 2.0, "full", 8, dof=3.0),
            100_000,
            4,
            "full",
            kind="t",
            sklearn="",
            about="t rows of 3 degrees of freedom, " + apart(4, 2.0),
        ),
        Case("missing", holed, 100_000, 4, "full", kind="missing", sklearn="", about=apart(4, 1.2) + ", 10% NaN"),
        Case(
            "variational",
            lambda n: separated(n, 4, 3, 10),
            20_000,
            8,
            "full",
            kind="variational",
            about="3 separated clusters, weight_concentration_prior=1e-3",
        ),
        Case("iris", lambda n: bundled("iris"), None, 3, "full"),
        Case("wine", lambda n: bundled("wine"), None, 3, "full", about="standardised"),
        Case("breast_cancer", lambda n: bundled("breast_cancer"), None, 2, "full", about="standardised"),
        Case("digits", lambda n: bundled("digits"), None, 10, "diag", about="pixels / 16"),
    ]


CASES = {case.name: case for case in _cases()}


# ---------------------------------------------------------------------------- start and fits


def kmeans_start(X, n_components, covariance_type, seed, reg_covar=1e-6):
    """The responsibilities of the k-means clusters (on up to 100,000 complete rows, then
    every complete row to its nearest centre) and the weights, means and precisions they give
    (the responsibilities of the complete rows only)."""
    from sklearn.cluster import KMeans
    from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

    rows = X[~np.isnan(X).any(axis=1)]
    rng = np.random.default_rng(seed)
    sample = rows if len(rows) <= 100_000 else rows[rng.choice(len(rows), 100_000, replace=False)]
    kmeans = KMeans(n_components, n_init=1, random_state=seed).fit(sample)
    resp = np.eye(n_components)[kmeans.predict(rows)]
    nk, means, covariances = _estimate_gaussian_parameters(rows, resp, reg_covar, covariance_type)
    precisions = np.linalg.inv(covariances) if covariance_type in ("full", "tied") else 1.0 / covariances
    return resp, {"weights_init": nk / nk.sum(), "means_init": means, "precisions_init": precisions}


def estimator(case: Case, start: dict, **params):
    import streamem

    common = dict(covariance_type=case.covariance_type, **start, **params)
    if case.kind == "t":
        return streamem.StudentTMixture(case.n_components, **common)
    if case.kind == "variational":
        return streamem.BayesianGaussianMixture(case.n_components, weight_concentration_prior=1e-3, **common)
    if case.kind == "missing":
        return streamem.GaussianMixture(case.n_components, missing="marginalize", **common)
    return streamem.GaussianMixture(case.n_components, **common)


def fit(case: Case, X, start: dict, **params):
    model = estimator(case, start, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the capped fits
        return model.fit(X)


def objective(record: dict, scale: float) -> float:
    """A history record's objective per row (``scale``: the rows for the variational total)."""
    return record.get("objective", record["log_likelihood"]) / scale


def final(model, scale: float) -> float:
    """The objective per row of the last accepted record (a fit's ``lower_bound_``)."""
    return next(objective(r, scale) for r in reversed(model.history_) if r["accepted"])


def first_within(history, target: float, scale: float):
    """(passes from the first EM record, seconds) to the first accepted record at least
    ``target`` per row after which every accepted record is too, or (None, seconds of the
    whole run) if none is. (An accepted record may be followed by a lower one: see
    ``drops``.)"""
    before = history[0]["passes"] - 1
    found, seconds, elapsed = None, None, 0.0
    for record in history:
        elapsed += record["seconds"]
        if not record["accepted"]:
            continue
        if objective(record, scale) < target:
            found = None
        elif found is None:
            found, seconds = record["passes"] - before, elapsed
    return (found, seconds) if found is not None else (None, elapsed)


def drops(history, scale: float, slack: float = 1e-9) -> int:
    """Accepted records more than ``slack`` per row below the accepted record before them."""
    accepted = [objective(r, scale) for r in history if r["accepted"]]
    return sum(b < a - slack for a, b in zip(accepted, accepted[1:]))


def pass_seconds(history) -> float:
    """The median seconds of a pass, the first (graph building, warm-up) left out."""
    seconds = [r["seconds"] for r in history[1:]] or [history[0]["seconds"]]
    return statistics.median(seconds)


#: the components scikit-learn's variational runs left with an expected weight of 1e-3 at least
SKLEARN_EFFECTIVE: list = []


def sklearn_run(case: Case, X, resp, start: dict, target: float, max_iterations: int, seconds_cap: float):
    """scikit-learn's fit loop from the same start: its bounds per row and each iteration's
    seconds, until within ``target`` per row, ``max_iterations`` or ``seconds_cap``."""
    from sklearn.mixture import BayesianGaussianMixture, GaussianMixture

    K, n = case.n_components, len(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.kind == "variational":
            model = BayesianGaussianMixture(
                n_components=K, covariance_type=case.covariance_type, weight_concentration_prior=1e-3, max_iter=1, tol=0
            )
            model._check_parameters(X)
            model._initialize(X, resp)
            scale = n  # scikit-learn's variational bound is a total
        else:
            model = GaussianMixture(
                K, covariance_type=case.covariance_type, max_iter=1, tol=0, init_params="random_from_data", **start
            )
            model._initialize_parameters(X, np.random.RandomState(0))
            scale = 1.0
        bounds, seconds = [], []
        while len(bounds) < max_iterations and sum(seconds) < seconds_cap:
            t0 = time.perf_counter()
            log_prob_norm, log_resp = model._e_step(X)
            model._m_step(X, log_resp)
            bound = model._compute_lower_bound(log_resp, log_prob_norm)
            seconds.append(time.perf_counter() - t0)
            bounds.append(float(bound) / scale)
            if bounds[-1] >= target:
                break
    if case.kind == "variational":
        model._set_parameters(model._get_parameters())  # its expected weights
        SKLEARN_EFFECTIVE.append(int((model.weights_ >= 1e-3).sum()))
    return bounds, seconds


# ---------------------------------------------------------------------------- one case


def run_case(case: Case, args) -> dict:
    n = case.n_samples if case.n_samples is None or not args.quick else case.n_samples // 10
    seed = case.quick_seed if args.quick and case.quick_seed is not None else case.seed
    X = case.make(n)
    resp, start = kmeans_start(X, case.n_components, case.covariance_type, seed)
    n_rows = len(X)
    scale = n_rows if case.kind == "variational" else 1.0  # the variational bound is a total
    tol = args.exhaust_tol * scale
    t_case = time.perf_counter()

    # the variational case's plain and accelerated runs are coordinate ascent (its merges are the default's)
    alone = {"moves": None} if case.kind == "variational" else {}
    plain = fit(case, X, start, accelerate=None, stopping="change", tol=tol, max_iter=args.max_iter, **alone)
    optimum = final(plain, scale)
    target = optimum - args.within
    # accelerated EM to exhaustion too, at most twice plain EM's passes (or 1000)
    cap = min(args.max_iter, max(1000, 2 * len(plain.history_)))
    accelerated = fit(case, X, start, accelerate="squarem", stopping="aitken", tol=tol, max_iter=cap, **alone)
    optimum_acc = final(accelerated, scale)
    newton = fit(case, X, start, accelerate="quasi-newton", stopping="aitken", tol=tol, max_iter=cap, **alone)
    # the defaults; then on from where they stopped to the limit of that fit's own path
    default = fit(case, X, start, warm_start=True)
    default_passes, default_converged, default_bound = default.n_passes_, default.converged_, default.lower_bound_
    pruning = None
    if case.kind == "variational":  # the defaults' merges against coordinate ascent and scikit-learn
        capped = fit(case, X, start, accelerate=None, moves=None, max_iter=100)
        bounds, _ = sklearn_run(case, X, resp, start, np.inf, args.sklearn_iterations, np.inf)
        pruning = dict(
            default=default.n_components_effective_,
            default_elbo=default_bound / scale,
            capped=capped.n_components_effective_,
            sk_iterations=len(bounds),
            sk_elbo=bounds[-1],
            sk=SKLEARN_EFFECTIVE.pop(),
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default.set_params(tol=tol, stopping="aitken", max_iter=cap).fit(X)

    plain_passes, plain_seconds = first_within(plain.history_, target, scale)
    acc_passes, acc_seconds = first_within(accelerated.history_, target, scale)
    qn_passes, _ = first_within(newton.history_, target, scale)
    row = dict(
        case=case.name,
        shape=f"{n_rows:,} x {X.shape[1]}",
        K=case.n_components,
        type=case.covariance_type,
        plain=plain_passes,
        acc=acc_passes,
        qn=qn_passes,
        qn_gap=final(newton, scale) - optimum,
        qn_rejected=sum(not r["accepted"] for r in newton.history_),
        plain_s=plain_seconds,
        acc_s=acc_seconds,
        plain_total=len(plain.history_),
        plain_converged=plain.converged_,
        acc_total=len(accelerated.history_),
        acc_converged=accelerated.converged_,
        rejected=sum(not r["accepted"] for r in accelerated.history_),
        drops=drops(accelerated.history_, scale),
        default_drops=drops(default.history_, scale),
        per_pass=pass_seconds(accelerated.history_) / pass_seconds(plain.history_),
        default=default_passes,
        default_converged=default_converged,
        default_gap=optimum_acc - default_bound / scale,
        default_own_gap=final(default, scale) - default_bound / scale,
        acc_gap=optimum_acc - optimum,
        before=plain.history_[0]["passes"] - 1,
        n_passes=plain.n_passes_,
        optimum=optimum,
        about=case.about,
        sk=None,
        sk_s=None,
        sk_note="",
        sk_diff=None,
        pruning=pruning,
    )

    if case.sklearn:
        reach = plain_passes if plain_passes is not None else len(plain.history_)
        iterations = 5 if case.sklearn == "sample" else reach + 10
        with threadpool_limits(args.sklearn_threads, user_api="blas"):
            bounds, seconds = sklearn_run(case, X, resp, start, target, iterations, args.sklearn_seconds)
        reference = [objective(r, scale) for r in plain.history_]
        row["sk_diff"] = max(abs(a - b) for a, b in zip(bounds, reference))
        row["sk_iterations"] = len(bounds)
        within = next((i + 1 for i, bound in enumerate(bounds) if bound >= target), None)
        if within is not None:
            row["sk"], row["sk_s"] = within, sum(seconds[:within])
        elif plain_passes is not None:  # cut short: plain EM's passes, seconds extrapolated
            per_iteration = statistics.median(seconds[1:] or seconds)
            row["sk"], row["sk_s"], row["sk_note"] = plain_passes, per_iteration * plain_passes, "†"
    row["seconds"] = time.perf_counter() - t_case
    return row


def per_pass_times(names, repeats: int, passes: int) -> None:
    """The seconds of a pass of each acceleration over plain EM's: for each case, ``repeats``
    rounds of one fit each (plain, SQUAREM, quasi-Newton; ``passes`` passes, ``tol=0``) in
    turn, each fit's median pass (the first two left out), and per round the ratio to plain
    EM's of the same round; the median of the rounds' ratios. Counted passes do not depend on
    the machine, seconds do: run this alone on the machine."""
    print(f"\nSeconds per pass, accelerated over plain EM ({repeats} rounds of {passes}-pass fits, paired)\n")
    print(
        "| case | N x D | K | type | plain s/pass | SQUAREM / plain | quasi-Newton / plain |\n"
        "|---|---:|---:|---|---:|---:|---:|"
    )
    for name in names:
        case = CASES[name]
        X = case.make(case.n_samples)
        _, start = kmeans_start(X, case.n_components, case.covariance_type, case.seed)
        alone = {"moves": None} if case.kind == "variational" else {}
        seconds = {None: [], "squarem": [], "quasi-newton": []}
        for _ in range(repeats):
            for accelerate in seconds:
                model = fit(case, X, start, accelerate=accelerate, stopping="change", tol=0.0, max_iter=passes, **alone)
                seconds[accelerate].append(statistics.median(r["seconds"] for r in model.history_[2:]))
        ratio = {
            acc: statistics.median(a / p for a, p in zip(seconds[acc], seconds[None]))
            for acc in ("squarem", "quasi-newton")
        }
        print(
            f"| {name} | {len(X):,} x {X.shape[1]} | {case.n_components} | {case.covariance_type} | "
            f"{statistics.median(seconds[None]):.4f} | {ratio['squarem']:.3f} | {ratio['quasi-newton']:.3f} |",
            flush=True,
        )


def warm_up():
    """One small fit of each kind, so that the first case's first pass is not the process's."""
    X = overlapping(2000, 3, 3, 2.0, "full", 0)
    resp, start = kmeans_start(X, 3, "full", 0)
    for kind in ("gaussian", "t", "variational"):
        fit(Case("warm-up", None, None, 3, "full", kind=kind), X, start, max_iter=5)


# ---------------------------------------------------------------------------- output

HEADER = (
    "| case | N x D | K | type | plain passes | accelerated passes | ratio | quasi-Newton passes "
    "| scikit-learn passes | plain s | accelerated s | scikit-learn s | per-pass time acc/plain | default passes "
    "| default gap (nats/row) | L*_acc - L* |\n|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
    "|---:|---:|"
)


def _value(value, fmt="{}", missing="n/r"):
    return missing if value is None else fmt.format(value)


def table_row(row: dict) -> str:
    ratio = row["plain"] / row["acc"] if row["plain"] and row["acc"] else None
    sk = "—" if row["sk"] is None and row["sk_diff"] is None else _value(row["sk"]) + row["sk_note"]
    sk_s = "—" if row["sk_s"] is None and row["sk_diff"] is None else _value(row["sk_s"], "{:.2f}") + row["sk_note"]
    default = f"{row['default']}" + ("" if row["default_converged"] else " (not converged)")
    plain = _value(row["plain"]) + ("" if row["plain_converged"] else "‡")
    return (
        f"| {row['case']} | {row['shape']} | {row['K']} | {row['type']} | {plain} | "
        f"{_value(row['acc'])} | {_value(ratio, '{:.1f}x')} | {_value(row['qn'])} | {sk} | {_value(row['plain_s'], '{:.2f}')} | "
        f"{_value(row['acc_s'], '{:.2f}')} | {sk_s} | {row['per_pass']:.2f} | {default} | "
        f"{row['default_gap']:.1e} | {row['acc_gap']:+.1e} |"
    )


def note(row: dict) -> str:
    about = f" ({row['about']})" if row["about"] else ""
    text = (
        f"{row['case']}{about}: {row['before']} passes before the first EM record (plain EM's n_passes_ "
        f"{row['n_passes']} for {row['plain_total']} EM records, converged: {row['plain_converged']}), "
        f"L* = {row['optimum']:.10f}; accelerated "
        f"{row['acc_total']} ({row['rejected']} rejected, converged: {row['acc_converged']}); quasi-Newton "
        f"{row['qn_rejected']} rejected, final - L* {row['qn_gap']:+.1e}"
    )
    if row["drops"] or row["default_drops"]:
        text += (
            f"; accepted records below the one before: {row['drops']} in the accelerated run, "
            f"{row['default_drops']} in the default one and its continuation"
        )
    text += f"; default fit's gap to the limit of its own path (continued): {row['default_own_gap']:.1e}"
    if row["pruning"]:
        p = row["pruning"]
        text += (
            f"; pruning: the defaults (merges) {p['default']} components of weight >= 1e-3 in "
            f"{row['default']} passes, ELBO {p['default_elbo']:.6f} per row; coordinate ascent after 100 "
            f"passes {p['capped']}; scikit-learn after {p['sk_iterations']} iterations {p['sk']}, ELBO "
            f"{p['sk_elbo']:.6f} per row"
        )
    if row["sk_diff"] is not None:
        text += (
            f"; scikit-learn ran {row['sk_iterations']} iterations, largest |bound - plain EM's| {row['sk_diff']:.1e}"
        )
    return text + f"; {row['seconds']:.0f} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    parser.add_argument("--quick", action="store_true", help="every N / 10, at most 200 iterations: a smoke run")
    parser.add_argument("--max-iter", type=int, default=None, help="default 20000 (200 with --quick)")
    parser.add_argument("--exhaust-tol", type=float, default=1e-12, help="plain EM's tol to exhaustion, nats/row")
    parser.add_argument("--within", type=float, default=WITHIN, help="nats per row from L*")
    parser.add_argument(
        "--sklearn-seconds",
        type=float,
        default=None,
        help="scikit-learn's time per case before extrapolating (default 90, 2 with --quick)",
    )
    parser.add_argument(
        "--sklearn-iterations",
        type=int,
        default=1800,
        help="scikit-learn's iterations on the variational case, for the pruning note",
    )
    parser.add_argument(
        "--sklearn-threads",
        type=int,
        default=None,
        help="BLAS threads of scikit-learn's fits (default: its own, every core)",
    )
    parser.add_argument(
        "--per-pass",
        type=int,
        default=None,
        metavar="ROUNDS",
        help="instead: the seconds per pass of each acceleration over plain EM's, paired, in ROUNDS "
        "rounds of fits of --per-pass-passes passes per case",
    )
    parser.add_argument("--per-pass-passes", type=int, default=30, help="passes of each --per-pass fit")
    args = parser.parse_args()
    if args.list:
        print("\n".join(CASES))
        return
    if args.max_iter is None:
        args.max_iter = 200 if args.quick else 20_000
    if args.sklearn_seconds is None:
        args.sklearn_seconds = 2.0 if args.quick else 90.0
    names = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = [name for name in names if name not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {list(CASES)}")

    if args.per_pass:
        warm_up()
        per_pass_times(names, args.per_pass, args.per_pass_passes)
        return
    print(
        f"\nPasses to within {args.within:g} nats per row of plain EM's optimum L* (plain EM to |change| < "
        f"{args.exhaust_tol:g}, at most {args.max_iter} iterations){', --quick' if args.quick else ''}\n"
    )
    warm_up()
    print(HEADER, flush=True)
    rows = []
    failed = []
    for name in names:
        try:
            row = run_case(CASES[name], args)
        except Exception as error:  # the other cases still run; the error is in the summary
            failed.append(f"{name}: {type(error).__name__}: {error}")
            print(f"| {name} | failed: {type(error).__name__}: {error} |", flush=True)
            continue
        rows.append(row)
        print(table_row(row), flush=True)

    print(
        "\nn/r: not reached. †: scikit-learn cut short; its iterates are plain EM's (see the notes), so plain EM's "
        "passes, and seconds extrapolated from its seconds per iteration. ‡: plain EM stopped by --max-iter, not "
        "converged: L* is its last bound. Seconds are those of the passes up to the first within reach "
        "(streamem's history_; scikit-learn's E-step, M-step and bound). Default passes are n_passes_ (the "
        "initialisation's included).\n"
    )
    print("\n".join(f"- {note(row)}" for row in rows))
    slow = [row for row in rows if row["plain"] and row["acc"] and row["plain"] > 100]
    fast = [row for row in rows if row["plain"] and row["acc"] and row["plain"] <= 100]
    for label, group in (("slow (plain EM > 100 passes)", slow), ("fast", fast)):
        if group:
            median = statistics.median(row["plain"] / row["acc"] for row in group)
            print(f"\nmedian ratio plain/accelerated over the {len(group)} {label} cases: {median:.1f}x", end="")
            newton = [row["plain"] / row["qn"] for row in group if row["qn"]]
            if newton:
                print(f" (quasi-Newton: {statistics.median(newton):.1f}x over {len(newton)})", end="")
    gaps = ", ".join(
        f"{row['case']} {row['default_gap']:.1e}" for row in rows if not row["default_gap"] <= DEFAULT_TOL / 10
    )
    print(f"\nevery default gap <= {DEFAULT_TOL / 10:g}: {'no: ' + gaps if gaps else 'yes'}")
    more = [
        f"{row['case']} ({row['acc']} against {row['plain']})"
        for row in rows
        if row["plain"] and row["acc"] and row["acc"] > row["plain"]
    ]
    print(f"accelerated EM needing more passes than plain EM: {', '.join(more) or 'none'}")
    more = [
        f"{row['case']} ({row['qn']} against {row['plain']})"
        for row in rows
        if row["plain"] and row["qn"] and row["qn"] > row["plain"]
    ]
    print(f"quasi-Newton needing more passes than plain EM: {', '.join(more) or 'none'}")
    worse = [f"{row['case']} {row['qn_gap']:+.1e}" for row in rows if row["qn_gap"] < -args.within]
    print(f"quasi-Newton ending below plain EM's optimum: {', '.join(worse) or 'none'}")
    worse = [f"{row['case']} {row['acc_gap']:+.1e}" for row in rows if row["acc_gap"] < -args.within]
    print(f"accelerated EM ending below plain EM's optimum: {', '.join(worse) or 'none'}")
    unreached = [row["case"] for row in rows if row["acc"] is None]
    if unreached:
        print(f"accelerated EM never within reach of L*: {', '.join(unreached)}")
    if failed:
        print("failed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
