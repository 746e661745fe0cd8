"""The EM loop under every estimator: all candidates fitted in the same passes over the data.

:func:`run_em` is the functional core (as ``k_means()`` is under dask-ml's ``KMeans``): it
takes the data, the candidates' :class:`FitState`, and a *model* that knows one kind of
mixture, and runs EM until every candidate has converged or ``max_iter`` passes are done.
The model is a :class:`~streamem.engine.contract.MixtureModel` (``estep``, ``objective``,
``mstep``, ``to_vector``, ``from_vector``, ``reg_covar``), checked on the way in.

:class:`GaussianModel` is the Gaussian mixture's, with its covariance type and optional
prior. A new kind of mixture is a new model (its statistics, its M-step) and an estimator
that passes it here (the docs' "Adding a mixture").
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import NamedTuple

import numpy as np

from streamem.core.covariance import get_covariance
from streamem.core.mstep import m_step
from streamem.core.params import InitialParameters, MixtureParams, NoisyParams
from streamem.core.prior import Prior
from streamem.core.stats import add_lists, chunk_kernels, chunk_stats
from streamem.core.validation import check_total_weight
from streamem.engine.accelerate import (
    LOOK_FACTOR,
    MAX_HALVINGS,
    SECANTS,
    STEP_FACTOR,
    Cycle,
    converged,
    objective_rate,
    quasi_newton_point,
    squarem_point,
)
from streamem.engine.contract import check_model
from streamem.engine.passes import ChunkedData

__all__ = ["FitState", "GaussianModel", "best_by_cell", "best_cells", "best_of", "first_best", "run_em"]

HISTORY_KEYS = ("iteration", "log_likelihood", "change", "seconds", "objective", "passes", "step", "accepted")
#: what a model's M-step may do besides its update, as history entries: components re-seeded
#: (a list of them), pairs of components merged (a list of pairs), components put in a new
#: order (the old index of each)
MOVES = ("reseeded", "merged", "reordered", "moved", "swapped", "neighbour")
#: history entries kept as integers and as booleans
_INTEGER_KEYS, _BOOLEAN_KEYS = ("iteration", "passes"), ("accepted",)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class FitState:
    """One candidate of a fit, as EM leaves it after each pass.

    Attributes
    ----------
    params : MixtureParams
    objective : float
        The last iteration's objective per sample (the log-likelihood, plus the log-prior
        under a prior); -inf before the first.
    converged : bool
    n_iter : int
    history : list of dict
        One record per iteration (see ``GaussianMixture.history_``).
    means_history : list of ndarray
        The means before the first iteration and after each one.
    n_rows_ignored : int
        Rows the last pass left out (every value missing).
    trial : MixtureParams or None
        The point the next pass evaluates when it is not ``params``: an extrapolated one,
        accepted only if its objective is no lower (:mod:`streamem.engine.accelerate`).
    cycle : Cycle or None
        The accelerated fit's place in its cycle.
    chain : list of float
        The objectives of the EM steps that led to the next point (the last two at most),
        for Aitken's stopping rule.
    n_passes : int
        Passes over the data the fit had made, initialisation included, when the state
        was last updated.
    rate : float
        The largest rate of convergence the fit's EM steps have shown (for the stopping rule).
    move : dict or None
        A move made to the parameters before the next iteration (a split-and-merge move,
        :mod:`streamem.engine.moves`), for that iteration's history record.
    failure : str or None
        Why the candidate stopped when its M-step failed (an ill-defined covariance) while
        other candidates went on: it stays where it was, out of the running.
    settle : int
        EM steps still to come whose objectives the stopping rule leaves out: a start at
        another data set's optimum (a sample's) takes its first step to this one's in every
        direction at once, a gain that says nothing of EM's rate of convergence.
    """

    params: MixtureParams
    objective: float = -np.inf
    converged: bool = False
    n_iter: int = 0
    history: list = dataclasses.field(default_factory=list)
    means_history: list = dataclasses.field(default_factory=list)
    n_rows_ignored: int = 0
    trial: MixtureParams | None = None
    cycle: Cycle | None = None
    chain: list = dataclasses.field(default_factory=list)
    n_passes: int = 0
    rate: float = 0.0
    move: dict | None = None
    failure: str | None = None
    settle: int = 0

    def affine(self, offset, scale, objective_shift: float) -> FitState:
        """The same state for data ``offset + scale * x`` (:meth:`MixtureParams.affine`): a
        fit on standardised data in the data's units. The objective and the history's
        log-likelihoods per sample move by ``objective_shift`` (for complete rows,
        :math:`-\\sum_d \\log s_d`, the log of the map's Jacobian)."""
        shifted = ("log_likelihood", "objective")
        history = [{k: v + objective_shift if k in shifted else v for k, v in r.items()} for r in self.history]
        return dataclasses.replace(
            self,
            params=self.params.affine(offset, scale),
            objective=self.objective + objective_shift,
            history=history,
            means_history=[offset + scale * means for means in self.means_history],
            chain=[value + objective_shift for value in self.chain],
        )

    def to_arrays(self, prefix: str = "") -> tuple[dict, dict]:
        """The state as arrays named ``prefix + name`` and JSON: the one serialiser of a fit,
        behind saved models of every estimator and checkpoints (:meth:`from_arrays`). The
        history's first change is infinite, which JSON cannot hold: it goes as arrays."""
        arrays = self.params.to_arrays(prefix)
        arrays[f"{prefix}means_history"] = np.stack(self.means_history or [self.params.means])
        for key in HISTORY_KEYS:
            if self.history and all(key in record for record in self.history):
                arrays[f"{prefix}history_{key}"] = np.array([r[key] for r in self.history], dtype=np.float64)
        meta = {
            "covariance_type": self.params.covariance_type,
            "lower_bound": float(self.objective) if np.isfinite(self.objective) else None,
            "converged": bool(self.converged),
            "n_iter": int(self.n_iter),
            "n_rows_ignored": int(self.n_rows_ignored),
            **{move: {str(r["iteration"]): r[move] for r in self.history if move in r} for move in MOVES},
            "chain": [float(v) for v in self.chain],
            "n_passes": int(self.n_passes),
            "rate": float(self.rate),
            "settle": int(self.settle),
        }
        if self.trial is not None:
            arrays.update(self.trial.to_arrays(f"{prefix}trial_"))
        if self.cycle is not None:
            cycle_arrays, meta["cycle"] = self.cycle.to_arrays(f"{prefix}cycle_")
            arrays.update(cycle_arrays)
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict, prefix: str = "", params_class=MixtureParams) -> FitState:
        """The state back from :meth:`to_arrays`'s arrays and JSON (parameters of
        ``params_class``, whose ``from_arrays`` reads them)."""
        params = params_class.from_arrays(arrays, meta["covariance_type"], prefix)
        keys = [key for key in HISTORY_KEYS if f"{prefix}history_{key}" in arrays]
        moves = {move: meta.get(move, {}) for move in MOVES}
        history = []
        for values in zip(*(arrays[f"{prefix}history_{key}"].tolist() for key in keys), strict=True):
            record = dict(zip(keys, values))
            record.update({key: int(record[key]) for key in _INTEGER_KEYS if key in record})
            record.update({key: bool(record[key]) for key in _BOOLEAN_KEYS if key in record})
            for move, at in moves.items():
                if str(record["iteration"]) in at:
                    record[move] = at[str(record["iteration"])]
            history.append(record)
        means_history = list(arrays.get(f"{prefix}means_history", params.means[None]))
        objective = -np.inf if meta["lower_bound"] is None else float(meta["lower_bound"])
        trial = None
        if f"{prefix}trial_means" in arrays:
            trial = params_class.from_arrays(arrays, meta["covariance_type"], f"{prefix}trial_")
        cycle = None if "cycle" not in meta else Cycle.from_arrays(arrays, meta["cycle"], f"{prefix}cycle_")
        return cls(
            params,
            objective,
            bool(meta["converged"]),
            int(meta["n_iter"]),
            history,
            means_history,
            int(meta.get("n_rows_ignored", 0)),
            trial,
            cycle,
            list(meta.get("chain", [])),
            int(meta.get("n_passes", 0)),
            float(meta.get("rate", 0.0)),
            settle=int(meta.get("settle", 0)),
        )


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianModel:
    """The Gaussian mixture for :func:`run_em`: the E-step of :func:`~streamem.core.stats.chunk_stats`
    about ``centre`` (the data's), the M-step of :func:`~streamem.core.mstep.m_step` (each
    candidate's of its own covariance type), MAP with a ``prior`` (of ``covariance_type``);
    ``missing``: rows with NaN are marginalised; ``freeze``: the parameters held at their
    values (the M-step keeps the candidate's own)."""

    covariance_type: str
    reg_covar: float
    centre: np.ndarray
    prior: Prior | None = None
    missing: bool = False
    freeze: tuple = ()

    def estep(self, data: ChunkedData, params_list: list[MixtureParams]) -> list:
        totals = data.map_reduce(
            chunk_stats,
            params_list,
            self.centre,
            self.missing,
            combine=add_lists,
            with_labels=True,
            prepare=chunk_kernels,
            stack=True,
        )
        for total in totals:
            check_total_weight(total.weight)
        return totals

    def objective(self, stats, params: MixtureParams) -> dict:
        record = {"log_likelihood": stats.mean_loglik}
        if self.prior is not None:
            record["objective"] = stats.mean_loglik + self.prior.log_density(params) / stats.weight
        return record

    def to_vector(self, params: MixtureParams) -> np.ndarray:
        return params.to_vector()

    def from_vector(self, vector: np.ndarray, like: MixtureParams) -> MixtureParams:
        """Parameters from an extrapolated ``vector`` (:meth:`MixtureParams.from_vector`),
        the frozen ones ``like``'s very arrays."""
        new = like.from_vector(vector)
        held = {}
        if "weights" in self.freeze:
            held["weights"] = like.weights
            if like.has_noise:
                held["noise_weight"] = like.noise_weight
        if "means" in self.freeze:
            held["means"] = like.means
        if "covariances" in self.freeze:
            held.update(covariances=like.covariances, precisions_chol=like.precisions_chol)
        return dataclasses.replace(new, **held)

    def mstep(self, stats, params: MixtureParams) -> tuple[MixtureParams, dict]:
        """The M-step, and its move ``{"reseeded": components}`` when empty components were
        re-seeded (:func:`~streamem.core.mstep.m_step`)."""
        new, reseeded = m_step(stats, params.covariance_type, self.reg_covar, self.prior, self.freeze, params)
        if params.has_noise:  # the noise component's weight, the Gaussians' the rest
            noise_weight = stats.noise / (stats.nk.sum() + stats.noise)
            if "weights" in self.freeze:
                noise_weight = params.noise_weight
            else:
                new = dataclasses.replace(new, weights=new.weights * (1.0 - noise_weight))
            new = NoisyParams.of(new, noise_weight, params.box)
        return new, ({"reseeded": reseeded} if reseeded else {})


