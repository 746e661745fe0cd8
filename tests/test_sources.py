"""The source protocol, shared by every source: rows in order, malformed records counted and
sent to the dead letters, monotone JSON positions, and a restart after a position reads
exactly the records after it. Brokers are real servers (Redis, NATS JetStream); Kafka, which
cannot run here, is read through a fake consumer with confluent-kafka's interface."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time

import numpy as np
import pytest
import zarr

from streamem.stream.sources import decode_rows, encode_rows, open_source
from streamem.stream.sources.files import DirectorySource, ZarrTailSource
from streamem.stream.sources.kafka import KafkaSource
from streamem.stream.sources.memory import MemorySource

D = 3
GOOD = [np.random.default_rng(i).normal(size=(1 + i % 4, D)) for i in range(40)]
BAD = {7: b"\x00" * 5, 19: encode_rows(np.full((1, D), np.nan)), 33: encode_rows(np.ones((1, D + 1)))[:-8] + b"abc"}


def _records():
    """Payloads in order: the good records with malformed ones among them."""
    out = []
    for i, X in enumerate(GOOD):
        if i in BAD:
            out.append(BAD[i])
        out.append(encode_rows(X))
    return out


# --------------------------------------------------------------------------- kafka, faked


class FakeMessage:
    def __init__(self, topic, partition, offset, value):
        self._topic, self._partition, self._offset, self._value = topic, partition, offset, value

    def error(self):
        return None

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def value(self):
        return self._value


class FakeKafka:
    """A broker's log and committed offsets, as seen through confluent-kafka's interface."""

    def __init__(self, partitions=2):
        self.log = {p: [] for p in range(partitions)}
        self.committed = {}
        self.produced = []

    def send(self, value, key):
        partition = key % len(self.log)
        self.log[partition].append(value)

    def consumer(self):
        return FakeConsumer(self)

    def produce(self, topic, value=None, headers=None):
        self.produced.append((topic, value, dict(headers or [])))

    def flush(self, *args):
        return 0


class FakeConsumer:
    def __init__(self, broker):
        self.broker, self.positions, self.topic = broker, {}, None

    def subscribe(self, topics, on_assign=None):
        from confluent_kafka import OFFSET_INVALID, TopicPartition

        self.topic = topics[0]
        partitions = [TopicPartition(self.topic, p, OFFSET_INVALID) for p in self.broker.log]
        on_assign(self, partitions)

    def assign(self, partitions):
        for tp in partitions:
            self.positions[tp.partition] = tp.offset if tp.offset >= 0 else self.broker.committed.get(tp.partition, 0)

    def consume(self, num_messages=1, timeout=-1):
        out = []
        for p, log in self.broker.log.items():
            while self.positions[p] < len(log) and len(out) < num_messages:
                out.append(FakeMessage(self.topic, p, self.positions[p], log[self.positions[p]]))
                self.positions[p] += 1
        return out

    def assignment(self):
        from confluent_kafka import TopicPartition

        return [TopicPartition(self.topic, p) for p in self.positions]

    def get_watermark_offsets(self, partition, timeout=None, cached=False):
        return 0, len(self.broker.log[partition.partition])

    def commit(self, offsets=None, asynchronous=True):
        for tp in offsets:
            self.broker.committed[tp.partition] = tp.offset

    def close(self):
        pass


# ------------------------------------------------------------------------------- harness


class Harness:
    """Writes records to one kind of source and opens readers of it."""

    def __init__(self, kind, tmp_path, request):
        self.kind, self.tmp_path = kind, tmp_path
        self.records = _records()
        if kind == "redis":
            import redis

            self.port = request.getfixturevalue("redis_server")
            client = redis.Redis(port=self.port)
            for payload in self.records:
                client.xadd("points", {"x": payload})
            self.client = client
        elif kind == "nats":
            self.port = request.getfixturevalue("nats_server")
            asyncio.run(self._publish_nats())
        elif kind == "kafka":
            self.broker = FakeKafka()
            for i, payload in enumerate(self.records):
                self.broker.send(payload, key=i)
        elif kind == "zarr":
            array = zarr.create_array(
                str(tmp_path / "x.zarr"), shape=(0, D), chunks=(16, D), dtype="f8", fill_value=np.nan
            )
            for i, X in enumerate(GOOD):
                array.append(X if i != 19 else np.vstack([X, np.full((1, D), np.inf)]))
        elif kind == "dir":
            (tmp_path / "in").mkdir()
            for i, X in enumerate(GOOD):
                np.save(tmp_path / "in" / f"part-{i:04d}.npy", X)
            (tmp_path / "in" / "part-0007b.npy").write_bytes(b"not a numpy file")
            os.utime(tmp_path / "in" / "part-0007b.npy", (time.time() - 60, time.time() - 60))  # not being written
            np.save(tmp_path / "in" / "part-0019b.npy", np.ones((2, D + 1)))

    async def _publish_nats(self):
        import nats

        nc = await nats.connect(f"nats://127.0.0.1:{self.port}")
        js = nc.jetstream()
        await js.add_stream(name="points", subjects=["points"])
        await js.add_stream(name="dead", subjects=["streamem.dlq.points"])
        for payload in self.records:
            await js.publish("points", payload)
        await nc.drain()

    @property
    def n_rejected(self) -> int:
        return {"zarr": 1, "dir": 2}.get(self.kind, len(BAD))

    @property
    def rows(self) -> np.ndarray:
        if self.kind == "kafka":  # partitions are read one after the other
            good = [decode_rows(p, D)[0] for p in self.records]
            return np.concatenate(
                [g for i, g in enumerate(good) if i % 2 == 0 and g is not None]
                + [g for i, g in enumerate(good) if i % 2 == 1 and g is not None]
            )
        return np.concatenate(GOOD)

    def open(self):
        if self.kind == "memory":
            records = [
                decode_rows(p, D)[0] if decode_rows(p, D)[0] is not None else np.full((1, D), np.nan)
                for p in self.records
            ]
            return MemorySource(records, D)
        if self.kind == "redis":
            return open_source(f"redis://127.0.0.1:{self.port}/points?group=g", D)
        if self.kind == "nats":
            return open_source(f"nats://127.0.0.1:{self.port}/points?durable=g", D)
        if self.kind == "kafka":
            return KafkaSource("unused:9092", "points", "g", D, consumer=self.broker.consumer(), producer=self.broker)
        if self.kind == "zarr":
            return ZarrTailSource(self.tmp_path / "x.zarr", D)
        return DirectorySource(self.tmp_path / "in", D)

    def dead_letters(self) -> int:
        if self.kind == "redis":
            return self.client.xlen("points:dlq")
        if self.kind == "nats":
            return asyncio.run(self._count_nats_dead())
        if self.kind == "kafka":
            return sum(topic == "points.dlq" for topic, _, _ in self.broker.produced)
        if self.kind == "dir":
            return len(list((self.tmp_path / "in" / "dlq").glob("*.reason")))
        return self.n_rejected

    async def _count_nats_dead(self):
        import nats

        nc = await nats.connect(f"nats://127.0.0.1:{self.port}")
        info = await nc.jetstream().stream_info("dead")
        await nc.drain()
        return info.state.messages


def _kinds(*names):
    """The kinds of source as test parameters, those read from a server marked ``server``."""
    return [pytest.param(name, marks=pytest.mark.server) if name in ("redis", "nats") else name for name in names]


KINDS = _kinds("memory", "zarr", "dir", "redis", "nats", "kafka")


def _read_all(source, max_rows=7, until=None):
    rows, positions, rejected = [], [], 0
    for _ in range(1000):
        batch = source.read(max_rows, timeout=0.2)
        if batch is None:
            break
        assert len(batch.X) <= max(max_rows, 4)
        json.dumps(batch.position)  # positions are JSON
        rows.append(batch.X)
        positions.append(batch.position)
        rejected += batch.rejected
        if until is not None and sum(len(r) for r in rows) >= until:
            break
    return (np.concatenate(rows) if rows else np.empty((0, D))), positions, rejected


def _monotone(positions):
    keys = []
    for p in positions:
        if isinstance(p, str):
            keys.append(tuple(int(v) for v in p.split("-")))
        elif isinstance(p, dict):
            keys.append(tuple(p.get(k, 0) for k in sorted(set().union(*positions))))
        else:
            keys.append(tuple(p) if isinstance(p, list) else (p,))
    if isinstance(positions[0], dict):
        return all(all(a <= b for a, b in zip(x, y)) for x, y in zip(keys, keys[1:]))
    return keys == sorted(keys)


@pytest.mark.parametrize("kind", KINDS)
def test_reads_every_valid_row_once_and_rejects_malformed_records(kind, tmp_path, request):
    harness = Harness(kind, tmp_path, request)
    source = harness.open()
    source.seek(None if kind != "dir" else ["", 0]) if kind not in ("memory", "zarr") else source.seek(0)
    X, positions, rejected = _read_all(source)
    np.testing.assert_array_equal(X, harness.rows)
    assert rejected == source.rejected == harness.n_rejected
    assert harness.dead_letters() == harness.n_rejected
    assert _monotone(positions)
    assert source.read(7, timeout=0.1) is None  # nothing more, and no loop over the malformed ones
    source.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the simulated crash leaks a loop
@pytest.mark.parametrize("kind", KINDS)
def test_restart_after_an_acknowledged_position_reads_exactly_the_rest(kind, tmp_path, request):
    harness = Harness(kind, tmp_path, request)
    first = harness.open()
    first.seek(None if kind not in ("memory", "zarr", "dir") else (["", 0] if kind == "dir" else 0))
    head, positions, _ = _read_all(first, until=30)
    checkpointed = positions[-1]
    first.ack(checkpointed)
    extra, _, _ = _read_all(first, until=10)  # read after the checkpoint, never acknowledged: the process dies
    assert len(extra)
    del first  # no close: a crash
    gc.collect()  # what the crash leaks is collected here, inside this test
    second = harness.open()
    second.seek(json.loads(json.dumps(checkpointed)))
    rest, _, _ = _read_all(second)
    np.testing.assert_array_equal(np.concatenate([head, rest]), harness.rows)
    second.close()


@pytest.mark.parametrize("kind", _kinds("zarr", "redis", "nats", "kafka"))
def test_consumer_lag_counts_the_records_not_read_yet(kind, tmp_path, request):
    harness = Harness(kind, tmp_path, request)
    source = harness.open()
    source.seek(0 if kind == "zarr" else None)
    total = len(harness.rows) + harness.n_rejected if kind == "zarr" else len(harness.records)
    if kind == "kafka":
        source._fetch(0, 0)  # partitions are assigned on the first fetch
    assert source.lag() == total
    _read_all(source, until=12)
    assert 0 < source.lag() < total
    _read_all(source)
    assert source.lag() == 0
    source.close()
    assert MemorySource([], D).lag() is None  # a source that has no broker to ask


def test_zarr_tail_waits_for_rows_being_written(tmp_path):
    array = zarr.create_array(str(tmp_path / "x.zarr"), shape=(0, D), chunks=(4, D), dtype="f8", fill_value=np.nan)
    source = ZarrTailSource(tmp_path / "x.zarr", D)
    assert source.read(10, timeout=0.05) is None
    array.append(np.ones((3, D)))
    array.resize((6, D))  # grown, rows not written yet
    batch = source.read(10, timeout=0.05)
    assert len(batch.X) == 3 and batch.position == 3 and batch.rejected == 0
    array[3:6] = 2.0
    batch = source.read(10, timeout=0.05)
    np.testing.assert_array_equal(batch.X, np.full((3, D), 2.0))


def test_zarr_tail_reads_again_metadata_caught_mid_rewrite(tmp_path):
    """An append rewrites the array's zarr.json in place: a reader may find it empty. The
    source reads it again at the next poll; metadata that stays unparsable past
    ``blank_grace`` is an error naming the source."""
    array = zarr.create_array(str(tmp_path / "x.zarr"), shape=(0, D), chunks=(4, D), dtype="f8", fill_value=np.nan)
    array.append(np.ones((3, D)))
    metadata = tmp_path / "x.zarr" / "zarr.json"
    whole = metadata.read_bytes()
    metadata.write_bytes(b"")  # as an append that has truncated the file and not written it yet
    source = ZarrTailSource(tmp_path / "x.zarr", D, blank_grace=0.3)
    assert source.read(10, timeout=0.05) is None
    metadata.write_bytes(whole)
    batch = source.read(10, timeout=0.05)
    np.testing.assert_array_equal(batch.X, np.ones((3, D)))
    metadata.write_bytes(b"{")
    assert source.read(10, timeout=0.05) is None
    with pytest.raises(ValueError, match="x.zarr.*does not parse"):
        source.read(10, timeout=0.5)


def test_zarr_tail_reads_again_a_chunk_caught_while_it_is_written(tmp_path):
    """An append writes a chunk in place too: a reader may find half of it, which does not
    decode. The source reads it again at the next poll, losing nothing; rows that stay
    undecodable past ``blank_grace`` are an error naming them."""
    path = tmp_path / "x.zarr"
    array = zarr.create_array(str(path), shape=(0, D), chunks=(100, D), dtype="f8", fill_value=np.nan)
    X = np.random.default_rng(0).normal(size=(300, D))
    array.append(X)
    chunk = path / "c" / "0" / "0"  # rows 0..99 (zarr's default chunk keys)
    whole = chunk.read_bytes()
    chunk.write_bytes(whole[: len(whole) // 3])  # half written
    source = ZarrTailSource(path, D, poll_interval=0.01, blank_grace=0.5)
    assert source.read(1000, timeout=0.05) is None  # waits, reads nothing, loses nothing
    assert source.position == 0
    chunk.write_bytes(whole)
    batch = source.read(1000, timeout=1.0)
    np.testing.assert_array_equal(batch.X, X)
    assert source.position == 300
    array.append(X)
    (path / "c" / "5" / "0").write_bytes(b"not a chunk")  # rows 500..599
    with pytest.raises(ValueError, match="do not decode"):
        source.read(1000, timeout=2.0)


def test_decode_rows_reasons():
    assert decode_rows("text", D)[1].startswith("expected bytes")
    assert "multiple of 24 bytes" in decode_rows(b"\x00" * 25, D)[1]
    assert "finite" in decode_rows(encode_rows([[np.inf, 0, 0]]), D)[1]
    X, reason = decode_rows(encode_rows(np.arange(6.0).reshape(2, 3)), D)
    assert reason is None and X.shape == (2, 3)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x/y", "expected a source URL"),
        ("redis://127.0.0.1:1/points", r"\?group="),
        ("nats://127.0.0.1:1/points", r"\?durable="),
        ("redis:///points?group=g", "HOST:PORT/NAME"),
        ("zarr:", "path after zarr:"),
    ],
)
def test_bad_source_urls(url, message):
    with pytest.raises(ValueError, match=message):
        open_source(url, D)


def test_unreachable_broker_is_a_connection_error():
    from .helpers import free_port

    with pytest.raises(ConnectionError, match="cannot read"):
        open_source(f"redis://127.0.0.1:{free_port()}/points?group=g", D)


def test_dir_source_waits_for_a_file_still_being_written(tmp_path):
    X = np.arange(30.0).reshape(10, D)
    np.save(tmp_path / "whole.npy", X)
    data = (tmp_path / "whole.npy").read_bytes()
    (tmp_path / "whole.npy").unlink()
    (tmp_path / "part-1.npy").write_bytes(data[: len(data) // 2])  # landing without a rename, half written
    source = DirectorySource(tmp_path, D)
    assert source.read(100, timeout=0.1) is None and source.rejected == 0
    (tmp_path / "part-1.npy").write_bytes(data)
    np.testing.assert_array_equal(source.read(100, timeout=0.1).X, X)


def test_every_source_speaks_the_protocol():
    from streamem.stream.sources import RecordSource, Source
    from streamem.stream.sources.nats import NatsSource
    from streamem.stream.sources.redis import RedisSource

    for cls in (RedisSource, NatsSource, KafkaSource, MemorySource):
        assert issubclass(cls, RecordSource)
    for cls in (ZarrTailSource, DirectorySource):
        assert issubclass(cls, Source) and not issubclass(cls, RecordSource)
    source = MemorySource([np.ones((2, 3)), np.full((1, 2), 1.0), np.zeros((1, 3))], 3)
    batch = source.read(10)
    assert batch.X.shape == (3, 3) and batch.rejected == 1 and source.rejected == 1 and batch.position == 3
    source.ack(batch.position)  # nothing to tell, and no error
    source.seek(1)
    assert source.read(10).X.shape == (1, 3)
