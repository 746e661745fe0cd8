"""Stream sources: where the records of an unbounded stream come from.

Every source speaks one small protocol (:class:`Source`; :class:`RecordSource` for those
that fetch records a bunch at a time):

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

from urllib.parse import parse_qs, urlsplit

from streamem.stream.sources.base import Batch, RecordSource, Source, decode_rows, encode_rows

__all__ = ["Batch", "RecordSource", "Source", "SourceURLError", "decode_rows", "encode_rows", "open_source"]

SCHEMES = ("redis", "nats", "kafka", "zarr", "dir")


class SourceURLError(ValueError):
    """A source URL of the wrong form (a usage error on the command line), as opposed to a
    well-formed URL whose place cannot be read (a missing folder or bucket)."""


def open_source(url: str, n_features: int, storage_options: dict | None = None, **options):
    """A source from its URL.

    ``redis://HOST:PORT/STREAM?group=G`` (a consumer group; ``consumer=`` names this
    consumer, default ``streamem``), ``nats://HOST:PORT/STREAM?durable=G`` (a durable
    JetStream consumer), ``kafka://BROKER/TOPIC?group=G``, ``zarr:PATH`` (an array that is
    appended to) or ``dir:PATH`` (a folder where ``.npy`` and ``.zarr`` files land); the
    path of the last two is local or any fsspec URL (``zarr:s3://bucket/stream.zarr``),
    opened with ``storage_options``.
    """
    if not isinstance(url, str):
        raise TypeError(f"expected a source URL string, got {type(url).__name__}")
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in SCHEMES:
        schemes = ", ".join(f"{s}:" for s in SCHEMES)
        raise SourceURLError(f"expected a source URL starting with one of {schemes} got {url!r}")
    if scheme in ("zarr", "dir"):
        if not rest:
            raise SourceURLError(f"expected a path after {scheme}:, got {url!r}")
        from streamem.stream.sources.files import DirectorySource, ZarrTailSource

        source = ZarrTailSource if scheme == "zarr" else DirectorySource
        return source(rest, n_features, storage_options=storage_options, **options)
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    name = parts.path.strip("/")
    if not parts.hostname or not name:
        raise SourceURLError(f"expected {scheme}://HOST:PORT/NAME, got {url!r}")
    try:
        return _open_broker(scheme, parts, name, query, url, n_features, options)
    except (ValueError, TypeError, ImportError):
        raise
    except Exception as exc:  # the broker's own errors, as the standard one
        raise ConnectionError(f"cannot read {url}: {exc}") from exc


def _open_broker(scheme, parts, name, query, url, n_features, options):
    if scheme == "redis":
        from streamem.stream.sources.redis import RedisSource

        group = _required(query, "group", url)
        return RedisSource(
            parts.hostname,
            parts.port or 6379,
            name,
            group,
            n_features,
            consumer=query.get("consumer", "streamem"),
            **options,
        )
    if scheme == "nats":
        from streamem.stream.sources.nats import NatsSource

        durable = _required(query, "durable", url)
        return NatsSource(f"nats://{parts.hostname}:{parts.port or 4222}", name, durable, n_features, **options)
    from streamem.stream.sources.kafka import KafkaSource

    group = _required(query, "group", url)
    return KafkaSource(parts.netloc, name, group, n_features, **options)


def _required(query: dict, key: str, url: str) -> str:
    if not query.get(key):
        raise SourceURLError(f"expected ?{key}=NAME in the source URL, got {url!r}")
    return query[key]