class Scaling(NamedTuple):
    """Standardisation of the features, :math:`z = (x - m) / s`: ``mean`` and ``scale`` of
    shape (n_features,); ``loglik_shift``, :math:`\\sum_d W_d \\log s_d` over the weight
    ``W_d`` of the rows with feature ``d`` observed, is the log-likelihood of ``z`` less
    that of ``x``, and ``per_sample`` the same per unit of row weight."""

    mean: np.ndarray
    scale: np.ndarray
    loglik_shift: float
    per_sample: float

    def to_data_units(self, state: FitState) -> FitState:
        """A state fitted on ``z`` in the data's units."""
        return state.affine(self.mean, self.scale, -self.per_sample)

    def to_standard_units(self, params: MixtureParams) -> MixtureParams:
        return params.affine(-self.mean / self.scale, 1.0 / self.scale)

    def to_standard_start(self, initial: InitialParameters, covariance_type: str) -> InitialParameters:
        """The initial parameters a user gave (in the data's units, each possibly None) for
        standardised data."""
        chol = initial.precisions_chol
        if chol is not None:  # the Cholesky factors of the precisions of x / scale: S L
            chol = get_covariance(covariance_type).scaled(chol, chol, 1 / self.scale)[1]
        means = None if initial.means is None else (initial.means - self.mean) / self.scale
        return InitialParameters(initial.weights, means, chol)


