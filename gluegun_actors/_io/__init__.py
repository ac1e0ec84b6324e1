"""The I/O runtime: one reactor thread that owns every socket, its timers and wakeups.

- `reactor`: the thread, its selector loop, commands from other threads, the shared
  reactor's reference count.
- `transport` and `connecting`: one client socket, TCP or TLS, active-once reads and
  parked writes; `state` holds its state tables; `events` what it reports.
- `timers`: the timer heap; `addresses`: IP literals and name resolution.
- `wakeups`: waking sleeping callers once the reactor is about to block.

Nothing here parses a protocol: bytes go up as `Received` events, bytes come down
through `Transport.write`.
"""

from gluegun_actors._io.connecting import ConnectTimeouts
from gluegun_actors._io.events import (
    Broken,
    Connected,
    ConnectFailed,
    Eof,
    Received,
    TransportCallback,
    TransportEvent,
)
from gluegun_actors._io.reactor import Reactor, acquire_reactor, release_reactor
from gluegun_actors._io.timers import TimerHandle
from gluegun_actors._io.transport import Transport

__all__ = [
    "Broken",
    "ConnectFailed",
    "ConnectTimeouts",
    "Connected",
    "Eof",
    "Reactor",
    "Received",
    "TimerHandle",
    "Transport",
    "TransportCallback",
    "TransportEvent",
    "acquire_reactor",
    "release_reactor",
]
