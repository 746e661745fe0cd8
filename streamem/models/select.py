"""Choosing the number of components (and the covariance type): every candidate fitted in
the same passes, and a table of information criteria."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from streamem.core.covariance import COVARIANCE_TYPES
from streamem.engine.em import best_cells
from streamem.engine.rows import blas_per_task
from streamem.models.base import MixtureBase, estimator_class
from streamem.models.batch import set_fitted
from streamem.models.gaussian import GaussianMixture

__all__ = ["chosen_row", "select_n_components"]

CRITERIA = ("bic", "icl", "aic")
PRIORS = (*GaussianMixture.PRIOR_PARAMETERS, "mean_prior")


def _parse_ks(n_components) -> list[int]:
    ks = [n_components] if isinstance(n_components, Integral) else list(n_components)
    if not ks or not all(isinstance(k, Integral) and k >= 1 for k in ks):
        raise ValueError(f"expected n_components as integers >= 1, got {n_components!r}")
    return sorted({int(k) for k in ks})


def _parse_types(covariance_type) -> list[str]:
    types = [covariance_type] if isinstance(covariance_type, str) else list(covariance_type)
    unknown = [t for t in types if t not in COVARIANCE_TYPES]
    if not types or unknown:
        raise ValueError(f"expected covariance_type among {list(COVARIANCE_TYPES)}, got {covariance_type!r}")
    return list(dict.fromkeys(types))


def select_n_components(
    X,
    n_components=range(1, 11),
    criterion: str = "bic",
    *,
    covariance_type="full",
    model="gaussian",
    sample_weight=None,
    storage_options=None,
    feature_dim=None,
    **params,
):
    """Fit a mixture for every number of components (and covariance type) at once; return
    the best one.

    Every pass over the data serves all candidates (each covariance type and K, times
    ``n_init`` restarts): initialisation and EM read each chunk once per pass for all of
    them, and one more pass scores each candidate's final parameters. The number of passes
    is that of the slowest candidate, not the sum over the table.

    Parameters
    ----------
    X : array-like, dask array, zarr array or path, of shape (n_samples, n_features)
    n_components : int or iterable of int, default=range(1, 11)
    criterion : {"bic", "icl", "aic"}, default="bic"
        Lower is better. ICL (Biernacki, Celeux & Govaert 2000) is BIC plus twice the
        entropy of the responsibilities, :math:`-\\sum_{ik} w_i r_{ik} \\log r_{ik}`: it
        prefers well-separated clusters to a better density fit.
    covariance_type : str or list of str, default="full"
        One covariance type, or several to compare (mclust's model table).
    model : str, default="gaussian"
        The estimator, by its registered name (:func:`~streamem.models.base.estimator_class`):
        :class:`~streamem.GaussianMixture` or one derived from it that fits by maximum
        likelihood (a variational fit has no BIC; the t mixture's starts are not shared).
    sample_weight : array-like of shape (n_samples,), default=None
    storage_options, feature_dim
        As :meth:`GaussianMixture.fit` takes them.
    **params
        Other parameters of :class:`~streamem.GaussianMixture`, honoured as a fit honours
        them (``n_init``, ``random_state``, ``standardize``, ``checkpoint`` — the table's
        candidates are saved there and a second call resumes them —, ``noise``, the priors,
        ``accelerate``, ``scheduler_address``...). Those that fix one fit (``weights_init``,
        ``means_init``, ``precisions_init``, ``warm_start``) are refused, and so is
        ``freeze``, which needs them.

    Returns
    -------
    GaussianMixture (or the estimator ``model`` names)
        The fitted model with the lowest criterion. Its ``selection_`` attribute holds one
        dict per candidate: ``covariance_type, n_components, log_likelihood (mean per
        sample), n_parameters, bic, icl, aic, lower_bound, n_iter, converged, collapsed``
        (how many of its components have collapsed onto a few rows, or onto rows that
        share a value: :meth:`~streamem.core.params.MixtureParams.collapsed`; a candidate with
        one is a spurious maximum, chosen only when every candidate has one),
        ``selection_criterion_`` the criterion that chose it, and ``n_passes_`` the passes
        over the data of the whole table (initialisation and the scoring pass included).

    Examples
    --------
    >>> import numpy as np, streamem
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(m, 1, (300, 2)) for m in (-8, 0, 8)])
    >>> streamem.select_n_components(X, range(1, 6), random_state=0).n_components
    3
    """
    if criterion not in CRITERIA:
        raise ValueError(f"expected criterion in {CRITERIA}, got {criterion!r}")
    ks = _parse_ks(n_components)
    types = _parse_types(covariance_type)
    if any(params.get(name) is not None for name in ("weights_init", "means_init", "precisions_init")):
        raise ValueError("weights_init, means_init and precisions_init fix one number of components; leave them out")
    if params.get("warm_start"):
        raise ValueError("warm_start does not apply when choosing n_components")
    if len(types) > 1 and any(params.get(name) is not None for name in PRIORS):
        raise ValueError("a prior fixes one covariance type: give one covariance_type with priors")
    estimator = table_estimator(model)
    model = estimator(n_components=max(ks), covariance_type=types[0] if len(types) == 1 else "full", **params)
    best, totals, n_passes, scale, collapsed = fit_candidates(
        model, X, sample_weight, ks, types, storage_options, feature_dim
    )
    keys = [(t, k) for t in types for k in ks]

    table = []
    for t, k in keys:
        params_k, total = best[(t, k)].params, totals[(t, k)]
        # the criteria count rows by their weights as given (the fit scaled them by ``scale``)
        bic, aic = params_k.information_criteria(total.loglik / scale, total.weight / scale)
        table.append(
            {
                "covariance_type": t,
                "n_components": k,
                "log_likelihood": float(total.mean_loglik),
                "n_parameters": params_k.n_parameters(),
                "bic": bic,
                "icl": bic + 2.0 * max(total.entropy(params_k) / scale, 0.0),
                "aic": aic,
                "lower_bound": float(best[(t, k)].objective),
                "n_iter": best[(t, k)].n_iter,
                "converged": bool(best[(t, k)].converged),
                "collapsed": collapsed[(t, k)],
            }
        )
    chosen = chosen_row(table, criterion)
    model.set_params(n_components=chosen["n_components"], covariance_type=chosen["covariance_type"])
    set_fitted(model, best[(chosen["covariance_type"], chosen["n_components"])], warn=True, n_passes=n_passes)
    model.selection_ = table
    model.selection_criterion_ = criterion
    return model


def _shares_tables(cls) -> bool:
    """Whether ``cls`` fits model tables: the Gaussian mixture's starts and passes, scored
    by its likelihood."""
    if not issubclass(cls, GaussianMixture) or cls.variational:
        return False
    return cls._initial_runs is GaussianMixture._initial_runs


def table_estimator(name) -> type[GaussianMixture]:
    """The estimator registered as ``name``, when it fits model tables (else ValueError)."""
    cls = estimator_class(name)
    if not _shares_tables(cls):
        shared = [c.model_name for c in MixtureBase._estimators.values() if c.model_name and _shares_tables(c)]
        raise ValueError(f"expected a model whose table shares its passes ({', '.join(shared)}), got {name!r}")
    return cls


def chosen_row(table: list[dict], criterion: str) -> dict:
    """The row of a model table (``selection_``) with the lowest finite ``criterion``, among
    those without a collapsed component: a spurious maximum's likelihood is unbounded, not
    a better fit (among all rows when every one has one, or in a table without the count)."""
    sound = [row for row in table if not row.get("collapsed")] or table
    return min(sound, key=lambda row: row[criterion] if np.isfinite(row[criterion]) else np.inf)


def fit_candidates(
    model: GaussianMixture, X, sample_weight, ks, covariance_types=None, storage_options=None, feature_dim=None
) -> tuple[dict, dict, int, float, dict]:
    """``model.n_init`` candidates for each number of components in ``ks`` and each of
    ``covariance_types`` (default: the model's), all fitted in the same passes over X as
    ``model`` fits (its checkpoint, standardisation, scheduler... apply; it keeps the
    features and the scaling), then one pass that scores the best of each. Returns the best
    candidate of each ``(covariance type, K)`` (in the data's units), its totals from the
    scoring pass, the passes over the data, the factor the weights were scaled by for the
    fit (the totals' weights are the scaled ones), and how many of each best candidate's
    components have collapsed (:meth:`~streamem.core.params.MixtureParams.collapsed`; 0 for a
    model that does not tell). Several types share their initialisation:
    each start is computed once with full covariances, and each type's is what its M-step
    gives from the same responsibilities (:meth:`~streamem.core.covariance.Covariance.from_full`)."""
    types = list(covariance_types or [model.covariance_type])
    model._validate_params()
    with model._job(X, None, sample_weight, storage_options, feature_dim, ks=list(ks), covariance_types=types) as job:
        runs, shift, n_passes = model._fit_chunks(job)
        test = model._collapse_test(job.chunked)  # (reg_covar in the units of the fit)
        best = best_cells(runs, test)
        collapsed = {key: 0 if test is None else test(run.params) for key, run in best.items()}
        if job.scaling is not None:
            best = {key: job.scaling.to_data_units(run) for key, run in best.items()}
        scorer = job.model.in_data_units() if job.scaling is not None else job.model
        before = job.chunked.passes
        with blas_per_task(job.chunked.n_chunks):
            totals = scorer.estep(job.chunked, [state.params for state in best.values()])
    model._set_scaling(job.scaling)
    return best, dict(zip(best, totals)), n_passes + job.chunked.passes - before, job.weight_scale, collapsed