@dataclasses.dataclass(frozen=True, eq=False)
class StandardizedModel:
    """EM on standardised data :math:`z = (x - m) / s` whose passes read ``x`` itself: for
    the E-step each candidate's parameters go to the data's units, and its statistics come
    back to the standardised ones (:meth:`SufficientStats.affine`), where ``model`` (a
    :class:`GaussianModel` in standardised units) evaluates and maximises them. EM commutes
    with an affine map of the data, so this is the fit on ``z`` without computing ``z``:
    nothing per row."""

    model: GaussianModel
    scaling: Scaling

    @property
    def reg_covar(self) -> float:
        """The Gaussian model's, in the standardised units its parameters are in."""
        return self.model.reg_covar

    def in_data_units(self) -> GaussianModel:
        """The Gaussian model in the data's units (its parameters too must be)."""
        mean, scale = self.scaling.mean, self.scaling.scale
        return dataclasses.replace(self.model, centre=mean + scale * self.model.centre)

    def estep(self, data: ChunkedData, params_list: list[MixtureParams]) -> list:
        mean, scale = self.scaling.mean, self.scaling.scale
        totals = self.in_data_units().estep(data, [params.affine(mean, scale) for params in params_list])
        return [total.affine(-mean / scale, 1.0 / scale, self.scaling.loglik_shift) for total in totals]

    def objective(self, stats, params: MixtureParams) -> dict:
        return self.model.objective(stats, params)

    def mstep(self, stats, params: MixtureParams) -> tuple[MixtureParams, dict]:
        return self.model.mstep(stats, params)

    def to_vector(self, params: MixtureParams) -> np.ndarray:
        return self.model.to_vector(params)

    def from_vector(self, vector: np.ndarray, like: MixtureParams) -> MixtureParams:
        return self.model.from_vector(vector, like)


