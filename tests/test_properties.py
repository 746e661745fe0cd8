"""Bad input, tried by a machine: property-based tests (hypothesis) over every estimator's
public API.

Inputs are drawn over shapes (N < K, D = 1, N = 1), dtypes, NaN and infinity patterns,
sample weights and chunkings, with each estimator's main parameters. The properties:

1. a fit succeeds or raises ValueError or TypeError, and no warning but scikit-learn's
   ``ConvergenceWarning`` escapes it (nothing a ``-W error`` run would turn into a crash);
2. a successful fit has no NaN (nor infinity, but where documented) in any fitted
   attribute, and ``predict``, ``predict_proba`` and ``score_samples`` on the training data
   are finite; input with a problem is never accepted;
3. a failed fit's message names the problem (the parameter, NaN, infinity, the dtype...);
4. a fitted estimator given a failing fit is left as it was;
5. the same valid data in other chunks gives the same parameters (to 1e-8 relative).

Each test is derandomized (a fixed seed, no example database), so a run is reproducible;
``STREAMEM_PROPERTY_SEARCH=N`` searches N times as many examples, from random seeds (for
a deeper search by hand: a failure prints the ``@reproduce_failure`` blob to replay it).

Each bug the search has found keeps its minimal example at the end of this module
(``FIXED``), run on every test run.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import warnings

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

import streamem
from streamem.core.params import CollapsedComponentWarning
from streamem.engine.starts import INIT_METHODS

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
DTYPES = ("float64", "float32", "int64", "bool", "object", "complex128")
ESTIMATORS = {
    "GaussianMixture": streamem.GaussianMixture,
    "OnlineGaussianMixture": streamem.OnlineGaussianMixture,
    "BayesianGaussianMixture": streamem.BayesianGaussianMixture,
    "StudentTMixture": streamem.StudentTMixture,
}
#: the estimators with ``missing="marginalize"``
MARGINALIZING = ("GaussianMixture", "OnlineGaussianMixture", "BayesianGaussianMixture")

#: what a failure's message must mention for each problem of the input (any one of the
#: problems an input has; case-insensitive)
WORDS = {
    "n_components": r"n_components|n_samples",
    "dtype": r"dtype|complex|numeric|convert",
    "nan": r"\bnan\b|missing",
    "inf": r"infinit|\binf\b",
    "sample_weight": r"sample[ _]weights?",
    "reg_covar": r"reg_covar",
    "standardize": r"standardize",
    "noise": r"noise",
    "moves": r"moves",
}


def _settings(max_examples: int) -> settings:
    """Reproducible: a fixed seed and no example database (unless STREAMEM_PROPERTY_SEARCH
    asks for a random search); no deadline (a fit's first pass builds dask graphs)."""
    search = int(os.environ.get("STREAMEM_PROPERTY_SEARCH", "0"))
    return settings(
        max_examples=max_examples * max(search, 1),
        deadline=None,
        derandomize=not search,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# ------------------------------------------------------------------------ inputs


@dataclasses.dataclass
class Case:
    """One drawn input: the data (numpy or dask), the weights, and what is wrong with them."""

    X: object
    sample_weight: object
    values: np.ndarray  # X as float64 (NaN where complex or object values hold them)
    required: set  # problems that must make the fit fail
    allowed: set = dataclasses.field(default_factory=set)  # problems that may make it fail
    weight_kind: str = "none"


def _computed(value):
    return value.compute() if isinstance(value, da.Array) else value


@st.composite
def chunkings(draw, n_rows: int, n_cols: int, columns: bool = True) -> tuple:
    """Random row chunks (sizes summing to ``n_rows``), and sometimes split columns."""
    cuts = draw(st.sets(st.integers(1, max(n_rows - 1, 1)), max_size=min(6, n_rows - 1))) if n_rows > 1 else set()
    bounds = [0, *sorted(cuts), n_rows]
    rows = tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))
    cols = (n_cols,)
    if columns and n_cols > 1 and draw(st.booleans()):
        cut = draw(st.integers(1, n_cols - 1))
        cols = (cut, n_cols - cut)
    return rows, cols


