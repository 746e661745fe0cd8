"""The estimator base every mixture derives from: input validation, the fitted parameters,
persistence, the registry of estimators by name, and predictions over the chunks of a dask
array (lazy for lazy input)."""

from __future__ import annotations

import copy
import functools
import logging
from numbers import Integral, Real
from typing import ClassVar

import dask.array as da
import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from streamem.core.covariance import COVARIANCE_TYPES, get_covariance
from streamem.core.mstep import FREEZABLE
from streamem.core.params import InitialParameters, MixtureParams, NoisyParams
from streamem.core.validation import check_finite, check_sample_weight_shape
from streamem.data import formats
from streamem.data.arrays import as_dask_array
from streamem.data.checkpoint import is_checkpoint, load_state, state_to_runs
from streamem.data.checks import check_dask_array
from streamem.data.store import FORMAT, FORMAT_VERSION, json_safe, read_model, write_model
from streamem.engine.em import FitState, Scaling
from streamem.engine.passes import apply_blocks, from_numpy
from streamem.engine.rows import (
    IMPUTED,
    LABELS,
    LOG_DENSITIES,
    NOISE_LABELS,
    NOISE_SUMMARY,
    RESPONSIBILITIES,
    SUMMARY,
    RowOutput,
    blas_per_task,
    block_output,
)
from streamem.engine.starts import INIT_METHODS, sklearn_init_params

__all__ = ["PLUGIN_GROUP", "MixtureBase", "estimator_class", "estimator_names", "load"]

logger = logging.getLogger(__name__)


def _restored_on_failure(fit):
    """``fit`` that leaves the estimator as it was when it raises: a fit fails after it has
    set some attributes (``n_features_in_`` once X is read, a new stream's reset...), and
    those of the previous fit come back. Hyper-parameters are kept as they are; the fitted
    and private attributes are copied (a fit may change them in place)."""

    @functools.wraps(fit)
    def restoring_fit(self, *args, **kwargs):
        hyper = self._get_param_names()
        saved = {name: value if name in hyper else copy.deepcopy(value) for name, value in vars(self).items()}
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    return restoring_fit


