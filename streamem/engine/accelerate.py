r"""Fewer passes over the data: extrapolated EM steps and a stopping rule that does not stop early.

Out of core every EM iteration reads all the data, so what a fit costs is its number of
passes. Plain EM converges linearly, at the rate of the largest fraction of missing
information; on overlapping components that rate is close to one and it takes hundreds of
passes to settle. Two pieces here, numpy only, driven by :func:`~streamem.engine.em.run_em`:

**SQUAREM** (Varadhan & Roland 2008, the S3 step length). From a point :math:`\theta_0`
two EM steps give :math:`\theta_1 = M(\theta_0)` and :math:`\theta_2 = M(\theta_1)`; with
:math:`r = \theta_1 - \theta_0` and :math:`v = \theta_2 - 2\theta_1 + \theta_0`,

.. math::
    \alpha = \lVert r \rVert / \lVert v \rVert, \qquad
    \theta' = \theta_0 + 2\alpha r + \alpha^2 v ,

(:math:`\alpha = 1` is :math:`\theta_2` itself), and the next cycle starts from
:math:`M(\theta')`. The step is taken on an unconstrained parameterisation (the models'
``to_vector``: log-weights, means, precision Cholesky factors with a log diagonal, logs of
the positive parameters), so every extrapolated point is a valid model. :math:`\alpha` is
held below a bound that grows fourfold while it is reached and shrinks when a step fails
(the R package's adaptive ``step.max``). A cycle costs three passes, at
:math:`\theta_0`, :math:`\theta_1` and :math:`\theta'`: each pass gives the objective at its
point and the M-step from it, so the objective at :math:`\theta'` is known in the pass that
also computes :math:`M(\theta')`. A point whose objective is below :math:`\theta_1`'s is
rejected and the cycle goes on from :math:`\theta_2` (the plain EM step, never worse), so
accepted points never lower the objective and a rejection costs one pass.

**Quasi-Newton** (``accelerate="quasi-newton"``; Zhou, Alexander & Lange 2011). EM's
fixed point solves :math:`\theta - M(\theta) = 0`; each pair of EM steps
:math:`u = \theta_1 - \theta_0`, :math:`v = \theta_2 - \theta_1` is a secant of :math:`M`
(:math:`v \approx M' u`). With the last :math:`q` = :data:`SECANTS` of them as the columns
of :math:`U` and :math:`V`, the next point is Newton's step on a map whose Jacobian agrees
with :math:`M`'s along them,

.. math::
    \theta' = \theta_1 + V \left(U^\top (U - V)\right)^{-1} U^\top u ,

exact in one step where :math:`M` is linear and :math:`U` spans the space. Its cycle is
SQUAREM's (the passes at :math:`\theta_0, \theta_1, \theta'`, the same acceptance and
fallback to :math:`\theta_2`); the secants are kept from cycle to cycle, the first
:math:`q` from plain EM steps, and forgotten when a move changes the parameters. A point
that is not a valid model is pulled toward :math:`\theta_2` by halves. Where EM is slow
(hundreds of passes) it needs fewer passes than SQUAREM, where EM is fast it can need more
than plain EM (``tests/benchmarks/bench_passes.py``), which is why SQUAREM is the default.

**Aitken's stopping rule** (Böhning et al. 1994; McNicholas et al. 2010). On three
consecutive EM objectives :math:`\ell_0, \ell_1, \ell_2` converging linearly at rate
:math:`a = (\ell_2 - \ell_1) / (\ell_1 - \ell_0)`, the limit is
:math:`\ell_\infty = \ell_1 + (\ell_2 - \ell_1) / (1 - a)`, so the gain still to come after
:math:`\ell_2` is :math:`g = (\ell_2 - \ell_1)\, a / (1 - a)`. EM's rate rises as its fast
directions die out, so :math:`g` falls short of the true gain (by up to about five times on
overlapping components), and more so right after an extrapolation, which leaves the slow
directions' steps small and the first EM steps dominated by fast ones: :math:`a` is taken
as the largest rate the fit's EM steps have shown, the remaining gain as :math:`10 g`, and
a fit stops when it is below ``tol / 10`` (and the last change below ``tol``). While :math:`a` is near one (a
slow fit, a plateau) the estimate is large and the fit goes on, where the rule "the last
change is below ``tol``" (scikit-learn's) stops far from the optimum. Under SQUAREM the
three objectives are those of :math:`\theta'` and its two EM steps, which begin the next
cycle.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = [
    "ACCELERATIONS",
    "AITKEN_SAFETY",
    "LOOK_FACTOR",
    "SECANTS",
    "STOPPING_RULES",
    "Cycle",
    "converged",
    "objective_rate",
    "quasi_newton_point",
    "remaining_gain",
    "resolve_stopping",
    "squarem_point",
]

#: the accelerations an estimator's ``accelerate`` takes (besides None, plain EM)
ACCELERATIONS = ("squarem", "quasi-newton")
#: the secant pairs of the quasi-Newton step (one or two make it less reliable than SQUAREM)
SECANTS = 3
#: an estimator's ``stopping``: "auto" is "aitken" with an acceleration and "change" without
STOPPING_RULES = ("auto", "aitken", "change")
#: the step bound's factor when it is reached, and its divisor when a step fails
STEP_FACTOR = 4.0
#: how much more gain is taken to remain than Aitken's estimate: EM's rate rises as its fast
#: directions die out, so an estimate from three objectives falls short, by a factor of up to
#: about five on overlapping components (``tests/benchmarks/bench_passes.py``)
AITKEN_SAFETY = 10.0
#: how much smaller the changes of the objective must have become before an accelerated
#: fit takes another plain EM step for the stopping rule (:class:`Cycle`'s ``look_below``;
#: 10 took C2-full's default fit 48 passes instead of 10 in ``bench_passes.py``)
LOOK_FACTOR = 2.0
#: halvings of a step toward the EM step while the extrapolated point is not a valid model
MAX_HALVINGS = 30


def resolve_stopping(stopping: str, accelerate: str | None) -> str:
    """The rule a fit stops by: ``"auto"`` is Aitken's with an acceleration and scikit-learn's
    (the change of the objective below ``tol``) for plain EM, whose iterations, ``n_iter_``
    and ``converged_`` are then scikit-learn's."""
    if stopping == "auto":
        return "change" if accelerate is None else "aitken"
    return stopping


