"""Local servers for tests, examples and the demo; nothing here touches the network.

- `EmbeddedServer`: an HTTP/1.1 + WebSocket echo server (h11 and wsproto) with the
  routes listed in its docstring, for behaviour tests.
- `ScriptedServer`: a raw TCP server that plays exact bytes step by step
  (`Expect`, `Send`, `Sleep`, `Close`, `Reset`, `Hold`, `WsAccept`), for fault tests.

Both listen on 127.0.0.1 (port 0 by default: read `server.port`), serve each client
on its own thread, are context managers, and leave no thread or socket behind after
`stop()`. `kill()` resets every client; `restart()` listens again on the same port.
They log through `logging.getLogger("gluegun_actors.testing")`.
"""

from gluegun_actors.testing._embedded import EmbeddedServer
from gluegun_actors.testing._payloads import pattern_bytes
from gluegun_actors.testing._scripted import (
    Close,
    Expect,
    Hold,
    Reset,
    ScriptedServer,
    Send,
    Sleep,
    Step,
    WsAccept,
)
from gluegun_actors.testing._server import ServerState

__all__ = [
    "Close",
    "EmbeddedServer",
    "Expect",
    "Hold",
    "Reset",
    "ScriptedServer",
    "Send",
    "ServerState",
    "Sleep",
    "Step",
    "WsAccept",
    "pattern_bytes",
]
