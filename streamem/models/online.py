"""``OnlineGaussianMixture``: stepwise (online) EM over mini-batches, for streams that never end.

The same E-step statistics as the batch estimator (:func:`~streamem.core.stats.chunk_stats`),
combined differently: each mini-batch's statistics, per unit of weight, are mixed into
running statistics with a decreasing step, and an M-step follows every batch
(Cappé & Moulines 2009; Liang & Klein 2009):

.. math::
    s_t = (1 - \\eta_t)\\, s_{t-1} + \\eta_t\\, \\hat s(\\text{batch}_t), \\qquad
    \\eta_t = \\max\\big((t + t_0)^{-\\kappa},\\ \\eta_{\\min}\\big), \\qquad
    \\theta_t = \\text{M-step}(s_t)

with :math:`\\kappa` = ``step_exponent`` in (0.5, 1], :math:`t_0` = ``step_offset`` and
:math:`\\eta_{\\min}` = ``forgetting`` (a constant floor that keeps tracking a drifting stream).

For a finite array, ``fit`` makes passes of mini-batches; with ``algorithm="incremental"``
it runs incremental EM instead (Neal & Hinton 1998): each batch's latest statistics are
kept, swapped into the totals when the batch is revisited, and an M-step follows every batch.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from numbers import Integral, Real

import dask.array as da
import numpy as np
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

from streamem.core.mstep import m_step
from streamem.core.params import MixtureParams
from streamem.core.stats import SufficientStats, chunk_stats
from streamem.core.validation import check_finite, check_sample_weight_shape, check_total_weight
from streamem.data.checks import relative_weights
from streamem.engine.em import GaussianModel, run_em
from streamem.engine.passes import ChunkedData, from_numpy, row_batches
from streamem.engine.rows import blas_per_task
from streamem.engine.starts import initial_states
from streamem.models.base import MixtureBase

__all__ = ["OnlineGaussianMixture", "Stepwise", "warm_up_rows"]

logger = logging.getLogger(__name__)

WARM_UP_ITER = 100  # EM iterations on the warm-up rows
WARM_UP_ROWS_PER_COMPONENT = 250


def _average(mean: MixtureParams, new: MixtureParams, n: int) -> MixtureParams:
    """Running (Polyak–Ruppert) average of the parameters over ``n`` iterates, ``new`` the last."""
    if n == 1:
        return new
    weights = mean.weights + (new.weights - mean.weights) / n
    means = mean.means + (new.means - mean.means) / n
    covariances = mean.covariances + (new.covariances - mean.covariances) / n
    return MixtureParams.from_covariances(weights, means, covariances, new.covariance_type)


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def _one_blas_thread():
    """One BLAS thread for the small products of a mini-batch: waking other BLAS threads
    for them costs more than they save (several times slower with two)."""
    return _blas().limit(limits=1, user_api="blas")


def _reseeded_stats(stats: SufficientStats, params: MixtureParams, reseeded, reg_covar) -> SufficientStats:
    """Running statistics in which re-seeded components hold the statistics their new
    parameters imply, so that the next M-step keeps them instead of emptying them again."""
    implied = SufficientStats.implied(params, reg_covar)  # about the new means
    nk, s1, s2, shift = stats.nk.copy(), stats.s1.copy(), stats.s2.copy(), stats.shift.copy()
    nk[reseeded], s1[reseeded], shift[reseeded] = implied.nk[reseeded], implied.s1[reseeded], implied.shift[reseeded]
    if params.covariance.per_component:
        s2[reseeded] = implied.s2[reseeded]
    return dataclasses.replace(stats, nk=nk, s1=s1, s2=s2, shift=shift)


def warm_up_rows(batches) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows of the buffered ``(X, sample_weight)`` batches as one float64 array, and their weights."""
    data = np.concatenate([x.astype(np.float64, copy=False) for x, _ in batches])
    weights = None
    if any(w is not None for _, w in batches):
        weights = np.concatenate([np.ones(len(x)) if w is None else w for x, w in batches])
    return data, weights


