r"""``StudentTMixture``: mixtures of multivariate t distributions, robust to outliers.

A t component is a Gaussian whose precision each row scales by a latent :math:`u`, Gamma
distributed with :math:`\nu / 2` for shape and rate; rows far from a component get a small
:math:`u` and pull its mean and covariance little. EM (Peel & McLachlan 2000) takes, per row
and component, the responsibility :math:`r_{nk}` under the t densities

.. math::
    \log t(x \mid \mu, \Sigma, \nu) = \log\Gamma\big(\tfrac{\nu + D}{2}\big) - \log\Gamma\big(\tfrac{\nu}{2}\big)
        - \tfrac{D}{2}\log(\nu\pi) + \log|L| - \tfrac{\nu + D}{2}\log\big(1 + \delta/\nu\big),

with :math:`\delta` the Mahalanobis distance, and the expected scale
:math:`u_{nk} = (\nu_k + D) / (\nu_k + \delta_{nk})`. One pass sums, per component,
:math:`\sum r`, :math:`\sum r u`, :math:`\sum r u (x - c)` and :math:`\sum r u (x - c)(x - c)^T`
about a centre :math:`c` near the mean, and :math:`\sum r (\log u - u)`; the M-step gives

.. math::
    \mu_k = c_k + \frac{\sum r u (x - c_k)}{\sum r u}, \qquad
    \Sigma_k = \frac{\sum r u (x - \mu_k)(x - \mu_k)^T}{\sum r} + \lambda I,

and, unless fixed, each :math:`\nu_k` as the root of
:math:`-\psi(\nu/2) + \log(\nu/2) + 1 + \frac{\sum r (\log u - u)}{\sum r}
+ \psi(\frac{\nu_k' + D}{2}) - \log(\frac{\nu_k' + D}{2})`, :math:`\nu_k'` the current value
(scipy's ``brentq``). :class:`StudentTModel` is the model :func:`~streamem.engine.em.run_em` runs;
``partial_fit`` mixes the statistics of mini-batches as the online estimators do.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Real

import numpy as np
from scipy.optimize import brentq
from scipy.special import digamma, gammaln
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from streamem.core.covariance import get_covariance
from streamem.core.kernels import LogProbKernel, responsibilities_inplace
from streamem.core.moments import Moments
from streamem.core.mstep import row_weight
from streamem.core.params import EPS, MixtureParams
from streamem.core.stats import Accumulator, add_lists, block_rows, iter_blocks, totals
from streamem.core.validation import check_finite, check_total_weight
from streamem.engine.em import FitState
from streamem.engine.passes import ChunkedData
from streamem.models.batch import BatchMixture
from streamem.models.online import Stepwise, warm_up_rows

__all__ = ["StudentTMixture", "StudentTModel", "TParams", "TStats", "t_chunk_stats", "t_m_step"]

#: the degrees of freedom an estimate is kept within (the upper bound: Gaussian in all but name)
DOF_RANGE = (1e-2, 1e4)


@dataclasses.dataclass(frozen=True, eq=False)
class TParams(MixtureParams):
    """A t mixture's parameters: :class:`~streamem.core.params.MixtureParams` (the scale matrices
    as ``covariances``) and the degrees of freedom, array of shape (n_components,)."""

    degrees_of_freedom: np.ndarray

    @classmethod
    def of(cls, params: MixtureParams, degrees_of_freedom) -> TParams:
        dof = np.broadcast_to(np.asarray(degrees_of_freedom, dtype=np.float64), (params.n_components,)).copy()
        return cls(
            params.weights, params.means, params.covariances, params.precisions_chol, params.covariance_type, dof
        )

    def kernel(self, dtype, centre=None) -> TKernel:
        return TKernel(self, centre)

    def log_density_of_mahalanobis(self, distances: np.ndarray, log_det: np.ndarray) -> np.ndarray:
        nu, D = self.degrees_of_freedom[:, None], self.n_features
        constants = gammaln(0.5 * (nu + D)) - gammaln(0.5 * nu) - 0.5 * D * np.log(nu * np.pi) + log_det[:, None]
        return constants - 0.5 * (nu + D) * np.log1p(distances / nu)

    def with_components(self, weights, means, covariances, origin) -> TParams:
        gaussian = MixtureParams.from_covariances(weights, means, covariances, self.covariance_type)
        return TParams.of(gaussian, self.degrees_of_freedom[np.asarray(origin)])

    def to_vector(self) -> np.ndarray:
        """:meth:`MixtureParams.to_vector` and the logs of the degrees of freedom."""
        return np.concatenate([super().to_vector(), np.log(self.degrees_of_freedom)])

    def from_vector(self, vector: np.ndarray) -> TParams:
        K = self.n_components
        dof = np.clip(np.exp(vector[-K:]), *DOF_RANGE)
        return TParams.of(MixtureParams.from_vector(self, vector[:-K]), dof)

    def to_arrays(self, prefix: str = "") -> dict:
        return {**super().to_arrays(prefix), f"{prefix}degrees_of_freedom": self.degrees_of_freedom}

    @classmethod
    def from_arrays(cls, arrays: dict, covariance_type: str, prefix: str = "") -> TParams:
        params = MixtureParams.from_arrays(arrays, covariance_type, prefix)
        dof = np.asarray(arrays[f"{prefix}degrees_of_freedom"], dtype=np.float64)
        if dof.shape != (params.n_components,) or not (dof > 0).all():
            raise ValueError(f"{prefix}degrees_of_freedom must be {params.n_components} positive values")
        return cls.of(params, dof)


class TKernel:
    r"""Weighted t log-densities of blocks of rows, from the Mahalanobis distances the shared
    Gaussian kernel gives (:class:`~streamem.core.kernels.LogProbKernel` with
    ``distances=True``: the components grouped about centres near them, one GEMM a group,
    in float64).

    .. math::
        \log w_k + \log\Gamma\!\left(\tfrac{\nu_k + D}{2}\right) - \log\Gamma\!\left(\tfrac{\nu_k}{2}\right)
        - \tfrac D2 \log(\nu_k \pi) + \log|L_k| - \tfrac{\nu_k + D}{2} \log\!\left(1 + \tfrac{d_k^2}{\nu_k}\right)

    The arrays ending in ``_ordered`` are in the Gaussian kernel's order of components
    (:attr:`~streamem.core.kernels.LogProbKernel.order`), as its evaluations are.
    """

    def __init__(self, params: TParams, centre=None):
        self.gaussian = LogProbKernel(params, np.float64, centre, distances=True)
        K, D = params.means.shape
        with np.errstate(divide="ignore"):
            log_weights = np.log(params.weights)
        log_det = params.covariance.log_det_chol(params.precisions_chol, D) * np.ones(K)
        # the log-density at distance 0: its normalising constant
        constants = log_weights + params.log_density_of_mahalanobis(np.zeros((K, 1)), log_det)[:, 0]
        order = self.gaussian.order
        self.constants_ordered = constants[order][:, None]
        self.nu_ordered = params.degrees_of_freedom[order][:, None]
        self.n_features = D
        self.block_width = self.gaussian.block_width + 3 * K

    def distances_ordered(self, evaluation) -> np.ndarray:
        """The squared Mahalanobis distances of an evaluation of the Gaussian kernel (rounding
        cannot make them negative)."""
        return np.maximum(-2.0 * evaluation.weighted, 0.0)

    def weighted_ordered(self, distances: np.ndarray) -> np.ndarray:
        nu = self.nu_ordered
        return self.constants_ordered - 0.5 * (nu + self.n_features) * np.log1p(distances / nu)

    def log_prob(self, block: np.ndarray) -> np.ndarray:
        """The weighted log-densities of a block of rows, array of shape (n_components,
        n_rows) in the components' order."""
        evaluation = self.gaussian.evaluate(np.asarray(block, dtype=np.float64))
        weighted = self.weighted_ordered(self.distances_ordered(evaluation))
        out = np.empty_like(weighted)
        out[self.gaussian.order] = weighted
        return out