class MixtureBase(DensityMixin, BaseEstimator):
    """A Gaussian mixture's fitted parameters and what is computed from them: labels,
    responsibilities, log-likelihoods, imputations, information criteria and samples.
    Subclasses fit; they set ``covariance_type``, ``missing`` and ``random_state``."""

    #: constraints of the hyper-parameters both estimators have (each adds its own)
    _shared_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_iter": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"}), None],
        "init_params": [StrOptions(set(INIT_METHODS))],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
        "missing": [StrOptions({"error", "marginalize"})],
        "freeze": [tuple, list, str, None],
    }

    # Hyper-parameters some estimators do not take: class-level defaults (an estimator that
    # takes one sets it in ``__init__``, and ``get_params`` lists only those), read alike
    # for every estimator. Without ``missing``, rows with NaN are refused; without
    # ``freeze``, nothing is held; without ``feature_dim``, an xarray input's features are
    # along its last dimension.
    missing = "error"
    freeze = ()
    feature_dim = None

    #: the class of a fitted state's parameters
    _params_class = MixtureParams

    #: saved models store their arrays end to end in one (for models saved every few seconds)
    _packed = False

    #: every estimator class by name, as saved models name the class that saved them
    _estimators: dict = {}

    #: the short name the command line knows the estimator by (``streamem fit --model NAME``,
    #: :func:`estimator_class`); None: known by its class name alone
    model_name: ClassVar[str | None] = None

    #: the objective a fit climbs is a variational bound, not the log-likelihood (which
    #: BIC and AIC would need)
    variational: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "model_name" not in vars(cls):
            cls.model_name = None  # a subclass is not its parent under the parent's name
        for known in [] if vars(cls).get("_abstract", False) else MixtureBase._estimators.values():
            if (known.__module__, known.__qualname__) == (cls.__module__, cls.__qualname__):
                continue  # the same class defined again (a module reloaded)
            for name in {cls.__name__, cls.model_name} & {known.__name__, known.model_name} - {None}:
                raise ValueError(f"expected a new estimator name, got {name!r}, which {known.__qualname__} has")
        if not vars(cls).get("_abstract", False):
            MixtureBase._estimators[cls.__name__] = cls
        if "fit" in vars(cls):
            cls.fit = _restored_on_failure(vars(cls)["fit"])

    # ----------------------------------------------------------- persistence

    def _hyper_parameters(self, arrays: dict) -> dict:
        """The hyper-parameters as JSON for a saved model; array values (initial parameters,
        priors) go into ``arrays`` as ``param_NAME`` and are named in the JSON."""
        hyper = {}
        for name, value in self.get_params().items():
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                hyper[name] = list(value)  # names (freeze)
            elif isinstance(value, (np.ndarray, list, tuple)):
                arrays[f"param_{name}"] = np.asarray(value, dtype=np.float64)
                hyper[name] = {"array": f"param_{name}"}
            else:
                hyper[name] = json_safe(value)  # a RandomState instance is not kept
        return hyper

    @classmethod
    def load(cls, path, storage_options: dict | None = None):
        """Load a model saved with ``save`` by this class (:func:`streamem.load` takes either)."""
        arrays, attrs = read_model(path, storage_options)
        estimator = attrs.get("estimator", "GaussianMixture")
        if estimator != cls.__name__:
            raise ValueError(f"{str(path)!r} holds a {estimator}, not a {cls.__name__}: load it with streamem.load")
        return cls.from_state(arrays, attrs, str(path))

    @classmethod
    def from_state(cls, arrays: dict, attrs: dict, where: str = "the state"):
        """The model back from the arrays and attributes of :meth:`state`."""
        try:
            hyper = {
                name: arrays[value["array"]]
                if isinstance(value, dict)
                else tuple(value)
                if isinstance(value, list)
                else value
                for name, value in attrs["params"].items()
            }
            model = cls(**hyper)
            fitted = attrs["fitted"]
            # stores of format 1 kept the re-seeded components beside "fitted"
            meta = {"reseeded": attrs.get("reseeded", {}), **fitted, "covariance_type": model.covariance_type}
            state = FitState.from_arrays(arrays, meta, params_class=cls._params_class)
            if state.params.n_components != model.n_components or state.params.n_features != fitted["n_features_in"]:
                raise ValueError("parameter shapes do not match the hyper-parameters")
            model._restore(state, arrays, attrs)
            model.n_features_in_ = int(fitted["n_features_in"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where!r} is a corrupt streamem model: {exc}") from None
        return model

    def _state_params(self) -> MixtureParams:
        """The parameters a fit's state holds: the fitted ones (for a variational fit, its
        posterior)."""
        return self.fitted_params()

    def _fit_state(self) -> FitState:
        """The fitted model as the state of one candidate of a fit."""
        return FitState(
            self._state_params(),
            self.lower_bound_,
            self.converged_,
            self.n_iter_,
            self.history_,
            n_passes=getattr(self, "n_passes_", 0),
        )

    def state(self) -> tuple[dict, dict]:
        """The fitted model as arrays and JSON attributes, what ``save`` writes and
        :func:`streamem.load` reads: the hyper-parameters and the fitted state (by
        :meth:`~streamem.engine.em.FitState.to_arrays`, as checkpoints hold each candidate)."""
        arrays, fitted = self._fit_state().to_arrays()
        fitted["n_features_in"] = int(self.n_features_in_)
        attrs = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "estimator": type(self).__name__,
            "params": self._hyper_parameters(arrays),
            "fitted": fitted,
        }
        return arrays, attrs

    def save(self, path, storage_options: dict | None = None) -> None:
        """Save the fitted model as a zarr group at ``path``, a local path or any fsspec URL
        (``s3://bucket/model.zarr``, opened with ``storage_options``), atomically and without
        pickle; :func:`streamem.load` gives it back."""
        write_model(path, *self.state(), pack=self._packed, storage_options=storage_options)

    # ------------------------------------------------------------------ input
    def _validate_X(
        self,
        X,
        reset: bool,
        allow_nan: bool | None = None,
        storage_options: dict | None = None,
        feature_dim: str | None = None,
    ):
        """X as a dask array with all features in a chunk, and whether to return lazily. An
        xarray DataArray has its features along ``feature_dim`` (at fit; later, the fit's)."""
        if allow_nan is None:
            allow_nan = self.missing == "marginalize"
        if formats.is_xarray(X):
            chosen = (feature_dim or self.feature_dim) if reset else self._feature_dim(X)
            X, template = formats.xarray_samples(X, chosen)
            if reset:
                self.feature_dim_ = template["feature_dim"]
        elif reset:
            self.__dict__.pop("feature_dim_", None)
        lazy_X, lazy = as_dask_array(X, storage_options)
        if not lazy:
            with np.errstate(invalid="ignore", over="ignore"):  # scikit-learn's check sums X: inf - inf is NaN
                X = validate_data(
                    self,
                    X,
                    dtype=[np.float64, np.float32],
                    reset=reset,
                    ensure_min_samples=1,
                    ensure_all_finite="allow-nan" if allow_nan else True,
                )
            return from_numpy(X), False
        lazy_X = check_dask_array(lazy_X)
        n_features = lazy_X.shape[1]
        if reset:
            self.n_features_in_ = n_features
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        if lazy_X.numblocks[1] != 1:
            lazy_X = lazy_X.rechunk({1: -1})
        return lazy_X, True

    def _validate_sample_weight(self, sample_weight, X: da.Array):
        if sample_weight is None:
            return None
        check_sample_weight_shape(sample_weight, X.shape[0])
        if isinstance(sample_weight, da.Array):
            sample_weight = da.broadcast_to(sample_weight, (X.shape[0],))  # a 0-d weight: every row's
            return sample_weight.astype(np.float64).rechunk((X.chunks[0],))
        sample_weight = _check_sample_weight(
            sample_weight, np.empty((X.shape[0], 0)), dtype=np.float64, ensure_non_negative=True
        )
        return da.from_array(sample_weight, chunks=(X.chunks[0],))

    def _check_n_samples(self, n_samples: int, n_components: int | None = None) -> None:
        n_components = self.n_components if n_components is None else n_components
        if n_samples < n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {n_components}, n_samples = {n_samples}"
            )

    def _check_values(self) -> None:
        """Check the hyper-parameters' values that the constraints table cannot (before a fit
        changes anything)."""
        self._frozen()

    def _frozen(self) -> tuple:
        """The names in ``freeze``, checked: known, and each with its initial value."""
        freeze = self.freeze
        names = (freeze,) if isinstance(freeze, str) else tuple(freeze or ())
        needs = {"weights": "weights_init", "means": "means_init", "covariances": "precisions_init"}
        for name in names:
            if name not in FREEZABLE:
                raise ValueError(f"expected names in freeze among {', '.join(FREEZABLE)}, got {name!r}")
            if getattr(self, needs[name]) is None:
                raise ValueError(f"freeze={names!r} holds {name} at its initial value: give {needs[name]}")
        return tuple(dict.fromkeys(names))

    def _check_initial_parameters(self, n_features: int) -> InitialParameters:
        """The given ``weights_init``, ``means_init`` and ``precisions_init`` (as Cholesky
        factors), validated; None for each one not given."""
        K, D = self.n_components, n_features
        covariance = get_covariance(self.covariance_type)
        weights = means = precisions_chol = None
        if self.weights_init is not None:
            weights = np.asarray(self.weights_init, dtype=np.float64)
            if weights.shape != (K,):
                raise ValueError(f"expected weights_init of shape ({K},), got {weights.shape}")
            if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0):
                raise ValueError(f"expected weights_init non-negative and summing to 1, got sum {weights.sum()}")
        if self.means_init is not None:
            means = np.asarray(self.means_init, dtype=np.float64)
            if means.shape != (K, D):
                raise ValueError(f"expected means_init of shape ({K}, {D}), got {means.shape}")
            check_finite(means)
        if self.precisions_init is not None:
            precisions = np.asarray(self.precisions_init, dtype=np.float64)
            shape = covariance.covariance_shape(K, D)
            if precisions.shape != shape:
                raise ValueError(
                    f"expected precisions_init of shape {shape} for {self.covariance_type!r}, got {precisions.shape}"
                )
            covariance.check_precisions(precisions)
            precisions_chol = covariance.precisions_chol_from_precisions(precisions)
        return InitialParameters(weights, means, precisions_chol)

    # ---------------------------------------------------------------- params

    def _set_params(self, params: MixtureParams) -> None:
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_chol
        self.precisions_ = params.precisions
        if params.has_noise:
            self.noise_weight_ = params.noise_weight
            self.noise_box_ = params.box
            self.noise_density_ = float(np.exp(params.log_noise_density))

    def fitted_params(self) -> MixtureParams:
        """The fitted weights, means and covariances as one :class:`~streamem.core.params.MixtureParams`
        (:class:`~streamem.core.params.NoisyParams` with a noise component)."""
        check_is_fitted(self, "precisions_cholesky_")
        params = MixtureParams(
            self.weights_, self.means_, self.covariances_, self.precisions_cholesky_, self.covariance_type
        )
        if hasattr(self, "noise_weight_"):
            return NoisyParams.of(params, self.noise_weight_, self.noise_box_)
        return params

    # -------------------------------------------------------------- predict

    def _feature_dim(self, X) -> str | None:
        """The dimension of an xarray input that holds the features: the fit's when it has one."""
        for name in (getattr(self, "feature_dim_", None), self.feature_dim):
            if name in X.dims:
                return name
        return None

    def _apply(self, X, output: RowOutput, params: MixtureParams | None = None):
        params = self.fitted_params() if params is None else params
        missing = self.missing == "marginalize"
        data, lazy = self._validate_X(X, reset=False, allow_nan=missing or output.needs_holes)
        n_columns = None if output.columns is None else output.columns(params)
        dtype = output.dtype(data.dtype)
        out = apply_blocks(data, block_output, params, output, missing, dtype=dtype, n_columns=n_columns)
        if not lazy:
            with blas_per_task(out.numblocks[0], data.size):
                out = out.compute()
        if formats.is_xarray(X):  # back over the input's sample dimensions, with their coordinates
            return formats.like_samples(out, formats.xarray_samples(X, self._feature_dim(X))[1], output.name)
        return out

    def predict(self, X):
        """Component labels, array of shape (n_samples,), -1 for rows the noise component
        explains best (with one); lazy for dask or zarr input."""
        params = self.fitted_params()
        return self._apply(X, NOISE_LABELS if params.has_noise else LABELS, params)

    def impute(self, X):
        """X with each missing value (NaN) replaced by its conditional expectation under the
        fitted mixture, :math:`\\sum_k p(k \\mid x_O)\\, E[x_M \\mid x_O, k]`; rows without
        NaN are unchanged. Lazy for dask or zarr input."""
        return self._apply(X, IMPUTED)

    def predict_proba(self, X):
        """Responsibilities, array of shape (n_samples, n_components), and with a noise
        component one more column, last, for it."""
        return self._apply(X, RESPONSIBILITIES)

    def score_samples(self, X):
        """Log-likelihood of each sample, array of shape (n_samples,)."""
        return self._apply(X, LOG_DENSITIES)

    def predict_summary(self, X):
        """In one pass, each row's component (as :meth:`predict` gives it), that component's
        responsibility and the row's log-density (:meth:`score_samples`, an anomaly score:
        low is unusual): array of shape (n_samples, 3) in the data's dtype. Lazy for dask
        or zarr input."""
        params = self.fitted_params()
        return self._apply(X, NOISE_SUMMARY if params.has_noise else SUMMARY, params)

    def score(self, X, y=None):
        """Mean log-likelihood per sample (a float)."""
        return float(np.asarray(self.score_samples(X).mean()))

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit (with ``y`` as :meth:`fit` takes it), then the labels of X under the fitted model."""
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

    # --------------------------------------------------------------- export

    def to_sklearn(self):
        """An equivalent fitted :class:`sklearn.mixture.GaussianMixture`."""
        from sklearn.mixture import GaussianMixture as SkGaussianMixture

        check_is_fitted(self, "precisions_cholesky_")
        params = self.fitted_params()
        if params.has_noise:
            raise TypeError("a mixture with a noise component has no scikit-learn equivalent (nor ONNX export)")
        init = sklearn_init_params(self.init_params)
        model = SkGaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            tol=self.tol,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            init_params=init,
            random_state=self.random_state,
            warm_start=self.warm_start,
        )
        model.weights_ = params.weights.copy()
        model.means_ = params.means.copy()
        model.covariances_ = params.covariances.copy()
        model.precisions_cholesky_ = params.precisions_chol.copy()
        model.precisions_ = params.precisions
        model.converged_ = self.converged_
        model.n_iter_ = self.n_iter_
        model.lower_bound_ = self.lower_bound_
        model.lower_bounds_ = list(getattr(self, "lower_bounds_", [self.lower_bound_]))
        model.n_features_in_ = self.n_features_in_
        return model

    def to_onnx(self, path=None, dtype=np.float64):
        """``predict``, ``predict_proba`` and ``score_samples`` as one ONNX graph (input
        ``X``; outputs ``label``, ``probabilities``, ``score_samples``), written to ``path``
        when given; needs the ``onnx`` extra. See :func:`streamem.models.export.to_onnx`."""
        from streamem.models.export import to_onnx

        return to_onnx(self, path, dtype)

    def _n_parameters(self) -> int:
        return self.fitted_params().n_parameters()

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        n_samples = self._n_samples(X)
        return self.information_criteria(self.score(X) * n_samples, n_samples)[0]

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        n_samples = self._n_samples(X)
        return self.information_criteria(self.score(X) * n_samples, n_samples)[1]

    def information_criteria(self, log_likelihood: float, n_samples: float) -> tuple[float, float]:
        """BIC and AIC from a total log-likelihood over ``n_samples``, counting every free
        parameter the fit estimated."""
        return self.fitted_params().information_criteria(log_likelihood, n_samples, self._n_parameters())

    def _n_samples(self, X) -> int:
        data, _ = as_dask_array(X)
        return int(data.shape[0]) if data is not None else len(X)

    def sample(self, n_samples=1):
        """Draw samples: ``(X, y)`` of shapes (n_samples, n_features) and (n_samples,)."""
        params = self.fitted_params()
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"expected n_samples >= 1, got {n_samples!r}")
        rng = check_random_state(self.random_state)
        weights = np.append(params.weights, params.noise_weight) if params.has_noise else params.weights
        counts = rng.multinomial(n_samples, weights / weights.sum())
        parts = [
            rng.multivariate_normal(mean, full, int(count))
            for mean, full, count in zip(params.means, params.full_covariances, counts)
        ]
        if params.has_noise:  # the noise component's rows, uniform over its box
            parts.append(rng.uniform(*params.box, size=(int(counts[-1]), params.n_features)))
        X = np.vstack(parts)
        y = np.repeat(np.append(np.arange(params.n_components), -1)[: len(counts)], counts)
        return X, y


#: the entry-point group of packages that add estimators (each entry names a class)
PLUGIN_GROUP = "streamem.models"


@functools.cache
def _load_plugins() -> None:
    """Import the estimators that installed packages declare in the entry-point group
    :data:`PLUGIN_GROUP` (defining the class registers it). One that fails to load is
    logged and left out."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            cls = entry.load()
        except Exception as exc:  # a broken plug-in leaves the others usable
            logger.warning("the estimator %s=%s of %s did not load: %s", entry.name, entry.value, PLUGIN_GROUP, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, MixtureBase)):
            logger.warning("the entry %s=%s of %s is not an estimator", entry.name, entry.value, PLUGIN_GROUP)


