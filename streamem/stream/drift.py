r"""Drift alarms: a Page-Hinkley test on each batch's mean log-likelihood under the model.

A stream whose distribution changes shows it first in how well the current model explains
the new rows: their mean log-likelihood drops. The test (Page 1954; Hinkley 1971) follows
the cumulative deviation of the batch values below their running mean, in units of their
running standard deviation :math:`s_t`,

.. math::
    m_t = \sum_{i \le t} \Big(\frac{\bar x_i - x_i}{s_i} - \delta\Big), \qquad
    \text{alarm when } m_t - \min_{i \le t} m_i > \lambda,

with :math:`\delta` the drop tolerated per batch and :math:`\lambda` the threshold; both
in standard deviations, so the defaults fit any data and batch size. After an alarm the
test starts again on the batches that follow.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["PageHinkley"]


@dataclasses.dataclass
class PageHinkley:
    """Page-Hinkley test for a drop in a sequence of values (batch mean log-likelihoods).

    Parameters
    ----------
    delta : float, default=0.5
        The drop tolerated per batch, in standard deviations of the values.
    threshold : float, default=25.0
        :math:`\\lambda`: the cumulative drop, in standard deviations, that raises an alarm.
    min_batches : int, default=10
        Values seen (since the start or the last alarm) before an alarm can be raised; they
        estimate the mean and the standard deviation.

    Examples
    --------
    >>> detector = PageHinkley()
    >>> [detector.update(v) for v in [-3.0, -3.1, -2.9] * 10 + [-9.0]][-1]
    True
    """

    delta: float = 0.5
    threshold: float = 25.0
    min_batches: int = 10
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    cumulative: float = 0.0
    minimum: float = 0.0
    alarms: int = 0

    def __post_init__(self):
        if not self.delta >= 0:
            raise ValueError(f"expected delta >= 0, got {self.delta}")
        if not self.threshold > 0:
            raise ValueError(f"expected threshold > 0, got {self.threshold}")

    def update(self, value: float) -> bool:
        """Add one batch's value; True when it raises an alarm."""
        value = float(value)
        if not math.isfinite(value):
            return False
        if self.count >= self.min_batches:
            std = math.sqrt(self.m2 / (self.count - 1)) or 1e-12
            self.cumulative += (self.mean - value) / std - self.delta
            self.minimum = min(self.minimum, self.cumulative)
            if self.cumulative - self.minimum > self.threshold:
                self.alarms += 1
                self.count, self.mean, self.m2, self.cumulative, self.minimum = 0, 0.0, 0.0, 0.0, 0.0
                return True
        self.count += 1  # Welford's running mean and variance
        step = value - self.mean
        self.mean += step / self.count
        self.m2 += step * (value - self.mean)
        return False

    def to_dict(self) -> dict:
        """The detector as JSON (for checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PageHinkley:
        return cls(**data)