#: the relative rounding of an objective summed over chunks: changes below it are none
ROUNDING = 64 * float(np.finfo(np.float64).eps)


def remaining_gain(objectives, rate_floor: float = 0.0) -> float:
    """Aitken's estimate of the gain still to come after the last of three consecutive EM
    objectives, at a rate of at least ``rate_floor`` (0 when the last step gained nothing
    beyond the rounding of the objective, so that the chunks' rounding never decides;
    infinite while the steps are not yet shrinking)."""
    l0, l1, l2 = objectives[-3:]
    d1, d2 = l1 - l0, l2 - l1
    if d2 <= ROUNDING * max(abs(l2), 1.0):
        return 0.0
    if d1 <= 0 or d2 >= d1:
        return math.inf
    rate = max(d2 / d1, rate_floor)
    return d2 * rate / (1.0 - rate)


def objective_rate(objectives) -> float:
    """The rate of convergence three consecutive EM objectives show (0 when they do not)."""
    l0, l1, l2 = objectives[-3:]
    d1, d2 = l1 - l0, l2 - l1
    return d2 / d1 if d1 > 0 and 0 <= d2 < d1 else 0.0


def converged(rule: str, change: float, chain: list, tol: float, rate_floor: float = 0.0) -> bool:
    """Whether a fit stops after an accepted point of objective change ``change``, the
    objectives of the EM steps that led to it in ``chain`` (the point's own last), the
    fit's EM steps having shown rates up to ``rate_floor``."""
    if rule == "change":
        return abs(change) < tol
    return (
        len(chain) >= 3
        and abs(chain[-1] - chain[-2]) < tol
        and AITKEN_SAFETY * remaining_gain(chain, rate_floor) < tol / 10
    )


