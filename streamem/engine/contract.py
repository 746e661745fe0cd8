"""The contract of a mixture model on the EM core: what :func:`~streamem.engine.em.run_em`
asks of the model it runs and of the parameters that model makes.

A model is any object with these methods; nothing needs to derive from the protocols (they
are checked structurally, and ``tests/test_contract.py`` checks every model of streamem's
estimators against them, names of arguments included). The docs' "Adding a mixture" page
builds one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from streamem.engine.passes import ChunkedData

__all__ = ["MODEL_METHODS", "MixtureModel", "Parameters", "Statistics", "check_model"]


@runtime_checkable
class Statistics(Protocol):
    """What one pass reduces for one candidate: mergeable (``a + b`` is the statistics of
    both parts, exactly, whatever the split) and scalable (``a * f``, for stepwise EM's
    running averages)."""

    weight: float

    def __add__(self, other): ...

    def __mul__(self, factor: float): ...


@runtime_checkable
class Parameters(Protocol):
    """A candidate's parameters, frozen: each M-step makes new ones.

    ``to_vector``/``from_vector`` map them to one flat vector of free parameters and back
    (what acceleration extrapolates); ``to_arrays`` names the arrays a saved model or a
    checkpoint holds (read back by the class's ``from_arrays``).
    """

    weights: np.ndarray
    means: np.ndarray

    @property
    def n_components(self) -> int: ...

    @property
    def n_features(self) -> int: ...

    def to_vector(self) -> np.ndarray: ...

    def from_vector(self, vector: np.ndarray): ...

    def to_arrays(self, prefix: str = "") -> dict: ...

    def n_parameters(self) -> int: ...


@runtime_checkable
class MixtureModel(Protocol):
    """One kind of mixture, as :func:`~streamem.engine.em.run_em` runs it.

    - ``estep(data, params_list)``: one pass over ``data`` (a
      :class:`~streamem.engine.passes.ChunkedData`), the reduced :class:`Statistics` of
      every candidate in ``params_list``, in its order;
    - ``objective(stats, params)``: the history entries of an iteration from the
      statistics of ``params``: ``{"log_likelihood": ...}`` (per unit of row weight) and,
      where the objective EM climbs differs (a prior, a variational bound), ``"objective"``;
    - ``mstep(stats, params)``: the new parameters, and the moves the M-step made besides
      its update (``{}``, or e.g. ``{"reseeded": [components]}``; keys of
      :data:`~streamem.engine.em.MOVES`);
    - ``to_vector(params)`` / ``from_vector(vector, like)``: the parameters as the flat
      vector acceleration extrapolates, and back (``like`` gives the structure and any
      parameters held fixed);
    - ``reg_covar``: what the M-step adds to every covariance's diagonal; an extrapolated
      point with a smaller eigenvalue is refused (EM's own points never have one).
    """

    reg_covar: float

    def estep(self, data: ChunkedData, params_list: list) -> list: ...

    def objective(self, stats, params) -> dict: ...

    def mstep(self, stats, params) -> tuple: ...

    def to_vector(self, params) -> np.ndarray: ...

    def from_vector(self, vector: np.ndarray, like): ...


#: the methods of :class:`MixtureModel`, in its order
MODEL_METHODS = ("estep", "objective", "mstep", "to_vector", "from_vector")


def check_model(model) -> None:
    """Raise TypeError naming what ``model`` lacks of :class:`MixtureModel`."""
    missing = [name for name in MODEL_METHODS if not callable(getattr(model, name, None))]
    missing += [] if isinstance(getattr(model, "reg_covar", None), (int, float)) else ["reg_covar"]
    if missing:
        raise TypeError(
            f"expected a MixtureModel (streamem.engine.contract), got {type(model).__name__} "
            f"without {', '.join(missing)}"
        )
