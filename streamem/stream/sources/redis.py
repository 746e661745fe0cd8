"""Redis Streams through a consumer group."""

from __future__ import annotations

import collections

from streamem.stream.sources.base import RecordSource, decode_rows

__all__ = ["RedisSource"]


def _entry_id(value) -> tuple[int, int]:
    ms, _, seq = (value.decode() if isinstance(value, bytes) else str(value)).partition("-")
    return int(ms), int(seq or 0)


class RedisSource(RecordSource):
    """Entries of a Redis stream read through a consumer group; each entry carries rows in
    its field ``x``. The position is the id of the last entry read.

    On start (and after :meth:`seek`), the entries this consumer was given but never
    acknowledged are read again first: those up to the checkpoint's position are in the
    model already and are only acknowledged now, the others are read as new. Then new
    entries follow (``XREADGROUP >``). Malformed entries go to ``STREAM:dlq`` with their id
    and the reason. One consumer per group holds the exactly-once guarantee; the group is
    created at the start of the stream when it does not exist.
    """

    def __init__(
        self,
        host: str,
        port: int,
        stream: str,
        group: str,
        n_features: int,
        consumer: str = "streamem",
        field: str = "x",
        start: str = "0",
        client=None,
    ):
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        super().__init__(f"redis stream {stream}", n_features)
        self.stream, self.group, self.consumer, self.field = stream, group, consumer, field.encode()
        self.dead_letters = f"{stream}:dlq"
        self.client = client or redis.Redis(
            host=host,
            port=port,
            retry=Retry(ExponentialBackoff(cap=2.0), 5),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            health_check_interval=30,
        )
        try:
            self.client.xgroup_create(stream, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._checkpointed = None  # entries up to here are in the model
        self._pending_cursor = "0"  # re-read this consumer's unacknowledged entries first
        self._unacked = collections.deque()

    def seek(self, position) -> None:
        self._checkpointed = None if position is None else _entry_id(position)
        self.position = position
        self._pending_cursor = "0"
        self._held.clear()

    def _fetch(self, count: int, timeout: float) -> list:
        """Entries: first this consumer's pending ones, then new ones."""
        while self._pending_cursor is not None:
            reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: self._pending_cursor}, count=count)
            entries = reply[0][1] if reply else []
            if not entries:
                self._pending_cursor = None
                break
            self._pending_cursor = entries[-1][0]
            done = [i for i, _ in entries if self._checkpointed is not None and _entry_id(i) <= self._checkpointed]
            if done:  # in the model already: the acknowledgement was lost when the process stopped
                self.client.xack(self.stream, self.group, *done)
            fresh = [(i, f) for i, f in entries if not done or _entry_id(i) > _entry_id(done[-1])]
            if fresh:
                return fresh
        block = max(int(timeout * 1000), 1) if timeout > 0 else None
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count, block=block)
        return reply[0][1] if reply else []

    def _decode(self, entry):
        fields = entry[1]
        if not fields:
            return None, "entry deleted from the stream"
        if self.field not in fields:
            names = sorted(k.decode() for k in fields)
            return None, f"expected a field {self.field.decode()!r}, got fields {names}"
        return decode_rows(fields[self.field], self.n_features)

    def _taken(self, entry) -> None:
        entry_id = entry[0]
        self._unacked.append(entry_id)
        self.position = entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def _dead_letter(self, entry, reason: str) -> None:
        entry_id, fields = entry
        self.client.xadd(
            self.dead_letters, {"id": entry_id, "reason": reason, "x": (fields or {}).get(self.field, b"")}
        )
        self._rejects.note(self.position, reason)

    def ack(self, position) -> None:
        """Acknowledge every entry read up to ``position``."""
        last = _entry_id(position)
        done = []
        while self._unacked and _entry_id(self._unacked[0]) <= last:
            done.append(self._unacked.popleft())
        if done:
            self.client.xack(self.stream, self.group, *done)

    def lag(self) -> int | None:
        """Entries of the stream not delivered to the group yet (``XINFO GROUPS``'s ``lag``;
        None when Redis cannot tell, after deletions)."""
        for group in self.client.xinfo_groups(self.stream):
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                lag = group.get("lag")
                return None if lag is None else int(lag)
        return None

    def close(self) -> None:
        self.client.close()