#: candidates whose objectives differ by less than this (relative) are tied: the first wins,
#: so that rounding (weights at another scale, another chunking) never decides between two
#: candidates at one optimum
TIE = 1e-10


def first_best(states: list[FitState]) -> FitState:
    """The state of highest objective, the first of those within :data:`TIE` of it."""
    highest = max(state.objective for state in states)
    if not np.isfinite(highest):
        return states[0] if highest == -np.inf else max(states, key=lambda state: state.objective)
    return next(state for state in states if state.objective >= highest - TIE * (1.0 + abs(highest)))


def best_of(states: list[FitState], collapsed=None) -> FitState:
    """The best of some candidates: those that did not fail, then those with the fewest
    collapsed components (``collapsed(params)``, the estimator's ``_collapse_test``; none
    counted without it), then the highest objective (:func:`first_best`)."""
    tiers = [(state.failure is None, 0 if collapsed is None else -collapsed(state.params)) for state in states]
    top = max(tiers)
    return first_best([state for state, tier in zip(states, tiers) if tier == top])


def best_by_cell(states: list[FitState], collapsed=None) -> dict:
    """The best state (:func:`best_of`) of each (covariance type, number of components), in
    the order the cells first appear."""
    cells: dict = {}
    for state in states:
        cells.setdefault((state.params.covariance_type, state.params.n_components), []).append(state)
    return {key: best_of(group, collapsed) for key, group in cells.items()}


def best_cells(runs: list[FitState], collapsed=None) -> dict:
    """The best candidate of each (covariance type, number of components), in the order the
    cells first appear (:func:`~streamem.engine.em.best_by_cell`); an error when every candidate of
    a cell failed."""
    best = best_by_cell(runs, collapsed)
    failed = [run.failure for run in best.values() if run.failure is not None]
    if failed:  # every candidate of a cell failed
        raise ValueError(failed[0])
    return best


