"""The sans-IO WebSocket client core, driven with bytes and wired to wsproto servers in memory.

No sockets: the upgrade goes through h11 (client) and wsproto's `WSConnection` (server),
frames through wsproto's server `Connection`, and hostile frames are built by hand.
"""

from __future__ import annotations

import base64
import itertools
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import h11
import pytest
from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Request,
    TextMessage,
)
from wsproto.events import Ping as WsPing
from wsproto.events import Pong as WsPong
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameDecoder, Opcode

from gluegun_actors import websocket
from gluegun_actors._protocol import ws_frames as _frames
from gluegun_actors._protocol import ws_send
from gluegun_actors._protocol.ws import (
    CLOSED,
    DEFAULT_MAX_MESSAGE_SIZE,
    LOCAL_CLOSING,
    OPEN,
    Failed,
    Finished,
    WsConnection,
    WsEvent,
)
from gluegun_actors._protocol.ws_deflate import DeflateParams
from gluegun_actors._protocol.ws_frames import FrameParser, Piece
from gluegun_actors._protocol.ws_handshake import (
    Handshake,
    Negotiated,
    accept_key,
    handshake_request,
    validate_handshake,
)
from gluegun_actors.errors import (
    BadStateError,
    InvalidArgument,
    InvalidOptions,
    LocalProtocolError,
    MessageTooBig,
    RemoteProtocolError,
)
from gluegun_actors.message import Binary, Close, Ping, Pong, Text

# ----------------------------------------------------------------------------- helpers


def server_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bytes = b""
) -> bytes:
    """One frame as a (possibly misbehaving) server would write it."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + payload


@dataclass(frozen=True)
class WsSettings:
    """What a test asks of the core: the handshake's offer and the message size bound."""

    subprotocols: tuple[str, ...] = ()
    compress: bool = False
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    extra_headers: tuple[tuple[str, str], ...] = ()


def offer(settings: WsSettings) -> Handshake:
    return handshake_request(
        subprotocols=settings.subprotocols,
        compress=settings.compress,
        headers=settings.extra_headers,
    )


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


@dataclass
class Pair:
    """Our client core and a wsproto server connection, wired together in memory."""

    client: WsConnection
    server: Connection

    def to_server(self) -> list[Event]:
        """Deliver what the client queued; the events the server saw."""
        self.server.receive_data(self.client.data_to_send())
        return list(self.server.events())

    def to_client(self, *events: Event) -> list[WsEvent]:
        """Have the server send `events`; what the client reports."""
        return self.client.receive_data(b"".join(self.server.send(e) for e in events))


def pair(settings: WsSettings | None = None) -> Pair:
    """A connection with nothing negotiated, as after a plain 101."""
    settings = settings or WsSettings()
    client = WsConnection(Negotiated(), settings.max_message_size)
    return Pair(client, Connection(ConnectionType.SERVER))


def upgrade(
    settings: WsSettings,
    *,
    subprotocol: str | None = None,
    server_extensions: list[PerMessageDeflate] | None = None,
    after_101: list[Event] | None = None,
) -> tuple[WsConnection, WSConnection]:
    """A full opening handshake: h11 client, wsproto server, then our validation."""
    handshake = offer(settings)
    client_http = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET", target="/echo", headers=[("host", "example.test"), *handshake.headers]
    )
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client_http.send(request))
    assert isinstance(next(server.events()), Request)
    wire = server.send(
        AcceptConnection(subprotocol=subprotocol, extensions=list(server_extensions or []))
    )
    for event in after_101 or []:
        wire += server.send(event)
    client_http.receive_data(wire)
    response = client_http.next_event()
    assert isinstance(response, h11.InformationalResponse)
    headers = [(name.decode(), value.decode()) for name, value in response.headers]
    negotiated = validate_handshake(handshake, response.status_code, headers)
    trailing, _closed = client_http.trailing_data
    return WsConnection(negotiated, settings.max_message_size, trailing), server


def response_headers(handshake: Handshake, **overrides: str | None) -> list[tuple[str, str]]:
    """A correct 101 header list for `handshake`, with some fields replaced or removed."""
    fields: dict[str, str | None] = {
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-accept": accept_key(handshake.key),
    }
    fields.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return [(name, value) for name, value in fields.items() if value is not None]


def header(handshake: Handshake, name: str) -> str | None:
    values = [value for key, value in handshake.headers if key == name]
    assert len(values) <= 1
    return values[0] if values else None


# ----------------------------------------------------------------------------- settings


def test_options_refuse_a_max_message_size_below_one_byte() -> None:
    with pytest.raises(InvalidOptions, match="max_message_size"):
        websocket.options(max_message_size=0)


def test_options_refuse_an_extra_header_that_would_replace_the_handshake() -> None:
    with pytest.raises(
        InvalidOptions, match=r"Sec-WebSocket-Protocol.*part of the WebSocket handshake"
    ):
        websocket.options(headers=[("Sec-WebSocket-Protocol", "chat")])


def test_options_refuse_a_subprotocol_that_is_not_a_token() -> None:
    with pytest.raises(InvalidOptions, match="token"):
        websocket.options(subprotocols=("chat v2",))


# ----------------------------------------------------------------------------- request


def test_handshake_key_is_16_random_bytes_in_base64() -> None:
    first, second = offer(WsSettings()), offer(WsSettings())
    assert len(base64.b64decode(first.key, validate=True)) == 16
    assert first.key != second.key
    assert header(first, "sec-websocket-key") == first.key