@dataclasses.dataclass(frozen=True, eq=False)
class TStats(Moments):
    """A pass's statistics of a t mixture, each component's moments about ``shift[k]``.

    Attributes
    ----------
    nk : ndarray of shape (n_components,)
        :math:`\\sum w r`.
    su : ndarray of shape (n_components,)
        :math:`\\sum w r u`.
    s1 : ndarray of shape (n_components, n_features)
        :math:`\\sum w r u (x - c_k)`.
    s2 : ndarray
        :math:`\\sum w r u (x - c_k)(x - c_k)^T`, in the covariance type's statistic shape.
    log_u : ndarray of shape (n_components,)
        :math:`\\sum w r (\\log u - u)`, for the degrees of freedom.
    loglik, weight, count, shift, covariance_type
        As in :class:`~streamem.core.stats.SufficientStats`.
    """

    nk: np.ndarray
    su: np.ndarray
    s1: np.ndarray
    s2: np.ndarray
    log_u: np.ndarray
    loglik: float
    weight: float
    count: int
    shift: np.ndarray
    covariance_type: str
    ignored: int = 0  # rows left out (none: the t mixture takes complete rows)

    summed = ("nk", "su", "s1", "s2", "log_u", "loglik", "weight")
    counted = ("count", "ignored")
    moment_weight = "su"


