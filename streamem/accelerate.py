r"""Fewer passes over the data: extrapolated EM steps and a stopping rule that does not stop early.

Out of core every EM iteration reads all the data, so what a fit costs is its number of
passes. Plain EM converges linearly, at the rate of the largest fraction of missing
information; on overlapping components that rate is close to one and it takes hundreds of
passes to settle. Two pieces here, numpy only, driven by :func:`~streamem.em.run_em`:

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
    "ACCELERATIONS", "AITKEN_SAFETY", "STOPPING_RULES", "Squarem", "converged", "remaining_gain", "resolve_stopping",
    "objective_rate", "squarem_point",
]  # fmt: skip

#: the accelerations an estimator's ``accelerate`` takes (besides None, plain EM)
ACCELERATIONS = ("squarem",)
#: an estimator's ``stopping``: "auto" is "aitken" with an acceleration and "change" without
STOPPING_RULES = ("auto", "aitken", "change")
#: the step bound's factor when it is reached, and its divisor when a step fails
STEP_FACTOR = 4.0
#: how much more gain is taken to remain than Aitken's estimate: EM's rate rises as its fast
#: directions die out, so an estimate from three objectives falls short, by a factor of up to
#: about five on overlapping components (``tests/benchmarks/bench_passes.py``)
AITKEN_SAFETY = 10.0
#: halvings of a step toward the EM step while the extrapolated point is not a finite model
MAX_HALVINGS = 30


def resolve_stopping(stopping: str, accelerate: str | None) -> str:
    """The rule a fit stops by: ``"auto"`` is Aitken's with an acceleration and scikit-learn's
    (the change of the objective below ``tol``) for plain EM, whose iterations, ``n_iter_``
    and ``converged_`` are then scikit-learn's."""
    if stopping == "auto":
        return "change" if accelerate is None else "aitken"
    return stopping


def remaining_gain(objectives, rate_floor: float = 0.0) -> float:
    """Aitken's estimate of the gain still to come after the last of three consecutive EM
    objectives, at a rate of at least ``rate_floor`` (0 when the last step gained nothing,
    infinite while the steps are not yet shrinking)."""
    l0, l1, l2 = objectives[-3:]
    d1, d2 = l1 - l0, l2 - l1
    if d2 <= 0:
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
    return (len(chain) >= 3 and abs(chain[-1] - chain[-2]) < tol
            and AITKEN_SAFETY * remaining_gain(chain, rate_floor) < tol / 10)  # fmt: skip


def squarem_point(base: np.ndarray, first: np.ndarray, second: np.ndarray, step_max: float,
                  step: float | None = None) -> tuple[float, np.ndarray]:  # fmt: skip
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


@dataclasses.dataclass
class Squarem:
    """One candidate's place in its SQUAREM cycle between passes.

    Attributes
    ----------
    phase : int
        What the next pass evaluates: 0 the cycle's start :math:`\\theta_0`, 1 its EM step
        :math:`\\theta_1`, 2 the extrapolated point.
    base, first : ndarray or None
        :math:`\\theta_0` and :math:`\\theta_1` as vectors (the model's ``to_vector``).
    step : float
        The step length of the extrapolated point (phase 2).
    step_max : float
        The adaptive bound on the step length.
    fallback_chain : list of float
        The EM objectives that lead to :math:`\\theta_2`, where a rejected point falls back.
    """

    phase: int = 0
    base: np.ndarray | None = None
    first: np.ndarray | None = None
    step: float = 1.0
    step_max: float = 1.0
    fallback_chain: list = dataclasses.field(default_factory=list)

    def restart(self) -> None:
        """Start a new cycle at the next point (after a re-seeded component or a fallback)."""
        self.phase, self.base, self.first = 0, None, None

    def to_arrays(self, prefix: str) -> tuple[dict, dict]:
        arrays = {f"{prefix}{name}": getattr(self, name) for name in ("base", "first")
                  if getattr(self, name) is not None}  # fmt: skip
        meta = {"phase": self.phase, "step": self.step, "step_max": self.step_max,
                "fallback_chain": list(self.fallback_chain)}  # fmt: skip
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict, prefix: str) -> Squarem:
        return cls(int(meta["phase"]), arrays.get(f"{prefix}base"), arrays.get(f"{prefix}first"), float(meta["step"]),
                   float(meta["step_max"]), [float(v) for v in meta["fallback_chain"]])  # fmt: skip