def test_handshake_asks_to_upgrade_to_websocket_version_13() -> None:
    handshake = offer(WsSettings())
    assert header(handshake, "upgrade") == "websocket"
    assert header(handshake, "connection") == "Upgrade"
    assert header(handshake, "sec-websocket-version") == "13"


def test_handshake_offers_subprotocols_in_order() -> None:
    handshake = offer(WsSettings(subprotocols=("v2.chat", "v1.chat")))
    assert header(handshake, "sec-websocket-protocol") == "v2.chat, v1.chat"


def test_handshake_offers_no_subprotocol_or_extension_by_default() -> None:
    handshake = offer(WsSettings())
    assert header(handshake, "sec-websocket-protocol") is None
    assert header(handshake, "sec-websocket-extensions") is None
    assert not handshake.compress


def test_handshake_offers_permessage_deflate_when_compressing() -> None:
    handshake = offer(WsSettings(compress=True))
    assert header(handshake, "sec-websocket-extensions") == (
        "permessage-deflate; client_max_window_bits"
    )
    assert handshake.compress


def test_handshake_appends_extra_headers_after_its_own() -> None:
    handshake = offer(WsSettings(extra_headers=(("authorization", "Bearer t"),)))
    assert handshake.headers[-1] == ("authorization", "Bearer t")


# ----------------------------------------------------------------------------- response


def test_validate_accepts_a_wsproto_servers_response() -> None:
    settings = WsSettings(subprotocols=("v1.chat",), compress=True)
    client, _server = upgrade(
        settings, subprotocol="v1.chat", server_extensions=[PerMessageDeflate()]
    )
    assert client.negotiated.protocol == "v1.chat"
    assert client.negotiated.deflate == DeflateParams()


def test_validate_reports_no_protocol_when_the_server_chose_none() -> None:
    settings = WsSettings(subprotocols=("v1.chat",))
    handshake = offer(settings)
    assert validate_handshake(handshake, 101, response_headers(handshake)).protocol is None


def test_validate_accepts_header_names_in_any_case() -> None:
    settings = WsSettings()
    handshake = offer(settings)
    headers = [(name.title(), value) for name, value in response_headers(handshake)]
    assert validate_handshake(handshake, 101, headers) == Negotiated(None, None)


def test_validate_rejects_a_status_other_than_101() -> None:
    handshake = offer(WsSettings())
    with pytest.raises(RemoteProtocolError, match="200"):
        validate_handshake(handshake, 200, response_headers(handshake))


def test_validate_rejects_a_wrong_accept_key() -> None:
    handshake = offer(WsSettings())
    wrong = accept_key(offer(WsSettings()).key)
    with pytest.raises(RemoteProtocolError, match="wrong Sec-WebSocket-Accept"):
        validate_handshake(handshake, 101, response_headers(handshake, sec_websocket_accept=wrong))


def test_validate_rejects_a_missing_accept_key() -> None:
    handshake = offer(WsSettings())
    with pytest.raises(RemoteProtocolError, match="no Sec-WebSocket-Accept"):
        validate_handshake(handshake, 101, response_headers(handshake, sec_websocket_accept=None))


def test_validate_rejects_a_missing_upgrade_header() -> None:
    handshake = offer(WsSettings())
    with pytest.raises(RemoteProtocolError, match="Upgrade: websocket"):
        validate_handshake(handshake, 101, response_headers(handshake, upgrade=None))


def test_validate_rejects_a_connection_header_without_upgrade() -> None:
    handshake = offer(WsSettings())
    with pytest.raises(RemoteProtocolError, match="Connection: Upgrade"):
        validate_handshake(handshake, 101, response_headers(handshake, connection="keep-alive"))


def test_validate_rejects_a_subprotocol_that_was_not_offered() -> None:
    settings = WsSettings(subprotocols=("v1.chat",))
    handshake = offer(settings)
    headers = response_headers(handshake, sec_websocket_protocol="v2.chat")
    with pytest.raises(RemoteProtocolError, match=r"'v2\.chat', which was not offered"):
        validate_handshake(handshake, 101, headers)


def test_validate_rejects_more_than_one_chosen_subprotocol() -> None:
    settings = WsSettings(subprotocols=("a", "b"))
    handshake = offer(settings)
    headers = response_headers(handshake, sec_websocket_protocol="a, b")
    with pytest.raises(RemoteProtocolError, match="exactly one subprotocol"):
        validate_handshake(handshake, 101, headers)


def test_validate_rejects_an_extension_that_was_not_offered() -> None:
    settings = WsSettings(compress=False)
    handshake = offer(settings)
    headers = response_headers(handshake, sec_websocket_extensions="permessage-deflate")
    with pytest.raises(RemoteProtocolError, match="'permessage-deflate', which was not offered"):
        validate_handshake(handshake, 101, headers)


