"""Choosing the number of components: every candidate K fitted in the same passes."""

from __future__ import annotations

from numbers import Integral

from .base import blas_per_task
from .batch import GaussianMixture, fit_candidates, set_fitted

__all__ = ["select_n_components"]

CRITERIA = ("bic", "aic")


def _parse_ks(n_components) -> list[int]:
    ks = [n_components] if isinstance(n_components, Integral) else list(n_components)
    if not ks or not all(isinstance(k, Integral) and k >= 1 for k in ks):
        raise ValueError(f"expected n_components as integers >= 1, got {n_components!r}")
    return sorted({int(k) for k in ks})


def select_n_components(X, n_components=range(1, 11), criterion: str = "bic", *, sample_weight=None, **params):
    """Fit a mixture for every number of components at once; return the best one.

    Every pass over the data serves all candidates (each K, times ``n_init``
    restarts): initialisation and EM read each chunk once per pass for all of them, and
    one more pass scores each K's final parameters. The number of passes is that of the
    slowest candidate, not the sum over K.

    Parameters
    ----------
    X : array-like, dask array, zarr array or path, of shape (n_samples, n_features)
    n_components : iterable of int, default=range(1, 11)
    criterion : {"bic", "aic"}, default="bic"
        Lower is better.
    sample_weight : array-like of shape (n_samples,), default=None
    **params
        Other parameters of :class:`~streamem.GaussianMixture` (``covariance_type``,
        ``n_init``, ``random_state``, ``max_iter``, ``tol``, ``reg_covar``, ...).

    Returns
    -------
    GaussianMixture
        The fitted model with the lowest criterion. Its ``selection_`` attribute holds one
        dict per candidate K: ``n_components, bic, aic, lower_bound, log_likelihood,
        n_iter, converged``.

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
    if any(params.get(name) is not None for name in ("weights_init", "means_init", "precisions_init")):
        raise ValueError("weights_init, means_init and precisions_init fix one number of components; leave them out")
    if params.get("warm_start"):
        raise ValueError("warm_start does not apply when choosing n_components")
    model = GaussianMixture(n_components=max(ks), **params)
    best, gaussian, chunked = fit_candidates(model, X, sample_weight, ks)
    with blas_per_task(chunked.n_chunks):
        totals = gaussian.estep(chunked, [best[k].params for k in ks])

    table = []
    for k, total in zip(ks, totals):
        bic, aic = best[k].params.information_criteria(total.loglik, total.weight)
        table.append({
            "n_components": k,
            "bic": bic,
            "aic": aic,
            "lower_bound": float(best[k].objective),
            "log_likelihood": float(total.mean_loglik),
            "n_iter": best[k].n_iter,
            "converged": bool(best[k].converged),
        })  # fmt: skip
    chosen = min(table, key=lambda row: row[criterion])["n_components"]
    model.set_params(n_components=chosen)
    set_fitted(model, best[chosen], warn=True)
    model.selection_ = table
    return model