def squarem_point(
    base: np.ndarray, first: np.ndarray, second: np.ndarray, step_max: float, step: float | None = None
) -> tuple[float, np.ndarray]:
    r"""The S3 step length :math:`\alpha \in [1, \text{step\_max}]` (or ``step``, when
    given) and the extrapolated vector :math:`\theta_0 + 2\alpha r + \alpha^2 v` from
    :math:`\theta_0, \theta_1, \theta_2`."""
    r = first - base
    v = second - 2.0 * first + base
    if step is None:
        norm_r, norm_v = float(np.linalg.norm(r)), float(np.linalg.norm(v))
        if not (norm_v > 0 and math.isfinite(norm_r) and math.isfinite(norm_v)):
            return 1.0, second
        step = min(max(norm_r / norm_v, 1.0), step_max)
    return step, base + 2.0 * step * r + step * step * v


def quasi_newton_point(first: np.ndarray, secants: list) -> np.ndarray | None:
    r"""The quasi-Newton point :math:`\theta_1 + V (U^\top (U - V))^{-1} U^\top u` from the
    secant pairs ``(u, v)`` (the last one the cycle's own: :math:`u = \theta_1 - \theta_0`);
    None when they do not determine one."""
    U = np.column_stack([u for u, _ in secants])
    V = np.column_stack([v for _, v in secants])
    with np.errstate(all="ignore"):
        try:
            coef = np.linalg.solve(U.T @ (U - V), U.T @ secants[-1][0])
        except np.linalg.LinAlgError:
            return None
        point = first + V @ coef
    return point if np.isfinite(point).all() else None


@dataclasses.dataclass
class Cycle:
    """One candidate's place in its cycle of an accelerated fit between passes.

    Attributes
    ----------
    method : {"squarem", "quasi-newton"}
    phase : int
        What the next pass evaluates: 0 the cycle's start :math:`\\theta_0`, 1 its EM step
        :math:`\\theta_1`, 2 the extrapolated point.
    base, first : ndarray or None
        :math:`\\theta_0` and :math:`\\theta_1` as vectors (the model's ``to_vector``).
    step : float
        The step length of the extrapolated point (phase 2): SQUAREM's :math:`\\alpha`, the
        quasi-Newton step's length over the EM step's.
    step_max : float
        SQUAREM's adaptive bound on the step length.
    fallback_chain : list of float
        The EM objectives that lead to :math:`\\theta_2`, where a rejected point falls back.
    secants : list of (ndarray, ndarray)
        The quasi-Newton step's last secant pairs :math:`(u, v)`.
    look_below : float
        A change of the objective below which the fit takes a plain EM step where it would
        extrapolate, so that the stopping rule sees three consecutive EM objectives: the
        change at the last such step over :data:`LOOK_FACTOR` (infinite before one). On a
        plateau, where every change is small but the fit is far from its end, it goes on
        extrapolating, and looks again once the changes have halved.
    """

    method: str = "squarem"
    phase: int = 0
    base: np.ndarray | None = None
    first: np.ndarray | None = None
    step: float = 1.0
    step_max: float = 1.0
    fallback_chain: list = dataclasses.field(default_factory=list)
    secants: list = dataclasses.field(default_factory=list)
    look_below: float = math.inf

    def restart(self) -> None:
        """Start a new cycle at the next point (after an extrapolation or a fallback)."""
        self.phase, self.base, self.first = 0, None, None

    def forget(self) -> None:
        """Start anew after a move (re-seeded or merged components): the secants are of
        another map."""
        self.restart()
        self.secants = []

    def to_arrays(self, prefix: str) -> tuple[dict, dict]:
        arrays = {
            f"{prefix}{name}": getattr(self, name) for name in ("base", "first") if getattr(self, name) is not None
        }
        if self.secants:
            arrays[f"{prefix}secants"] = np.stack([np.stack(pair) for pair in self.secants])
        meta = {
            "method": self.method,
            "phase": self.phase,
            "step": self.step,
            "step_max": self.step_max,
            "fallback_chain": list(self.fallback_chain),
            "look_below": self.look_below if math.isfinite(self.look_below) else None,
        }
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict, prefix: str) -> Cycle:
        secants = [(pair[0], pair[1]) for pair in arrays.get(f"{prefix}secants", [])]
        return cls(
            meta.get("method", "squarem"),
            int(meta["phase"]),
            arrays.get(f"{prefix}base"),
            arrays.get(f"{prefix}first"),
            float(meta["step"]),
            float(meta["step_max"]),
            [float(v) for v in meta["fallback_chain"]],
            secants,
            math.inf if meta.get("look_below") is None else float(meta["look_below"]),
        )