def test_validate_rejects_an_unknown_extension() -> None:
    settings = WsSettings(compress=True)
    handshake = offer(settings)
    headers = response_headers(handshake, sec_websocket_extensions="x-webkit-deflate-frame")
    with pytest.raises(
        RemoteProtocolError, match="'x-webkit-deflate-frame', which was not offered"
    ):
        validate_handshake(handshake, 101, headers)


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ("server_max_window_bits=16", "must be 8 to 15"),
        ("server_max_window_bits=7", "must be 8 to 15"),
        ("server_max_window_bits=010", "must be 8 to 15"),
        ("client_max_window_bits", "must be 8 to 15"),
        ("client_max_window_bits=8", "zlib cannot"),
        ("server_no_context_takeover=1", "takes no value"),
        ("server_no_context_takeover; server_no_context_takeover", "given twice"),
        ("mystery=1", "unknown permessage-deflate parameter"),
    ],
)
def test_validate_rejects_bad_deflate_parameters(params: str, complaint: str) -> None:
    settings = WsSettings(compress=True)
    handshake = offer(settings)
    headers = response_headers(handshake, sec_websocket_extensions=f"permessage-deflate; {params}")
    with pytest.raises(RemoteProtocolError, match=complaint):
        validate_handshake(handshake, 101, headers)


def test_validate_takes_the_servers_deflate_parameters() -> None:
    settings = WsSettings(compress=True)
    handshake = offer(settings)
    value = 'permessage-deflate; client_max_window_bits="10"; server_no_context_takeover'
    headers = response_headers(handshake, sec_websocket_extensions=value)
    deflate = validate_handshake(handshake, 101, headers).deflate
    assert deflate == DeflateParams(server_no_context_takeover=True, client_max_window_bits=10)


# ----------------------------------------------------------------------------- messages


def test_connection_starts_open_with_nothing_to_send() -> None:
    p = pair()
    assert (p.client.state, p.client.close_code, p.client.close_reason) == (OPEN, None, "")
    assert p.client.data_to_send() == b""


def test_text_echoes_through_a_wsproto_server() -> None:
    client, server = upgrade(WsSettings())
    client.send(Text("héllo"))
    server.receive_data(client.data_to_send())
    (message,) = server.events()
    assert isinstance(message, TextMessage)
    data = server.send(TextMessage(message.data))
    assert client.receive_data(data) == [Text("héllo")]


def test_binary_echoes_through_a_wsproto_server() -> None:
    p = pair()
    payload = bytes(range(256)) * 300  # long enough for the 16-bit length and bulk masking
    p.client.send(Binary(payload))
    (message,) = p.to_server()
    assert isinstance(message, BytesMessage)
    assert message.data == payload
    assert p.to_client(BytesMessage(message.data)) == [Binary(payload)]


def _counting_urandom() -> Callable[[int], bytes]:
    """Stands in for os.urandom: every 4-byte word it ever returns is different."""
    words = itertools.count()
    return lambda n: b"".join(struct.pack("!I", next(words)) for _ in range(n // 4))


def test_masking_keys_are_never_handed_out_twice_across_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ws_send.os, "urandom", _counting_urandom())
    monkeypatch.setattr(ws_send, "_words", deque())
    drawn: list[list[bytes]] = [[] for _ in range(4)]

    def draw(into: list[bytes]) -> None:
        for _ in range(3_000):
            into.append(ws_send.random_word())

    threads = [threading.Thread(target=draw, args=(keys,)) for keys in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    keys = [key for keys in drawn for key in keys]
    assert len(keys) == 12_000
    assert len(set(keys)) == len(keys)


def test_connections_draw_masking_keys_from_one_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws_send.os, "urandom", _counting_urandom())
    monkeypatch.setattr(ws_send, "_words", deque())
    first, second = pair(), pair()
    first.client.send(Binary(b"a"))
    second.client.send(Binary(b"b"))
    key_of = [p.client.data_to_send()[2:6] for p in (first, second)]
    assert key_of[0] != key_of[1]
    assert len(ws_send._words) == ws_send._MASK_KEY_BATCH - 2  # one batch served both


def test_large_binary_uses_the_64_bit_length() -> None:
    p = pair()
    payload = bytes(70_000)
    p.client.send(Binary(payload))
    wire = p.client.data_to_send()
    assert wire[1] == 0x80 | 127  # masked, 64-bit length follows
    p.server.receive_data(wire)
    assert list(p.server.events()) == [BytesMessage(payload)]


def test_frames_after_the_101_are_delivered_by_initial_events() -> None:
    client, _server = upgrade(WsSettings(), after_101=[TextMessage("early"), WsPing(b"p")])
    assert client.initial_events() == [Text("early"), Ping(b"p")]
    assert client.initial_events() == []


def test_frames_after_the_101_come_first_if_initial_events_is_skipped() -> None:
    client, server = upgrade(WsSettings(), after_101=[TextMessage("early")])
    events = client.receive_data(server.send(TextMessage("late")))
    assert events == [Text("early"), Text("late")]


def test_ping_after_the_101_is_answered_at_once() -> None:
    client, server = upgrade(WsSettings(), after_101=[WsPing(b"p")])
    server.receive_data(client.data_to_send())
    assert list(server.events()) == [WsPong(b"p")]


def test_ping_is_answered_with_pong_and_reported() -> None:
    p = pair()
    assert p.to_client(WsPing(b"are you there")) == [Ping(b"are you there")]
    assert p.to_server() == [WsPong(b"are you there")]


def test_pong_is_reported() -> None:
    p = pair()
    assert p.to_client(WsPong(b"beat")) == [Pong(b"beat")]


def test_fragmented_text_is_reassembled_into_one_message() -> None:
    p = pair()
    events = p.to_client(
        TextMessage("frag", message_finished=False),
        TextMessage("men", message_finished=False),
        TextMessage("ted", message_finished=True),
    )
    assert events == [Text("fragmented")]


def test_fragmented_binary_is_reassembled_into_one_message() -> None:
    p = pair()
    events = p.to_client(
        BytesMessage(b"\x00\x01", message_finished=False),
        BytesMessage(b"", message_finished=False),
        BytesMessage(b"\x02", message_finished=True),
    )
    assert events == [Binary(b"\x00\x01\x02")]


def test_message_fed_one_byte_at_a_time_is_delivered_once() -> None:
    p = pair()
    wire = p.server.send(TextMessage("snow ☃ man"))
    events = [event for i in range(len(wire)) for event in p.client.receive_data(wire[i : i + 1])]
    assert events == [Text("snow ☃ man")]


def test_character_split_across_fragments_is_accepted() -> None:
    p = pair()
    snowman = "☃".encode()
    wire = server_frame(0x1, snowman[:1], fin=False) + server_frame(0x0, snowman[1:])
    assert p.client.receive_data(wire) == [Text("☃")]


def test_ping_between_fragments_comes_before_the_message() -> None:
    p = pair()
    events = p.to_client(TextMessage("a", message_finished=False), WsPing(b"x"), TextMessage("b"))
    assert events == [Ping(b"x"), Text("ab")]


def test_message_of_exactly_max_message_size_is_delivered() -> None:
    p = pair(WsSettings(max_message_size=10))
    assert p.to_client(BytesMessage(bytes(10))) == [Binary(bytes(10))]


# ----------------------------------------------------------------------------- failures


def assert_failed(events: list[WsEvent], error: type[Exception], code: int) -> None:
    """The core failed the connection with `code`: Failed, then Finished with the same error."""
    assert len(events) >= 2
    failed, finished = events[-2:]
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, error)
    assert failed.close_code == code
    assert type(failed.close_code) is int
    assert finished == Finished(failed.error)


