"""An in-memory iterable of arrays as a source (for tests, examples and replays)."""

from __future__ import annotations

import itertools

import numpy as np

from . import Batch, Rejects

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
        self._held = None

    @property
    def rejected(self) -> int:
        return self._rejects.rejected

    def seek(self, position) -> None:
        position = int(position or 0)
        self._iterator = itertools.islice(iter(self._records), position, None)
        self.position = position
        self._held = None

    def _next(self):
        if self._held is not None:
            record, self._held = self._held, None
            return record
        return next(self._iterator, None)

    def read(self, max_rows: int, timeout: float = 0.0) -> Batch | None:
        rows, rejected, n_rows = [], 0, 0
        while True:
            record = self._next()
            if record is None:
                break
            X = np.asarray(record, dtype=np.float64)
            if X.ndim == 1:
                X = X.reshape(1, -1)
            if X.ndim != 2 or X.shape[1] != self.n_features or not np.isfinite(X).all() or not len(X):
                self.position += 1
                rejected += 1
                self._rejects.note(self.position - 1, f"expected finite rows of {self.n_features} values")
                continue
            if rows and n_rows + len(X) > max_rows:
                self._held = record
                break
            rows.append(X)
            n_rows += len(X)
            self.position += 1
            if n_rows >= max_rows:
                break
        if not rows and not rejected:
            return None
        X = np.concatenate(rows) if rows else np.empty((0, self.n_features))
        return Batch(X, self.position, rejected)

    def ack(self, position) -> None:
        """Nothing to tell an in-memory iterable."""

    def close(self) -> None:
        pass
