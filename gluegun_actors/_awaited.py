"""What each await takes from the mailbox: the waits the blocking helpers
(`connection.await_up`, `http.await_body`, `websocket.receive`...) and their coroutine
twins in `aio` share, so that both match messages by the very same rules.

Each is a `Wait` (see `_await`): `take` decides, message by message and under the
mailbox lock, whether the message belongs to it; `value` is the answer.
"""

from __future__ import annotations

from typing import Any, TypeVar

from gluegun_actors._await import Wait
from gluegun_actors._connection.handle import Connection
from gluegun_actors._types import Headers, Protocol, StreamRef
from gluegun_actors.errors import BadStateError, UpgradeFailed
from gluegun_actors.events import (
    GunData,
    GunInform,
    GunResponse,
    GunTrailers,
    GunUp,
    GunUpgrade,
    GunWs,
)
from gluegun_actors.mailbox import Keep
from gluegun_actors.message import Frame

__all__ = [
    "BodyAndTrailersWait",
    "BodyWait",
    "FrameWait",
    "NextWait",
    "ResponseWait",
    "UpWait",
    "UpgradeWait",
]

T = TypeVar("T")


class UpWait(Wait[Protocol]):
    protocol: Protocol

    def take(self, message: Any) -> bool:
        if type(message) is GunUp:
            self.protocol = message.protocol
            self.finished = True
            return True
        return False

    def value(self) -> Protocol:
        return self.protocol


class NextWait(Wait[Any]):
    message: Any

    def take(self, message: Any) -> bool:
        self.message = message
        self.finished = True
        return True

    def value(self) -> Any:
        return self.message


class ResponseWait(Wait[GunResponse]):
    response: GunResponse

    def take(self, message: Any) -> bool | Keep:
        match message:
            case GunInform():
                return True
            case GunResponse():
                self.response = message
                self.finished = True
                return True
            case GunUpgrade():
                error = BadStateError(
                    f"{self.stream!r} was upgraded to WebSocket: use websocket.await_upgrade"
                )
                return self.fail(error, keep=True)
        return False

    def value(self) -> GunResponse:
        return self.response


class Body(Wait[T]):
    """Takes a response to its end: head (if still queued), body pieces, trailers."""

    def __init__(self, conn: Connection, stream: StreamRef) -> None:
        super().__init__(conn, stream)
        self.parts: list[bytes] = []
        self.trailers: Headers = ()

    def take(self, message: Any) -> bool:
        match message:
            case GunInform():
                return True
            case GunResponse(is_fin=is_fin):
                self.finished = is_fin
                return True
            case GunData(is_fin=is_fin, data=chunk):
                self.parts.append(chunk)
                self.finished = is_fin
                return True
            case GunTrailers(headers=trailers):
                self.trailers = trailers
                self.finished = True
                return True
        return False


class BodyWait(Body[bytes]):
    def value(self) -> bytes:
        return b"".join(self.parts)


class BodyAndTrailersWait(Body[tuple[bytes, Headers]]):
    def value(self) -> tuple[bytes, Headers]:
        return b"".join(self.parts), self.trailers


class FrameWait(Wait[Frame]):
    """One frame; an upgrade answer still queued ends it with "call await_upgrade first"."""

    frame: Frame

    def take(self, message: Any) -> bool | Keep:
        if type(message) is GunWs:
            self.frame = message.frame
            self.finished = True
            return True
        if type(message) is GunUpgrade and self.stream is not None and self.stream.resilient:
            return True  # upgraded again after a reconnect: take it and wait on
        if type(message) in (GunUpgrade, GunResponse):
            error = BadStateError(
                f"the upgrade answer of {self.stream!r} is still in the mailbox: call "
                "websocket.await_upgrade before websocket.receive"
            )
            return self.fail(error, keep=True)
        return False

    def value(self) -> Frame:
        return self.frame


class UpgradeWait(Wait[GunUpgrade]):
    """Takes the GunUpgrade, or a refusal: GunResponse and its whole body."""

    def __init__(self, conn: Connection, stream: StreamRef, path: str | None = None) -> None:
        super().__init__(conn, stream)
        self.path = path
        """The upgrade's path when known, for the refusal's message."""
        self.upgrade: GunUpgrade | None = None
        self.response: GunResponse | None = None
        self.body: list[bytes] = []

    def take(self, message: Any) -> bool:
        match message:
            case GunUpgrade():
                self.upgrade = message
                self.finished = True
                return True
            case GunResponse(is_fin=is_fin):
                self.response = message
                self.finished = is_fin
                return True
            case GunData(is_fin=is_fin, data=chunk) if self.response is not None:
                self.body.append(chunk)
                self.finished = is_fin
                return True
            case GunTrailers() if self.response is not None:
                self.finished = True
                return True
        return False

    def value(self) -> GunUpgrade:
        if self.upgrade is not None:
            return self.upgrade
        assert self.response is not None
        response = self.response
        raise UpgradeFailed.of_response(
            self.stream, response.status, response.headers, b"".join(self.body), self.path
        )