def t_kernels(params_list: list[TParams]) -> dict:
    """The keywords that make :func:`t_chunk_stats` reuse its kernels across the chunks of a
    pass (its ``prepare`` for :meth:`~streamem.engine.passes.ChunkedData.map_reduce`)."""
    return {"kernels": [TKernel(params) for params in params_list]}


def t_chunk_stats(X, sample_weight, params_list: list[TParams], kernels: list | None = None) -> list[TStats]:
    r"""The E-step of one chunk for every candidate in ``params_list``: responsibilities under
    the t densities, the expected scales :math:`u = (\nu + D) / (\nu + d^2)`, and their
    moments about the centres of the shared kernel's groups, accumulated as the Gaussian
    E-step accumulates its own (:class:`~streamem.core.stats.Accumulator`, fed ``r u``);
    ``kernels``: the candidates' :class:`TKernel`, made earlier (:func:`t_kernels`)."""
    check_finite(X, sample_weight)
    weight, count = totals(X, sample_weight)
    kernels = t_kernels(params_list)["kernels"] if kernels is None else kernels
    moments = [
        Accumulator(p.n_components, p.n_features, p.covariance_type, k.gaussian.shift)
        for p, k in zip(params_list, kernels)
    ]
    nk = [np.zeros(p.n_components) for p in params_list]
    log_u = [np.zeros(p.n_components) for p in params_list]
    for block, w in iter_blocks(X, sample_weight, block_rows(kernels)):
        block = np.asarray(block, dtype=np.float64)
        cache = {}  # features shared by the candidates' groups alike
        for kernel, acc, nk_ordered, log_u_ordered in zip(kernels, moments, nk, log_u):
            evaluation = kernel.gaussian.evaluate(block, cache)
            distances = kernel.distances_ordered(evaluation)
            resp = kernel.weighted_ordered(distances)
            log_lik = responsibilities_inplace(resp)
            if w is not None:
                resp *= w
            acc.add_rows(log_lik, w, block, track_worst=False)
            u = (kernel.nu_ordered + kernel.n_features) / (kernel.nu_ordered + distances)
            nk_ordered += resp.sum(axis=1)
            log_u_ordered += np.einsum("kn,kn->k", resp, np.log(u) - u)
            resp *= u
            for index, rows, features in evaluation.parts:
                components = kernel.gaussian.groups[index].components
                acc.add_moments(components, kernel.gaussian.group_values(resp, index, rows), features)
    out = []
    for params, kernel, acc, nk_ordered, log_u_ordered in zip(params_list, kernels, moments, nk, log_u):
        order = kernel.gaussian.order
        in_order = np.empty_like(nk_ordered), np.empty_like(log_u_ordered)
        in_order[0][order], in_order[1][order] = nk_ordered, log_u_ordered
        out.append(
            TStats(
                in_order[0],
                acc.nk,
                acc.s1,
                acc.s2,
                in_order[1],
                acc.loglik,
                weight,
                count,
                kernel.gaussian.shift.copy(),
                params.covariance_type,
            )
        )
    return out


def _degrees_of_freedom(nk: float, log_u: float, nu: float, n_features: int) -> float:
    """The root in :data:`DOF_RANGE` of the degrees of freedom's equation, or its bound."""
    constant = 1.0 + log_u / nk + digamma(0.5 * (nu + n_features)) - math.log(0.5 * (nu + n_features))
    equation = lambda v: -digamma(0.5 * v) + math.log(0.5 * v) + constant  # noqa: E731  decreasing in v
    low, high = DOF_RANGE
    if equation(high) >= 0:
        return high
    if equation(low) <= 0:
        return low
    return float(brentq(equation, low, high, xtol=1e-12, rtol=1e-14))


