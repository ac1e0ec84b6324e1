"""The owner's side of a sharded manager: one thread that pulls from every shard.

An owner in another process (the driver, any Ray actor) has a `Pump`: a thread that
keeps one long poll (`Shard.pull`) outstanding on each shard, takes whichever answers
first (`ray.wait`), and puts the batch into the owner's own `Mailbox`, in order. So
`receive`, selective receive and millisecond timeouts work there unchanged, and the
messages of each connection arrive in the order its shard queued them (one poll at a
time per shard).

No duplicates. Each reply names the shard's incarnation and the batch's number, and the
next poll acknowledges it. A batch seen before (a poll retried after an error whose
first answer did arrive) is dropped.

Shard loss. A poll to a shard whose process died fails; Ray restarts the shard, which
reopens its keys. When the pump sees the shard's incarnation change (or Ray says the
actor is dead for good) it first puts, for each connection of that shard that was up, a
`GunDown` whose reason is `ShardLost`, then the new incarnation's messages (`GunUp`,
`GunUpgrade` of the reopened keys). What the dead process held is lost: messages in the
owner's mailbox there not yet pulled, the batch in flight, frames read from sockets but
not yet delivered, frames sent but not yet written.

Backpressure. The pump does not poll again while the owner's mailbox is over its
high-water mark; it polls again once the mailbox is drained to half, or the owner
blocks in a receive for something not queued (the mailbox's own rule). Meanwhile the
owner's mailbox inside each shard fills to its mark and its connections stop reading.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import ray
from ray.exceptions import ActorDiedError, RayActorError, RayError

from gluegun_actors._shards.handles import RemoteConnection, RemoteStream, ShardLost
from gluegun_actors._shards.translate import loads_batch
from gluegun_actors._types import Protocol
from gluegun_actors.events import Down, GunDown, GunUp, GunUpgrade
from gluegun_actors.mailbox import Mailbox

__all__ = ["Pump"]

_log = logging.getLogger(__name__)

RETRY_S: Final = (0.05, 1.0)
"""The first and the longest pause before polling again a shard whose poll failed."""
REFRESH_S: Final = 1.0
"""How often the pump looks for shards added (by `add_shard` in any process)."""
WAIT_SLICE_S: Final = 0.2
"""How long the pump blocks at a time (so that `stop` is prompt)."""


@dataclass(slots=True)
class _Up:
    protocol: Protocol
    streams: list[RemoteStream] = field(default_factory=list)


@dataclass(slots=True)
class _Link:
    """The pump's view of one shard."""

    index: int
    handle: Any
    incarnation: int = 0
    seq: int = 0
    pending: Any = None
    retry_at: float = 0.0
    failures: int = 0
    up: dict[RemoteConnection, _Up] = field(default_factory=dict)


class Pump:
    """Pulls an owner's messages from every shard into its mailbox (see the module)."""

    def __init__(
        self,
        owner: str,
        mailbox: Mailbox,
        refresh: Callable[[], list[Any] | None],
        *,
        max_batch: int,
        wait_ms: int,
        name: str,
    ) -> None:
        self.owner = owner
        self.mailbox = mailbox
        self._refresh = refresh
        self._max_batch = max_batch
        self._wait_ms = wait_ms
        self._links: dict[int, _Link] = {}
        self._stopping = threading.Event()
        self._drained = threading.Event()
        self.delivered = 0
        """Messages put into the owner's mailbox so far (synthesized `GunDown`s too)."""
        self._thread = threading.Thread(target=self._run, name=f"shards-pump {name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pulling; returns once the thread has ended (or after `timeout` seconds)."""
        self._stopping.set()
        self._drained.set()
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        next_refresh = 0.0
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= next_refresh:
                    if not self._sync():
                        return  # the manager was stopped
                    next_refresh = now + REFRESH_S
                self._step()
        except Exception:
            if ray.is_initialized():  # else Ray was shut down under it: nothing to say
                _log.exception("the pump of owner %r failed", self.owner)

    def _sync(self) -> bool:
        """Add links to shards this pump does not poll yet; False once the manager is gone."""
        handles = self._refresh()
        if handles is None:
            return False
        for index, handle in enumerate(handles):
            if index not in self._links:
                self._links[index] = _Link(index, handle)
        return True

    def _step(self) -> None:
        now = time.monotonic()
        pending: dict[Any, _Link] = {}
        for link in self._links.values():
            if link.pending is None and link.retry_at <= now:
                link.pending = link.handle.pull.remote(
                    self.owner, link.incarnation, link.seq, self._max_batch, self._wait_ms
                )
            if link.pending is not None:
                pending[link.pending] = link
        if not pending:
            self._stopping.wait(RETRY_S[0])
            return
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SLICE_S)
        for ref in ready:
            link = pending[ref]
            link.pending = None
            self._take(link, ref)
            self._hold_while_backlogged()

    def _take(self, link: _Link, ref: Any) -> None:
        try:
            incarnation, seq, data = ray.get(ref)
        except RayActorError as error:
            self._failed(link, error)
            return
        except RayError:
            _log.exception("shard %d failed a poll of owner %r", link.index, self.owner)
            self._failed(link, None)
            return
        link.failures = 0
        messages: list[object] = []
        if incarnation != link.incarnation:
            if link.incarnation:
                messages += self._lost(
                    link, f"its process died; incarnation {incarnation} reopened"
                )
            link.incarnation, link.seq = incarnation, 0
        if seq > link.seq:
            batch = loads_batch(data)
            link.seq = seq
            self._track(link, batch)
            messages += batch
        if messages:
            self.mailbox.put_all(messages)
            self.delivered += len(messages)

    def _failed(self, link: _Link, error: RayActorError | None) -> None:
        link.failures += 1
        pause = min(RETRY_S[1], RETRY_S[0] * 2 ** (link.failures - 1))
        link.retry_at = time.monotonic() + pause
        if isinstance(error, ActorDiedError) and link.up:
            lost = self._lost(link, "its process died and Ray did not restart it")
            self.mailbox.put_all(lost)
            self.delivered += len(lost)

    def _lost(self, link: _Link, why: str) -> list[object]:
        """A `GunDown` for each connection of the link's shard that was up."""
        reason = ShardLost(
            f"shard {link.index} (incarnation {link.incarnation}) was lost: {why}",
            link.index,
            link.incarnation,
        )
        downs: list[object] = [
            GunDown(conn, up.protocol, reason, tuple(up.streams))  # type: ignore[arg-type]
            for conn, up in link.up.items()
        ]
        link.up.clear()
        return downs

    @staticmethod
    def _track(link: _Link, batch: list[object]) -> None:
        """Which connections are up, for the `GunDown`s to give if the shard dies."""
        up = link.up
        for message in batch:
            kind = type(message)
            if kind is GunUp:
                up[message.conn] = _Up(message.protocol)  # type: ignore[attr-defined]
            elif kind is GunUpgrade:
                state = up.get(message.conn)  # type: ignore[attr-defined]
                if state is not None:
                    state.protocol = Protocol.WS
                    state.streams.append(message.stream)  # type: ignore[attr-defined]
            elif kind is GunDown or kind is Down:
                up.pop(message.conn, None)  # type: ignore[attr-defined]

    def _hold_while_backlogged(self) -> None:
        """Wait while the owner's mailbox is over its mark (see the module docstring)."""
        self._drained.clear()
        if not self.mailbox._backlogged(self._drained.set):
            return
        while not self._stopping.is_set() and not self._drained.wait(WAIT_SLICE_S):
            pass