def sent_close_code(p: Pair) -> int:
    (close,) = p.to_server()
    assert isinstance(close, CloseConnection)
    return close.code


def test_oversized_single_frame_message_fails_with_1009() -> None:
    p = pair(WsSettings(max_message_size=10))
    events = p.to_client(BytesMessage(bytes(11)))
    assert_failed(events, MessageTooBig, 1009)
    assert sent_close_code(p) == 1009
    assert p.client.state is CLOSED


def test_oversized_fragmented_message_fails_with_1009_before_its_end() -> None:
    p = pair(WsSettings(max_message_size=10))
    events = p.to_client(
        TextMessage("123456", message_finished=False), TextMessage("78901", message_finished=False)
    )
    assert_failed(events, MessageTooBig, 1009)
    assert sent_close_code(p) == 1009


def test_oversized_frame_fails_before_it_has_all_arrived() -> None:
    p = pair(WsSettings(max_message_size=100))
    wire = server_frame(0x2, bytes(1000))
    events = p.client.receive_data(wire[:200])
    assert_failed(events, MessageTooBig, 1009)


def test_invalid_utf8_fails_with_1007() -> None:
    p = pair()
    events = p.client.receive_data(server_frame(0x1, b"ok \xff"))
    assert_failed(events, RemoteProtocolError, 1007)
    assert sent_close_code(p) == 1007


def test_invalid_utf8_in_a_later_fragment_fails_with_1007() -> None:
    p = pair()
    wire = server_frame(0x1, b"fine", fin=False) + server_frame(0x0, b"\xc3\x28")
    assert_failed(p.client.receive_data(wire), RemoteProtocolError, 1007)


def test_invalid_utf8_fails_before_the_message_ends() -> None:
    p = pair()
    events = p.client.receive_data(server_frame(0x1, b"\xed\xa0\x80", fin=False))
    assert_failed(events, RemoteProtocolError, 1007)


def test_text_ending_inside_a_character_fails_with_1007() -> None:
    p = pair()
    wire = server_frame(0x1, b"a", fin=False) + server_frame(0x0, "☃".encode()[:2])
    assert_failed(p.client.receive_data(wire), RemoteProtocolError, 1007)


def test_masked_server_frame_fails_with_1002() -> None:
    p = pair()
    events = p.client.receive_data(server_frame(0x1, b"hi", mask=b"\x01\x02\x03\x04"))
    assert_failed(events, RemoteProtocolError, 1002)
    assert sent_close_code(p) == 1002


def test_reserved_bit_without_extension_fails_with_1002() -> None:
    p = pair()
    assert_failed(
        p.client.receive_data(server_frame(0x1, b"hi", rsv=0x20)), RemoteProtocolError, 1002
    )


def test_unknown_opcode_fails_with_1002() -> None:
    p = pair()
    assert_failed(p.client.receive_data(server_frame(0x3)), RemoteProtocolError, 1002)


def test_fragmented_control_frame_fails_with_1002() -> None:
    p = pair()
    assert_failed(
        p.client.receive_data(server_frame(0x9, b"p", fin=False)), RemoteProtocolError, 1002
    )


def test_continuation_without_a_message_fails_with_1002() -> None:
    p = pair()
    assert_failed(p.client.receive_data(server_frame(0x0, b"x")), RemoteProtocolError, 1002)


