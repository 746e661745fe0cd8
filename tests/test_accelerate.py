"""Fewer passes: SQUAREM and quasi-Newton steps on every model of the EM core, Aitken's stopping rule, passes
counted."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.exceptions import ConvergenceWarning

import streamem
from streamem.engine.accelerate import ACCELERATIONS, quasi_newton_point, remaining_gain, squarem_point

from .helpers import COVARIANCE_TYPES, cli, mixture_data, sklearn_start

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def overlapping(n_samples=4000, n_features=4, n_components=5, seed=0, spread=1.3):
    """Rows of strongly overlapping spherical clusters: plain EM creeps there."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, spread, (n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    return means[labels] + rng.normal(size=(n_samples, n_features))


def first_pass_within(model, target: float) -> int:
    """The passes until the first accepted point at least ``target``."""
    for record in model.history_:
        if record["accepted"] and record.get("objective", record["log_likelihood"]) >= target:
            return record["passes"]
    raise AssertionError(f"never within reach: {model.lower_bound_} < {target}")


@pytest.fixture(scope="module")
def slow_case():
    X = overlapping(spread=1.8)
    start = sklearn_start(X, 5, "full", seed=0)
    plain = streamem.GaussianMixture(5, accelerate=None, tol=1e-12, max_iter=3000, **start).fit(X)
    return X, start, plain


@pytest.mark.parametrize("accelerate", ACCELERATIONS)
def test_acceleration_reaches_plain_em_optimum_in_a_fraction_of_the_passes(slow_case, accelerate):
    X, start, plain = slow_case
    fast = streamem.GaussianMixture(5, tol=1e-12, max_iter=3000, stopping="change", accelerate=accelerate, **start).fit(
        X
    )
    assert plain.n_passes_ > 100  # a slow case
    target = plain.lower_bound_ - 1e-6
    plain_passes, fast_passes = first_pass_within(plain, target), first_pass_within(fast, target)
    assert fast_passes <= plain_passes / 3, (fast_passes, plain_passes)
    assert fast.lower_bound_ >= plain.lower_bound_ - 1e-9
    rows, cols = linear_sum_assignment(((fast.means_[:, None] - plain.means_[None]) ** 2).sum(axis=2))
    np.testing.assert_allclose(fast.means_[rows], plain.means_[cols], atol=1e-3)
    assert any(record["step"] > 1 for record in fast.history_)


def test_default_fit_does_not_stop_while_it_is_still_moving(slow_case):
    X, start, plain = slow_case
    default = streamem.GaussianMixture(5, max_iter=500, **start).fit(X)  # squarem, Aitken's rule, tol=1e-3
    early = streamem.GaussianMixture(5, accelerate=None, **start).fit(X)  # scikit-learn's rule
    gap = plain.lower_bound_ - default.lower_bound_
    assert default.converged_ and gap < default.tol / 10, gap
    assert plain.lower_bound_ - early.lower_bound_ > gap  # the change rule stops farther away


def test_plain_em_keeps_scikit_learns_iterations_and_stopping():
    from sklearn.mixture import GaussianMixture

    X, _ = mixture_data(n_samples=4000, n_features=3, n_components=3, seed=5)
    start = sklearn_start(X, 3, "full")
    ours = streamem.GaussianMixture(3, accelerate=None, tol=1e-5, max_iter=500, **start).fit(X)
    theirs = GaussianMixture(3, tol=1e-5, max_iter=500, **start).fit(X)
    assert (ours.n_iter_, ours.converged_) == (theirs.n_iter_, theirs.converged_)
    np.testing.assert_allclose(ours.means_, theirs.means_, rtol=1e-8, atol=1e-10)
    assert all(record["step"] == 1.0 and record["accepted"] for record in ours.history_)


def objectives_never_fall(model) -> None:
    bounds = np.array(model.lower_bounds_)
    accepted = [r.get("objective", r["log_likelihood"]) for r in model.history_ if r["accepted"]]
    scale = max(1.0, abs(bounds[-1]))
    assert np.all(np.diff(bounds) >= -1e-12 * scale)
    assert np.all(np.diff(accepted) >= -1e-12 * scale)
    assert model.lower_bound_ == pytest.approx(accepted[-1])


