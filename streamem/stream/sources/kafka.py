"""Kafka through confluent-kafka, with offsets committed only after a checkpoint."""

from __future__ import annotations

from streamem.stream.sources.base import RecordSource, decode_rows

__all__ = ["KafkaSource"]


class KafkaSource(RecordSource):
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
        super().__init__(f"kafka topic {topic}", n_features)
        self.topic = topic
        self.dead_letters = f"{topic}.dlq"
        if consumer is None or producer is None:
            import confluent_kafka

            config = {"bootstrap.servers": brokers}
            consumer = consumer or confluent_kafka.Consumer(
                {
                    **config,
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "enable.partition.eof": False,
                }
            )
            producer = producer or confluent_kafka.Producer(config)
        self.consumer, self.producer = consumer, producer
        self.position: dict[str, int] = {}
        self._subscribed = False

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

    def _fetch(self, count: int, timeout: float) -> list:
        if not self._subscribed:
            self._subscribe()
        messages = []
        for msg in self.consumer.consume(num_messages=count, timeout=timeout):
            if msg.error() is None:
                messages.append(msg)
            elif getattr(msg.error(), "fatal", lambda: False)():
                raise ConnectionError(f"kafka: {msg.error()}")
        return messages

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

    def lag(self) -> int | None:
        """Messages after the position on the partitions assigned to this consumer: each
        partition's high watermark less the next offset to read."""
        assigned = self.consumer.assignment()
        if not assigned:
            return None
        total = 0
        for tp in assigned:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=2.0, cached=False)
            total += max(high - self.position.get(str(tp.partition), low), 0)
        return total

    def close(self) -> None:
        self.producer.flush()
        self.consumer.close()