def test_new_message_inside_a_fragmented_one_fails_with_1002() -> None:
    p = pair()
    wire = server_frame(0x1, b"a", fin=False) + server_frame(0x1, b"b")
    assert_failed(p.client.receive_data(wire), RemoteProtocolError, 1002)


def test_failure_after_our_close_sends_no_second_close_frame() -> None:
    p = pair()
    p.client.send(Close(1000))
    p.client.data_to_send()
    assert_failed(p.client.receive_data(server_frame(0x3)), RemoteProtocolError, 1002)
    assert p.client.data_to_send() == b""


def test_sending_something_that_is_not_a_frame_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="Text, Binary, Ping, Pong or Close"):
        pair().client.send("hello")  # type: ignore[arg-type]


def test_nothing_is_read_after_a_failure() -> None:
    p = pair()
    p.client.receive_data(server_frame(0x3))
    assert p.client.receive_data(server_frame(0x1, b"late")) == []


# ----------------------------------------------------------------------------- closing


def test_peer_close_is_reported_echoed_and_finishes() -> None:
    p = pair()
    events = p.to_client(CloseConnection(3333, "bye"))
    assert events == [Close(3333, "bye"), Finished("normal")]
    assert sent_close_code(p) == 3333
    assert (p.client.state, p.client.close_code, p.client.close_reason) == (CLOSED, 3333, "bye")


def test_peer_close_without_a_code_is_answered_with_1000() -> None:
    p = pair()
    events = p.client.receive_data(server_frame(0x8))
    assert events == [Close(None, ""), Finished("normal")]
    assert sent_close_code(p) == 1000
    assert p.client.close_code == 1005


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_peer_close_with_an_invalid_code_fails_with_1002(code: int) -> None:
    p = pair()
    events = p.client.receive_data(server_frame(0x8, close_payload(code)))
    assert_failed(events, RemoteProtocolError, 1002)
    assert sent_close_code(p) == 1002


def test_peer_close_with_a_one_byte_payload_fails_with_1002() -> None:
    p = pair()
    assert_failed(p.client.receive_data(server_frame(0x8, b"\x03")), RemoteProtocolError, 1002)


def test_peer_close_with_a_reason_that_is_not_utf8_fails_with_1007() -> None:
    p = pair()
    events = p.client.receive_data(server_frame(0x8, close_payload(1000, b"\xce\xba\xe1\xbd")))
    assert_failed(events, RemoteProtocolError, 1007)
    assert sent_close_code(p) == 1007


def test_local_close_waits_for_the_peers_close() -> None:
    p = pair()
    p.client.send(Close(1000, "done"))
    assert p.client.state is LOCAL_CLOSING
    (close,) = p.to_server()
    assert close == CloseConnection(1000, "done")
    events = p.to_client(close.response())
    assert events == [Close(1000, "done"), Finished("normal")]
    assert (p.client.state, p.client.close_code) == (CLOSED, 1000)
    assert p.client.data_to_send() == b""  # the peer's close is not answered twice


def test_data_received_while_closing_is_delivered() -> None:
    p = pair()
    p.client.send(Close())
    assert p.client.receive_data(server_frame(0x1, b"still here")) == [Text("still here")]


def test_sending_data_after_our_close_raises_bad_state() -> None:
    p = pair()
    p.client.send(Close())
    with pytest.raises(BadStateError, match="close frame was already sent"):
        p.client.send(Text("too late"))


def test_ping_may_follow_our_close() -> None:
    p = pair()
    p.client.send(Close())
    p.client.send(Ping(b"k"))
    decoder = FrameDecoder(client=False)
    decoder.receive_bytes(p.client.data_to_send())
    frames = [decoder.process_buffer(), decoder.process_buffer()]
    assert [(f.opcode, f.payload) for f in frames if f] == [
        (Opcode.CLOSE, close_payload(1000)),
        (Opcode.PING, b"k"),
    ]


def test_sending_after_finished_raises_bad_state() -> None:
    p = pair()
    p.to_client(CloseConnection(1000))
    with pytest.raises(BadStateError, match="closed"):
        p.client.send(Ping())


@pytest.mark.parametrize("code", [1005, 1006, 999, 2000, 5000])
def test_local_close_with_a_reserved_code_is_refused(code: int) -> None:
    with pytest.raises(LocalProtocolError, match="may not be sent"):
        pair().client.send(Close(code))


def test_local_close_reason_over_123_bytes_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="at most 123"):
        pair().client.send(Close(1000, "é" * 62))


def test_local_close_without_code_sends_an_empty_close_frame() -> None:
    p = pair()
    p.client.send(Close(None))
    assert p.to_server() == [CloseConnection(1005, "")]


def test_ping_payload_over_125_bytes_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="at most 125"):
        pair().client.send(Ping(bytes(126)))


def test_eof_between_messages_finishes_as_closed() -> None:
    p = pair()
    assert p.client.receive_data(b"") == [Finished("closed")]
    assert (p.client.state, p.client.close_code) == (CLOSED, 1006)


def test_eof_in_the_middle_of_a_frame_finishes_with_an_error() -> None:
    p = pair()
    assert p.client.receive_data(server_frame(0x2, bytes(50))[:20]) == []
    (finished,) = p.client.receive_data(b"")
    assert isinstance(finished, Finished)
    assert isinstance(finished.reason, RemoteProtocolError)
    assert "middle of a frame" in str(finished.reason)


