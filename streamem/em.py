"""The EM loop under every estimator: all candidates fitted in the same passes over the data.

:func:`run_em` is the functional core (as ``k_means()`` is under dask-ml's ``KMeans``): it
takes the data, the candidates' :class:`FitState`, and a *model* that knows one kind of
mixture, and runs EM until every candidate has converged or ``max_iter`` passes are done.
A model is any object with

- ``estep(data, params_list)``: the reduced statistics of every candidate from one pass
  over ``data`` (a :class:`~streamem.reduce.ChunkedData`);
- ``objective(stats, params)``: the history entries of an iteration from its statistics,
  ``{"log_likelihood": ...}`` and, where the objective differs (a prior, a variational
  bound), ``"objective"``;
- ``mstep(stats, params)``: the new parameters, and the components re-seeded.

:class:`GaussianModel` is the Gaussian mixture's, with its covariance type and optional
prior. A new kind of mixture is a new model (its statistics, its M-step) and an estimator
that passes it here.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import NamedTuple

import numpy as np

from .covariance import get_covariance
from .params import InitialParameters, MixtureParams, NoisyParams, m_step
from .prior import Prior
from .reduce import ChunkedData
from .stats import add_lists, chunk_stats
from .validation import check_total_weight

__all__ = ["FitState", "GaussianModel", "run_em"]

HISTORY_KEYS = ("iteration", "log_likelihood", "change", "seconds", "objective")

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
    """

    params: MixtureParams
    objective: float = -np.inf
    converged: bool = False
    n_iter: int = 0
    history: list = dataclasses.field(default_factory=list)
    means_history: list = dataclasses.field(default_factory=list)
    n_rows_ignored: int = 0

    def affine(self, offset, scale, objective_shift: float) -> FitState:
        """The same state for data ``offset + scale * x`` (:meth:`MixtureParams.affine`): a
        fit on standardised data in the data's units. The objective and the history's
        log-likelihoods per sample move by ``objective_shift`` (for complete rows,
        :math:`-\\sum_d \\log s_d`, the log of the map's Jacobian)."""
        shifted = ("log_likelihood", "objective")
        history = [{k: v + objective_shift if k in shifted else v for k, v in r.items()} for r in self.history]
        return dataclasses.replace(
            self, params=self.params.affine(offset, scale), objective=self.objective + objective_shift,
            history=history, means_history=[offset + scale * means for means in self.means_history],
        )  # fmt: skip

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
            "reseeded": {str(r["iteration"]): r["reseeded"] for r in self.history if "reseeded" in r},
        }
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict, meta: dict, prefix: str = "", params_class=MixtureParams) -> FitState:
        """The state back from :meth:`to_arrays`'s arrays and JSON (parameters of
        ``params_class``, whose ``from_arrays`` reads them)."""
        params = params_class.from_arrays(arrays, meta["covariance_type"], prefix)
        keys = [key for key in HISTORY_KEYS if f"{prefix}history_{key}" in arrays]
        reseeded = meta.get("reseeded", {})
        history = []
        for values in zip(*(arrays[f"{prefix}history_{key}"].tolist() for key in keys), strict=True):
            record = dict(zip(keys, values))
            record["iteration"] = int(record["iteration"])
            if str(record["iteration"]) in reseeded:
                record["reseeded"] = [int(k) for k in reseeded[str(record["iteration"])]]
            history.append(record)
        means_history = list(arrays.get(f"{prefix}means_history", params.means[None]))
        objective = -np.inf if meta["lower_bound"] is None else float(meta["lower_bound"])
        return cls(params, objective, bool(meta["converged"]), int(meta["n_iter"]), history, means_history,
                   int(meta.get("n_rows_ignored", 0)))  # fmt: skip


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianModel:
    """The Gaussian mixture for :func:`run_em`: the E-step of :func:`~streamem.stats.chunk_stats`
    about ``centre`` (the data's), the M-step of :func:`~streamem.params.m_step` (each
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
        totals = data.map_reduce(chunk_stats, params_list, self.centre, self.missing, combine=add_lists,
                                 with_labels=True)  # fmt: skip
        for total in totals:
            check_total_weight(total.weight)
        return totals

    def objective(self, stats, params: MixtureParams) -> dict:
        record = {"log_likelihood": stats.mean_loglik}
        if self.prior is not None:
            record["objective"] = stats.mean_loglik + self.prior.log_density(params) / stats.weight
        return record

    def mstep(self, stats, params: MixtureParams) -> tuple[MixtureParams, list[int]]:
        new, reseeded = m_step(stats, params.covariance_type, self.reg_covar, self.prior, self.freeze, params)
        if params.has_noise:  # the noise component's weight, the Gaussians' the rest
            noise_weight = stats.noise / (stats.nk.sum() + stats.noise)
            if "weights" in self.freeze:
                noise_weight = params.noise_weight
            else:
                new = dataclasses.replace(new, weights=new.weights * (1.0 - noise_weight))
            new = NoisyParams.of(new, noise_weight, params.box)
        return new, reseeded


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

    def estep(self, data: ChunkedData, params_list: list[MixtureParams]) -> list:
        mean, scale = self.scaling.mean, self.scaling.scale
        raw = dataclasses.replace(self.model, centre=mean + scale * self.model.centre)
        totals = raw.estep(data, [params.affine(mean, scale) for params in params_list])
        return [total.affine(-mean / scale, 1.0 / scale, self.scaling.loglik_shift) for total in totals]

    def objective(self, stats, params: MixtureParams) -> dict:
        return self.model.objective(stats, params)

    def mstep(self, stats, params: MixtureParams) -> tuple[MixtureParams, list[int]]:
        return self.model.mstep(stats, params)


def run_em(data, states: list[FitState], *, model, tol: float, max_iter: int, on_iteration=None) -> list[FitState]:
    """EM for every candidate in ``states``, all in the same passes over ``data``, in place.

    A candidate stops when its objective changes by less than ``tol``; the others go on,
    up to iteration ``max_iter`` (states resumed from a checkpoint go on from their
    ``n_iter``). ``on_iteration(n_iter, states)`` is called after each pass (checkpoints,
    progress). Returns ``states``.
    """
    active = [state for state in states if not state.converged]
    for state in states:
        if not state.means_history:
            state.means_history.append(state.params.means)
    done = max((state.n_iter for state in active), default=0)
    for n_iter in range(done + 1, max_iter + 1):
        if not active:
            break
        start = time.perf_counter()
        totals = model.estep(data, [state.params for state in active])
        seconds = time.perf_counter() - start
        for state, total in zip(active, totals):
            record = {"iteration": n_iter, **model.objective(total, state.params)}
            objective = record.get("objective", record["log_likelihood"])
            state.params, reseeded = model.mstep(total, state.params)
            record["change"], record["seconds"] = objective - state.objective, seconds
            state.objective, state.n_iter, state.n_rows_ignored = objective, n_iter, total.ignored
            if reseeded:
                record["reseeded"] = reseeded
                logger.warning("iteration %d: re-seeded empty components %s at the worst-explained points",
                               n_iter, reseeded)  # fmt: skip
            state.history.append(record)
            state.means_history.append(state.params.means)
            state.converged = abs(record["change"]) < tol
        active = [state for state in active if not state.converged]
        if on_iteration is not None:
            on_iteration(n_iter, states)
    return states