@st.composite
def blobs(draw, min_rows: int = 1, max_rows: int = 60, max_features: int = 4) -> np.ndarray:
    """Rows of a few clusters in float64, at a drawn scale; sometimes duplicated or constant."""
    n = draw(st.integers(min_rows, max_rows))
    d = draw(st.integers(1, max_features))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n_clusters = draw(st.integers(1, 3))
    centres = rng.uniform(-8, 8, (n_clusters, d))
    X = centres[rng.integers(n_clusters, size=n)] + rng.normal(size=(n, d))
    shape = draw(st.sampled_from(["normal", "normal", "normal", "duplicates", "constant", "constant_column"]))
    if shape == "duplicates":
        X = X[rng.integers(max(1, n // 4), size=n)] if n > 1 else X
    elif shape == "constant":
        X[:] = X[0]
    elif shape == "constant_column":
        X[:, rng.integers(d)] = 3.0
    scale = draw(st.sampled_from([1.0, 1.0, 1.0, 1e-4, 1e4, 1e100]))
    return X * scale


def _holes(draw, X: np.ndarray, pattern: str, nan_only: bool = False) -> np.ndarray:
    """X (float64) with NaN or infinity: in whole rows, a whole column, scattered, or everywhere."""
    if pattern == "none":
        return X
    n, d = X.shape
    value = np.nan if nan_only else draw(st.sampled_from([np.nan, np.nan, np.nan, np.inf, -np.inf]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    mask = np.zeros(X.shape, dtype=bool)
    if pattern == "rows":
        mask[rng.random(n) < 0.3] = True
        mask[rng.integers(n)] = True
    elif pattern == "column":
        mask[:, rng.integers(d)] = True
    elif pattern == "scattered":
        mask = rng.random(X.shape) < draw(st.sampled_from([0.05, 0.2, 0.5]))
        mask[rng.integers(n), rng.integers(d)] = True
    elif pattern == "single":
        mask[rng.integers(n), rng.integers(d)] = True
    else:  # all
        mask[:] = True
    X = X.copy()
    X[mask] = value
    return X


def _cast(X: np.ndarray, dtype: str) -> np.ndarray:
    """X in ``dtype`` (float32 makes infinities of values beyond its range)."""
    if dtype == "int64":
        return np.rint(np.clip(X, -1e15, 1e15)).astype(np.int64)
    if dtype == "bool":
        return X > np.median(X)
    if dtype == "object":
        return X.astype(object)
    with np.errstate(over="ignore"):
        return X.astype(dtype)


@st.composite
def sample_weights(draw, n: int, lazy: bool, valid: bool = False):
    """Weights: none, valid (some zeros, huge or tiny), or (unless ``valid``) wrong
    (negative, NaN, infinite, all zero, the wrong length or shape); the kind too."""
    kinds = ["none"] * 6 + ["random", "some_zero", "huge", "huge_one", "tiny"]
    if not valid:
        kinds += ["all_zero", "negative", "nan", "inf", "short", "long", "column"]
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None, kind
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    w = rng.uniform(0.1, 10.0, n)
    one = rng.integers(n)
    if kind == "some_zero":
        w[rng.random(n) < 0.5] = 0.0
        w[one] = 1.0
    elif kind == "huge":
        w[:] = 1e300
    elif kind == "huge_one":
        w[one] = 1e300
    elif kind == "tiny":
        w *= 1e-300
    elif kind == "all_zero":
        w[:] = 0.0
    elif kind in ("negative", "nan", "inf"):
        w[one] = {"negative": -1.0, "nan": np.nan, "inf": np.inf}[kind]
    elif kind == "short":
        w = w[:-1]
    elif kind == "long":
        w = np.append(w, 1.0)
    elif kind == "column":
        w = w[:, None]
    if lazy and w.ndim == 1 and len(w) and draw(st.booleans()):
        return da.from_array(w, chunks=draw(st.integers(1, len(w)))), kind
    return w, kind


@st.composite
def cases(draw, missing: bool, n_components: int = 1, max_rows: int = 60) -> Case:
    """An input for a fit with ``missing`` (NaN allowed) and its problems; ``n_components``
    counts rows too few below it. Half of them are meant to be valid (numeric, enough
    rows, NaN only with ``missing``, weights of the right shape; they may still be
    degenerate), so that the fitted attributes are checked often."""
    valid = draw(st.booleans())
    X = draw(blobs(min_rows=n_components if valid else 1, max_rows=max(max_rows, n_components)))
    dtype = draw(st.sampled_from(DTYPES[:4] if valid else DTYPES))
    pattern = "none"
    if dtype in ("float64", "float32", "object", "complex128") and (missing or not valid):
        pattern = draw(
            st.sampled_from(["none"] * 4 + ["rows", "column", "scattered", "single"] + ["all"] * (not valid))
        )
    X = _holes(draw, X, pattern, nan_only=valid)
    data = _cast(X, dtype)
    values = np.asarray(data.real if dtype == "complex128" else data, dtype=np.float64)
    lazy = draw(st.booleans())
    if lazy:
        data = da.from_array(data, chunks=draw(chunkings(*data.shape)))
    sample_weight, kind = draw(sample_weights(len(values), lazy, valid))

    required, allowed = set(), set()
    if dtype == "complex128" or (dtype == "object" and lazy):
        required.add("dtype")
    if np.isinf(values).any():
        required.add("inf")
    nan = np.isnan(values)
    if nan.any() and not missing:
        required.add("nan")
    if kind in ("negative", "nan", "inf", "short", "long", "column", "all_zero"):
        required.add("sample_weight")
    if len(values) < n_components:
        required.add("n_components")
    if missing and nan.any():
        if nan.all():
            required.add("nan")  # nothing observed
        elif nan.all(axis=0).any():
            allowed.add("nan")  # a feature never observed
        if kind in ("none", "random", "some_zero", "huge", "huge_one", "tiny"):
            w = np.ones(len(values)) if sample_weight is None else np.asarray(_computed(sample_weight))
            if not (w[~nan.all(axis=1)] > 0).any():
                required.add("sample_weight")  # the only weighted rows are empty
        if (~nan.any(axis=1)).sum() < n_components:
            allowed.update({"nan", "n_components"})  # initialisation uses the complete rows
    if kind in ("random", "some_zero", "huge", "huge_one", "tiny"):
        w = np.asarray(_computed(sample_weight))
        if (w > 0).sum() < n_components:
            allowed.add("n_components")  # fewer rows than components, once those of weight 0 are left out
    return Case(data, sample_weight, values, required, allowed, kind)


# -------------------------------------------------------------------- estimators


@st.composite
def estimators(draw, name: str) -> dict:
    """The main parameters of the named estimator, drawn (a few iterations at most)."""
    common = dict(
        n_components=draw(st.integers(1, 6)),
        covariance_type=draw(st.sampled_from(COVARIANCE_TYPES)),
        max_iter=draw(st.integers(1, 4)),
        n_init=draw(st.sampled_from([1, 1, 2])),
        init_params=draw(st.sampled_from(INIT_METHODS)),
        reg_covar=draw(st.sampled_from([1e-6, 1e-6, 1e-3, 0.0])),
        tol=draw(st.sampled_from([1e-3, 0.0])),
        random_state=0,
    )
    if name in MARGINALIZING:
        common["missing"] = draw(st.sampled_from(["error", "marginalize"]))
    if name == "GaussianMixture":
        common.update(
            accelerate=draw(st.sampled_from(["squarem", "quasi-newton", None])),
            standardize=draw(st.booleans()),
            noise=draw(st.sampled_from([None, None, "uniform"])),
        )
    elif name == "OnlineGaussianMixture":
        common.update(
            batch_size=draw(st.integers(1, 64)),
            algorithm=draw(st.sampled_from(["stepwise", "incremental"])),
            warm_up=draw(st.sampled_from([None, 1, 10])),
            average_after=draw(st.sampled_from([None, 1])),
        )
    elif name == "BayesianGaussianMixture":
        common.update(
            weight_concentration_prior_type=draw(st.sampled_from(["dirichlet_process", "dirichlet_distribution"])),
            moves=draw(st.sampled_from(["auto", "merge", None])),
        )
    else:
        common.update(
            degrees_of_freedom=draw(st.sampled_from([None, None, 0.5, 4.0])),
            degrees_of_freedom_init=draw(st.sampled_from([10.0, 1.0])),
        )
    return common


def _hyper_problems(name: str, params: dict) -> set:
    """Combinations of hyper-parameters that a fit must refuse."""
    problems = set()
    if params.get("standardize") and params["covariance_type"] == "spherical":
        problems.add("standardize")
    if params.get("noise") and params.get("missing") == "marginalize":
        problems.add("noise")
    if params.get("moves") == "merge" and params.get("missing") == "marginalize":
        problems.add("moves")
    return problems


def _negligible_regularisation(params: dict, case: Case) -> bool:
    """Whether ``reg_covar`` leaves the covariance of a collapsed component (fewer rows than
    features) numerically singular: 0, or negligible against the data's variance."""
    reg_covar = params.get("reg_covar", 1e-6)
    if reg_covar == 0.0:
        return True
    if params.get("standardize"):
        return False
    finite = np.where(np.isfinite(case.values), case.values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns without a finite value
        variance = np.nanvar(finite, axis=0)
    return bool(reg_covar <= 1e-10 * np.nanmax(variance, initial=0.0))


# ---------------------------------------------------------------------- checks


def _fit(fit):
    """``fit()``'s model, or its ValueError or TypeError; any other exception propagates.
    Fails if a warning other than a ConvergenceWarning or a collapsed component's escapes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model, error = fit(), None
        except (ValueError, TypeError) as exc:
            model, error = None, exc
    allowed = (ConvergenceWarning, CollapsedComponentWarning)  # a spurious maximum is said, not hidden
    unexpected = [w for w in caught if not issubclass(w.category, allowed)]
    assert not unexpected, f"warnings escaped the fit: {[(w.category.__name__, str(w.message)) for w in unexpected]}"
    return model, error


def _numbers(value):
    """Every number in a fitted attribute (arrays, floats, tuples and lists of them)."""
    if isinstance(value, (bool, np.bool_, str)) or value is None:
        return np.empty(0)
    if isinstance(value, (int, float, np.number)):
        return np.array([value], dtype=np.float64)
    if isinstance(value, np.ndarray):
        return value.astype(np.float64).ravel() if value.dtype.kind in "iuf" else np.empty(0)
    if isinstance(value, (list, tuple)):
        parts = [_numbers(v) for v in value]
        return np.concatenate(parts) if parts else np.empty(0)
    if isinstance(value, dict):
        return _numbers(list(value.values()))
    return np.empty(0)


def check_fitted(model, X) -> None:
    """No NaN in any fitted attribute, no infinity except the first ``change`` of
    ``history_`` (from no objective yet); finite predictions on the training data."""
    for name, value in vars(model).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if name == "history_":  # the first change is from no objective yet: +inf
            for index, record in enumerate(value):
                numbers = _numbers({k: v for k, v in record.items() if k != "change" or index > 0})
                assert np.isfinite(numbers).all(), f"{name} holds non-finite values: {record}"
                assert not np.isnan(record.get("change", 0.0)), f"{name} holds NaN: {record}"
            continue
        numbers = _numbers(value)
        assert np.isfinite(numbers).all(), f"fitted attribute {name} is not finite: {value!r}"
    n_rows = X.shape[0]
    outputs = {
        "predict": model.predict(X),
        "predict_proba": model.predict_proba(X),
        "score_samples": model.score_samples(X),
    }
    for method, out in outputs.items():
        out = np.asarray(out.compute() if isinstance(out, da.Array) else out)
        assert len(out) == n_rows, f"{method} gave {len(out)} rows for {n_rows}"
        assert np.isfinite(out.astype(np.float64)).all(), f"{method} on the training data is not finite: {out}"
        if method == "predict_proba":
            np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5, err_msg="responsibilities do not sum to 1")


def check_outcome(model, error, case: Case, fitted_on) -> None:
    """Properties 2 and 3 for one fit of ``case``."""
    if error is None:
        assert not case.required, f"the fit accepted input with {sorted(case.required)}"
        check_fitted(model, fitted_on)
        return
    problems = case.required | case.allowed
    assert problems, f"the fit rejected valid input: {type(error).__name__}: {error}"
    pattern = "|".join(WORDS[p] for p in sorted(problems))
    assert re.search(pattern, str(error), flags=re.IGNORECASE), (
        f"the message does not name {sorted(problems)}: {type(error).__name__}: {error}"
    )


# -------------------------------------------------------------------- known bugs


def _rank(values: np.ndarray) -> int:
    """The rank of the finite rows about their mean (the dimension they span)."""
    rows = values[np.isfinite(values).all(axis=1)]
    return int(np.linalg.matrix_rank(rows - rows.mean(axis=0))) if len(rows) else 0


def _counts_weights(name: str, params: dict) -> bool:
    """Whether a fit counts each row by its weight (a prior weighs against the rows), rather
    than taking the weights' ratios alone (maximum likelihood)."""
    prior = ("weight_concentration_prior", "mean_precision_prior", "covariance_prior", "degrees_of_freedom_prior")
    return name == "BayesianGaussianMixture" or any(params.get(key) is not None for key in prior)


# ---------------------------------------------------------- properties 1, 2, 3


@pytest.mark.parametrize(
    ("name", "examples"),
    [("GaussianMixture", 80), ("OnlineGaussianMixture", 40), ("BayesianGaussianMixture", 60), ("StudentTMixture", 60)],
)
def test_fit_succeeds_or_names_the_problem(name, examples):
    @_settings(examples)
    @given(data=st.data())
    def run(data):
        params = data.draw(estimators(name), label="params")
        case = data.draw(cases(params.get("missing") == "marginalize", params["n_components"]), label="case")
        case.required |= _hyper_problems(name, params)
        if _counts_weights(name, params) and case.weight_kind in ("huge", "huge_one"):
            case.required.add("sample_weight")  # weights of 1e300 rows overflow the weighted moments
        if _negligible_regularisation(params, case):
            case.allowed.add("reg_covar")  # collapsed components have no covariance left
        if params.get("noise") and (np.ptp(case.values, axis=0) == 0).any():
            case.allowed.add("noise")  # a uniform density over a box of no volume
        make = ESTIMATORS[name]
        model, error = _fit(lambda: make(**params).fit(case.X, sample_weight=case.sample_weight))
        check_outcome(model, error, case, case.X)

    run()


@_settings(40)
@given(data=st.data())
def test_select_n_components_succeeds_or_names_the_problem(data):
    ks = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3), label="n_components")
    types = data.draw(st.lists(st.sampled_from(COVARIANCE_TYPES), min_size=1, max_size=2, unique=True), label="types")
    missing = data.draw(st.sampled_from(["error", "marginalize"]), label="missing")
    criterion = data.draw(st.sampled_from(["bic", "icl", "aic"]), label="criterion")
    case = data.draw(cases(missing == "marginalize", max(ks), max_rows=40), label="case")
    if _negligible_regularisation({}, case):
        case.allowed.add("reg_covar")
    model, error = _fit(
        lambda: streamem.select_n_components(
            case.X,
            ks,
            criterion,
            covariance_type=types,
            sample_weight=case.sample_weight,
            max_iter=2,
            missing=missing,
            random_state=0,
        )
    )
    check_outcome(model, error, case, case.X)
    if model is not None:
        for row in model.selection_:
            assert not np.isnan(_numbers(row)).any(), f"selection_ holds NaN: {row}"


# -------------------------------------------------------------------- property 4

#: fitted models (fitted once each), of 2 components on 2 features: each example works on a copy
_FITTED: dict = {}
REFERENCE = np.random.default_rng(7).normal(size=(40, 2)) + np.repeat([[-3.0, 0.0], [3.0, 1.0]], 20, axis=0)


def fitted_model(name: str, covariance_type: str, warm_start: bool, how: str):
    """A copy of a model fitted on ``REFERENCE`` by ``how`` (``fit``, or two ``partial_fit``)."""
    key = (name, covariance_type, warm_start, how)
    if key not in _FITTED:
        params = dict(covariance_type=covariance_type, max_iter=3, random_state=0, warm_start=warm_start)
        if name != "GaussianMixture":
            params["warm_up"] = 10
        model = ESTIMATORS[name](2, **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if how == "fit":
                model.fit(REFERENCE)
            else:
                model.partial_fit(REFERENCE).partial_fit(REFERENCE)
        _FITTED[key] = model
    return copy.deepcopy(_FITTED[key])


@st.composite
def failing_fits(draw, method: str = "fit", initial: bool = True):
    """``(X, sample_weight, hyper)``: a ``method`` call on a model fitted on ``REFERENCE``
    that must fail (``hyper``: parameters set for the call only), with as many features
    or others."""
    n_features = draw(st.sampled_from([2, 2, 1, 3]))
    defects = ["nan", "inf", "complex", "rows", "negative", "weight_nan", "zero", "short"]
    if method == "fit":  # partial_fit reads a lazy batch and checks it as a numpy one; a stream's
        defects += ["object", "n_components", "covariance_type", "tol"]  # parameters are checked at its start
        defects += ["means_init", "weights_init"] if initial else []
    defect = draw(st.sampled_from(defects))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n = 1 if defect == "rows" else draw(st.integers(2, 40))
    X = rng.normal(size=(n, n_features)) * 3
    if defect in ("nan", "inf"):
        X[rng.integers(n), rng.integers(n_features)] = np.nan if defect == "nan" else np.inf
    elif defect == "complex":
        X = X.astype(np.complex128)
    w = {"negative": -np.ones(n), "weight_nan": np.full(n, np.nan), "zero": np.zeros(n), "short": np.ones(n + 1)}.get(
        defect
    )
    hyper = {
        "n_components": {"n_components": 0},
        "means_init": {"means_init": np.zeros((3, n_features))},
        "weights_init": {"weights_init": np.array([0.7, 0.7])},
        "covariance_type": {"covariance_type": "banana"},
        "tol": {"tol": -1.0},
    }.get(defect, {})
    lazy = defect == "object" or draw(st.booleans())
    if lazy:
        X = da.from_array(X.astype(object) if defect == "object" else X, chunks=draw(chunkings(*X.shape)))
        if w is not None and method == "fit" and draw(st.booleans()):
            w = da.from_array(w, chunks=draw(st.integers(1, len(w))))
    return X, w, hyper


def _same(a, b, where: str = "") -> None:
    """``a`` and ``b`` equal, arrays and floats exactly (NaN equal to NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {a.shape} {a.dtype} became {b.shape} {b.dtype}"
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{where}: {a} became {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} became {sorted(b)}"
        for key in a:
            _same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} became {len(b)}"
        for index, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{index}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), f"{where}: NaN became {b}"
    else:
        assert a == b, f"{where}: {a!r} became {b!r}"


def _state(model) -> dict:
    """What a failed fit must leave as it was: the parameters, every fitted attribute, the
    names of all attributes (private ones too) and the predictions."""
    return {
        "params": model.get_params(deep=False),
        "fitted": {name: copy.deepcopy(value) for name, value in vars(model).items() if name.endswith("_")},
        "names": sorted(vars(model)),
        "predict_proba": model.predict_proba(REFERENCE) if hasattr(model, "precisions_cholesky_") else "not fitted",
    }


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_failed_fit_leaves_the_estimator_as_it_was(name):
    @_settings(25)
    @given(data=st.data())
    def run(data):
        covariance_type = data.draw(st.sampled_from(COVARIANCE_TYPES), label="covariance_type")
        warm_start = data.draw(st.booleans(), label="warm_start")
        online = name != "GaussianMixture"
        how = data.draw(st.sampled_from(["fit", "partial_fit"] if online else ["fit"]), label="fitted by")
        method = data.draw(st.sampled_from(["fit", "partial_fit"] if online else ["fit"]), label="method")
        model = fitted_model(name, covariance_type, warm_start, how)
        # an online fit that goes on from its state (warm_start) has no use for initial parameters
        initial = not (name == "OnlineGaussianMixture" and warm_start)
        X, sample_weight, hyper = data.draw(failing_fits(method, initial), label="call")
        before = _state(model)
        original = {key: getattr(model, key) for key in hyper}
        model.set_params(**hyper)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises((ValueError, TypeError)):
                getattr(model, method)(X, sample_weight=sample_weight)
        model.set_params(**original)
        _same(before, _state(model), "the estimator")

    run()


# -------------------------------------------------------------------- property 5


@st.composite
def chunked_fits(draw, name: str):
    """``(params, X, sample_weight)`` of a valid fit: float64 rows (with holes for a fit
    with ``missing="marginalize"``) and positive weights or none."""
    X = draw(blobs(min_rows=3, max_rows=60))
    n_components = draw(st.integers(1, min(3, len(X))))
    params = dict(
        n_components=n_components,
        covariance_type=draw(st.sampled_from(COVARIANCE_TYPES)),
        max_iter=draw(st.integers(1, 4)),
        init_params=draw(st.sampled_from(INIT_METHODS)),
        tol=draw(st.sampled_from([1e-3, 0.0])),
        random_state=0,
    )
    if name in MARGINALIZING and draw(st.booleans()):
        params["missing"] = "marginalize"
        holes = np.random.default_rng(draw(st.integers(0, 2**16))).random(X.shape) < 0.2
        holes[: n_components + 1] = False  # complete rows to start from
        X = np.where(holes, np.nan, X)
    if name == "OnlineGaussianMixture":
        params["batch_size"] = draw(st.integers(n_components, 30))
    w = None
    if draw(st.booleans()):
        w = np.random.default_rng(draw(st.integers(0, 2**16))).uniform(0.5, 2.0, len(X))
    case = Case(X, w, X, set(), weight_kind="none" if w is None else "random")
    assume(not _negligible_regularisation(params, case))
    # well-posed: rows spanning every feature, more than enough for the components (on
    # degenerate data, rounding decides re-seeding and merges, as the chunking does)
    n_complete = int((~np.isnan(X).any(axis=1)).sum())
    assume(_rank(X) == X.shape[1] and n_complete > n_components * (X.shape[1] + 1))
    return params, X, w


def _fitted_numbers(model) -> dict:
    """The fitted attributes that chunking must not change (all but timings)."""
    return {name: value for name, value in vars(model).items() if name.endswith("_") and name != "history_"}


def _close(a, b, where: str, floor: float) -> None:
    """``a`` and ``b`` equal to 1e-8 relative to each array's largest value, or ``floor``
    (rounding of quantities that are 0: a constant feature's variance)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: {sorted(a)} != {sorted(b)}"
        for key in a:
            _close(a[key], b[key], f"{where}.{key}", floor)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for index, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{index}]", floor)
    elif isinstance(a, (np.ndarray, float, np.floating)):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        atol = 1e-8 * np.abs(a).max(initial=0.0) + floor
        np.testing.assert_allclose(b, a, rtol=1e-8, atol=atol, err_msg=where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize(
    ("name", "examples"),
    [("GaussianMixture", 15), ("OnlineGaussianMixture", 6), ("BayesianGaussianMixture", 15), ("StudentTMixture", 15)],
)
def test_chunking_does_not_change_the_fit(name, examples):
    @_settings(examples)
    @given(data=st.data())
    def run(data):
        params, X, w = data.draw(chunked_fits(name), label="fit")
        lazy_X = da.from_array(X, chunks=data.draw(chunkings(*X.shape), label="chunks"))
        lazy_w = None if w is None else da.from_array(w, chunks=data.draw(st.integers(1, len(w)), label="w chunks"))
        make = ESTIMATORS[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            whole = make(**params).fit(X, sample_weight=w)
            chunked = make(**params).fit(lazy_X, sample_weight=lazy_w)
        floor = 1e-14 * (1.0 + np.nanmax(np.abs(X))) ** 2
        _close(_fitted_numbers(whole), _fitted_numbers(chunked), name, floor)

    run()


# ------------------------------------------------------- known bugs: minimal examples


@dataclasses.dataclass
class Example:
    """The minimal example of a known bug of properties 1 to 3."""

    name: str
    params: dict
    X: object
    sample_weight: object = None
    weight_kind: str = "none"
    required: frozenset = frozenset()  # the problems its error must name (none: it must fit)

    def case(self) -> Case:
        values = np.asarray(_computed(self.X), dtype=np.float64)
        return Case(self.X, self.sample_weight, values, set(self.required), weight_kind=self.weight_kind)


#: bugs the search once found, now fixed: their minimal examples (``required``: the
#: problems the error must name; none: the fit must succeed)
FIXED = {
    "huge-weights-overflow": Example(  # the weighted moments overflowed; a fit by likelihood scales the weights
        "GaussianMixture",
        {"n_components": 1, "max_iter": 1},
        np.array([[2.0]], dtype=np.float32),
        np.array([1e300]),
        "huge",
    ),
    "zero-reg-covar-overflow": Example(  # the bound of far groups overflowed for a covariance near 1e-300
        "GaussianMixture",
        {"n_components": 2, "covariance_type": "tied", "reg_covar": 0.0, "max_iter": 1, "random_state": 0},
        np.array([[-5.0], [-6.0], [1.0]]),
        np.array([1e300, 2.77, 0.51]),
        "huge_one",
    ),
    "studentt-huge-weights": Example(  # t_m_step formed su * nk, which overflowed
        "StudentTMixture", {"n_components": 1, "max_iter": 1}, np.array([[2.0]]), np.array([1e300]), "huge"
    ),
    "kmeans-tiny-weights": Example(  # the weighted draws' keys -log(u) / w overflowed
        "GaussianMixture",
        {"n_components": 1, "max_iter": 1},
        np.array([[0.00020593], [0.00028318], [0.00022963], [0.00016557]]),
        np.array([6.4059207e-300, 2.77088847e-300, 5.05637887e-301, 2.63623592e-301]),
        "tiny",
    ),
    "standardize-unchecked-chunks": Example(  # standardize's first pass did not check the chunks
        "GaussianMixture",
        {"n_components": 1, "max_iter": 1, "standardize": True},
        da.from_array(np.array([[np.inf]])),
        required=frozenset({"inf"}),
    ),
    "bayesian-merge-singular": Example(  # a merge leaving a singular posterior failed the fit
        "BayesianGaussianMixture",
        {
            "n_components": 2,
            "max_iter": 2,
            "random_state": 0,
            "weights_init": [0.5, 0.5],
            "means_init": [[0.0, 0.0], [1.0, 0.5]],
            "precisions_init": [np.eye(2), np.eye(2)],
        },
        np.array([[0.0, 0.0], [1.0, 0.5], [2.0, 1.0]]),
    ),
    "online-batch-infinities": Example(  # check_array's sum warned before its error
        "OnlineGaussianMixture",
        {"n_components": 1, "max_iter": 1},
        da.from_array(np.array([[-np.inf], [np.inf]])),
        required=frozenset({"inf"}),
    ),
    "online-weightless-batch": Example(  # a mini-batch without weight failed the fit
        "OnlineGaussianMixture",
        {"n_components": 1, "max_iter": 1, "batch_size": 1, "missing": "marginalize"},
        np.array([[2.0], [2.8], [np.nan]]),
    ),
}


@pytest.mark.parametrize("label", list(FIXED))
def test_fixed_bug(label):
    """Properties 1 to 3 on the minimal example of a bug the search found."""
    example = FIXED[label]
    case = example.case()
    make = ESTIMATORS[example.name]
    model, error = _fit(lambda: make(**example.params).fit(case.X, sample_weight=case.sample_weight))
    check_outcome(model, error, case, case.X)


@pytest.mark.parametrize("name", ["OnlineGaussianMixture", "BayesianGaussianMixture", "StudentTMixture"])
def test_a_bad_first_batch_after_fit_leaves_the_model_as_it_was(name):
    """Property 4 where the search once found a bug: the first ``partial_fit`` after ``fit``
    starts a new stream, and checks its batch before it forgets the fit."""
    model = fitted_model(name, "full", False, "fit")
    before = _state(model)
    with pytest.raises(ValueError, match="NaN"):
        model.partial_fit(np.full((5, 2), np.nan))
    _same(before, _state(model), "the estimator")


def test_reseeding_tied_rows_does_not_depend_on_the_chunks():
    """Property 5 where the search once found a bug: three equal rows, three components,
    in one chunk and in two (each block kept its single worst row)."""
    X = np.full((3, 1), 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        whole = streamem.GaussianMixture(3, max_iter=1, random_state=0).fit(X)
        chunked = streamem.GaussianMixture(3, max_iter=1, random_state=0).fit(da.from_array(X, chunks=((1, 2), (1,))))
    _close(_fitted_numbers(whole), _fitted_numbers(chunked), "GaussianMixture", 1e-14)
