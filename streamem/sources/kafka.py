"""Kafka through confluent-kafka, with offsets committed only after a checkpoint."""

from __future__ import annotations

import collections

from . import Batch, Rejects, decode_rows, take_records

__all__ = ["KafkaSource"]


class KafkaSource:
    """Messages of a Kafka topic read in a consumer group; each message's value carries
    rows. The position is ``{partition: next offset}`` over the partitions read so far
    (JSON keys are strings).

    Auto-commit is off: offsets are committed by :meth:`ack`, after a checkpoint. On start
    (and on every partition assignment) the partitions seek to the checkpoint's offsets,
    so a restart reads exactly the messages after the checkpoint. Malformed messages are
    produced to ``TOPIC.dlq`` with the reason in a header.

    ``consumer`` and ``producer`` may be given (objects with the ``confluent_kafka``
    interface) instead of the broker's address.
    """

    def __init__(self, brokers: str, topic: str, group: str, n_features: int, consumer=None, producer=None):
        self.topic, self.n_features = topic, n_features
        self.dead_letters = f"{topic}.dlq"
        if consumer is None or producer is None:
            import confluent_kafka

            config = {"bootstrap.servers": brokers}
            consumer = consumer or confluent_kafka.Consumer(
                {**config, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
                 "enable.partition.eof": False}
            )  # fmt: skip
            producer = producer or confluent_kafka.Producer(config)
        self.consumer, self.producer = consumer, producer
        self._rejects = Rejects(f"kafka topic {topic}")
        self.position: dict[str, int] = {}
        self._subscribed = False
        self._held = collections.deque()  # consumed, not returned yet

    @property
    def rejected(self) -> int:
        return self._rejects.rejected

    def seek(self, position) -> None:
        self.position = {str(p): int(o) for p, o in (position or {}).items()}
        self._held.clear()
        self._subscribe()

    def _subscribe(self) -> None:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign)
        self._subscribed = True

    def _on_assign(self, consumer, partitions) -> None:
        for tp in partitions:
            if str(tp.partition) in self.position:
                tp.offset = self.position[str(tp.partition)]
        consumer.assign(partitions)

    def read(self, max_rows: int, timeout: float = 0.0) -> Batch | None:
        if not self._subscribed:
            self._subscribe()
        if not self._held:
            for msg in self.consumer.consume(num_messages=max(max_rows, 1), timeout=timeout):
                if msg.error() is None:
                    self._held.append(msg)
                elif getattr(msg.error(), "fatal", lambda: False)():
                    raise ConnectionError(f"kafka: {msg.error()}")
        got = take_records(self._held, max_rows, self.n_features, self._decode, self._taken, self._dead_letter)
        return None if got is None else Batch(got[0], dict(self.position), got[1])

    def _decode(self, msg):
        return decode_rows(msg.value(), self.n_features)

    def _taken(self, msg) -> None:
        self.position[str(msg.partition())] = msg.offset() + 1

    def _dead_letter(self, msg, reason: str) -> None:
        headers = [("reason", reason.encode()), ("offset", str(msg.offset()).encode())]
        self.producer.produce(self.dead_letters, value=msg.value(), headers=headers)
        self._rejects.note(f"{msg.partition()}:{msg.offset()}", reason)

    def ack(self, position) -> None:
        """Commit the offsets of ``position`` (after the dead letters are flushed)."""
        from confluent_kafka import TopicPartition

        self.producer.flush()
        offsets = [TopicPartition(self.topic, int(p), int(o)) for p, o in position.items()]
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=False)

    def close(self) -> None:
        self.producer.flush()
        self.consumer.close()
