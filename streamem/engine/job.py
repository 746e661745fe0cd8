"""The state of one fit (:class:`FitJob`), passed through it and never kept on the
estimator, and the pass that measures each feature's scale for a standardised fit.
"""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np

from streamem.core.params import InitialParameters
from streamem.core.stats import feature_moments_chunk
from streamem.engine.em import Scaling
from streamem.engine.passes import ChunkedData, from_numpy

__all__ = ["FitJob", "feature_scaling"]


@dataclasses.dataclass(eq=False)
class FitJob:
    """The state of one fit, passed through it and never kept on the estimator.

    ``chunked`` is the data EM reads; ``starting`` the rows the initialisation reads
    (standardised when the fit standardises, by ``scaling``); ``initial`` the parameters the
    user gave; ``storage_options`` those of the URLs it reads and writes; ``fingerprint``
    what a checkpoint must match, and ``saved`` the checkpoint it resumes from. ``ks`` and
    ``covariance_types`` (a table of candidates, :func:`fit_candidates`) replace the
    estimator's own. ``model`` is the model being fitted once it is built (with
    ``data_weight``, the data's total weight, for a variational one), and ``warm_up`` marks
    an online estimator's batch fit of its first rows. ``explored`` marks a fit whose
    starts were explored on a sample of the rows (:meth:`GaussianMixture._explore`),
    ``sample`` the fit of that sample (whose lines say so); ``iterations`` and ``tolerance``
    replace the estimator's ``max_iter`` and ``tol``. ``unmoved`` holds the candidates as they were before the
    split-and-merge moves.
    ``weight_scale`` is the power of two
    the sample weights of a maximum-likelihood fit were scaled by
    (:func:`~streamem.data.checks.relative_weights`).
    """

    chunked: ChunkedData
    starting: ChunkedData
    initial: InitialParameters
    random_state: np.random.RandomState
    scaling: Scaling | None = None
    storage_options: dict | None = None
    fingerprint: dict | None = None
    saved: tuple | None = None
    ks: list[int] | None = None
    covariance_types: list[str] | None = None
    model: object = None
    data_weight: float | None = None
    warm_up: bool = False
    explored: bool = False
    sample: bool = False
    unmoved: list | None = None
    iterations: int | None = None
    tolerance: float | None = None
    weight_scale: float = 1.0

    @classmethod
    def in_memory(cls, data: np.ndarray, weights, initial: InitialParameters, random_state, warm_up=False) -> FitJob:
        """A fit of rows in memory (an online estimator's warm-up)."""
        rows = from_numpy(data)
        chunked = ChunkedData(rows, None if weights is None else da.from_array(weights, chunks=(rows.chunks[0],)))
        return cls(chunked, chunked, initial, random_state, warm_up=warm_up)

    def max_iter(self, estimator) -> int:
        """The EM iterations of each candidate at most: ``iterations``, or the estimator's."""
        return estimator.max_iter if self.iterations is None else self.iterations

    def tol(self, estimator) -> float:
        """The convergence threshold: ``tolerance``, or the estimator's."""
        return estimator.tol if self.tolerance is None else self.tolerance


def feature_scaling(chunked: ChunkedData, allow_nan: bool) -> Scaling:
    """Each feature's mean and standard deviation, in one pass (:class:`~streamem.core.stats.FeatureMoments`),
    over the values that are not missing (``allow_nan``: NaN marks them; else NaN is refused)."""
    moments = chunked.map_reduce(feature_moments_chunk, allow_nan)
    scale = moments.scale()
    loglik_shift = float(moments.weight @ np.log(scale))
    return Scaling(moments.mean, scale, loglik_shift, loglik_shift / moments.rows if moments.rows else 0.0)