@pytest.mark.parametrize("accelerate", ACCELERATIONS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_accepted_steps_never_lower_the_objective(covariance_type, accelerate):
    X = overlapping(n_samples=6000, seed=1)
    model = streamem.GaussianMixture(
        5, covariance_type=covariance_type, tol=0, max_iter=150, random_state=0, accelerate=accelerate
    ).fit(X)
    objectives_never_fall(model)
    assert sum(r["step"] > 1 for r in model.history_) > 5


@pytest.mark.parametrize("accelerate", ACCELERATIONS)
def test_every_model_of_the_em_core_is_accelerated(accelerate):
    """Missing values, a MAP prior, a noise component, partial labels, standardised features,
    t components and the variational posterior: all extrapolated, none ever lower."""
    X = overlapping(n_samples=6000, seed=2)
    holes = X.copy()
    holes[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    labels = np.full(len(X), -1)
    labels[:50] = np.arange(50) % 4
    common = dict(tol=0, max_iter=80, random_state=0, accelerate=accelerate)
    fits = [
        streamem.GaussianMixture(4, missing="marginalize", **common).fit(holes),
        streamem.GaussianMixture(
            4, covariance_prior=np.eye(4), degrees_of_freedom_prior=5.0, mean_precision_prior=0.1, **common
        ).fit(X),
        streamem.GaussianMixture(4, noise="uniform", **common).fit(X),
        streamem.GaussianMixture(4, **common).fit(X, labels),
        streamem.GaussianMixture(4, covariance_type="diag", standardize=True, **common).fit(X * [1, 10, 100, 0.1]),
        streamem.StudentTMixture(4, **common).fit(X),
        streamem.BayesianGaussianMixture(n_components=6, **common).fit(X),
    ]
    for model in fits:
        objectives_never_fall(model)
        assert any(r["step"] > 1 and r["accepted"] for r in model.history_), type(model).__name__
        assert all(np.isfinite(v).all() for v in (model.weights_, model.means_, model.covariances_))


@pytest.mark.parametrize(
    ("covariance_type", "accelerate"), [("full", "squarem"), ("diag", "squarem"), ("full", "quasi-newton")]
)
def test_the_accelerated_fit_does_not_depend_on_the_chunking(covariance_type, accelerate):
    import dask.array as da

    X = overlapping(n_samples=6000, seed=3)
    start = sklearn_start(X, 5, covariance_type, seed=0)
    fits = [
        streamem.GaussianMixture(
            5, covariance_type=covariance_type, tol=0, max_iter=60, accelerate=accelerate, **start
        ).fit(da.from_array(X, chunks=(rows, -1)))
        for rows in (6000, 1000, 777)
    ]
    for other in fits[1:]:
        assert [r["accepted"] for r in other.history_] == [r["accepted"] for r in fits[0].history_]
        np.testing.assert_allclose(other.means_, fits[0].means_, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(other.covariances_, fits[0].covariances_, rtol=1e-8, atol=1e-8)


def test_frozen_parameters_keep_their_bits_under_extrapolation():
    X = overlapping(n_samples=6000, seed=4)
    start = sklearn_start(X, 5, "full", seed=0)
    held = streamem.GaussianMixture(5, max_iter=0, **start).fit(X)  # the initial parameters as fitted ones
    model = streamem.GaussianMixture(5, freeze=("weights", "covariances"), tol=0, max_iter=60, **start).fit(X)
    assert any(r["step"] > 1 and r["accepted"] for r in model.history_)
    for name in ("weights_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(model, name), getattr(held, name), err_msg=name)
    assert np.abs(model.means_ - held.means_).max() > 1e-3  # the means moved
    t = streamem.StudentTMixture(3, degrees_of_freedom=4.0, tol=0, max_iter=40, random_state=0).fit(X)
    np.testing.assert_array_equal(t.degrees_of_freedom_, np.full(3, 4.0))


def test_candidates_share_the_passes_and_the_passes_are_counted():
    X = overlapping(n_samples=6000, seed=5)
    start = sklearn_start(X, 5, "full", seed=0)
    given = streamem.GaussianMixture(5, tol=0, max_iter=25, **start).fit(X)
    assert given.n_passes_ == given.n_iter_ == 25  # a start given costs no pass
    assert [r["passes"] for r in given.history_] == list(range(1, 26))
    drawn = streamem.GaussianMixture(5, n_init=3, n_starts=1, moves=None, random_state=0, max_iter=40).fit(X)
    init_passes = drawn.history_[0]["passes"] - 1
    assert init_passes > 0
    assert drawn.n_passes_ >= init_passes + drawn.n_iter_
    assert drawn.n_passes_ == init_passes + max(drawn.n_iter_, drawn.history_[-1]["iteration"])
    assert drawn.n_passes_ < init_passes + 3 * drawn.n_iter_  # not one pass per candidate


@pytest.mark.slow
@pytest.mark.parametrize("accelerate", ACCELERATIONS)
def test_passes_survive_save_load_and_checkpoint_resume(tmp_path, accelerate):
    X = overlapping(n_samples=6000, seed=6)
    common = dict(tol=0, random_state=0, n_init=2, accelerate=accelerate)
    reference = streamem.GaussianMixture(5, max_iter=30, **common).fit(X)
    streamem.GaussianMixture(5, max_iter=11, checkpoint=tmp_path / "ck", **common).fit(X)
    resumed = streamem.GaussianMixture(5, max_iter=30, checkpoint=tmp_path / "ck", **common).fit(X)
    np.testing.assert_array_equal(resumed.means_, reference.means_)
    assert resumed.history_ == [dict(r, seconds=s["seconds"]) for r, s in zip(reference.history_, resumed.history_)]
    assert resumed.n_passes_ == reference.n_passes_
    reference.save(tmp_path / "model.zarr")
    loaded = streamem.load(tmp_path / "model.zarr")
    assert loaded.n_passes_ == reference.n_passes_ and loaded.history_ == reference.history_


def test_select_n_components_counts_the_passes_of_the_table():
    X = overlapping(n_samples=4000, seed=7)
    best = streamem.select_n_components(
        X, [2, 3, 4], covariance_type=["full", "diag"], random_state=0, max_iter=30, moves=None
    )
    assert best.n_passes_ <= 30 + 20  # one pass per iteration for the whole table, plus starts and scoring
    assert best.n_passes_ > max(row["n_iter"] for row in best.selection_)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"accelerate": "fast"}, "accelerate.*squarem"),
        ({"stopping": "never"}, "stopping.*aitken"),
        ({"accelerate": 1}, "accelerate"),
    ],
)
@pytest.mark.parametrize(
    "estimator", [streamem.GaussianMixture, streamem.BayesianGaussianMixture, streamem.StudentTMixture]
)
def test_a_bad_acceleration_names_the_choices(estimator, params, match):
    model = estimator(n_components=2, **params)
    with pytest.raises(ValueError, match=match):
        model.fit(overlapping(n_samples=200))
    assert not hasattr(model, "means_")


