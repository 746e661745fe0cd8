"""What every stream source shares: the batch it returns, the record format, the counting of
malformed records, and :class:`Source`, the protocol (see :mod:`streamem.stream.sources`)."""

from __future__ import annotations

import collections
import copy
import dataclasses
import logging

import numpy as np

__all__ = ["Batch", "RecordSource", "Rejects", "Source", "decode_rows", "encode_rows", "take_records"]

logger = logging.getLogger("streamem.stream.sources")


@dataclasses.dataclass
class Batch:
    """Rows read from a source.

    Attributes
    ----------
    X : ndarray of shape (n_rows, n_features), float64
        The valid rows (possibly none, when every record read was malformed).
    position : JSON value
        The position of the last record read, malformed ones included.
    rejected : int
        Malformed records among those read.
    """

    X: np.ndarray
    position: object
    rejected: int = 0


def encode_rows(X) -> bytes:
    """Rows as a record: little-endian float64, row-major."""
    return np.ascontiguousarray(X, dtype="<f8").tobytes()


def decode_rows(payload, n_features: int) -> tuple[np.ndarray | None, str | None]:
    """The rows of a record, or None and the reason it is malformed."""
    if isinstance(payload, memoryview):
        payload = payload.tobytes()
    if not isinstance(payload, (bytes, bytearray)):
        return None, f"expected bytes, got {type(payload).__name__}"
    width = 8 * n_features
    if len(payload) == 0 or len(payload) % width:
        return None, f"expected a multiple of {width} bytes ({n_features} float64 values per row), got {len(payload)}"
    X = np.frombuffer(payload, dtype="<f8").reshape(-1, n_features).astype(np.float64)
    if not np.isfinite(X).all():
        return None, "expected finite values, got NaN or infinity"
    return X, None


def take_records(held, max_rows: int, n_features: int, decode, taken, dead_letter):
    """Whole records from the front of ``held`` (a deque), up to ``max_rows`` rows; a record
    larger than that comes alone.

    ``decode(record)`` gives ``(rows, None)`` or ``(None, reason)``. Every record taken is
    passed to ``taken(record)`` (the source moves its position past it), and a malformed one
    to ``dead_letter(record, reason)`` instead of giving rows. Returns the rows (possibly
    none) and the number of malformed records, or None when nothing was taken.
    """
    rows, n_rows, rejected = [], 0, 0
    while held:
        X, reason = decode(held[0])
        if X is not None and rows and n_rows + len(X) > max_rows:
            break
        record = held.popleft()
        taken(record)
        if X is None:
            dead_letter(record, reason)
            rejected += 1
            continue
        rows.append(X)
        n_rows += len(X)
        if n_rows >= max_rows:
            break
    if not rows and not rejected:
        return None
    return (np.concatenate(rows) if rows else np.empty((0, n_features))), rejected


class Rejects:
    """Counting and logging of malformed records, shared by the sources."""

    def __init__(self, name: str):
        self.name = name
        self.rejected = 0

    def note(self, record_id, reason: str) -> None:
        self.rejected += 1
        logger.warning("%s: malformed record %s sent to the dead letters: %s", self.name, record_id, reason)


class Source:
    """A stream source: ``read``, ``seek``, ``ack`` and ``close`` as the protocol of
    :mod:`streamem.stream.sources` says, ``position`` (JSON) and ``rejected`` (malformed records so
    far). Subclasses implement ``read`` and ``seek``; ``ack`` and ``close`` do nothing here."""

    def __init__(self, name: str, n_features: int):
        self.n_features = n_features
        self.position = None
        self._rejects = Rejects(name)

    @property
    def rejected(self) -> int:
        return self._rejects.rejected

    def read(self, max_rows: int, timeout: float = 0.0) -> Batch | None:
        raise NotImplementedError

    def seek(self, position) -> None:
        raise NotImplementedError

    def ack(self, position) -> None:
        """Nothing to tell: the source keeps no record of what was read."""

    def lag(self) -> int | None:
        """Records in the source after the last one read, as the broker reports them (the
        consumer lag), or None where it does not."""
        return None

    def close(self) -> None:
        """Nothing to release."""


class RecordSource(Source):
    """A source of records fetched a bunch at a time (from a broker, or an iterable): a read
    takes whole records from those held (:func:`take_records`). Subclasses implement
    ``_fetch(count, timeout)`` (up to ``count`` records, waiting up to ``timeout`` seconds
    for the first), ``_decode(record)``, ``_taken(record)`` (move the position past it) and
    ``_dead_letter(record, reason)``; ``seek`` clears the held records."""

    def __init__(self, name: str, n_features: int):
        super().__init__(name, n_features)
        self._held = collections.deque()  # fetched, not returned yet

    def read(self, max_rows: int, timeout: float = 0.0) -> Batch | None:
        if not self._held:
            self._held.extend(self._fetch(max(max_rows, 1), timeout))
        got = take_records(self._held, max_rows, self.n_features, self._decode, self._taken, self._dead_letter)
        return None if got is None else Batch(got[0], copy.copy(self.position), got[1])

    def _fetch(self, count: int, timeout: float) -> list:
        raise NotImplementedError

    def _decode(self, record) -> tuple[np.ndarray | None, str | None]:
        raise NotImplementedError

    def _taken(self, record) -> None:
        raise NotImplementedError

    def _dead_letter(self, record, reason: str) -> None:
        raise NotImplementedError