class Stepwise:
    """``partial_fit`` by stepwise updates, for the online estimators: batches checked,
    the first rows buffered until they initialise the model (``warm_up``), the step of
    batch :math:`t`, and the running statistics saved and restored with the model.
    A subclass gives ``_initialise(batches)`` (from the buffered ``(X, sample_weight)``)
    and ``_step(X, sample_weight)`` (one update, nothing changed unless it succeeds)."""

    _step_constraints: dict = {
        "step_exponent": [Interval(Real, 0.5, 1.0, closed="right")],
        "step_offset": [Interval(Real, 0.0, None, closed="left")],
        "forgetting": [Interval(Real, 0.0, 1.0, closed="right"), None],
        "warm_up": [Interval(Integral, 1, None, closed="left"), None],
    }

    def _check_batch(self, X, sample_weight, new_stream: bool = False):
        """One batch as a 2-D float array and its weights, or a ValueError naming the problem
        (the first batch of a new stream sets the width of the rest)."""
        if X is None:
            raise ValueError("expected a batch of shape (n_rows, n_features), got None")
        if isinstance(X, da.Array):
            X = X.compute()
        X = np.asarray(X) if not hasattr(X, "__array__") else X
        if getattr(X, "ndim", 2) == 2 and 0 in getattr(X, "shape", ()):
            raise ValueError(f"expected a non-empty batch, got an empty one of shape {X.shape}")
        with np.errstate(invalid="ignore", over="ignore"):  # the finiteness check sums the values
            X = check_array(
                X,
                dtype=[np.float64, np.float32],
                ensure_min_samples=1,
                ensure_all_finite="allow-nan" if self.missing == "marginalize" else True,
            )
        n_features = None if new_stream else getattr(self, "n_features_in_", None)
        if n_features is not None and X.shape[1] != n_features:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {n_features} features as "
                "input: every batch of a stream has the same width"
            )
        if len(X) < self.n_components:
            raise ValueError(f"expected batches of at least n_components={self.n_components} rows, got {len(X)} rows")
        if sample_weight is not None:  # fit skips a mini-batch of weight 0; partial_fit refuses one
            check_sample_weight_shape(sample_weight, len(X))
            sample_weight = np.broadcast_to(np.asarray(sample_weight, dtype=np.float64), (len(X),)).copy()
            check_finite(X, sample_weight, allow_nan=True)
        return X, sample_weight

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the model with one mini-batch; return self.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features), n_rows >= n_components
        y : ignored
        sample_weight : array-like of shape (n_rows,), default=None

        Returns
        -------
        self
        """
        new_stream = not hasattr(self, "n_batches_")
        if new_stream:
            self._validate_params()
            self._check_values()
        X, sample_weight = self._check_batch(X, sample_weight, new_stream)  # a bad batch leaves the model as it was
        if sample_weight is not None:
            check_total_weight(float(sample_weight.sum()))  # a batch that carries nothing is a mistake
        if new_stream:
            self._reset()
        with _one_blas_thread():
            if self._stats is None:
                self._warm(X, sample_weight)
            else:
                self._step(X, sample_weight)
        return self

    def _reset(self) -> None:
        for name in [*vars(self)]:
            if name.endswith("_") and not name.startswith("__"):
                delattr(self, name)
        self.n_batches_ = 0
        self.n_samples_seen_ = 0
        self._stats = None
        self._shift = None
        self._iterate = None
        self._buffer = []
        self._step_origin = 0
        self.history_ = []
        self.n_iter_ = 0
        self.n_passes_ = 0  # passes over a data set by fit; a stream's batches are seen once
        self.converged_ = False

    def _end_stream(self) -> None:
        """Forget a stream's running state (a batch fit starts again; ``partial_fit`` then
        starts a new stream)."""
        for name in ("n_batches_", "n_samples_seen_", "_stats", "_buffer"):
            self.__dict__.pop(name, None)

    def _warm(self, X, sample_weight) -> None:
        """Buffer a batch; once ``warm_up`` rows are in, initialise and use the buffered batches."""
        if not self._buffer:
            self.n_features_in_ = X.shape[1]
        self._buffer.append((X, sample_weight))
        rows = sum(len(b[0]) for b in self._buffer)
        if rows < self._warm_up_rows():
            return
        buffered, self._buffer = self._buffer, []
        self._initialise(buffered)
        for batch, w in buffered:
            self._step(batch, w)

    def _warm_up_rows(self) -> int:
        if self.warm_up is not None:
            return max(self.warm_up, self.n_components)
        return max(getattr(self, "batch_size", 1), WARM_UP_ROWS_PER_COMPONENT * self.n_components)

    @property
    def initialised(self) -> bool:
        """Whether the warm-up rows have initialised the model (it has parameters)."""
        return getattr(self, "_stats", None) is not None

    def _next_step(self, batch: SufficientStats) -> tuple[int, float]:
        """The number of the batch being added and its step; records its mean log-likelihood
        under the parameters before the update (``batch_log_likelihood_``)."""
        self.batch_log_likelihood_ = float(batch.loglik / batch.weight)
        t = self.n_batches_ + 1
        return t, self.step_size(t - getattr(self, "_step_origin", 0))

    def restart_steps(self) -> None:
        """Start the step sizes again from the first batch's (the step counter stays): the
        running statistics then follow a stream that has changed as fast as at the start."""
        self._step_origin = self.n_batches_

    def step_size(self, t: int) -> float:
        """The step of batch ``t`` (1, 2, ...): :math:`\\max((t + t_0)^{-\\kappa}, \\eta_{\\min})`."""
        eta = min(1.0, (t + self.step_offset) ** -self.step_exponent)
        return max(eta, self.forgetting or 0.0)

    def _running_state(self, arrays: dict, fitted: dict) -> None:
        """Add the running statistics and the step counter to a saved state."""
        if self._stats is None:
            raise ValueError("the model is still warming up: no parameters to save yet")
        s = self._stats
        arrays.update(self._iterate.to_arrays("iterate_"))
        arrays.update(
            {
                "stats_nk": s.nk,
                "stats_s1": s.s1,
                "stats_s2": s.s2,
                "stats_loglik": np.array([s.loglik]),
                "shift": self._shift,
                "stats_shift": s.shift,
                "worst_scores": s.worst.scores,
                "worst_points": s.worst.points,
            }
        )
        fitted.update(
            n_batches=int(self.n_batches_),
            n_samples_seen=int(self.n_samples_seen_),
            step_origin=int(getattr(self, "_step_origin", 0)),
        )

    def _restore_running(self, arrays: dict, fitted: dict, params_class=MixtureParams) -> None:
        """The running statistics and the step counter back from :meth:`_running_state`'s."""
        self._iterate = params_class.from_arrays(arrays, self.covariance_type, "iterate_")
        self._shift = arrays["shift"]
        K, D = self._iterate.means.shape
        zero = SufficientStats.zero(K, D, self.covariance_type, arrays.get("stats_shift", self._shift))
        worst = dataclasses.replace(zero.worst, scores=arrays["worst_scores"], points=arrays["worst_points"])
        self._stats = dataclasses.replace(
            zero,
            nk=arrays["stats_nk"],
            s1=arrays["stats_s1"],
            s2=arrays["stats_s2"],
            loglik=float(arrays["stats_loglik"][0]),
            weight=1.0,
            count=1,
            worst=worst,
        )
        self.n_batches_ = int(fitted["n_batches"])
        self.n_samples_seen_ = int(fitted["n_samples_seen"])
        self._step_origin = int(fitted.get("step_origin", 0))