def run_em(
    data,
    states: list[FitState],
    *,
    model,
    tol: float,
    max_iter: int,
    on_iteration=None,
    accelerate=None,
    stopping: str = "change",
    passes_before: int | None = None,
    settled=None,
) -> list[FitState]:
    """EM for every candidate in ``states``, all in the same passes over ``data``, in place.

    Each pass evaluates one point per candidate that has not converged: the objective there
    and the M-step from it. With ``accelerate`` (``"squarem"`` or ``"quasi-newton"``) some
    of those points are extrapolated (:mod:`streamem.engine.accelerate`); a point whose objective is lower than the
    candidate's is rejected (its history record says ``accepted: False``) and the candidate
    goes on from the plain EM step. A candidate stops by ``stopping``: ``"change"`` when
    its objective changes by less than ``tol`` (scikit-learn's rule), ``"aitken"`` when
    the gain still to come is estimated below ``tol / 10``; the others go on, up to
    ``max_iter - max(n_iter)`` more iterations (states resumed from a checkpoint go on from
    their ``n_iter``; each state counts its own).
    ``on_iteration(n_iter, states)`` is called after each pass (checkpoints, progress).
    ``passes_before``: the passes made before ``data`` counted any (a resumed fit's before its
    checkpoint; default: the states' ``n_passes``, right for a first call on ``data``); a
    state's ``n_passes`` is that plus ``data.passes``. ``settled(states)``, after each
    pass: the states whose outcome is decided (em-EM's starts that can no longer be
    chosen), which stop there unconverged. Returns ``states``.
    """
    check_model(model)
    active = [state for state in states if not state.converged]
    for state in states:
        if not state.means_history:
            state.means_history.append(state.params.means)
        if accelerate is None:
            state.cycle, state.trial = None, None
        elif state.cycle is None or state.cycle.method != accelerate:  # a warm start may change the method
            state.cycle, state.trial = Cycle(accelerate), None
    done = max((state.n_iter for state in active), default=0)
    # passes of a resumed fit before this run, for the history's count
    earlier = max((state.n_passes for state in states), default=0) if passes_before is None else passes_before
    for n_iter in range(done + 1, max_iter + 1):
        if not active:
            break
        start = time.perf_counter()
        totals = model.estep(data, [state.params if state.trial is None else state.trial for state in active])
        seconds = time.perf_counter() - start
        for state, total in zip(active, totals):
            try:
                record = _step(state, total, model, tol, stopping)
            except ValueError as error:  # one candidate's failure: the others go on without it
                if len(states) == 1:
                    raise
                logger.warning("a candidate stopped at iteration %d: %s", state.n_iter + 1, error)
                state.failure, state.converged, state.objective, state.trial = str(error), True, -np.inf, None
                continue
            if state.move is not None:
                record.update(state.move)
                state.move = None
            # each state's own count: states that start from different iterations (moves of a
            # table's cells) run the same number of iterations
            state.n_iter, state.n_rows_ignored, state.n_passes = state.n_iter + 1, total.ignored, earlier + data.passes
            record.update(iteration=state.n_iter, seconds=seconds, passes=state.n_passes)
            if "reseeded" in record:
                logger.warning(
                    "iteration %d: re-seeded empty components %s at the worst-explained points",
                    state.n_iter,
                    record["reseeded"],
                )
            if "merged" in record:
                logger.info(
                    "iteration %d: merged components %s (each pair's second into its first)",
                    state.n_iter,
                    record["merged"],
                )
            state.history.append(record)
            state.means_history.append(state.params.means)
        active = [state for state in active if not state.converged]
        if settled is not None:
            stop = {id(state) for state in settled(states)}
            active = [state for state in active if id(state) not in stop]
        if on_iteration is not None:
            on_iteration(n_iter, states)
    return states