def test_aitken_estimate_of_the_remaining_gain():
    limit, rate = -3.0, 0.9
    objectives = [limit - 2.0 * rate**k for k in range(3)]
    assert remaining_gain(objectives) == pytest.approx(limit - objectives[-1])
    assert remaining_gain([0.0, 1.0, 1.0]) == 0.0  # nothing gained
    assert remaining_gain([0.0, 1.0, 2.0]) == np.inf  # not shrinking yet


def test_squarem_point_is_the_s3_extrapolation():
    """On a linear map with one slow direction the S3 step lands on its fixed point."""
    fixed, rate = np.array([1.0, -2.0]), 0.99
    step = lambda v: fixed + rate * (v - fixed)  # noqa: E731
    base = np.array([5.0, 3.0])
    first, second = step(base), step(step(base))
    length, point = squarem_point(base, first, second, step_max=1e6)
    assert length == pytest.approx(1 / (1 - rate))
    np.testing.assert_allclose(point, fixed, atol=1e-9)
    assert squarem_point(base, first, second, step_max=4.0)[0] == 4.0


def test_cli_shows_passes(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, overlapping(n_samples=3000, seed=8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = cli("fit", path, "--n-components", 3, "--seed", 0, "--out", tmp_path / "m.zarr")
        plain = cli(
            "fit",
            path,
            "--n-components",
            3,
            "--seed",
            0,
            "--accelerate",
            "none",
            "--stopping",
            "change",
            "--out",
            tmp_path / "p.zarr",
        )
    assert result.returncode == 0 and plain.returncode == 0, result.stderr + plain.stderr
    assert "(pass " in result.stderr and "passes over the data" in result.stderr
    model = streamem.load(tmp_path / "m.zarr")
    assert f"({model.n_passes_} passes over the data)" in result.stderr
    assert streamem.load(tmp_path / "p.zarr").accelerate is None
    bad = cli("fit", path, "--n-components", 3, "--accelerate", "fast", "--out", tmp_path / "b.zarr")
    assert bad.returncode == 2 and "squarem" in bad.stderr


def test_extrapolated_points_keep_variances_above_reg_covar():
    """Digits have constant pixels: an extrapolated point with a variance below reg_covar
    would outscore every EM point (and the EM step after it fall back below). Such points
    are halved toward the EM step, so the bounds rise as plain EM's do (reg_covar makes EM
    itself not exactly monotone, by about 1e-8 here)."""
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits
    from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

    from streamem.core.params import MixtureParams
    from streamem.engine.em import admissible

    X = load_digits().data / 16.0
    resp = np.eye(10)[KMeans(10, n_init=1, random_state=0).fit(X).labels_]
    nk, means, variances = _estimate_gaussian_parameters(X, resp, 1e-6, "diag")
    start = dict(weights_init=nk / nk.sum(), means_init=means, precisions_init=1.0 / variances)
    fast = streamem.GaussianMixture(10, covariance_type="diag", tol=1e-12, max_iter=400, **start).fit(X)
    plain = streamem.GaussianMixture(10, covariance_type="diag", tol=1e-12, max_iter=400, accelerate=None, **start).fit(
        X
    )
    assert np.diff(fast.lower_bounds_).min() >= min(np.diff(plain.lower_bounds_).min(), 0.0) - 1e-7
    assert fast.lower_bound_ == pytest.approx(plain.lower_bound_, abs=1e-9)
    thin = MixtureParams.from_covariances(np.ones(1), np.zeros((1, 2)), np.array([[[1.0, 0.0], [0.0, 1e-8]]]), "full")
    assert not admissible(thin, 1e-6) and admissible(thin, 1e-9)


@pytest.mark.parametrize("accelerate", ACCELERATIONS)
def test_one_iteration_warm_starts_go_on_as_one_fit(accelerate):
    """scikit-learn's idiom of fitting one iteration at a time (``warm_start=True,
    max_iter=1``) keeps the extrapolation's cycle, its pending point and the stopping rule's
    EM steps: the loop is the uninterrupted accelerated fit, extrapolations and stop included."""
    X = overlapping(n_samples=3000, seed=9, spread=1.6)
    start = sklearn_start(X, 5, "full", seed=0)
    one = streamem.GaussianMixture(5, max_iter=400, accelerate=accelerate, **start).fit(X)
    warm = streamem.GaussianMixture(5, max_iter=1, warm_start=True, accelerate=accelerate, **start)
    fits = 0
    while fits < 400 and not (fits and warm.converged_):
        warm.fit(X)
        fits += 1
    assert one.converged_ and warm.converged_
    assert any(record["step"] > 1 for record in one.history_)
    assert fits == one.n_iter_
    np.testing.assert_allclose(warm.means_, one.means_, atol=1e-8)
    assert warm.lower_bound_ == pytest.approx(one.lower_bound_, abs=1e-10)


def test_quasi_newton_point_solves_a_linear_map_in_one_step():
    """On a linear map with as many secants as dimensions the quasi-Newton point is the fixed
    point itself (Zhou, Alexander & Lange 2011)."""
    rng = np.random.default_rng(0)
    Q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    M = Q @ np.diag([0.99, 0.9, 0.5]) @ Q.T  # a contraction, slowest rate 0.99
    fixed = np.array([1.0, -2.0, 0.5])
    points = [rng.normal(size=3)]
    for _ in range(4):
        points.append(fixed + M @ (points[-1] - fixed))
    secants = [(points[i + 1] - points[i], points[i + 2] - points[i + 1]) for i in range(3)]
    np.testing.assert_allclose(quasi_newton_point(points[3], secants), fixed, atol=1e-9)
    # collinear secants determine no point
    assert quasi_newton_point(points[1], [secants[0], secants[0], secants[0]]) is None
