"""The batch estimator base: EM over the chunks of a dask array, one pass per iteration, for
any model on the EM core (:class:`BatchMixture`), and what the batch fits share: their
fitted attributes from a candidate's state (:func:`set_fitted`) and em-EM's early stops.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import os
import warnings
from numbers import Integral, Real

import dask
import dask.array as da
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from streamem.core.covariance import get_covariance
from streamem.core.params import CollapsedComponentWarning, MixtureParams, NoisyParams
from streamem.core.prior import Prior
from streamem.data.checkpoint import load_state, runs_to_state, save_state, state_to_runs
from streamem.data.checks import relative_weights
from streamem.data.store import json_safe
from streamem.engine.accelerate import ACCELERATIONS, STOPPING_RULES, resolve_stopping
from streamem.engine.cluster import connected, memory_capacity
from streamem.engine.em import FitState, GaussianModel, best_cells, best_of, run_em
from streamem.engine.job import FitJob, feature_scaling
from streamem.engine.moves import crowded, split_merge
from streamem.engine.passes import ChunkedData, distributed_client, from_numpy, persist
from streamem.engine.rows import blas_per_task
from streamem.engine.starts import data_box, initial_states, labelled_start, priority_sample, with_noise
from streamem.models.base import MixtureBase

__all__ = ["BatchMixture", "set_fitted"]

logger = logging.getLogger(__name__)
#: iterations of a short run (every start's and every move's) with ``init_iter="auto"``, and
#: of every move's with ``init_iter=None``; on data crowded with local optima
#: (:func:`~streamem.engine.moves.crowded`) ``CROWDED_SHORT_RUN`` with ``"auto"``
SHORT_RUN, CROWDED_SHORT_RUN = 10, 30
#: EM iterations of the sample's fit at most, and its convergence threshold at the finest
EXPLORE_MAX_ITER = 100
EXPLORE_TOL = 1e-3


class BatchMixture(MixtureBase):
    """The base of the batch estimators: EM over the chunks of a dask array, one pass per
    iteration, for any model on the EM core.

    A batch estimator derives from this class, takes its hyper-parameters in ``__init__``
    (with ``_parameter_constraints``), and provides the hooks below; everything else — the
    passes, ``n_init`` candidates and em-EM's starts in shared passes, acceleration and the
    stopping rule, split-and-merge moves, checkpoints, warm starts, ``save`` and
    :func:`streamem.load`, predictions — comes from here. The docs' "Adding a mixture"
    builds one. The hooks:

    model_class
        The class of the model :func:`~streamem.engine.em.run_em` runs (a
        :class:`~streamem.engine.contract.MixtureModel`).
    _model(job, shift)
        The model of a fit (required).
    _initial_runs(job)
        The initial candidates (default: the Gaussian starts of ``init_params``).
    _prior(n_features, shift)
        The prior of a MAP fit, or None (default).
    _explore_size(n_features)
        The rows of the sample the starts are explored on, or None (default: no sample).
    _gaussian_start, _expects_outliers, _avoids_collapse, _offers_split_merge
        Flags (class attributes) of the starts and the moves, documented where declared.
    """

    #: not an estimator itself: registered by none of its names
    _abstract = True

    # Hyper-parameters of the Gaussian batch fit that other models do not take: class-level
    # defaults (an estimator that takes one sets it in ``__init__``, and ``get_params`` lists
    # only those), so that the engine reads them alike for every model.
    noise = None
    standardize = False
    explore_rows = None
    #: the hyper-parameters that make a prior (none: maximum likelihood)
    PRIOR_PARAMETERS: tuple = ()

    #: the initialisation's covariances are a Gaussian M-step's, regularised by ``reg_covar``
    #: (False: as they are, for a model whose prior regularises them)
    _gaussian_start = True

    #: the model expects outliers, so that ``init_params="auto"`` starts from ``"trimmed-k-means||"``
    _expects_outliers = False

    #: constraints of the hyper-parameters every batch estimator has (each adds its own)
    _batch_constraints: dict = {
        **MixtureBase._shared_constraints,
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "checkpoint": [str, os.PathLike, None],
        "scheduler_address": [str, None],
        "persist": [StrOptions({"auto"}), "boolean"],
        "persist_fraction": [Interval(Real, 0.0, 1.0, closed="right")],
        "timeout": [Interval(Real, 0.0, None, closed="neither"), None],
        "accelerate": [StrOptions(set(ACCELERATIONS)), None],
        "stopping": [StrOptions(set(STOPPING_RULES))],
        "moves": [StrOptions({"auto", "split-merge", "swap"}), None],
        "n_starts": [Interval(Integral, 1, None, closed="left")],
    }

    # ------------------------------------------------------------------ hooks

    def _model(self, job: FitJob, shift: np.ndarray):
        """The model :func:`~streamem.engine.em.run_em` fits, about ``shift``."""
        raise NotImplementedError(f"{type(self).__name__} does not say which model it fits (_model)")

    def _prior(self, n_features: int, shift: np.ndarray) -> Prior | None:
        """The prior of a MAP fit, or None for maximum likelihood."""
        return None

    def _explore_size(self, n_features: int) -> int | None:
        """The rows of the sample the starts are explored on, or None for no sample."""
        return None

    def _weights_relative(self) -> bool:
        """Whether a fit depends on the sample weights' ratios alone (maximum likelihood, no
        prior; with one, a weight counts rows): its weights are then scaled by a power of
        two to a largest in [1, 2)."""
        return all(getattr(self, name) is None for name in self.PRIOR_PARAMETERS)

    # ------------------------------------------------------------------ input

    # ---------------------------------------------------------------------- fit

    def fit(self, X, y=None, sample_weight=None, storage_options=None, feature_dim=None):
        """Fit the mixture by EM, one pass over the chunks of X per iteration.

        Parameters
        ----------
        X : array-like, dask array, zarr array, xarray DataArray, or a path or URL, of shape (n_samples, n_features)
            A path or URL is opened by :func:`streamem.read_data` (zarr, Parquet, CSV, HDF5,
            NetCDF, ``.npy``; local or in an object store such as ``s3://bucket/data.zarr``).
        y : array-like or dask array of int of shape (n_samples,), default=None
            Partial labels (semi-supervised EM): a component index for the rows whose
            component is known, -1 for the others. Known rows count for their component
            alone at every iteration (the objective is the likelihood of the unknown rows
            plus the complete-data likelihood of the known ones); the others are inferred.
            Without initial parameters, the fit starts from the labelled rows' (one pass),
            so every component needs some.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; an integer weight counts as that many copies of the row.
        storage_options : dict, default=None
            Options of the file system a URL in ``X`` or ``checkpoint`` names (for S3:
            ``endpoint_url``, ``key``, ``secret``...); by default the store's usual
            environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...) is used.
        feature_dim : str, default=None
            For an xarray ``DataArray``: the dimension that holds the features (default: the
            estimator's ``feature_dim``, else the last); every other dimension holds samples.
            Predictions on a DataArray come back over its sample dimensions, with their
            coordinates.

        Returns
        -------
        self
        """
        self._fit(X, y, sample_weight, storage_options, feature_dim)
        return self

    def _fit(self, X, y, sample_weight, storage_options, feature_dim) -> FitJob:
        """:meth:`fit`, returning the fit's :class:`FitJob`."""
        self._validate_params()
        with self._job(X, y, sample_weight, storage_options, feature_dim) as job:
            runs, shift, n_passes = self._fit_chunks(job)
        collapsed = self._collapse_test(job.chunked)
        (best,) = best_cells(runs, collapsed).values()
        if collapsed is not None and collapsed(best.params):
            warnings.warn(
                "a component has collapsed onto a few rows, or onto rows that share a value (a spurious maximum of "
                "the likelihood): try fewer components, a larger reg_covar, or a covariance_prior",
                CollapsedComponentWarning,
                stacklevel=3,
            )
        set_fitted(self, best if job.scaling is None else job.scaling.to_data_units(best), warn=True, n_passes=n_passes)
        self._set_scaling(job.scaling)
        # the fit's own parameters, for a warm start that finds the fitted attributes unchanged
        # (going through the attributes rounds them, and a loop of warm starts drifts off the fit)
        self._em_exact = dict(
            params=best.params,
            objective=best.objective,
            chain=list(best.chain),
            shift=shift,
            attributes=_fitted_arrays(self),
        )
        return job

    @contextlib.contextmanager
    def _job(self, X, y, sample_weight, storage_options, feature_dim, ks=None, covariance_types=None):
        """The :class:`FitJob` of a fit of X (checked), inside the fit's scheduler: the data
        kept in memory when asked, each feature's mean and spread (one pass) when the fit
        standardises, the checkpoint to resume from. ``ks`` and ``covariance_types``: a
        table of candidates (:func:`fit_candidates`)."""
        data, lazy = self._validate_X(X, reset=True, storage_options=storage_options, feature_dim=feature_dim)
        self._check_n_samples(data.shape[0], max(ks) if ks else None)
        weights = self._validate_sample_weight(sample_weight, data)
        labels = self._validate_labels(y, data)
        initial = self._check_initial_parameters(data.shape[1])
        self._check_values()
        if self.standardize and "spherical" in (covariance_types or [self.covariance_type]):
            raise ValueError(
                "standardize=True scales each feature by its own spread, which makes spherical components "
                "diagonal: choose covariance_type='diag' (or full, tied)"
            )
        if self.noise and self.missing == "marginalize":
            raise ValueError("noise='uniform' needs complete rows: it cannot be combined with missing='marginalize'")
        fingerprint = self._fingerprint(data, weights is not None)
        fingerprint["labelled"] = labels is not None
        if ks is not None:
            fingerprint["table"] = {"n_components": list(ks), "covariance_types": list(covariance_types)}
        saved = load_state(self.checkpoint, storage_options) if self.checkpoint is not None else None
        with connected(self.scheduler_address):
            weight_scale = 1.0
            if weights is not None and self._weights_relative():
                weights, weight_scale = relative_weights(weights)
            chunked = ChunkedData(self._maybe_persist(data, lazy), weights, timeout=self.timeout, labels=labels)
            job = FitJob(
                chunked,
                chunked,
                initial,
                check_random_state(self.random_state),
                storage_options=storage_options,
                fingerprint=fingerprint,
                saved=saved,
                ks=ks,
                covariance_types=covariance_types,
                weight_scale=weight_scale,
            )
            if self.standardize:  # the first pass: each feature's mean and spread
                job.scaling = scaling = feature_scaling(chunked, self.missing == "marginalize")
                # the initialisation reads standardised rows; EM reads the data (StandardizedModel)
                standard = ((chunked.X - scaling.mean) / scaling.scale).astype(chunked.X.dtype)
                job.starting = ChunkedData(
                    standard, weights, timeout=self.timeout, labels=labels, counter=chunked.counter
                )
                job.initial = scaling.to_standard_start(initial, self.covariance_type)
            yield job

    def _set_scaling(self, scaling) -> None:
        if scaling is None:
            self.__dict__.pop("scaler_mean_", None)
            self.__dict__.pop("scaler_scale_", None)
        else:
            self.scaler_mean_, self.scaler_scale_ = (np.asarray(v, dtype=np.float64) for v in scaling[:2])

    def _validate_labels(self, y, data: da.Array) -> da.Array | None:
        """``y`` as a dask array of component indices aligned to the rows (-1: unknown), or
        None without any known row; a ValueError or TypeError naming what is wrong. Partial
        labels have unknown rows: a ``y`` without -1 is a target for the estimator, which a
        mixture ignores (scikit-learn's convention, which its checks and pipelines rely on)."""
        labels = y if y is None or isinstance(y, da.Array) else np.asarray(y)
        if labels is None or labels.dtype.kind not in "iuf" or not bool((labels == -1).any()):
            return None  # no row unknown: a target, which a mixture ignores as scikit-learn's do
        if not isinstance(labels, da.Array):
            labels = da.from_array(labels)
        if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
            raise ValueError(
                f"expected y of shape ({data.shape[0]},): a component per row, -1 where unknown; got {labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"expected y of integers (component indices, -1 where unknown), got dtype {labels.dtype}")
        low, high = (int(v) for v in dask.compute(labels.min(), labels.max()))
        if low < -1 or high >= self.n_components:
            bad = low if low < -1 else high
            raise ValueError(
                f"expected labels in -1..{self.n_components - 1} (-1: unknown) for n_components={self.n_components}, "
                f"got {bad}"
            )
        return None if high < 0 else labels.astype(np.int64)

    def _maybe_persist(self, data: da.Array, lazy: bool, n_features: int | None = None) -> da.Array:
        """Keep the chunks in (worker) memory when asked and, for ``"auto"``, when the data
        fits within ``persist_fraction`` of the memory; otherwise every pass re-reads them.
        In-memory input sent to a distributed cluster goes to the workers once, not at every
        pass (``n_features``: of the rows, for their weights: :func:`persist`)."""
        if not lazy:
            return persist(data, n_features) if distributed_client() is not None else data
        if self.persist is False:
            return data
        capacity = memory_capacity()
        if self.persist == "auto" and data.nbytes > self.persist_fraction * capacity:
            logger.info(
                "data of %.3g GB does not fit in %.0f%% of %.3g GB of memory: read at every pass",
                data.nbytes / 1e9,
                100 * self.persist_fraction,
                capacity / 1e9,
            )
            return data
        logger.info("keeping %.3g GB of data in memory (of %.3g GB)", data.nbytes / 1e9, capacity / 1e9)
        return persist(data)

    def _fit_chunks(self, job: FitJob) -> tuple[list[FitState], np.ndarray, int]:
        """Initialise (from ``job.starting``) or resume from the job's checkpoint, and run EM;
        the candidates, the shift and the fit's passes over the data (a resumed fit's before
        the checkpoint too)."""
        with blas_per_task(job.chunked.n_chunks, job.chunked.X.size):
            if job.saved is not None:
                if job.saved[1].get("fingerprint") != job.fingerprint:
                    raise ValueError(
                        f"the checkpoint in {str(self.checkpoint)!r} belongs to another fit (other data or "
                        "parameters); remove it or choose another checkpoint directory"
                    )
                runs, shift = state_to_runs(*job.saved, params_class=self._params_class)
                logger.info("resuming from the checkpoint at iteration %d", max(r.n_iter for r in runs))
            else:
                runs, shift = self._explore(job) if self._explores(job) else self._starts(job)
                self._save_checkpoint(runs, shift, 0, job)
            before = max(run.n_passes for run in runs)
            self._run_em(job, runs, shift)
        return runs, shift, before + job.chunked.passes

    def _starts(self, job: FitJob) -> tuple[list[FitState], np.ndarray]:
        """The initial candidates (:meth:`_initial_runs`), for each covariance type of a table."""
        runs, shift = self._initial_runs(job)
        types = job.covariance_types or [self.covariance_type]
        if types != [self.covariance_type]:
            runs = [FitState(_as_type(run.params, t)) for t in types for run in runs]
        return runs, shift

    def _explores(self, job: FitJob) -> bool:
        """Whether the fit explores its starts on a sample (``explore_rows``): more rows than
        the sample's, and starts to explore (none given, no labels, frozen parameters, noise
        component or warm start)."""
        size = self._explore_size(job.chunked.n_features)
        return (
            size is not None
            and job.chunked.X.shape[0] > size
            and not job.warm_up
            and all(value is None for value in job.initial)
            and job.chunked.labels is None
            and not self._frozen()
            and not self.noise
            and not self._continues()
        )

    def _continues(self) -> bool:
        """Whether the fit goes on from the fitted parameters (``warm_start`` after a fit)."""
        return self.warm_start and hasattr(self, "precisions_cholesky_")

    def _explore(self, job: FitJob) -> tuple[list[FitState], np.ndarray]:
        """The starts of a fit explored on a sample (``explore_rows``): one pass draws the
        rows (:func:`~streamem.engine.starts.priority_sample`), the whole fit runs on them in memory
        (initialisation, em-EM's starts, convergence, moves), and the best candidate of each
        cell starts EM over all the rows. On a cluster the sample goes to the workers once,
        and its passes have the fit's ``timeout``."""
        size = self._explore_size(job.chunked.n_features)
        seed = int(job.random_state.randint(np.iinfo(np.int32).max))
        rows, weights = priority_sample(job.chunked, size, seed)

        def in_memory(values, counter=None) -> ChunkedData:
            X = self._maybe_persist(from_numpy(values), lazy=False)
            w = self._maybe_persist(da.from_array(weights, chunks=(X.chunks[0],)), lazy=False, n_features=X.shape[1])
            return ChunkedData(X, w, timeout=job.chunked.timeout, counter=counter)

        data = in_memory(rows)
        starting = data  # the initialisation reads standardised rows when the fit standardises
        if job.scaling is not None:
            starting = in_memory(((rows - job.scaling.mean) / job.scaling.scale).astype(rows.dtype), data.counter)
        # (max_iter counts passes over the data, and may grow when a fit resumes; the
        # sample's optimum is the data's only to its sampling error, so no finer tol)
        sample = FitJob(
            data,
            starting,
            job.initial,
            job.random_state,
            scaling=job.scaling,
            ks=job.ks,
            covariance_types=job.covariance_types,
            sample=True,
            iterations=EXPLORE_MAX_ITER,
            tolerance=max(self.tol, EXPLORE_TOL),
        )
        runs, shift = self._starts(sample)
        self._run_em(sample, runs, shift)
        collapsed = self._collapse_test(sample.chunked)
        best = best_cells(runs, collapsed)
        unmoved = best_cells(sample.unmoved, collapsed) if sample.unmoved is not None else {}
        logger.info(
            "explored the starts on a sample of %d rows of %d (%d passes over it): %s",
            len(rows),
            job.chunked.X.shape[0],
            sample.chunked.passes,
            ", ".join(f"{r.objective:.6g}" for r in best.values()),
        )
        job.explored = True
        # the first step over all the rows moves from the sample's optimum to theirs: the
        # stopping rule reads EM's rate from the steps after it. A cell whose moves won on
        # the sample starts from both optima, and the first pass keeps the better (a
        # sample tells optima within its sampling error of each other apart by chance).
        starts = []
        for key, state in best.items():
            starts.append(FitState(state.params, settle=1))
            if unmoved.get(key, state) is not state:
                starts.append(FitState(unmoved[key].params, settle=1))
        return starts, shift

    def _run_em(self, job: FitJob, runs: list[FitState], shift: np.ndarray) -> GaussianModel:
        """EM for every candidate, all in the same passes; a checkpoint and, with ``verbose
        >= 2``, a line per candidate after each pass. Returns the model it ran."""
        model, chunked = self._model(job, shift), job.chunked
        job.model = model

        def on_iteration(n_iter, states):
            if self.verbose >= 2 and n_iter % self.verbose_interval == 0:
                for index, state in enumerate(states):
                    if state.n_iter == n_iter:
                        record, chunks = state.history[-1], chunked.n_chunks
                        step = (
                            ""
                            if record["step"] == 1.0
                            else f", step {record['step']:.3g}" + ("" if record["accepted"] else " rejected")
                        )
                        logger.info(
                            "%scandidate %d, iteration %d (pass %d): log-likelihood %.8g, change %.3g%s, %.3fs, "
                            "%d chunks",
                            "sample: " if job.sample else "",
                            index,
                            n_iter,
                            record["passes"],
                            record["log_likelihood"],
                            record["change"],
                            step,
                            record["seconds"],
                            chunks,
                            extra={"streamem": dict(record, candidate=index, chunks=chunks, sample=job.sample)},
                        )
            self._save_checkpoint(runs, shift, n_iter, job)

        settings = dict(
            model=model,
            tol=job.tol(self),
            on_iteration=on_iteration,
            accelerate=self.accelerate,
            stopping=resolve_stopping(self.stopping, self.accelerate),
            passes_before=max(run.n_passes for run in runs),
        )
        collapsed = self._collapse_test(chunked)
        n_starts, max_iter = self.n_starts, job.max_iter(self)
        n_cells = len({(run.params.covariance_type, run.params.n_components) for run in runs})
        if len(runs) > n_cells and all(run.settle > 0 and run.n_iter == 0 for run in runs):
            # a sample's optima of a cell (_explore): the first pass over all the rows keeps the better
            run_em(chunked, runs, max_iter=min(1, max_iter), **settings)
            runs[:] = list(best_cells(runs, collapsed).values())
            self._save_checkpoint(runs, shift, max(run.n_iter for run in runs), job)
        init_iter = self._init_iter(chunked, runs)
        if init_iter is not None and n_starts > 1 and len(runs) == n_cells * self.n_init * n_starts:
            # em-EM: every start's short run in the same passes, then the best of each
            # initialisation (n_starts consecutive candidates) goes on
            choose = init_iter < max_iter  # (otherwise a resumed fit with more iterations goes on)
            settled = functools.partial(_settled, n_starts=n_starts, init_iter=init_iter, collapsed=collapsed)
            run_em(chunked, runs, max_iter=min(init_iter, max_iter), **settings, settled=settled if choose else None)
            if choose:
                groups = [runs[i : i + n_starts] for i in range(0, len(runs), n_starts)]
                kept = [best_of(group, collapsed) for group in groups]
                logger.info(
                    "kept the best of %d starts after %d iterations: %s",
                    n_starts,
                    init_iter,
                    ", ".join(f"{r.objective:.6g}" for r in kept),
                )
                runs[:] = kept
                self._save_checkpoint(runs, shift, max(run.n_iter for run in runs), job)
        run_em(chunked, runs, max_iter=max_iter, **settings)
        if self._split_merge_on(job, runs):
            self._split_merge(job, runs, shift, settings)
        return model

    #: the estimator offers split-and-merge moves (``moves``; False: a model with moves of its own)
    _offers_split_merge = True

    def _init_iter(self, chunked: ChunkedData, runs: list[FitState]) -> int | None:
        """The iterations of a start's or a move's short run: ``init_iter``, or with
        ``"auto"`` :data:`CROWDED_SHORT_RUN` where the rows are crowded with local optima for
        the largest of the candidates' models (:func:`~streamem.engine.moves.crowded`) and
        :data:`SHORT_RUN` otherwise."""
        if self.init_iter != "auto":
            return self.init_iter
        n_parameters = max(run.params.n_parameters() for run in runs)
        return CROWDED_SHORT_RUN if crowded(chunked.X.shape[0], n_parameters) else SHORT_RUN

    def _split_merge_on(self, job: FitJob, runs: list[FitState]) -> bool:
        """Whether the fit makes split-and-merge moves: ``moves`` asks for them, and nothing
        ties the components to their places (labels, frozen parameters, a noise component)."""
        if not self._offers_split_merge or self.moves is None or job.warm_up or job.explored:
            return False
        if self.moves == "auto" and all(value is not None for value in job.initial):
            return False  # EM from the parameters the user gave (scikit-learn's iterations from its start)
        tied = job.chunked.labels is not None or self._frozen() or self.noise
        smallest = 3 if self.moves == "split-merge" else 2  # (swaps need two components, a merge and a split three)
        return not tied and any(run.converged and run.params.n_components >= smallest for run in runs)

    def _split_merge(self, job: FitJob, runs: list[FitState], shift, settings: dict) -> None:
        """Split-and-merge moves and random swaps (:mod:`streamem.engine.moves`; swaps unless
        ``moves="split-merge"``) on every converged candidate, all in the same passes;
        each candidate replaced by the result of the moves that raised its
        objective. In a table of several numbers of components, each cell's best candidate is
        offered its neighbours' solutions too, split or merged to its K, in the same rounds
        (``table`` of :func:`~streamem.engine.moves.split_merge`)."""
        chunked = job.chunked
        init_iter = self._init_iter(chunked, runs)
        short = SHORT_RUN if init_iter is None else max(init_iter, 1)

        def run(candidates, phase, settled=None):
            limit = max(c.n_iter for c in candidates) + (short if phase == "short" else job.max_iter(self))
            run_em(chunked, candidates, max_iter=limit, **settings, settled=settled)

        source = chunked.complete_rows() if self.missing == "marginalize" else chunked
        collapsed = self._collapse_test(chunked)
        table = job.ks is not None and len(set(job.ks)) > 1
        job.unmoved = list(runs)
        runs[:] = split_merge(
            source,
            runs,
            run,
            self.reg_covar,
            job.scaling,
            collapsed,
            table=table,
            seed=None if self.moves == "split-merge" else self._moves_seed(job),
            min_gain=self.tol / 10,
            short_iter=short,
        )
        self._save_checkpoint(runs, shift, max(r.n_iter for r in runs), job)

    def _fit_rows(self, data: np.ndarray, weights) -> tuple[MixtureParams, np.ndarray, object]:
        """EM on rows in memory (an online fit's warm-up rows; ``n_init`` candidates): the
        best candidate's parameters, the centre and the model it was fitted with."""
        self._check_n_samples(len(data))
        initial = self._check_initial_parameters(data.shape[1])
        job = FitJob.in_memory(data, weights, initial, check_random_state(self.random_state), warm_up=True)
        with blas_per_task(job.chunked.n_chunks, job.chunked.X.size):
            runs, shift = self._initial_runs(job)
            model = self._run_em(job, runs, shift)
        (best,) = best_cells(runs, self._collapse_test(job.chunked)).values()
        return best.params, shift, model

    def _moves_seed(self, job: FitJob) -> int:
        """The seed of the random swaps: of ``random_state`` alone when it is an integer, so
        that a fit resumed from a checkpoint draws the swaps of the whole fit."""
        if isinstance(self.random_state, Integral):
            return int(np.random.SeedSequence([int(self.random_state), 1]).generate_state(1)[0])
        return int(job.random_state.randint(np.iinfo(np.int32).max))

    #: candidates with a collapsed component lose to the others (False: a model whose
    #: components may empty out, as a variational one's do)
    _avoids_collapse = True

    def _collapse_test(self, chunked: ChunkedData):
        """How many components of a candidate's parameters have collapsed
        (:meth:`~streamem.core.params.MixtureParams.collapsed`, against the rows of ``chunked``
        and ``reg_covar``), as a function of them; None when the model does not tell."""
        if not self._avoids_collapse:
            return None
        n_rows, reg_covar = chunked.X.shape[0], self.reg_covar
        return lambda params: params.collapsed(n_rows, reg_covar)

    def _initial_runs(self, job: FitJob) -> tuple[list[FitState], np.ndarray]:
        """Initial candidates: ``n_init`` for each number of components in ``job.ks`` (default:
        the estimator's), from the rows of ``job.starting``."""
        chunked, initial = job.starting, job.initial
        if self._continues():
            place = em_place(self)  # where EM was: the stopping rule and the extrapolation go on from there
            exact = getattr(self, "_em_exact", None)
            if exact is not None and _same_arrays(exact["attributes"], _fitted_arrays(self)):
                state = FitState(exact["params"], objective=exact["objective"], **{**place, "chain": exact["chain"]})
                return [state], exact["shift"]
            params, objective, scaling = self._state_params(), self.lower_bound_, job.scaling
            if scaling is not None:  # the previous fit, standardised (its extrapolation's points already are)
                params, objective = scaling.to_standard_units(params), objective + scaling.per_sample
                place["chain"] = [value + scaling.per_sample for value in place["chain"]]
            return [FitState(params, objective=objective, **place)], params.weights @ params.means
        if chunked.labels is not None and any(value is None for value in initial):
            params = labelled_start(chunked, self.n_components, self.covariance_type, self.reg_covar)
            runs, shift = [FitState(params)], params.weights @ params.means
        else:
            ks = [k for k in (job.ks or [self.n_components]) for _ in range(self.n_init * self.n_starts)]
            runs, shift = initial_states(
                chunked,
                initial,
                self.init_params,
                ks,
                self.covariance_type,
                self.reg_covar,
                job.random_state,
                missing=self.missing == "marginalize",
                cholesky=self._gaussian_start,
                robust=self._expects_outliers,
            )
        if self.noise == "uniform":
            box = data_box(chunked)
            for run in runs:
                run.params = with_noise(run.params, box)
        return runs, shift

    def _fingerprint(self, data: da.Array, weighted: bool) -> dict:
        """What a checkpoint must match to be resumed: the data's shape and the parameters
        that shape the fit (not ``max_iter``, which may grow, nor ``verbose``)."""
        params = {
            name: json_safe(value)
            for name, value in self.get_params().items()
            if name
            not in (
                "max_iter",
                "verbose",
                "verbose_interval",
                "checkpoint",
                "warm_start",
                "scheduler_address",
                "persist",
            )
            and not isinstance(value, (np.ndarray, list, tuple))
        }
        params["freeze"] = sorted(self._frozen())
        return {"shape": list(data.shape), "dtype": str(data.dtype), "weighted": weighted, "params": params}

    def _save_checkpoint(self, runs, shift, step, job: FitJob) -> None:
        if self.checkpoint is not None and job.fingerprint is not None:
            arrays, attrs = runs_to_state(runs, shift)
            attrs = {**attrs, "fingerprint": job.fingerprint, "estimator": type(self).__name__}
            if job.scaling is not None:  # the candidates are standardised
                attrs["scaling"] = [np.asarray(v).tolist() for v in job.scaling]  # mean, scale, shifts
            save_state(self.checkpoint, step, arrays, attrs, pack=True, storage_options=job.storage_options)

    # ---------------------------------------------------------- persistence

    def _fit_state(self) -> FitState:
        return FitState(
            self._state_params(),
            self.lower_bound_,
            self.converged_,
            self.n_iter_,
            self.history_,
            list(getattr(self, "means_history_", [])),
            getattr(self, "n_rows_ignored_", 0),
            n_passes=getattr(self, "n_passes_", 0),
            **em_place(self),
        )

    def state(self) -> tuple[dict, dict]:
        arrays, attrs = super().state()
        if hasattr(self, "scaler_mean_"):
            arrays["scaler_mean"], arrays["scaler_scale"] = self.scaler_mean_, self.scaler_scale_
        if hasattr(self, "selection_"):
            attrs["selection"] = self.selection_
            attrs["selection_criterion"] = getattr(self, "selection_criterion_", "bic")
        return arrays, attrs

    def _restore(self, state: FitState, arrays: dict, attrs: dict) -> None:
        set_fitted(self, state)
        self._set_scaling((arrays["scaler_mean"], arrays["scaler_scale"]) if "scaler_mean" in arrays else None)
        if "selection" in attrs:
            self.selection_ = [dict(row) for row in attrs["selection"]]
            self.selection_criterion_ = attrs.get("selection_criterion", "bic")


def set_fitted(model: BatchMixture, state: FitState, warn: bool = False, n_passes: int | None = None) -> None:
    """The fitted attributes of ``model`` from one candidate's state; with ``warn``, a
    ``ConvergenceWarning`` when it did not converge. ``n_passes``: the fit's passes over the
    data, when the candidates together made more than this one's (other starts, moves)."""
    if warn and not state.converged and model.max_iter > 0:
        warnings.warn(
            "Best performing initialization did not converge. Try different init parameters, "
            "or increase max_iter, tol, or check for degenerate data.",
            ConvergenceWarning,
            stacklevel=3,
        )
    model._set_params(state.params)
    model.converged_ = state.converged
    model.n_iter_ = state.n_iter
    model.lower_bound_ = float(state.objective)
    model.n_rows_ignored_ = state.n_rows_ignored
    model.n_passes_ = state.n_passes if n_passes is None else n_passes
    # where EM was, for a warm start: the stopping rule's EM steps and the extrapolation's cycle
    model._em_place = dict(
        chain=list(state.chain), rate=state.rate, cycle=copy.deepcopy(state.cycle), trial=state.trial
    )
    model.history_ = state.history
    model.lower_bounds_ = _lower_bounds(state.history)
    model.means_history_ = np.stack(state.means_history or [state.params.means])
    if model.verbose and warn:
        logger.info(
            "fit done: %d iterations (%d passes over the data), lower bound %.6g, converged %s",
            state.n_iter,
            model.n_passes_,
            state.objective,
            state.converged,
        )


#: the fitted attributes a warm start reads its parameters from
FITTED_ARRAYS = (
    "weights_",
    "means_",
    "precisions_cholesky_",
    "degrees_of_freedom_",
    "weight_concentration_",
    "mean_precision_",
    "scaler_mean_",
    "scaler_scale_",
)


def _fitted_arrays(model) -> dict:
    return {name: np.array(getattr(model, name), copy=True) for name in FITTED_ARRAYS if hasattr(model, name)}


def _same_arrays(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


def em_place(model) -> dict:
    """A fitted model's place in EM (:func:`set_fitted`), as :class:`FitState` fields: a
    warm start goes on from it as an uninterrupted fit would (a model fitted otherwise:
    from its parameters alone)."""
    place = getattr(model, "_em_place", None) or dict(chain=[], rate=0.0, cycle=None, trial=None)
    return {**place, "chain": list(place["chain"]), "cycle": copy.deepcopy(place["cycle"])}


def _lower_bounds(history: list) -> list:
    """The objective after each iteration: an extrapolated point that was rejected leaves
    it where it was."""
    bounds = []
    for record in history:
        if record.get("accepted", True) or not bounds:
            bounds.append(record.get("objective", record["log_likelihood"]))
        else:
            bounds.append(bounds[-1])
    return bounds


def _settled(states: list[FitState], n_starts: int, init_iter: int, collapsed=None) -> list[FitState]:
    """em-EM's starts that can no longer be chosen after ``init_iter`` iterations: in each
    group of ``n_starts`` (an initialisation's), once the best (:func:`~streamem.engine.em.best_of`: none is
    better placed by failure or collapse) has converged, a start still running whose
    objective, plus its last change for each iteration it has left, stays below the
    best's. EM's changes shrink as it nears its maximum, so the start would end below it;
    stopping it saves the passes up to ``init_iter`` when the best converges first, as on
    well-separated clusters."""
    out = []
    for first in range(0, len(states), n_starts):
        group = states[first : first + n_starts]
        leader = best_of(group, collapsed)
        if not leader.converged or leader.failure is not None:
            continue
        for state in group:
            if state is leader or state.converged or not state.history:
                continue
            if not state.history[-1].get("accepted", True):  # an extrapolation rejected: no EM change to go by
                continue
            gain = max(state.history[-1]["change"], 0.0) * (init_iter - state.n_iter)
            if state.objective + gain < leader.objective:
                out.append(state)
    return out


def _as_type(params: MixtureParams, covariance_type: str) -> MixtureParams:
    """Parameters of another covariance type from full ones, as from the same statistics."""
    covariances = get_covariance(covariance_type).from_full(params.covariances, params.weights)
    other = MixtureParams.from_covariances(params.weights, params.means, covariances, covariance_type)
    return NoisyParams.of(other, params.noise_weight, params.box) if params.has_noise else other
