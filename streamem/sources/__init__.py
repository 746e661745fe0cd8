"""Stream sources: where the records of an unbounded stream come from.

Every source speaks one small protocol:

- ``read(max_rows, timeout)`` returns a :class:`Batch` of at most ``max_rows`` rows (whole
  records; a record larger than that comes alone) that follow the last read, waiting up to
  ``timeout`` seconds for the first record, or ``None`` when nothing came;
- ``ack(position)`` tells the source that every record up to ``position`` is safely in a
  checkpoint (a broker may then forget them);
- ``seek(position)`` starts reading after ``position`` (a checkpoint's), before the first read;
- ``close()``.

A position is JSON (a Redis entry id, a JetStream sequence, Kafka ``{partition: offset}``,
a row count for arrays and ``[file, row]`` for a folder) and never goes back. A record is
one or more rows of ``n_features`` little-endian float64 values, row-major. A malformed
record (wrong length, NaN or infinity, not bytes) is logged, counted in ``rejected`` and
sent to the source's dead letters with the reason; it never enters the model and is read
only once.
"""

from __future__ import annotations

import dataclasses
import logging
from urllib.parse import parse_qs, urlsplit

import numpy as np

__all__ = ["Batch", "decode_rows", "encode_rows", "open_source"]

logger = logging.getLogger(__name__)

SCHEMES = ("redis", "nats", "kafka", "zarr", "dir")


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


def open_source(url: str, n_features: int, **options):
    """A source from its URL.

    ``redis://HOST:PORT/STREAM?group=G`` (a consumer group; ``consumer=`` names this
    consumer, default ``streamem``), ``nats://HOST:PORT/STREAM?durable=G`` (a durable
    JetStream consumer), ``kafka://BROKER/TOPIC?group=G``, ``zarr:PATH`` (an array that is
    appended to) or ``dir:PATH`` (a folder where ``.npy`` and ``.zarr`` files land).
    """
    if not isinstance(url, str):
        raise TypeError(f"expected a source URL string, got {type(url).__name__}")
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in SCHEMES:
        schemes = ", ".join(f"{s}:" for s in SCHEMES)
        raise ValueError(f"expected a source URL starting with one of {schemes} got {url!r}")
    if scheme in ("zarr", "dir"):
        if not rest:
            raise ValueError(f"expected a path after {scheme}:, got {url!r}")
        from .files import DirectorySource, ZarrTailSource

        return (ZarrTailSource if scheme == "zarr" else DirectorySource)(rest, n_features, **options)
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    name = parts.path.strip("/")
    if not parts.hostname or not name:
        raise ValueError(f"expected {scheme}://HOST:PORT/NAME, got {url!r}")
    try:
        return _open_broker(scheme, parts, name, query, url, n_features, options)
    except (ValueError, TypeError, ImportError):
        raise
    except Exception as exc:  # the broker's own errors, as the standard one
        raise ConnectionError(f"cannot read {url}: {exc}") from exc


def _open_broker(scheme, parts, name, query, url, n_features, options):
    if scheme == "redis":
        from .redis import RedisSource

        group = _required(query, "group", url)
        return RedisSource(parts.hostname, parts.port or 6379, name, group, n_features,
                           consumer=query.get("consumer", "streamem"), **options)  # fmt: skip
    if scheme == "nats":
        from .nats import NatsSource

        durable = _required(query, "durable", url)
        return NatsSource(f"nats://{parts.hostname}:{parts.port or 4222}", name, durable, n_features, **options)
    from .kafka import KafkaSource

    group = _required(query, "group", url)
    return KafkaSource(parts.netloc, name, group, n_features, **options)


def _required(query: dict, key: str, url: str) -> str:
    if not query.get(key):
        raise ValueError(f"expected ?{key}=NAME in the source URL, got {url!r}")
    return query[key]
