"""Mergeable moments: the one base of the statistics a pass reduces.

A pass adds the statistics of its chunks in a tree (:mod:`streamem.engine.passes`), stepwise
EM mixes them as running averages, incremental EM swaps a chunk's old statistics for new
ones: each needs ``+``, ``*`` by a number and ``-``, exact whatever the split. A statistic
is a frozen dataclass deriving from :class:`Moments` that names how its fields merge:

- :attr:`~Moments.summed`: added, subtracted and scaled (sums of weights, of moments, of
  log-likelihoods); ``None`` is an absent optional term;
- :attr:`~Moments.counted`: added and subtracted, never scaled (numbers of rows);
- :attr:`~Moments.kept`: merged by their own ``+`` (rows kept for re-seeding), left as they
  are by ``*`` and ``-``, the batch's in a step;
- any other field is the same on both sides (a covariance type).

Moments of second order are accumulated about a centre fixed for the pass (``shift``,
one per component), never about the origin; :meth:`Moments.recentred` moves them to other
centres with the exact rank-one correction (Chan's pairwise update), so that two parts
about different centres add without cancellation.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from streamem.core.covariance import get_covariance

__all__ = ["Moments"]


def _combined(a, b, sign: float):
    """``a + sign * b``, either one None (an optional term its rows did not have)."""
    if a is None or b is None:
        return a if b is None else sign * b
    return a + sign * b


class Moments:
    """Statistics of some rows that merge exactly (see the module's docstring).

    A subclass with moments about centres has the fields ``s1`` (first moments about
    ``shift``), ``s2`` (second moments, in ``covariance_type``'s statistic shape), ``shift``
    of shape (n_components, n_features), and names in :attr:`moment_weight` the field of
    the weights of its first moments (:math:`s_1 = \\sum_i v_{ik} (x_i - c_k)`). Every
    subclass has a ``weight`` (the rows' total weight) and may have ``count`` and
    ``ignored`` (rows), which :meth:`normalized` sets to 1 and 0.
    """

    #: the fields added, subtracted and scaled
    summed: ClassVar[tuple[str, ...]] = ()
    #: the fields added and subtracted, never scaled
    counted: ClassVar[tuple[str, ...]] = ()
    #: the fields merged by their own ``+``, kept by ``*`` and ``-``, the batch's in a step
    kept: ClassVar[tuple[str, ...]] = ()
    #: the field holding the weights of the first moments (None: no moments about a centre)
    moment_weight: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fields = {name for klass in cls.__mro__ for name in getattr(klass, "__annotations__", {})}
        unknown = sorted(set(cls.summed + cls.counted + cls.kept) - fields)
        if unknown:
            raise TypeError(f"expected the merges of {cls.__name__} to name its fields, got {unknown}")

    def recentred(self, shift: np.ndarray):
        """The same statistics about ``shift`` (shape (n_components, n_features)): exact
        rank-one corrections in float64, whose rounding grows with the distance moved
        against the components' spread (small when both centres are near the means)."""
        moments: Any = self  # a subclass's, with the fields of moments about centres
        if self.moment_weight is None or moments.shift is shift or np.array_equal(moments.shift, shift):
            return self
        delta = moments.shift - shift
        weights = getattr(self, self.moment_weight)
        covariance = get_covariance(moments.covariance_type)
        return dataclasses.replace(
            moments,
            s1=moments.s1 + weights[:, None] * delta,
            s2=covariance.shifted_second_moment(moments.s2, weights, moments.s1, delta),
            shift=np.array(shift, dtype=np.float64),
        )

    def _merged(self, other, sign: float):
        moments: Any = self
        if self.moment_weight is not None:
            other = other.recentred(moments.shift)
        names = self.summed + self.counted
        changes = {name: _combined(getattr(self, name), getattr(other, name), sign) for name in names}
        if sign > 0:
            changes.update({name: getattr(self, name) + getattr(other, name) for name in self.kept})
        return dataclasses.replace(moments, **changes)

    def __add__(self, other):
        """The statistics of both sets of rows, about ``self``'s centres."""
        return self._merged(other, 1.0)

    def __sub__(self, other):
        """These statistics without ``other``'s rows, about ``self``'s centres; rows kept
        for re-seeding stay ``self``'s."""
        return self._merged(other, -1.0)

    def __mul__(self, factor: float):
        moments: Any = self
        changes = {name: getattr(self, name) * factor for name in self.summed if getattr(self, name) is not None}
        return dataclasses.replace(moments, **changes)

    __rmul__ = __mul__

    def normalized(self):
        """The statistics per unit of weight (weight 1, count 1): the M-step gives the same
        parameters, and statistics of batches of any size mix as averages."""
        moments: Any = self
        rows = {name: int(name == "count") for name in self.counted}
        return dataclasses.replace(self * (1.0 / moments.weight), weight=1.0, **rows)

    def step(self, batch, step_size: float):
        """Stepwise EM's running average, :math:`(1 - \\eta)\\, s + \\eta\\, \\hat s(\\text{batch})`,
        both per unit of weight, about the batch's centres; the rows kept for re-seeding
        are the batch's (re-seeding uses rows of the current parameters)."""
        mixed = batch.normalized() * step_size + self.normalized() * (1.0 - step_size)
        rows = {name: getattr(batch, name) for name in self.kept}
        return dataclasses.replace(mixed, weight=1.0, count=1, **rows)