def estimator_class(name: str) -> type[MixtureBase]:
    """The estimator registered as ``name``: its short name (``"gaussian"``, ``"online"``,
    ``"bayesian"``, ``"t"``; :attr:`MixtureBase.model_name`) or its class name. Every
    subclass of :class:`MixtureBase` is registered when it is defined.

    >>> estimator_class("t").__name__
    'StudentTMixture'
    """
    if not isinstance(name, str):
        raise TypeError(f"expected an estimator's name, got {type(name).__name__}")
    _load_plugins()
    for cls in MixtureBase._estimators.values():
        if name in (cls.model_name, cls.__name__):
            return cls
    raise ValueError(f"expected one of {', '.join(estimator_names())}, got {name!r}")


def estimator_names(streams: bool = False) -> list[str]:
    """The short names of the registered estimators (:func:`estimator_class`); with
    ``streams``, of those that learn from batches as they come (``partial_fit``)."""
    _load_plugins()
    return sorted(
        cls.model_name
        for cls in MixtureBase._estimators.values()
        if cls.model_name is not None and (not streams or hasattr(cls, "partial_fit"))
    )


def load(path, storage_options: dict | None = None):
    """Load a model saved with ``save`` by any of the estimators (or published by a stream),
    as an estimator of the class that saved it (:class:`~streamem.GaussianMixture` for
    stores that name none); or the model a checkpoint directory holds: a stream's, or a
    batch fit's best candidate at its last saved iteration. ``path`` is a local path or
    any fsspec URL (``s3://bucket/model.zarr``), opened with ``storage_options``."""
    if is_checkpoint(path, storage_options):
        return _from_checkpoint(path, storage_options)
    arrays, attrs = read_model(path, storage_options)
    return _saved_class(attrs.get("estimator", "GaussianMixture"), path).from_state(arrays, attrs, str(path))