def test_eof_in_the_middle_of_a_frame_header_finishes_with_an_error() -> None:
    p = pair()
    p.client.receive_data(server_frame(0x2, bytes(300))[:3])
    (finished,) = p.client.receive_data(b"")
    assert isinstance(finished, Finished)
    assert isinstance(finished.reason, RemoteProtocolError)


def test_eof_between_fragments_finishes_with_an_error() -> None:
    p = pair()
    p.client.receive_data(server_frame(0x1, b"part", fin=False))
    (finished,) = p.client.receive_data(b"")
    assert isinstance(finished, Finished)
    assert "fragmented message" in str(finished.reason)


def test_eof_after_our_close_finishes_as_closed() -> None:
    p = pair()
    p.client.send(Close())
    assert p.client.receive_data(b"") == [Finished("closed")]


# ----------------------------------------------------------------------------- compression


def compressed_pair() -> tuple[WsConnection, WSConnection]:
    return upgrade(WsSettings(compress=True), server_extensions=[PerMessageDeflate()])


def test_compressed_messages_round_trip() -> None:
    client, server = compressed_pair()
    text = "compress me " * 200
    client.send(Text(text))
    wire = client.data_to_send()
    assert wire[0] & 0x40  # RSV1: this message is compressed
    assert len(wire) < len(text) // 4
    server.receive_data(wire)
    (message,) = server.events()
    assert isinstance(message, TextMessage)
    assert message.data == text
    assert client.receive_data(server.send(Message(text))) == [Text(text)]


def test_compressed_fragmented_message_with_a_ping_inside_is_reassembled() -> None:
    client, server = compressed_pair()
    wire = server.send(TextMessage("first half ", message_finished=False))
    wire += server.send(WsPing(b"mid"))
    wire += server.send(TextMessage("second half"))
    assert client.receive_data(wire) == [
        Ping(b"mid"),
        Text("first half second half"),
    ]


def test_compressed_message_is_bounded_after_inflating() -> None:
    settings = WsSettings(compress=True, max_message_size=1000)
    client, server = upgrade(settings, server_extensions=[PerMessageDeflate()])
    wire = server.send(BytesMessage(bytes(5000)))
    assert len(wire) < 1000
    assert_failed(client.receive_data(wire), MessageTooBig, 1009)


def test_corrupt_compressed_data_fails_with_1007() -> None:
    client, _server = compressed_pair()
    garbage = zlib.compress(b"zlib header, not raw deflate")
    assert_failed(
        client.receive_data(server_frame(0x2, garbage, rsv=0x40)), RemoteProtocolError, 1007
    )


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 1023, 1024, 1025, 70_000])
def test_masking_in_python_matches_the_reference(size: int) -> None:
    payload, key = os.urandom(size), os.urandom(4)
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert bytes(ws_send.mask_python(payload, key)) == expected
    assert bytes(ws_send.mask(payload, key)) == expected


# ----------------------------------------------------------------------------- frame parser


def parse_all(parser: FrameParser, *reads: bytes) -> list[Piece]:
    """The pieces `parser` hands over for `reads`, in order."""
    return [piece for read in reads for piece in parser.parse(read)]


def messages_of(pieces: list[Piece]) -> list[tuple[int, bytes]]:
    """Whole messages and control frames from parser pieces (data pieces joined)."""
    out: list[tuple[int, bytes]] = []
    parts: list[bytes] = []
    for opcode, payload, done in pieces:
        if opcode >= _frames.CLOSE:
            out.append((opcode, payload))
            continue
        parts.append(payload)
        if done:
            out.append((opcode, b"".join(parts)))
            parts = []
    return out


MIXED_WIRE = (
    server_frame(0x1, "snow ☃".encode())
    + server_frame(0x2, bytes(range(200)))  # 16-bit length
    + server_frame(0x1, b"frag", fin=False)
    + server_frame(0x9, b"ping")
    + server_frame(0x0, "ment ☃".encode(), fin=False)
    + server_frame(0x0, b"", fin=False)
    + server_frame(0x0, b"ed")
    + server_frame(0xA, b"")
    + server_frame(0x2, b"")
)
MIXED_EVENTS: list[WsEvent] = [
    Text("snow ☃"),
    Binary(bytes(range(200))),
    Ping(b"ping"),
    Text("fragment ☃ed"),
    Pong(b""),
    Binary(b""),
]


def test_parser_hands_over_a_whole_frame_as_one_done_piece() -> None:
    parser = FrameParser(1 << 20)
    assert parser.parse(server_frame(0x2, b"abc")) == [(_frames.BINARY, b"abc", True)]
    assert not parser.mid_frame


def test_parser_reads_many_frames_from_one_buffer() -> None:
    pieces = FrameParser(1 << 20).parse(server_frame(0x1, b"a") * 50 + server_frame(0x2, b"b"))
    assert pieces == [(_frames.TEXT, b"a", True)] * 50 + [(_frames.BINARY, b"b", True)]


def test_parser_reads_a_16_bit_length() -> None:
    payload = os.urandom(300)
    wire = server_frame(0x2, payload)
    assert wire[1] == 126
    assert FrameParser(1 << 20).parse(wire) == [(_frames.BINARY, payload, True)]


def test_parser_reads_a_64_bit_length() -> None:
    payload = os.urandom(70_000)
    wire = server_frame(0x2, payload)
    assert wire[1] == 127
    assert FrameParser(1 << 20).parse(wire) == [(_frames.BINARY, payload, True)]


