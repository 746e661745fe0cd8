"""File sources: a zarr array that keeps growing, and a folder where files land; on local
disk or in an object store (any fsspec URL, ``s3://bucket/stream.zarr``)."""

from __future__ import annotations

import io
import json
import logging
import time
import zlib

import numpy as np
import zarr

from streamem.data.storage import Location, location
from streamem.stream.sources.base import Batch, Source

__all__ = ["DirectorySource", "ZarrTailSource"]

logger = logging.getLogger(__name__)


def _open_array(loc: Location):
    node = zarr.open(loc.zarr_store(), mode="r")
    if isinstance(node, zarr.Group):
        if "X" not in node:
            raise ValueError(f"expected a zarr array or a group with an array 'X' at {loc.url!r}")
        node = node["X"]
    return node


class _Malformed(ValueError):
    """A file read whole whose contents are not rows of the stream."""


class _Failing:
    """Since when a read that may succeed later (a file caught while it is written) has
    been failing: None while it succeeds."""

    def __init__(self):
        self.since = None

    def for_at_least(self, seconds: float) -> bool:
        """Whether it has failed for ``seconds`` now, noting a new failure's start."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return now - self.since >= seconds

    def clear(self) -> None:
        self.since = None


class ZarrTailSource(Source):
    """Rows of a 2-D zarr array that another process appends to (``zarr.Array.append``),
    read as they arrive; the position is the number of rows read.

    Appending grows the array's shape before the new rows are written (chunk by chunk, in
    any order); create the array with ``fill_value=nan`` so that rows not written yet (all
    NaN) are waited for rather than read. A row still all NaN after ``blank_grace`` seconds,
    and rows with some NaN or infinity, are rejected and counted. The array's metadata is
    rewritten in place by each append (not atomically on local disk): a metadata document
    that does not parse is read again at the next poll, and is an error only once it has
    not parsed for ``blank_grace`` seconds. So are chunks, which an append writes in place
    too: rows whose chunk does not decode (caught while it is written) are read again at
    the next poll, and are an error once they have not decoded for ``blank_grace`` seconds.
    """

    def __init__(
        self,
        path,
        n_features: int,
        poll_interval: float = 0.05,
        blank_grace: float = 10.0,
        storage_options: dict | None = None,
    ):
        super().__init__(f"zarr:{path}", n_features)
        self.path = location(path, storage_options)
        if not self.path.local:
            try:
                reachable = self.path.exists() or self.path.store_exists()
            except OSError as exc:
                raise ValueError(f"cannot read the zarr: source {self.path.url!r}: {exc}") from None
            if not reachable:
                raise ValueError(f"no bucket or folder holds the zarr: source {self.path.url!r}")
        self.position = 0
        self.blank_grace = blank_grace
        self._blank_since = None
        self._unparsed = _Failing()  # the metadata
        self._undecoded = _Failing()  # the rows at the position
        self.poll_interval = poll_interval

    def seek(self, position) -> None:
        self.position = int(position or 0)

    def _available(self):
        try:
            array = _open_array(self.path)
        except FileNotFoundError:
            return None, 0
        except json.JSONDecodeError as exc:  # caught while an append rewrites it
            if self._unparsed.for_at_least(self.blank_grace):
                raise ValueError(f"the zarr: source's metadata at {self.path.url!r} does not parse: {exc}") from None
            return None, 0
        self._unparsed.clear()
        if array.ndim != 2 or array.shape[1] != self.n_features:
            raise ValueError(
                f"expected an array of shape (n, {self.n_features}) at {self.path.url!r}, got {array.shape}"
            )
        return array, array.shape[0]

    def lag(self) -> int:
        """Rows in the array after the last one read."""
        return max(self._available()[1] - self.position, 0)

    def read(self, max_rows: int, timeout: float = 0.0) -> Batch | None:
        deadline = time.monotonic() + timeout
        while True:
            array, n_rows = self._available()
            X = None
            if array is not None and n_rows > self.position:
                X = self._rows(array, min(n_rows, self.position + max_rows))
            if X is not None:
                blank = np.flatnonzero(np.isnan(X).all(axis=1))
                written = len(X) if not len(blank) else int(blank[0])
                if written == 0 and self._still_blank(time.monotonic()):
                    written = 1  # never written: a row of NaN, rejected below
                X = X[:written]
                if written:
                    start = self.position
                    self.position += written
                    self._blank_since = None
                    bad = ~np.isfinite(X).all(axis=1)
                    for row in np.flatnonzero(bad):
                        self._rejects.note(start + int(row), "expected finite values, got NaN or infinity")
                    return Batch(X[~bad], self.position, int(bad.sum()))
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0)))

    def _rows(self, array, stop: int):
        """Rows ``position:stop``, or None while their chunks do not decode (an append
        writing them) for less than ``blank_grace`` seconds."""
        try:
            X = np.asarray(array[self.position : stop], dtype=np.float64)
        except (RuntimeError, ValueError, OSError, EOFError, zlib.error) as exc:  # codecs' errors on a partial chunk
            if self._undecoded.for_at_least(self.blank_grace):
                raise ValueError(
                    f"the zarr: source's rows {self.position}..{stop - 1} at {self.path.url!r} do not decode: {exc}"
                ) from None
            return None
        self._undecoded.clear()
        return X

    def _still_blank(self, now: float) -> bool:
        """A row of fill value (NaN) is a row not written yet, for ``blank_grace`` seconds."""
        if self._blank_since is None or self._blank_since[0] != self.position:
            self._blank_since = (self.position, now)
        return now - self._blank_since[1] >= self.blank_grace


class DirectorySource(Source):
    """Rows of the ``.npy`` files and ``.zarr`` arrays that land in a folder, in name order;
    the position is ``[file name, rows read from it]``.

    Files should land whole: write under a name starting with ``.`` (ignored), then rename.
    A file that cannot be read is retried while it was modified less than ``write_grace``
    seconds ago (it may still be being written); after that, or when it has the wrong
    width or holds NaN or infinity, it is moved to the ``dlq`` sub-folder with a
    ``.reason`` file beside it.
    """

    SUFFIXES = (".npy", ".zarr")

    def __init__(
        self,
        path,
        n_features: int,
        poll_interval: float = 0.05,
        write_grace: float = 2.0,
        storage_options: dict | None = None,
    ):
        super().__init__(f"dir:{path}", n_features)
        self.path = location(path, storage_options)
        self.write_grace = write_grace
        try:
            folder = self.path.isdir() or (not self.path.local and self.path.store_exists())
        except OSError as exc:
            raise ValueError(f"cannot read the dir: source {self.path.url!r}: {exc}") from None
        if not folder:
            raise ValueError(f"expected an existing folder for the dir: source, got {self.path.url!r}")
        self.poll_interval = poll_interval
        self.position = ["", 0]
        self._current = None  # (name, rows) of the file being read

    def seek(self, position) -> None:
        self.position = ["", 0] if position is None else [str(position[0]), int(position[1])]
        self._current = None

    def _pending(self) -> list[str]:
        name, _ = self.position
        names = [n for n in self.path.listdir() if n.endswith(self.SUFFIXES) and not n.startswith(".")]
        return [n for n in names if n >= name]

    def _load(self, name: str) -> np.ndarray:
        path = self.path / name
        if name.endswith(".npy"):
            X = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
        else:
            X = _open_array(path)[...]
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise _Malformed(f"expected shape (n, {self.n_features}), got {X.shape}")
        if not np.isfinite(X).all():
            raise _Malformed("expected finite values, got NaN or infinity")
        return X

    def _maybe_being_written(self, name: str) -> bool:
        try:
            return time.time() - (self.path / name).modified() < self.write_grace
        except OSError:  # gone already
            return False

    def _reject(self, name: str, reason: str) -> None:
        dlq = self.path / "dlq"
        if dlq.local:
            dlq.fs.makedirs(dlq.path, exist_ok=True)
        (self.path / name).move(dlq / name)
        (dlq / f"{name}.reason").write_text(json.dumps({"file": name, "reason": reason}) + "\n")
        self._rejects.note(name, reason)

    def read(self, max_rows: int, timeout: float = 0.0) -> Batch | None:
        deadline = time.monotonic() + timeout
        while True:
            rows, n_rows, rejected = [], 0, 0
            for name in self._pending():
                if self._current is None or self._current[0] != name:
                    try:
                        self._current = (name, self._load(name))
                    except Exception as exc:  # an unreadable file goes to the dead letters...
                        if not isinstance(exc, _Malformed) and self._maybe_being_written(name):
                            break  # ...unless it may still be being written: read it (and those after) later
                        self._reject(name, str(exc))
                        self.position = [name, 0]
                        rejected += 1
                        continue
                    if self.position[0] != name:
                        self.position = [name, 0]
                X = self._current[1]
                start = self.position[1]
                take = X[start : start + max_rows - n_rows]
                if not len(take):
                    continue
                rows.append(take)
                n_rows += len(take)
                self.position = [name, start + len(take)]
                if n_rows >= max_rows:
                    break
            if rows or rejected:
                X = np.concatenate(rows) if rows else np.empty((0, self.n_features))
                return Batch(X, list(self.position), rejected)
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self.poll_interval, max(deadline - time.monotonic(), 0)))