def _saved_class(name: str, path) -> type[MixtureBase]:
    """The estimator class a saved model names (installed plug-ins' included)."""
    _load_plugins()
    if name not in MixtureBase._estimators:
        raise ValueError(
            f"{str(path)!r} holds a {name!r}, which this version of streamem does not know "
            f"(nor a package of the entry-point group {PLUGIN_GROUP})"
        )
    return MixtureBase._estimators[name]


def _from_checkpoint(path, storage_options=None):
    arrays, attrs = load_state(path, storage_options)
    if "stream" in attrs:
        saved = attrs["stream"]["model"]
        cls = _saved_class(saved.get("estimator", "OnlineGaussianMixture"), path)
        return cls.from_state(arrays, saved, str(path))
    try:
        fingerprint = attrs["fingerprint"]
        cls = _saved_class(attrs.get("estimator", "GaussianMixture"), path)
        runs, _ = state_to_runs(arrays, attrs, cls._params_class)
        names = cls().get_params()
        model = cls(**{name: value for name, value in fingerprint["params"].items() if name in names})
        best, saved = max(runs, key=lambda run: run.objective), {}
        if "scaling" in attrs:  # a standardised fit: its candidates back in the data's units
            mean, scale, loglik_shift, per_sample = attrs["scaling"]
            scaling = Scaling(np.asarray(mean), np.asarray(scale), loglik_shift, per_sample)
            best, saved = scaling.to_data_units(best), {"scaler_mean": scaling.mean, "scaler_scale": scaling.scale}
        model._restore(best, saved, {})
        model.n_features_in_ = int(fingerprint["shape"][1])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{str(path)!r} is a corrupt streamem checkpoint: {exc}") from None
    return model
