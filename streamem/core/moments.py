"""Mergeable moments: the one base of the statistics a pass reduces.

A pass adds the statistics of its chunks in a tree (:mod:`streamem.engine.passes`), stepwise
EM mixes them as running averages, incremental EM swaps a chunk's old statistics for new
ones: each needs ``+``, ``*`` by a number and ``-``, exact whatever the split. A statistic
is a frozen dataclass deriving from :class:`Moments` whose fields say how they merge, by
the field helpers below:

- :func:`summed`: added, subtracted and scaled (sums of weights, of moments, of
  log-likelihoods); ``None`` is an absent optional term;
- :func:`counted`: added and subtracted, never scaled (numbers of rows);
- :func:`kept`: merged by their own ``+`` (rows kept for re-seeding), left as they are by
  ``*`` and ``-``, the batch's in a step;
- any other field is the same on both sides (a covariance type).

Moments of second order are accumulated about a centre fixed for the pass (``shift``,
one per component), never about the origin; :meth:`Moments.recentred` moves them to other
centres with the exact rank-one correction (Chan's pairwise update), so that two parts
about different centres add without cancellation.

The numerical core imports only numpy and scipy.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from streamem.core.covariance import get_covariance

__all__ = ["Moments", "counted", "kept", "summed"]

_MERGE = "merge"
_SUM, _COUNT, _KEEP = "sum", "count", "keep"


def summed(**kwargs):
    """A field added by ``+``, subtracted by ``-`` and scaled by ``*``."""
    return dataclasses.field(metadata={_MERGE: _SUM}, **kwargs)


def counted(**kwargs):
    """A field added and subtracted, never scaled (a number of rows)."""
    return dataclasses.field(metadata={_MERGE: _COUNT}, **kwargs)


def kept(**kwargs):
    """A field merged by its own ``+``, kept by ``*`` and ``-``, the batch's in a step."""
    return dataclasses.field(metadata={_MERGE: _KEEP}, **kwargs)


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

    #: the field holding the weights of the first moments (None: no moments about a centre)
    moment_weight: ClassVar[str | None] = None

    @classmethod
    def _roles(cls) -> list[tuple[str, str | None]]:
        return [(f.name, f.metadata.get(_MERGE)) for f in dataclasses.fields(cls)]

    def recentred(self, shift: np.ndarray):
        """The same statistics about ``shift`` (shape (n_components, n_features)): exact
        rank-one corrections in float64, whose rounding grows with the distance moved
        against the components' spread (small when both centres are near the means)."""
        if self.moment_weight is None or self.shift is shift or np.array_equal(self.shift, shift):
            return self
        delta = self.shift - shift
        weights = getattr(self, self.moment_weight)
        covariance = get_covariance(self.covariance_type)
        return dataclasses.replace(
            self, s1=self.s1 + weights[:, None] * delta,
            s2=covariance.shifted_second_moment(self.s2, weights, self.s1, delta),
            shift=np.array(shift, dtype=np.float64),
        )  # fmt: skip

    def _merged(self, other, sign: float):
        if self.moment_weight is not None:
            other = other.recentred(self.shift)
        changes = {}
        for name, role in self._roles():
            mine, theirs = getattr(self, name), getattr(other, name)
            if role in (_SUM, _COUNT):
                changes[name] = _combined(mine, theirs, sign)
            elif role == _KEEP and sign > 0:
                changes[name] = mine + theirs
        return dataclasses.replace(self, **changes)

    def __add__(self, other):
        """The statistics of both sets of rows, about ``self``'s centres."""
        return self._merged(other, 1.0)

    def __sub__(self, other):
        """These statistics without ``other``'s rows, about ``self``'s centres; rows kept
        for re-seeding stay ``self``'s."""
        return self._merged(other, -1.0)

    def __mul__(self, factor: float):
        changes = {}
        for name, role in self._roles():
            value = getattr(self, name)
            if role == _SUM and value is not None:
                changes[name] = value * factor
        return dataclasses.replace(self, **changes)

    __rmul__ = __mul__

    def normalized(self):
        """The statistics per unit of weight (weight 1, count 1): the M-step gives the same
        parameters, and statistics of batches of any size mix as averages."""
        rows = {name: int(name == "count") for name, role in self._roles() if role == _COUNT}
        return dataclasses.replace(self * (1.0 / self.weight), weight=1.0, **rows)

    def step(self, batch, step_size: float):
        """Stepwise EM's running average, :math:`(1 - \\eta)\\, s + \\eta\\, \\hat s(\\text{batch})`,
        both per unit of weight, about the batch's centres; the rows kept for re-seeding
        are the batch's (re-seeding uses rows of the current parameters)."""
        mixed = batch.normalized() * step_size + self.normalized() * (1.0 - step_size)
        rows = {name: getattr(batch, name) for name, role in self._roles() if role == _KEEP}
        return dataclasses.replace(mixed, weight=1.0, count=1, **rows)