def test_parser_resolves_continuation_frames_to_the_message_opcode() -> None:
    parser = FrameParser(100)
    assert parser.parse(server_frame(0x2, b"a", fin=False)) == [(_frames.BINARY, b"a", False)]
    assert parser.parse(server_frame(0x0, b"b")) == [(_frames.BINARY, b"b", True)]


def test_parser_gathers_the_whole_fragments_of_one_read_into_one_piece() -> None:
    wire = (
        server_frame(0x1, b"a", fin=False)
        + server_frame(0x0, b"b", fin=False)
        + server_frame(0x9, b"p")
        + server_frame(0x0, b"c", fin=False)
        + server_frame(0x0, b"d")
        + server_frame(0x2, b"e", fin=False)
        + server_frame(0x0, b"fgh")[:3]
    )
    assert FrameParser(100).parse(wire) == [
        (_frames.TEXT, b"ab", False),
        (_frames.PING, b"p", True),
        (_frames.TEXT, b"cd", True),
        (_frames.BINARY, b"e", False),
        (_frames.BINARY, b"f", False),
    ]


def test_parser_hands_over_a_partial_data_frame_as_it_arrives() -> None:
    parser = FrameParser(1 << 20)
    wire = server_frame(0x2, bytes(range(100)))
    assert parser.parse(wire[:12]) == [(_frames.BINARY, bytes(range(10)), False)]
    assert parser.mid_frame
    assert parser.parse(wire[12:]) == [(_frames.BINARY, bytes(range(10, 100)), True)]
    assert not parser.mid_frame


def test_parser_waits_for_a_whole_control_frame() -> None:
    parser = FrameParser(100)
    wire = server_frame(0x9, b"0123456789")
    assert parser.parse(wire[:7]) == []
    assert parser.mid_frame
    assert parser.parse(wire[7:]) == [(_frames.PING, b"0123456789", True)]


def test_parser_fed_one_byte_at_a_time_gives_the_same_messages() -> None:
    whole = messages_of(FrameParser(1 << 20).parse(MIXED_WIRE))
    parser = FrameParser(1 << 20)
    pieces = parse_all(parser, *(MIXED_WIRE[i : i + 1] for i in range(len(MIXED_WIRE))))
    assert messages_of(pieces) == whole
    assert len(whole) == len(MIXED_EVENTS)


def test_connection_fed_one_byte_at_a_time_reports_every_message() -> None:
    p = pair()
    events = [
        e for i in range(len(MIXED_WIRE)) for e in p.client.receive_data(MIXED_WIRE[i : i + 1])
    ]
    assert events == MIXED_EVENTS


def test_frames_split_at_every_boundary_give_the_same_events() -> None:
    for split in range(1, len(MIXED_WIRE)):
        p = pair()
        events = p.client.receive_data(MIXED_WIRE[:split]) + p.client.receive_data(
            MIXED_WIRE[split:]
        )
        assert events == MIXED_EVENTS, split


@pytest.mark.parametrize("split", [*range(1, 12), 5000, 65536, 70_009, 70_010])
def test_64_bit_frame_split_anywhere_is_delivered_whole(split: int) -> None:
    payload = os.urandom(70_000)
    wire = server_frame(0x2, payload) + server_frame(0x1, b"next")
    p = pair()
    events = p.client.receive_data(wire[:split]) + p.client.receive_data(wire[split:])
    assert events == [Binary(payload), Text("next")]


def test_large_frame_in_64_kib_reads_is_not_buffered() -> None:
    payload = os.urandom(300_000)
    wire = server_frame(0x2, payload)
    parser = FrameParser(1 << 20)
    reads = [wire[i : i + 65536] for i in range(0, len(wire), 65536)]
    pieces = [parser.parse(read) for read in reads]
    # each read's payload bytes are handed over at once: nothing waits in the parser
    assert [sum(len(piece[1]) for piece in batch) for batch in pieces] == [
        len(reads[0]) - 10,
        *(len(read) for read in reads[1:]),
    ]
    assert b"".join(piece[1] for batch in pieces for piece in batch) == payload
    assert pieces[-1][-1][2] is True


def test_parser_takes_a_bytearray() -> None:
    ((opcode, payload, done),) = FrameParser(100).parse(bytearray(server_frame(0x2, b"xy")))
    assert (opcode, payload, done) == (_frames.BINARY, b"xy", True)
    assert type(payload) is bytes


def test_parser_reads_nothing_after_a_close_frame() -> None:
    parser = FrameParser(100)
    wire = server_frame(0x8, close_payload(1000)) + server_frame(0x3)
    assert parser.parse(wire) == [(_frames.CLOSE, close_payload(1000), True)]
    assert parser.error is None
    assert parser.parse(server_frame(0x1, b"late")) == []


def test_close_followed_by_garbage_finishes_normally() -> None:
    p = pair()
    events = p.client.receive_data(server_frame(0x8, close_payload(1000)) + b"\xff\xff\xff")
    assert events == [Close(1000, ""), Finished("normal")]


def test_messages_before_a_bad_frame_are_delivered_before_the_failure() -> None:
    p = pair()
    events = p.client.receive_data(server_frame(0x1, b"ok") + server_frame(0x3))
    assert events[0] == Text("ok")
    assert_failed(events, RemoteProtocolError, 1002)


