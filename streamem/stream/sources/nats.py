"""NATS JetStream through a durable pull consumer."""

from __future__ import annotations

import asyncio
import collections

from streamem.stream.sources.base import RecordSource, decode_rows

__all__ = ["NatsSource"]


class NatsSource(RecordSource):
    """Messages of a JetStream stream read through a durable pull consumer; each message's
    payload carries rows. The position is the stream sequence of the last message read.

    On start the durable consumer is (re)created to deliver from the sequence after the
    checkpoint's position, or after its own acknowledged floor when there is no
    checkpoint, so that nothing waits for a redelivery timeout after a restart.
    Acknowledgement is cumulative (``AckPolicy.ALL``). Malformed messages are published to
    ``dead_letter_subject`` (default ``streamem.dlq.STREAM``) with the reason in a header.
    """

    def __init__(self, server: str, stream: str, durable: str, n_features: int, dead_letter_subject: str | None = None):
        super().__init__(f"nats stream {stream}", n_features)
        self.server, self.stream, self.durable = server, stream, durable
        self.dead_letters = dead_letter_subject or f"streamem.dlq.{stream}"
        self._loop = asyncio.new_event_loop()
        self._nc = self._js = self._sub = None
        self._returned = collections.deque()  # returned, not acknowledged yet
        self._run(self._connect())

    def _run(self, coroutine):
        asyncio.set_event_loop(self._loop)
        return self._loop.run_until_complete(coroutine)

    async def _connect(self):
        import nats

        self._nc = await nats.connect(self.server, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        self._js = self._nc.jetstream()

    async def _bind(self, start: int | None):
        from nats.js import api
        from nats.js.errors import NotFoundError

        floor = 0
        try:
            info = await self._js.consumer_info(self.stream, self.durable)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            await self._js.delete_consumer(self.stream, self.durable)
        except NotFoundError:
            pass
        first = (start if start is not None else floor) + 1
        config = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.ALL,
            max_ack_pending=-1,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first,
        )
        await self._js.add_consumer(self.stream, config)
        self._sub = await self._js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    def seek(self, position) -> None:
        self.position = position
        self._held.clear()
        self._returned.clear()
        self._run(self._bind(None if position is None else int(position)))

    async def _fetch_messages(self, count: int, timeout: float):
        import nats.errors

        try:
            return await self._sub.fetch(batch=count, timeout=max(timeout, 0.05))
        except (TimeoutError, nats.errors.TimeoutError):
            return []

    def _fetch(self, count: int, timeout: float) -> list:
        if self._sub is None:
            self.seek(None)
        return self._run(self._fetch_messages(count, timeout))

    def _decode(self, msg):
        return decode_rows(msg.data, self.n_features)

    def _taken(self, msg) -> None:
        self._returned.append(msg)
        self.position = int(msg.metadata.sequence.stream)

    def _dead_letter(self, msg, reason: str) -> None:
        headers = {"reason": reason, "sequence": str(self.position), "subject": msg.subject}
        self._run(self._nc.publish(self.dead_letters, msg.data, headers=headers))
        self._rejects.note(self.position, reason)

    def ack(self, position) -> None:
        """Acknowledge every message up to ``position`` (one cumulative acknowledgement)."""
        last = None
        while self._returned and int(self._returned[0].metadata.sequence.stream) <= int(position):
            last = self._returned.popleft()
        if last is not None:
            self._run(last.ack_sync())

    def lag(self) -> int | None:
        """Messages of the stream not delivered to the durable consumer yet (``num_pending``)."""
        if self._sub is None:
            return None
        return int(self._run(self._js.consumer_info(self.stream, self.durable)).num_pending)

    def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            self._run(self._nc.close())
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._run(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()