def t_m_step(stats: TStats, covariance_type: str, reg_covar: float, current: TParams, fixed_dof=None) -> TParams:
    """New parameters from a pass's statistics; the degrees of freedom stay ``fixed_dof``
    when given, else each is re-estimated."""
    covariance = get_covariance(covariance_type)
    floor = 10 * EPS * row_weight(stats)
    nk = stats.nk + floor
    su = stats.su + floor
    weights = nk / nk.sum()
    means = stats.shift + stats.s1 / su[:, None]
    # sum r u (x - mu)(x - mu)^T / sum r: the moments about c less s1 s1^T / su, over nk
    scaled = stats.s1 / (np.sqrt(su) * np.sqrt(nk))[:, None]  # su * nk overflows for weights near 1e300
    covariances = covariance.covariances(nk, scaled, stats.s2, reg_covar)
    if fixed_dof is not None:
        dof = current.degrees_of_freedom
    else:
        D = stats.s1.shape[1]
        dof = np.array(
            [
                _degrees_of_freedom(n, lu, v, D) if n > 1e-8 else v
                for n, lu, v in zip(nk, stats.log_u, current.degrees_of_freedom)
            ]
        )
    return TParams.of(MixtureParams.from_covariances(weights, means, covariances, covariance_type), dof)


@dataclasses.dataclass(frozen=True, eq=False)
class StudentTModel:
    """The t mixture for :func:`~streamem.engine.em.run_em` (its log-likelihood is the objective)."""

    covariance_type: str
    reg_covar: float
    fixed_dof: np.ndarray | None = None

    def estep(self, data: ChunkedData, params_list: list[TParams]) -> list[TStats]:
        totals_ = data.map_reduce(t_chunk_stats, params_list, combine=add_lists, prepare=t_kernels, stack=True)
        for total in totals_:
            check_total_weight(total.weight)
        return totals_

    def objective(self, stats: TStats, params: TParams) -> dict:
        return {"log_likelihood": stats.loglik / stats.weight}

    def mstep(self, stats: TStats, params: TParams) -> tuple[TParams, dict]:
        return t_m_step(stats, params.covariance_type, self.reg_covar, params, self.fixed_dof), {}

    def to_vector(self, params: TParams) -> np.ndarray:
        return params.to_vector()

    def from_vector(self, vector: np.ndarray, like: TParams) -> TParams:
        """Parameters from an extrapolated ``vector``; fixed degrees of freedom stay ``like``'s."""
        new = like.from_vector(vector)
        return new if self.fixed_dof is None else dataclasses.replace(new, degrees_of_freedom=like.degrees_of_freedom)


