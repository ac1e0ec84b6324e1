"""The event hook: Gun's event-handler names, one call site, plus stdlib logging.

A connection emits `name, fields` pairs (`connect_start`, `connect_end`, `request_start`,
`request_headers`, `request_end`, `response_start`, `response_inform`, `response_headers`,
`response_trailers`, `response_end`, `ws_upgrade`, `ws_recv_frame_end`,
`ws_send_frame_end`, `protocol_changed`, `cancel`, `disconnect`, `terminate`, `init`).
They go to the user's `event_handler` and, at DEBUG, to the `gluegun_actors.events` logger
with sensitive header values redacted (`_redact`); the handler sees them whole, as Gun's.
A handler that raises is logged and ignored: tracing never breaks a connection.
"""

from __future__ import annotations

import logging
from typing import Any

from gluegun_actors._options import EventHandler
from gluegun_actors._redact import redact_fields

log = logging.getLogger("gluegun_actors.events")


class Tracer:
    """Emits events for one connection; costs one check when nobody listens."""

    __slots__ = ("_conn_id", "_handler", "_sensitive")

    def __init__(
        self, conn_id: int, handler: EventHandler | None, sensitive: frozenset[str] = frozenset()
    ) -> None:
        self._conn_id = conn_id
        self._handler = handler
        self._sensitive = sensitive

    @property
    def active(self) -> bool:
        return self._handler is not None or log.isEnabledFor(logging.DEBUG)

    def emit(self, name: str, **fields: Any) -> None:
        if self._handler is None and not log.isEnabledFor(logging.DEBUG):
            return
        fields["conn_id"] = self._conn_id
        if log.isEnabledFor(logging.DEBUG):
            log.debug("conn %d %s %s", self._conn_id, name, redact_fields(fields, self._sensitive))
        if self._handler is not None:
            try:
                self._handler(name, fields)
            except Exception:
                log.exception("event handler failed on %s; the connection goes on", name)
