"""gluegun_actors: Gun-style connection actors for Python.

Each connection is a Pykka actor that owns its socket, speaks HTTP/1.1 and WebSocket,
reconnects by policy and reports to its owner with Gun's messages (`GunUp`, `GunDown`,
`GunResponse`, `GunData`, `GunWs`, ...). Public modules: `connection`, `http`,
`websocket`, `aio` (the same waits for coroutines), `message`, `events`, `mailbox`,
`supervisor`, `manager`, `errors`, `testing`. The `gluegun` command line is
`python -m gluegun_actors`.
"""

from gluegun_actors.errors import (
    AwaitTimeout,
    BadStateError,
    ChildStartError,
    ClosingTimeout,
    ConnectFailed,
    ConnectionDown,
    ConnectionTerminated,
    GluegunError,
    InvalidArgument,
    InvalidOptions,
    InvalidTimeout,
    LocalProtocolError,
    ManagerError,
    MessageTooBig,
    PongTimeout,
    ProtocolError,
    ProxyAuthenticationError,
    ProxyError,
    RemoteProtocolError,
    StreamError,
    SupervisorError,
    UnsupportedProtocol,
    UpgradeFailed,
    WebSocketClosed,
)

__version__ = "0.1.0"

__all__ = [
    "AwaitTimeout",
    "BadStateError",
    "ChildStartError",
    "ClosingTimeout",
    "ConnectFailed",
    "ConnectionDown",
    "ConnectionTerminated",
    "GluegunError",
    "InvalidArgument",
    "InvalidOptions",
    "InvalidTimeout",
    "LocalProtocolError",
    "ManagerError",
    "MessageTooBig",
    "PongTimeout",
    "ProtocolError",
    "ProxyAuthenticationError",
    "ProxyError",
    "RemoteProtocolError",
    "StreamError",
    "SupervisorError",
    "UnsupportedProtocol",
    "UpgradeFailed",
    "WebSocketClosed",
    "__version__",
]