def _step(state: FitState, total, model, tol: float, stopping: str) -> dict:
    """One candidate's part of a pass: the objective at the point evaluated, its acceptance,
    the next point (the M-step's, or an extrapolated one) and whether the fit stops. The
    pass's history record, without its iteration, seconds and passes."""
    point = state.params if state.trial is None else state.trial
    record = model.objective(total, point)
    objective = record.get("objective", record["log_likelihood"])
    mapped, moves = model.mstep(total, point)
    cycle, chain = state.cycle, [*state.chain, objective][-3:]
    extrapolated = cycle is not None and cycle.phase == 2
    record.update(change=objective - state.objective, step=cycle.step if extrapolated else 1.0, accepted=True)
    if extrapolated:
        state.trial = None
        cycle.restart()
        if objective < state.objective:  # rejected: on from the EM step theta_2, already in params
            record["accepted"] = False
            cycle.step_max = max(1.0, cycle.step_max / STEP_FACTOR)
            state.chain = cycle.fallback_chain
            return record
        chain = [objective]  # accepted: the first point of the next cycle
    record.update(moves)
    if state.settle > 0:  # a step the stopping rule leaves out
        state.settle -= 1
        chain = []
    state.objective, state.params, state.chain = objective, mapped, chain
    if len(chain) == 3:
        state.rate = max(state.rate, objective_rate(chain))
    state.converged = converged(stopping, record["change"], chain, tol, state.rate)
    if moves:  # the EM steps start again from the moved parameters
        state.chain = []
    if cycle is None or state.converged:
        return record
    if moves:
        cycle.forget()
    elif cycle.phase == 0:  # the cycle's first point (an accepted extrapolated one too)
        cycle.base, cycle.first, cycle.phase = model.to_vector(point), model.to_vector(mapped), 1
    else:  # theta_2 = mapped
        second = model.to_vector(mapped)
        if cycle.method == "quasi-newton":
            cycle.secants = [*cycle.secants, (cycle.first - cycle.base, second - cycle.first)][-SECANTS:]
        warming_up = cycle.method == "quasi-newton" and len(cycle.secants) < SECANTS
        look = stopping == "aitken" and len(chain) < 3 and abs(record["change"]) < min(tol, cycle.look_below)
        if warming_up or look:
            # a plain step: near the end, so that the stopping rule sees three EM objectives
            # (Cycle.look_below), and while the quasi-Newton step has too few secants
            if look:
                cycle.look_below = abs(record["change"]) / LOOK_FACTOR
            cycle.base, cycle.first = cycle.first, second
        else:  # extrapolate from the cycle's three points
            step, trial = _extrapolate(model, cycle, second, mapped)
            cycle.restart()
            if trial is not None:
                cycle.phase, cycle.step, cycle.fallback_chain, state.trial = 2, step, chain[-2:], trial
    return record


def _extrapolate(model, cycle: Cycle, second: np.ndarray, like) -> tuple[float, MixtureParams | None]:
    """The extrapolated point from the cycle's :math:`\theta_0, \theta_1` and ``second``
    (:math:`\theta_2`) and its step length, pulled toward the EM step while it is not a
    valid model (SQUAREM's step halved toward 1, the quasi-Newton point's distance from
    :math:`\theta_2` halved); SQUAREM's step bound grows when reached. No point (None) when
    none beyond the EM step is valid."""
    if cycle.method == "squarem":
        step, vector = squarem_point(cycle.base, cycle.first, second, cycle.step_max)
        if step >= cycle.step_max:
            cycle.step_max *= STEP_FACTOR
    else:
        target = quasi_newton_point(cycle.first, cycle.secants)
        if target is None:
            return 1.0, None
        vector, em_length = target, float(np.linalg.norm(second - cycle.first))
    for _ in range(MAX_HALVINGS):
        if cycle.method == "squarem" and step <= 1.0:
            break
        trial = _valid(model, vector, like)
        if trial is not None:
            if cycle.method == "quasi-newton":
                step = float(np.linalg.norm(vector - cycle.first)) / em_length if em_length > 0 else 1.0
            return step, trial
        if cycle.method == "squarem":
            step, vector = squarem_point(cycle.base, cycle.first, second, cycle.step_max, 0.5 * (step + 1.0))
        else:
            vector = 0.5 * (vector + second)
    return 1.0, None


def _valid(model, vector: np.ndarray, like) -> MixtureParams | None:
    """The parameters of an extrapolated ``vector`` when they are a finite, admissible model."""
    if not np.isfinite(vector).all():
        return None
    with np.errstate(all="ignore"):
        trial = model.from_vector(vector, like)
    if all(np.isfinite(a).all() for a in trial.to_arrays().values()) and admissible(trial, model.reg_covar):
        return trial
    return None


def admissible(params, reg_covar: float) -> bool:
    """Whether extrapolated parameters lie where EM's own do: every covariance's eigenvalues
    at least ``reg_covar`` (the M-step adds it to each). Beyond, a likelihood can exceed
    anything EM reaches (a variance shrunk toward a few rows), and an accepted point would
    outscore the optimum."""
    if reg_covar <= 0:
        return True
    if params.covariance_type in ("diag", "spherical"):
        smallest = float(np.min(params.covariances))
    else:
        K, D = params.means.shape
        smallest = float(np.linalg.eigvalsh(params.covariance.full_covariances(params.covariances, K, D)).min())
    return smallest >= reg_covar * (1.0 - 1e-9)