# parser violations: (wire, close code), with max_message_size LIMIT
LIMIT = 1000


def frame_head(first: int, second: int, extended: bytes = b"") -> bytes:
    return bytes((first, second)) + extended


VIOLATIONS = {
    "masked": (server_frame(0x2, b"hi", mask=b"\x01\x02\x03\x04"), 1002),
    "rsv1": (server_frame(0x2, b"hi", rsv=0x40), 1002),
    "rsv2": (server_frame(0x2, b"hi", rsv=0x20), 1002),
    "rsv3": (server_frame(0x2, b"hi", rsv=0x10), 1002),
    "rsv on control": (server_frame(0x9, b"", rsv=0x40), 1002),
    **{f"opcode {op:#x}": (server_frame(op, b""), 1002) for op in (3, 4, 5, 6, 7)},
    **{f"opcode {op:#x}": (server_frame(op, b""), 1002) for op in (0xB, 0xC, 0xD, 0xE, 0xF)},
    "fragmented ping": (server_frame(0x9, b"", fin=False), 1002),
    "fragmented close": (server_frame(0x8, b"", fin=False), 1002),
    "ping of 126 bytes": (frame_head(0x89, 126, struct.pack("!H", 126)), 1002),
    "pong of 64-bit length": (frame_head(0x8A, 127, struct.pack("!Q", 1 << 20)), 1002),
    "continuation first": (server_frame(0x0, b"x"), 1002),
    "text inside fragments": (
        server_frame(0x1, b"a", fin=False) + server_frame(0x1, b"b"),
        1002,
    ),
    "binary inside fragments": (
        server_frame(0x2, b"a", fin=False) + server_frame(0x2, b"b"),
        1002,
    ),
    "64-bit top bit": (frame_head(0x82, 127, struct.pack("!Q", (1 << 63) | 70_000)), 1002),
    "16-bit length under 126": (frame_head(0x82, 126, struct.pack("!H", 125)), 1002),
    "64-bit length under 65536": (frame_head(0x82, 127, struct.pack("!Q", 65535)), 1002),
    "16-bit header over the limit": (frame_head(0x82, 126, struct.pack("!H", LIMIT + 1)), 1009),
    "64-bit header over the limit": (frame_head(0x82, 127, struct.pack("!Q", 1 << 40)), 1009),
    "fragments over the limit": (
        server_frame(0x2, bytes(600), fin=False)
        + frame_head(0x00, 126, struct.pack("!H", LIMIT - 600 + 1)),
        1009,
    ),
}


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_parser_reports_each_violation_with_its_close_code(name: str) -> None:
    wire, code = VIOLATIONS[name]
    parser = FrameParser(LIMIT)
    parser.parse(wire)
    assert parser.error is not None
    assert parser.error_code == code
    assert isinstance(parser.error, MessageTooBig if code == 1009 else RemoteProtocolError)


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_connection_fails_each_violation_with_its_close_code(name: str) -> None:
    wire, code = VIOLATIONS[name]
    p = pair(WsSettings(max_message_size=LIMIT))
    assert_failed(
        p.client.receive_data(wire), MessageTooBig if code == 1009 else RemoteProtocolError, code
    )
    assert sent_close_code(p) == code


@pytest.mark.parametrize("name", list(VIOLATIONS))
def test_violation_fed_byte_by_byte_fails_the_same(name: str) -> None:
    wire, code = VIOLATIONS[name]
    p = pair(WsSettings(max_message_size=LIMIT))
    events = [e for i in range(len(wire)) for e in p.client.receive_data(wire[i : i + 1])]
    assert_failed(events, MessageTooBig if code == 1009 else RemoteProtocolError, code)


def test_frame_announcing_too_much_fails_at_its_header() -> None:
    p = pair(WsSettings(max_message_size=1000))
    header_only = frame_head(0x82, 126, struct.pack("!H", 1001))
    assert_failed(p.client.receive_data(header_only), MessageTooBig, 1009)


def test_frame_of_exactly_the_limit_with_a_64_bit_length_is_delivered() -> None:
    payload = bytes(70_000)
    p = pair(WsSettings(max_message_size=70_000))
    assert p.client.receive_data(server_frame(0x2, payload)) == [Binary(payload)]


def test_fragments_adding_up_to_the_limit_are_delivered() -> None:
    p = pair(WsSettings(max_message_size=10))
    wire = server_frame(0x2, bytes(4), fin=False) + server_frame(0x0, bytes(6))
    assert p.client.receive_data(wire) == [Binary(bytes(10))]


def test_invalid_utf8_fails_before_the_rest_of_its_frame_arrives() -> None:
    p = pair()
    wire = server_frame(0x1, b"ok \xff" + b"x" * 200)
    assert_failed(p.client.receive_data(wire[:8]), RemoteProtocolError, 1007)


def test_text_split_inside_a_character_across_reads_is_accepted() -> None:
    p = pair()
    wire = server_frame(0x1, "☃☃".encode())
    assert p.client.receive_data(wire[:4]) == []
    assert p.client.receive_data(wire[4:]) == [Text("☃☃")]


def test_eof_inside_a_partial_data_frame_finishes_with_an_error() -> None:
    p = pair()
    p.client.receive_data(server_frame(0x2, bytes(300))[:100])
    (finished,) = p.client.receive_data(b"")
    assert isinstance(finished, Finished)
    assert "middle of a frame" in str(finished.reason)