class OnlineGaussianMixture(Stepwise, MixtureBase):
    """Gaussian mixture fitted by stepwise (online) EM over mini-batches.

    ``partial_fit(batch)`` updates the model with one batch; ``fit(X)`` makes passes of
    mini-batches over a finite array (numpy, dask or zarr). The first rows (``warm_up``)
    initialise the model (k-means++ seeding with Lloyd passes, then EM, on those rows);
    until then the model is not fitted.
    Parameter names, covariance types and prediction methods are those of
    :class:`~streamem.GaussianMixture`.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        ``fit`` stops when the mean log-likelihood of a pass changes by less than this.
    reg_covar : float, default=1e-6
    max_iter : int, default=10
        Passes over the data in ``fit`` at most.
    batch_size : int, default=1000
        Rows per mini-batch in ``fit``.
    algorithm : {"stepwise", "incremental"}, default="stepwise"
        How ``fit`` combines the batches; ``partial_fit`` is always stepwise. Incremental
        EM keeps the statistics of every batch of the array (n_batches x the size of one
        set of statistics) and usually converges in fewer passes than batch EM.
    step_exponent : float in (0.5, 1], default=0.6
        :math:`\\kappa`: the step of batch :math:`t` is :math:`(t + t_0)^{-\\kappa}`.
    step_offset : float >= 0, default=1.0
        :math:`t_0`; larger values damp the first steps.
    forgetting : float in (0, 1], default=None
        A floor on the step: a constant step forgets old batches geometrically, so the
        model follows a stream whose components drift.
    average_after : int, default=None
        Polyak–Ruppert averaging: after this many batches (the burn-in), the fitted
        parameters are the running average of the iterates (the E-step keeps using the
        iterates themselves).
    warm_up : int, default=None
        Rows buffered before initialising; default ``max(batch_size, 250 * n_components)``.
        The buffered batches are then used in order, none is lost.
    n_init : int, default=1
        Initial candidates on the warm-up rows; the best is kept.
    init_params : str, default="k-means||"
        One of "k-means||", "trimmed-k-means||", "k-means++", "random", "random_from_data",
        "kmeans" and "auto": how the warm-up rows are clustered first: k-means|| (k-means++ seeding with
        oversampling, then Lloyd passes) is the default because k-means++ seeding alone
        leaves one pass of stepwise EM in a poor optimum far more often. A few EM
        iterations on the warm-up rows follow.
    weights_init, means_init, precisions_init : array-like, default=None
        As in :class:`~streamem.GaussianMixture`.
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
        ``fit`` continues from the current state instead of starting again.
    verbose : int, default=0
        2 logs a line per pass of ``fit``.
    verbose_interval : int, default=10
    missing : {"error", "marginalize"}, default="error"
        As in :class:`~streamem.GaussianMixture`: NaN is rejected, or treated as missing.
    freeze : tuple of {"weights", "means", "covariances"}, default=()
        As in :class:`~streamem.GaussianMixture`: held at their initial values.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : ndarray
        As in :class:`~streamem.GaussianMixture` (the averages, with ``average_after``).
    n_batches_ : int
        Batches the model has been updated with (the step counter :math:`t`).
    n_samples_seen_ : int
        Rows the model has been updated with.
    batch_log_likelihood_ : float
        The last batch's mean log-likelihood per sample under the parameters before its
        update (what the stream runner's drift alarms follow).
    lower_bound_ : float
        The running (step-weighted) mean log-likelihood per sample of the recent batches.
    n_iter_ : int
        Passes made by the last ``fit``.
    n_passes_ : int
        Passes over the data made by ``fit`` since the model started (``partial_fit`` sees
        each batch of a stream once and makes none).
    converged_ : bool
    history_ : list of dict
        One record per pass of ``fit``: ``iteration``, ``passes``, ``log_likelihood`` (mean
        per sample over the pass, each batch under the parameters of its E-step), ``change``,
        ``seconds``.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np, streamem
    >>> rng = np.random.default_rng(0)
    >>> model = streamem.OnlineGaussianMixture(n_components=2, random_state=0)
    >>> for _ in range(20):
    ...     batch = np.concatenate([rng.normal(-5, 1, (500, 2)), rng.normal(5, 1, (500, 2))])
    ...     model = model.partial_fit(batch)
    >>> sorted(np.round(model.means_[:, 0]).astype(int).tolist())
    [-5, 5]
    """

    model_name = "online"

    _parameter_constraints: dict = {
        **MixtureBase._shared_constraints,
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        **Stepwise._step_constraints,
        "algorithm": [StrOptions({"stepwise", "incremental"})],
        "average_after": [Interval(Integral, 0, None, closed="left"), None],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=10,
        batch_size=1000,
        algorithm="stepwise",
        step_exponent=0.6,
        step_offset=1.0,
        forgetting=None,
        average_after=None,
        warm_up=None,
        n_init=1,
        init_params="k-means||",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        missing="error",
        freeze=(),
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.algorithm = algorithm
        self.step_exponent = step_exponent
        self.step_offset = step_offset
        self.forgetting = forgetting
        self.average_after = average_after
        self.warm_up = warm_up
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.missing = missing
        self.freeze = freeze

    def _initialise(self, batches) -> None:
        """Initial parameters from the rows of ``batches`` (by ``init_params``, or as given)."""
        data, weights = warm_up_rows(batches)
        self.n_features_in_ = data.shape[1]
        params, shift = self._initial_params(data, weights)
        self._shift = shift
        self._iterate = params
        self._stats = SufficientStats.implied(params, self.reg_covar)
        self._set_params(params)

    def _initial_params(self, data, weights) -> tuple[MixtureParams, np.ndarray]:
        """Initial parameters: as given, or batch EM on the warm-up rows from ``init_params``
        (``n_init`` candidates, the best kept), so that the stream starts near a good optimum."""
        complete = ~np.isnan(data).any(axis=1)
        w = np.ones(len(data)) if weights is None else weights
        shift = (w[complete] @ data[complete]) / max(w[complete].sum(), np.finfo(float).tiny)
        initial = self._check_initial_parameters(data.shape[1])
        freeze = self._frozen()
        if all(value is not None for value in initial):
            return MixtureParams.from_precisions_chol(*initial, self.covariance_type), shift
        self._check_n_samples(len(data))
        rows = from_numpy(data)
        chunked = ChunkedData(rows, None if weights is None else da.from_array(weights, chunks=(rows.chunks[0],)))
        missing = self.missing == "marginalize"
        with blas_per_task(chunked.n_chunks, chunked.X.size):
            states, centre = initial_states(
                chunked,
                initial,
                self.init_params,
                [self.n_components] * self.n_init,
                self.covariance_type,
                self.reg_covar,
                check_random_state(self.random_state),
                missing=missing,
            )
            model = GaussianModel(self.covariance_type, self.reg_covar, centre, missing=missing, freeze=freeze)
            run_em(chunked, states, model=model, tol=self.tol, max_iter=WARM_UP_ITER)
        return max(states, key=lambda state: state.objective).params, shift

    def _batch_stats(self, X, sample_weight) -> SufficientStats:
        stats = chunk_stats(X, sample_weight, [self._iterate], self._shift, self.missing == "marginalize")[0]
        check_total_weight(stats.weight)
        return stats

    def _step(self, X, sample_weight) -> SufficientStats:
        """One stepwise-EM update; nothing changes unless it succeeds."""
        batch = self._batch_stats(X, sample_weight)
        t, eta = self._next_step(batch)
        stats = self._stats.step(batch, eta)
        params, reseeded = m_step(stats, self.covariance_type, self.reg_covar, None, self._frozen(), self._iterate)
        if reseeded:
            logger.warning("batch %d: re-seeded empty components %s at the worst-explained rows", t, reseeded)
            stats = _reseeded_stats(stats, params, reseeded, self.reg_covar)
        self._commit(stats, params, t, batch.count)
        return batch

    def _commit(self, stats: SufficientStats, params: MixtureParams, t: int, rows: int) -> None:
        self._stats, self._iterate = stats, params
        self.n_batches_ = t
        self.n_samples_seen_ += int(rows)
        self.lower_bound_ = float(stats.loglik)
        burn_in = self.average_after
        if burn_in is not None and t > burn_in:
            n = t - burn_in
            self._set_params(_average(self.fitted_params(), params, n))
        else:
            self._set_params(params)

    # -------------------------------------------------------------------- fit

    def fit(self, X, y=None, sample_weight=None, storage_options=None, feature_dim=None):
        """Passes of mini-batches of ``batch_size`` rows over a finite array (numpy, dask,
        zarr or a path to a zarr array), until the mean log-likelihood of a pass changes
        by less than ``tol`` or after ``max_iter`` passes.

        Returns
        -------
        self
        """
        self._validate_params()
        self._check_values()
        continuing = self.warm_start and getattr(self, "_stats", None) is not None
        data, _ = self._validate_X(X, reset=not continuing, storage_options=storage_options, feature_dim=feature_dim)
        self._check_n_samples(data.shape[0])
        weights = self._validate_sample_weight(sample_weight, data)
        if weights is not None:  # stepwise EM takes the weights' ratios alone
            weights, _ = relative_weights(weights)

        def batches():  # checked; a mini-batch that carries no weight is left out
            checked = (
                self._check_batch(*batch) for batch in row_batches(data, weights, self.batch_size, self.n_components)
            )
            return (batch for batch in checked if self._carries_weight(*batch))

        if not continuing:
            self._reset()
            head, rows = [], 0
            for batch in batches():  # the first rows initialise the model
                head.append(batch)
                rows += len(batch[0])
                if rows >= self._warm_up_rows():
                    break
            if not head:
                check_total_weight(0.0)  # no row carries weight: names what can leave them none
            self._initialise(head)
        with _one_blas_thread():
            self._passes(batches)
        return self

    def _carries_weight(self, X: np.ndarray, sample_weight) -> bool:
        """Whether a mini-batch of fit adds anything: a batch of rows of weight 0 (or, with
        ``missing="marginalize"``, of rows with every value missing) leaves the model as it is."""
        used = ~np.isnan(X).all(axis=1) if self.missing == "marginalize" else np.ones(len(X), dtype=bool)
        return bool(used.any() if sample_weight is None else np.sum(sample_weight[used]) > 0)

    def _passes(self, batches) -> None:
        incremental = self.algorithm == "incremental"
        per_batch: list[SufficientStats] = []
        total = None
        previous = self.lower_bound_ if self.warm_start and hasattr(self, "lower_bound_") else -np.inf
        self.converged_ = False
        for n_pass in range(1, self.max_iter + 1):
            start = time.perf_counter()
            loglik = weight = 0.0
            if per_batch:  # the totals again from the parts, so rounding never accumulates
                total = sum(per_batch[1:], per_batch[0])
            for index, (batch, w) in enumerate(batches()):
                if not incremental:
                    stats = self._step(batch, w)
                else:
                    stats = self._batch_stats(batch, w)
                    if index < len(per_batch):
                        total = stats + (total - per_batch[index])  # about the newest centres
                        per_batch[index] = stats
                    else:
                        total = stats if total is None else total + stats
                        per_batch.append(stats)
                    totals = dataclasses.replace(total, worst=stats.worst)
                    params, reseeded = m_step(
                        totals, self.covariance_type, self.reg_covar, None, self._frozen(), self._iterate
                    )
                    if reseeded:
                        logger.warning("re-seeded empty components %s at the worst-explained rows", reseeded)
                    self._commit(totals.normalized(), params, self.n_batches_ + 1, stats.count)
                loglik += stats.loglik
                weight += stats.weight
            mean = loglik / weight if weight else -np.inf
            change = mean - previous
            previous = mean
            self.n_iter_ = n_pass
            self.n_passes_ += 1
            self.history_.append(
                {
                    "iteration": n_pass,
                    "passes": self.n_passes_,
                    "log_likelihood": mean,
                    "change": change,
                    "seconds": time.perf_counter() - start,
                }
            )
            if self.verbose >= 2 and n_pass % self.verbose_interval == 0:
                logger.info("pass %d: log-likelihood %.8g, change %.3g", n_pass, mean, change)
            if abs(change) < self.tol:
                self.converged_ = True
                break

    # ---------------------------------------------------------- persistence

    _packed = True

    def state(self) -> tuple[dict, dict]:
        """Everything needed to continue exactly: the fitted state, the iterate, the running
        statistics and the step counter, as arrays and JSON."""
        check_is_fitted(self, "_stats")
        if self._stats is None:
            raise ValueError("the model is still warming up: no parameters to save yet")
        arrays, attrs = super().state()
        self._running_state(arrays, attrs["fitted"])
        return arrays, attrs

    def _restore(self, state, arrays: dict, attrs: dict) -> None:
        fitted = attrs["fitted"]
        self._reset()
        self._set_params(state.params)
        self._restore_running(arrays, fitted)
        self.n_iter_ = state.n_iter
        self.n_passes_ = state.n_passes
        self.converged_ = state.converged
        self.lower_bound_ = state.objective
        self.history_ = state.history
