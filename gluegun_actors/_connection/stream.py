"""`Stream`: what the connection actor knows of one request or WebSocket stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gluegun_actors._types import StreamRef

if TYPE_CHECKING:
    from gluegun_actors._connection.commands import Upgrade
    from gluegun_actors._connection.destination import Destination
    from gluegun_actors._options import WsOptions
    from gluegun_actors._protocol.ws_handshake import Handshake

__all__ = ["Stream"]


@dataclass(slots=True)
class Stream:
    """A request, or an upgrade and then the WebSocket; the actor's turn owns it."""

    ref: StreamRef
    credits: int | None
    """Flow credits left (None: no flow control); at zero the socket is not re-armed."""
    destination: Destination
    """Where its messages go: its `reply_to` (the owner when it named none)."""
    cancelled: bool = False
    """`cancel` or `flush(stream, conn)` was called: nothing more of it is delivered."""
    responding: bool = False
    """The response has started (its first head or inform arrived)."""
    ws_options: WsOptions | None = None
    """An upgrade's options (None: plain HTTP)."""
    handshake: Handshake | None = None
    """What the upgrade request offered, to check the 101 against."""
    upgrade: Upgrade | None = None
    """The upgrade command, kept to redo it after a reconnect (`reupgrade`); None once
    the owner sent a close."""
    reupgrades: int = 0
    """How many times it was upgraded again after a reconnect."""
