"""Sufficient statistics: split-additivity, dtypes, shift invariance."""

import dataclasses

import numpy as np
import pytest

from streamem.core.mstep import m_step
from streamem.core.params import MixtureParams
from streamem.core.stats import SufficientStats, chunk_stats
from streamem.engine.starts import hard_stats

from .helpers import COVARIANCE_TYPES, mixture_data


def params_for(X, covariance_type, K=3):
    rng = np.random.default_rng(5)
    means = X[rng.choice(len(X), K, replace=False)]
    cov = {
        "full": np.tile(np.eye(X.shape[1]), (K, 1, 1)),
        "tied": np.eye(X.shape[1]),
        "diag": np.ones((K, X.shape[1])),
        "spherical": np.ones(K),
    }[covariance_type]
    return MixtureParams.from_covariances(np.full(K, 1 / K), means, cov, covariance_type)


def assert_stats_equal(a: SufficientStats, b: SufficientStats, rtol=1e-12):
    for name in ("nk", "s1", "s2"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=rtol)
    assert a.weight == pytest.approx(b.weight, rel=1e-14)
    assert a.count == b.count


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_split_additivity(covariance_type):
    X, _ = mixture_data(n_samples=9000, seed=2)
    w = np.random.default_rng(3).uniform(0, 2, len(X))
    params = params_for(X, covariance_type)
    shift = X.mean(axis=0)
    (whole,) = chunk_stats(X, w, [params], shift)
    rng = np.random.default_rng(4)
    for _ in range(5):
        cuts = np.sort(rng.choice(np.arange(1, len(X)), size=rng.integers(1, 6), replace=False))
        parts = [chunk_stats(a, b, [params], shift)[0] for a, b in zip(np.split(X, cuts), np.split(w, cuts))]
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        assert_stats_equal(total, whole)
        # the worst-explained row is kept whatever the split
        assert total.worst.scores[0] == pytest.approx(whole.worst.scores[0], rel=1e-12)
        np.testing.assert_allclose(total.worst.points[0], whole.worst.points[0])


def test_several_candidates_equal_one_at_a_time():
    X, _ = mixture_data(seed=3)
    shift = X.mean(axis=0)
    candidates = [params_for(X, t) for t in COVARIANCE_TYPES]
    together = chunk_stats(X, None, candidates, shift)
    for params, stats in zip(candidates, together):
        assert_stats_equal(stats, chunk_stats(X, None, [params], shift)[0])


def test_integer_weights_equal_repeated_rows():
    X, _ = mixture_data(n_samples=500, seed=4)
    w = np.random.default_rng(0).integers(0, 4, len(X))
    params = params_for(X, "full")
    shift = X.mean(axis=0)
    (weighted,) = chunk_stats(X, w.astype(float), [params], shift)
    (repeated,) = chunk_stats(np.repeat(X, w, axis=0), None, [params], shift)
    for name in ("nk", "s1", "s2"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-11)
    assert weighted.loglik == pytest.approx(repeated.loglik, rel=1e-11)
    assert weighted.weight == repeated.weight


def test_float32_chunks_accumulate_in_float64():
    X, _ = mixture_data(n_samples=20000, seed=6)
    params = params_for(X, "full")
    shift = X.mean(axis=0)
    (s64,) = chunk_stats(X, None, [params], shift)
    (s32,) = chunk_stats(X.astype(np.float32), None, [params], shift)
    assert s32.nk.dtype == np.float64 and s32.s2.dtype == np.float64
    np.testing.assert_allclose(s32.nk, s64.nk, rtol=1e-4)
    np.testing.assert_allclose(s32.s2, s64.s2, rtol=1e-4)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_from_origin_gives_the_same_covariances(covariance_type):
    X, _ = mixture_data(seed=7)
    params = params_for(X, covariance_type)
    results = []
    for offset in (0.0, 1e7):
        moved = MixtureParams.from_covariances(
            params.weights, params.means + offset, params.covariances, covariance_type
        )
        (stats,) = chunk_stats(X + offset, None, [moved], (X + offset).mean(axis=0))
        new, _ = m_step(stats, covariance_type, 1e-6)
        results.append(new)
    np.testing.assert_allclose(results[1].covariances, results[0].covariances, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(results[1].means - 1e7, results[0].means, atol=1e-7)


def test_hard_stats_are_a_partition():
    X, labels = mixture_data(seed=8)
    centres = np.stack([X[labels == k].mean(axis=0) for k in range(3)])
    (stats,) = hard_stats(X, None, [centres], X.mean(axis=0), "full")
    assert stats.nk.sum() == len(X)
    assert np.all(np.isin(stats.nk, np.bincount(np.argmin(((X[:, None] - centres) ** 2).sum(-1), axis=1))))


def test_moments_merge_by_the_roles_their_fields_declare():
    from streamem.core.moments import Moments

    @dataclasses.dataclass(frozen=True, eq=False)
    class Tally(Moments):
        weight: float
        count: int
        seen: tuple
        optional: np.ndarray | None = None
        label: str = "same"

        summed = ("weight", "optional")
        counted = ("count",)
        kept = ("seen",)

    a, b = Tally(2.0, 3, ("a",), np.array([1.0, 2.0])), Tally(6.0, 1, ("b",), None)
    total = a + b
    assert (total.weight, total.count, total.seen, total.label) == (8.0, 4, ("a", "b"), "same")
    np.testing.assert_array_equal(total.optional, [1.0, 2.0])  # b had none of the optional term
    back = total - b
    assert (back.weight, back.count, back.seen) == (2.0, 3, ("a", "b"))  # subtraction keeps the kept rows
    half = a * 0.5
    assert (half.weight, half.count, half.seen) == (1.0, 3, ("a",)) and half.optional.tolist() == [0.5, 1.0]
    unit = a.normalized()
    assert (unit.weight, unit.count) == (1.0, 1) and unit.optional.tolist() == [0.5, 1.0]
    stepped = a.step(b, 0.25)  # a quarter of b's rows per unit weight, three quarters of a's
    assert stepped.weight == 1.0 and stepped.seen == ("b",)
    np.testing.assert_allclose(stepped.optional, 0.75 * np.array([0.5, 1.0]))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_kernels_reused_across_chunks_give_the_bits_of_fresh_ones(covariance_type):
    """A pass makes each candidate's kernel once per thread (``chunk_kernels``) and reuses it
    for chunks of any size in any order: every chunk's statistics are those of a kernel made
    for it alone, bit for bit."""
    from streamem.core.stats import chunk_kernels

    X, _ = mixture_data(n_samples=9000, seed=4)
    X[::7] += 40.0  # far rows: more than one group of components
    params = [params_for(X, covariance_type), params_for(X[::-1], covariance_type, K=5)]
    centre = X.mean(axis=0)
    chunks = [X[:5000], X[5000:5300], X[5300:], X[:17], X[100:5100]]
    fresh = [chunk_stats(chunk, None, params, centre) for chunk in chunks]
    for order in ([0, 1, 2, 3, 4], [3, 1, 4, 0, 2]):
        keywords = chunk_kernels(params, centre)
        for i in order:
            reused = chunk_stats(chunks[i], None, params, centre, **keywords)
            for a, b in zip(reused, fresh[i]):
                for name in ("nk", "s1", "s2", "shift"):
                    np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
                assert a.loglik == b.loglik
