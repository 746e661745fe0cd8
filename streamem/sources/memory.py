"""An in-memory iterable of arrays as a source (for tests, examples and replays)."""

from __future__ import annotations

import collections
import itertools

import numpy as np

from . import Batch, Rejects, take_records

__all__ = ["MemorySource"]


class MemorySource:
    """Records from an iterable of arrays of shape (n_rows, n_features); the position is the
    number of records read. A generator can be read once; seek to a position is possible for
    an iterable that can be read again from the start (a list)."""

    def __init__(self, records, n_features: int):
        self._records = records
        self._iterator = iter(records)
        self.n_features = n_features
        self.position = 0
        self._rejects = Rejects("memory source")
        self._held = collections.deque()

    @property
    def rejected(self) -> int:
        return self._rejects.rejected

    def seek(self, position) -> None:
        position = int(position or 0)
        self._iterator = itertools.islice(iter(self._records), position, None)
        self.position = position
        self._held.clear()

    def read(self, max_rows: int, timeout: float = 0.0) -> Batch | None:
        if not self._held:  # each record has a row at least
            self._held.extend(itertools.islice(self._iterator, max(max_rows, 1)))
        got = take_records(self._held, max_rows, self.n_features, self._decode, self._taken, self._dead_letter)
        return None if got is None else Batch(got[0], self.position, got[1])

    def _decode(self, record):
        X = np.asarray(record, dtype=np.float64)
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.ndim != 2 or X.shape[1] != self.n_features or not len(X) or not np.isfinite(X).all():
            return None, f"expected finite rows of {self.n_features} values"
        return X, None

    def _taken(self, record) -> None:
        self.position += 1

    def _dead_letter(self, record, reason: str) -> None:
        self._rejects.note(self.position - 1, reason)

    def ack(self, position) -> None:
        """Nothing to tell an in-memory iterable."""

    def close(self) -> None:
        pass
