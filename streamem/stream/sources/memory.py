"""An in-memory iterable of arrays as a source (for tests, examples and replays)."""

from __future__ import annotations

import itertools

import numpy as np

from streamem.stream.sources.base import RecordSource

__all__ = ["MemorySource"]


class MemorySource(RecordSource):
    """Records from an iterable of arrays of shape (n_rows, n_features); the position is the
    number of records read. A generator can be read once; seek to a position is possible for
    an iterable that can be read again from the start (a list)."""

    def __init__(self, records, n_features: int):
        super().__init__("memory source", n_features)
        self._records = records
        self._iterator = iter(records)
        self.position = 0

    def seek(self, position) -> None:
        position = int(position or 0)
        self._iterator = itertools.islice(iter(self._records), position, None)
        self.position = position
        self._held.clear()

    def _fetch(self, count: int, timeout: float) -> list:
        return list(itertools.islice(self._iterator, count))  # each record has a row at least

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
