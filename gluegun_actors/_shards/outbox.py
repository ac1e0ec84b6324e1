"""The shard's side of a remote owner: a mailbox with a mark, drained in batches.

Inside a shard, each owner (by its id) has an `Outbox`: a `Mailbox` with a high-water
mark that is the owner of that owner's connections, as a local owner's would be. The
owner's pump (`pump.py`) long-polls `pull`: the first message is waited for up to
`wait_ms`, then whatever else is queued joins it, up to `max_batch`. So a slow remote
owner is held back as a local one is: its mailbox here fills to the mark and its
connections stop reading their sockets.

Batches are numbered. A batch stays here until the next pull acknowledges it (`ack` is
the number of the last batch the pump took); a pull whose reply was lost on the way asks
again with the old number and gets the same batch, which the pump then recognises. So a
retried pull neither loses nor repeats messages while the shard's process lives.

A *marker* is a message whose delivery someone waits for (`add_shard` waits for the
`GunDown` of each moved key to reach its owner before the key opens on its new shard).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gluegun_actors.errors import AwaitTimeout
from gluegun_actors.mailbox import Mailbox

__all__ = ["ACTIVE_PUMP_S", "Outbox"]

_log = logging.getLogger(__name__)

ACTIVE_PUMP_S: Final = 2.0
"""An owner whose pump pulled within this many seconds is taken to be pumping: markers
wait for it. An owner without a pump (code inside the shard reading the mailbox itself)
is not waited for."""


@dataclass(slots=True)
class _Batch:
    seq: int
    data: bytes
    count: int
    markers: list[int] = field(default_factory=list)


class _Head:
    """A collector of the first `count` queued messages, whatever they are."""

    __slots__ = ("count", "taken")

    def __init__(self, count: int) -> None:
        self.count = count
        self.taken: list[object] = []

    def offer(self, message: object) -> bool:
        self.taken.append(message)
        return True

    def done(self) -> bool:
        return len(self.taken) >= self.count

    def result(self) -> list[object]:
        return self.taken


class Outbox:
    """One owner inside one shard (see the module docstring)."""

    __slots__ = (
        "_changed",
        "_markers",
        "_pull_lock",
        "_seq",
        "_unacked",
        "delivered",
        "last_pull",
        "mailbox",
        "owner",
    )

    def __init__(self, owner: str, high_water_messages: int, high_water_bytes: int) -> None:
        self.owner = owner
        self.mailbox = Mailbox(
            f"shard owner {owner}",
            high_water_messages=high_water_messages,
            high_water_bytes=high_water_bytes,
        )
        self._pull_lock = threading.Lock()
        self._changed = threading.Condition()
        self._seq = 0
        self._unacked: _Batch | None = None
        self._markers: dict[int, object] = {}  # id(message) -> message, until acknowledged
        self.delivered = 0
        """Messages the owner's pump acknowledged."""
        self.last_pull: float | None = None
        """When the pump last pulled (`time.monotonic()`); None if it never did."""

    def mark(self, message: object) -> None:
        """Watch `message` (call before putting it): `await_markers` waits for its delivery."""
        with self._changed:
            self._markers[id(message)] = message

    def pull(
        self, ack: int, max_batch: int, wait_ms: int, encode: Callable[[list[object]], bytes]
    ) -> tuple[int, bytes]:
        """The batch after batch `ack` as (its number, its bytes), or (the last batch's
        number, b"") if nothing came within `wait_ms`. A pull that names the batch not yet
        acknowledged acknowledges it; one that names an earlier batch (the answer was lost
        on the way) gets that batch again."""
        with self._pull_lock:
            self.last_pull = time.monotonic()
            unacked = self._unacked
            if unacked is not None:
                if unacked.seq > ack:
                    return unacked.seq, unacked.data
                self._unacked = None
                self._settle(unacked)
            messages = self._take(max_batch, wait_ms)
            if not messages:
                return self._seq, b""
            self._seq += 1
            batch = _Batch(self._seq, self._encode(messages, encode), len(messages))
            if self._markers:
                with self._changed:
                    batch.markers = [id(m) for m in messages if id(m) in self._markers]
            self._unacked = batch
            return batch.seq, batch.data

    def pumping(self) -> bool:
        """Whether a pump is pulling now or has lately (see `ACTIVE_PUMP_S`)."""
        last = self.last_pull
        if last is None:
            return False
        return self._pull_lock.locked() or time.monotonic() - last < ACTIVE_PUMP_S

    def await_markers(self, deadline: float) -> bool:
        """Wait until every marked message was acknowledged, or `deadline` (monotonic)."""
        with self._changed:
            while self._markers:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.1))
        return True

    def forget_markers(self) -> None:
        """Stop waiting for any marked message (nobody will pull them)."""
        with self._changed:
            self._markers.clear()
            self._changed.notify_all()

    def _take(self, max_batch: int, wait_ms: int) -> list[object]:
        """The first message (waited for), then what else is queued, in one scan."""
        mailbox = self.mailbox
        try:
            first = mailbox.receive(None, wait_ms)
        except AwaitTimeout:
            return []
        more = min(len(mailbox), max_batch - 1)
        if more <= 0:
            return [first]
        try:
            return [first, *mailbox.collect(_Head(more), 0)]
        except AwaitTimeout:  # someone else took some meanwhile: they went back
            return [first]

    def _encode(self, messages: list[object], encode: Callable[[list[object]], bytes]) -> bytes:
        try:
            return encode(messages)
        except Exception:
            _log.exception("a batch for owner %r does not encode; encoding one by one", self.owner)
        kept = []
        for message in messages:
            try:
                encode([message])
            except Exception:
                _log.error(
                    "dropped a message for owner %r that does not encode: %r", self.owner, message
                )
            else:
                kept.append(message)
        return encode(kept)

    def _settle(self, batch: _Batch) -> None:
        self.delivered += batch.count
        if batch.markers:
            with self._changed:
                for marker in batch.markers:
                    self._markers.pop(marker, None)
                self._changed.notify_all()