class StudentTMixture(Stepwise, BatchMixture):
    """Mixture of multivariate t distributions, fitted by EM over the chunks of a dask array.

    :class:`~streamem.GaussianMixture`'s engine and parameters (one pass per iteration, a
    tree reduction, the four covariance types, ``n_init`` candidates in the same passes,
    sample weights, checkpoints, save and :func:`streamem.load`), with components whose
    heavy tails leave outliers little weight (Peel & McLachlan 2000). ``partial_fit`` fits
    by stepwise EM, with :class:`~streamem.OnlineGaussianMixture`'s step sizes.

    Parameters
    ----------
    n_components, covariance_type, tol, reg_covar, max_iter, n_init, init_iter, moves
        As in :class:`~streamem.GaussianMixture` (a split-and-merge move's new components
        take the degrees of freedom of the components they come from; a swap's new
        component keeps those of the component it replaces).
    n_starts : int, default=1
        As in :class:`~streamem.GaussianMixture`, whose default is 10: each start costs a t
        E-step, and the trimmed start is made for data with outliers.
    init_params : str, default="auto"
        As in :class:`~streamem.GaussianMixture`; ``"auto"`` is ``"trimmed-k-means||"``, a
        start that outliers cannot capture. The start is the Gaussian one, each component's
        scale its start's covariance.
    degrees_of_freedom : float > 0 or array-like of shape (n_components,), default=None
        The degrees of freedom, held fixed: one for every component, or each component's;
        None estimates each component's (from ``degrees_of_freedom_init``), in [0.01, 1e4].
    degrees_of_freedom_init : float > 0, default=10.0
    weights_init, means_init, precisions_init, random_state, warm_start, verbose, verbose_interval
        As in :class:`~streamem.GaussianMixture` (``precisions_init``: the inverse scale matrices).
    step_exponent, step_offset, forgetting, warm_up
        ``partial_fit``'s, as in :class:`~streamem.OnlineGaussianMixture`.
    checkpoint, scheduler_address, persist, persist_fraction, timeout
        As in :class:`~streamem.GaussianMixture`.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : ndarray
        ``covariances_`` are the components' scale matrices (a t component's covariance is
        :math:`\\nu / (\\nu - 2)` times its scale, for :math:`\\nu > 2`).
    degrees_of_freedom_ : ndarray of shape (n_components,)
    converged_, n_iter_, lower_bound_, lower_bounds_, history_, means_history_, n_features_in_
        As in :class:`~streamem.GaussianMixture` (the mean log-likelihood of the t mixture).

    Examples
    --------
    >>> import numpy as np, streamem
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (500, 2)), rng.normal(5, 1, (500, 2)), rng.uniform(-50, 50, (50, 2))])
    >>> tm = streamem.StudentTMixture(2, random_state=0).fit(X)
    >>> sorted(np.round(tm.means_[:, 0]).astype(int).tolist())
    [-5, 5]
    """

    model_name = "t"
    model_class = StudentTModel

    _parameter_constraints: dict = {
        **BatchMixture._batch_constraints,
        "degrees_of_freedom": [Interval(Real, 0.0, None, closed="neither"), "array-like", None],
        "degrees_of_freedom_init": [Interval(Real, 0.0, None, closed="neither")],
        **Stepwise._step_constraints,
    }
    _params_class = TParams

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        n_starts=1,
        init_iter="auto",
        init_params="auto",
        degrees_of_freedom=None,
        degrees_of_freedom_init=10.0,
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        step_exponent=0.6,
        step_offset=1.0,
        forgetting=None,
        warm_up=None,
        checkpoint=None,
        scheduler_address=None,
        persist=False,
        persist_fraction=0.5,
        timeout=None,
        accelerate="squarem",
        stopping="auto",
        moves="auto",
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.n_starts = n_starts
        self.init_iter = init_iter
        self.init_params = init_params
        self.degrees_of_freedom = degrees_of_freedom
        self.degrees_of_freedom_init = degrees_of_freedom_init
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.step_exponent = step_exponent
        self.step_offset = step_offset
        self.forgetting = forgetting
        self.warm_up = warm_up
        self.checkpoint = checkpoint
        self.scheduler_address = scheduler_address
        self.persist = persist
        self.persist_fraction = persist_fraction
        self.timeout = timeout
        self.accelerate = accelerate
        self.stopping = stopping
        self.moves = moves

    _expects_outliers = True  # init_params="auto" is "trimmed-k-means||"

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, sample_weight=None, storage_options=None, feature_dim=None):
        """Fit the t mixture by EM, one pass over the chunks of X per iteration (y is ignored;
        X and ``storage_options`` as :meth:`GaussianMixture.fit` takes them)."""
        self._end_stream()
        return super().fit(X, None, sample_weight, storage_options, feature_dim)

    def _fixed_dof(self) -> np.ndarray | None:
        """``degrees_of_freedom`` as an array of shape (n_components,), checked, or None."""
        if self.degrees_of_freedom is None:
            return None
        dof = np.asarray(self.degrees_of_freedom, dtype=np.float64)
        if dof.ndim > 1 or dof.ndim == 1 and dof.shape != (self.n_components,):
            raise ValueError(
                f"expected degrees_of_freedom of shape ({self.n_components},) or a number, got shape {dof.shape}"
            )
        if not (np.isfinite(dof) & (dof > 0)).all():
            raise ValueError(f"expected degrees_of_freedom > 0, got {self.degrees_of_freedom!r}")
        return np.broadcast_to(dof, (self.n_components,)).copy()

    def _check_values(self) -> None:
        self._fixed_dof()

    def _model(self, job, shift: np.ndarray) -> StudentTModel:
        return self.model_class(self.covariance_type, self.reg_covar, self._fixed_dof())

    def _initial_runs(self, job):
        runs, shift = super()._initial_runs(job)
        fixed = self._fixed_dof()
        start = fixed if fixed is not None else self.degrees_of_freedom_init
        for run in runs:
            if not isinstance(run.params, TParams):  # a warm start is one already
                run.params = TParams.of(run.params, start)
        return runs, shift

    # ----------------------------------------------------------- partial_fit

    def _initialise(self, batches) -> None:
        """EM on the warm-up rows (``n_init`` candidates), the statistics of those rows as
        the running ones."""
        data, weights = warm_up_rows(batches)
        params, shift, _ = self._fit_rows(data, weights)
        (stats,) = t_chunk_stats(data, weights, [params])
        self._stats, self._iterate, self._shift = stats.normalized(), params, shift
        self._set_params(params)
        self.lower_bounds_ = []

    def _step(self, X, sample_weight) -> None:
        """One stepwise-EM update; nothing changes unless it succeeds."""
        (batch,) = t_chunk_stats(X, sample_weight, [self._iterate])
        check_total_weight(batch.weight)
        t, eta = self._next_step(batch)
        stats = self._stats.step(batch, eta)
        params = t_m_step(stats, self.covariance_type, self.reg_covar, self._iterate, self._fixed_dof())
        self._stats, self._iterate = stats, params
        self.n_batches_ = t
        self.n_samples_seen_ += int(batch.count)
        self.lower_bound_ = float(stats.loglik)
        self._set_params(params)

    # ------------------------------------------------------------- attributes

    def _set_params(self, params: TParams) -> None:
        super()._set_params(params)
        self.degrees_of_freedom_ = params.degrees_of_freedom

    def fitted_params(self) -> TParams:
        check_is_fitted(self, "precisions_cholesky_")
        return TParams.of(super().fitted_params(), self.degrees_of_freedom_)

    def _n_parameters(self) -> int:
        extra = 0 if self._fixed_dof() is not None else self.n_components
        return self.fitted_params().n_parameters() + extra

    def sample(self, n_samples=1):
        """Rows drawn from the fitted t mixture and their components: Gaussian draws scaled
        by :math:`\\sqrt{\\nu / \\chi^2_\\nu}`."""
        X, labels = super().sample(n_samples)
        rng = check_random_state(self.random_state)
        params = self.fitted_params()
        nu = params.degrees_of_freedom[labels]
        scale = np.sqrt(nu / rng.chisquare(nu))
        return params.means[labels] + (X - params.means[labels]) * scale[:, None], labels

    # ---------------------------------------------------------- persistence

    def state(self) -> tuple[dict, dict]:
        arrays, attrs = super().state()
        if getattr(self, "_stats", None) is not None:  # fitted by partial_fit: continue exactly after loading
            s = self._stats
            arrays.update(self._iterate.to_arrays("iterate_"))
            arrays.update(
                {
                    "stats_nk": s.nk,
                    "stats_su": s.su,
                    "stats_s1": s.s1,
                    "stats_s2": s.s2,
                    "stats_log_u": s.log_u,
                    "stats_loglik": np.array([s.loglik]),
                    "stats_shift": s.shift,
                    "shift": self._shift,
                }
            )
            attrs["fitted"].update(
                n_batches=int(self.n_batches_),
                n_samples_seen=int(self.n_samples_seen_),
                step_origin=int(getattr(self, "_step_origin", 0)),
            )
        elif getattr(self, "_buffer", None):
            raise ValueError("the model is still warming up: no parameters to save yet")
        return arrays, attrs

    def _restore(self, state: FitState, arrays: dict, attrs: dict) -> None:
        super()._restore(state, arrays, attrs)
        fitted = attrs["fitted"]
        if "n_batches" in fitted:
            self._iterate = TParams.from_arrays(arrays, self.covariance_type, "iterate_")
            self._stats = TStats(
                arrays["stats_nk"],
                arrays["stats_su"],
                arrays["stats_s1"],
                arrays["stats_s2"],
                arrays["stats_log_u"],
                float(arrays["stats_loglik"][0]),
                1.0,
                1,
                arrays["stats_shift"],
                self.covariance_type,
            )
            self._shift = arrays["shift"]
            self.n_batches_ = int(fitted["n_batches"])
            self.n_samples_seen_ = int(fitted["n_samples_seen"])
            self._step_origin = int(fitted.get("step_origin", 0))
            self._buffer = []

    def to_sklearn(self):
        """Not available: scikit-learn has no t mixture."""
        raise TypeError("a StudentTMixture has no scikit-learn equivalent (nor ONNX export)")
