"""Differential tests: our WebSocket receive path gives wsproto's answers.

`ws_frames.FrameParser` and `ws.WsConnection` replace wsproto's client `Connection` on the
receive path. These properties feed the same server bytes, cut into random reads, to both
and compare what comes out: whole messages (wsproto's fragments joined), control frames,
the server's close frame, and, on a violation, the verdict (the close code the client
fails the connection with) and everything delivered before it. Our side is also checked
for what it queues in answer: a pong per ping, then a close frame with the right code.

Properties, with their examples (about 7 s for the module on two idle cores, 9 s on two
busy ones, plus the suite's 2 s of collection):

1. a valid stream, plain: same messages, control frames and close (150);
2. a valid stream with one violation injected: same verdict after the same events (250);
3. both again with permessage-deflate negotiated, random parameters (150 and 250);
4. `max_message_size`: 1009 exactly when a message, once inflated, is bigger than the
   limit, otherwise wsproto's messages (150); and a deflate bomb fails without being
   inflated;
5. our frames, sent with and without deflate, read back by a wsproto server (100).

(Long runs, 4000 to 10000 examples a property, found nothing the counts here do not.)
`pytest --hypothesis-show-statistics` lists what the cases exercised and which
mutations they carried.

Where wsproto answers differently, the tests say so precisely:

* wsproto has no message size limit: properties 1-3 use a limit nothing reaches, and
  property 4 compares ours with the sizes of wsproto's messages;
* wsproto's `PerMessageDeflate` forgets that a message is compressed when a control frame
  comes between its fragments: the reference is `ReferenceDeflate`, which fixes that
  (`test_wsproto_needs_its_deflate_fixed_for_a_ping_inside_a_compressed_message`);
* a new data frame inside a compressed fragmented message: wsproto inflates it as part of
  the message before seeing that it is not a continuation, so its verdict is 1007 when
  zlib chokes on that payload, 1002 otherwise; ours is always 1002 (see `expected_of`);
* close code 1014 (IANA "Bad Gateway") is valid for us and refused by wsproto, whose list
  predates it (`test_close_code_1014_is_accepted_where_wsproto_refuses_it`);
* a compressed message after the end of the server's deflate stream (a final block):
  wsproto fails it with 1007 (by accident, see `stream_end`), ours reads it with a fresh
  decompressor (`test_message_after_the_servers_deflate_stream_ended_is_not_lost`);
  property 3 compares up to that message;
* UTF-8: no divergence. Both sides feed the same bytes, read by read, to the same
  incremental decoder, so invalid text fails after the same events whatever the reads and
  fragments (property 2 would show a failure at a different frame as a different list).
"""

from __future__ import annotations

import random
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import TypeAlias, TypeVar

import hypothesis
from fuzzing import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.events import Ping as WsPing
from wsproto.events import Pong as WsPong
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from gluegun_actors._protocol.ws import Failed, Finished, WsConnection, WsEvent
from gluegun_actors._protocol.ws_deflate import DeflateParams, accept_response
from gluegun_actors._protocol.ws_handshake import Negotiated
from gluegun_actors.errors import MessageTooBig, RemoteProtocolError
from gluegun_actors.message import Binary, Close, Frame, Ping, Pong, Text

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RESERVED_OPCODES = (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: the end of a sync flush, left off the wire
UNLIMITED = 1 << 62
"""`max_message_size` for the equivalence properties: wsproto has no limit at all."""

T = TypeVar("T")

# ----------------------------------------------------------------------------- frames


def xor_mask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


@dataclass(frozen=True)
class Wire:
    """One frame as a (possibly misbehaving) server writes it."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    mask: bytes = b""
    width: int = 0
    """Bytes of extended length: 0 for the shortest encoding, or 2 or 8 to force one."""
    announce: int | None = None
    """The length written in the header, when it is not the payload's."""

    def encode(self) -> bytes:
        n = len(self.payload) if self.announce is None else self.announce
        width = self.width or (0 if n < 126 else 2 if n < 65536 else 8)
        first = (0x80 if self.fin else 0) | self.rsv | self.opcode
        masked = 0x80 if self.mask else 0
        if width == 0:
            head = bytes((first, masked | n))
        elif width == 2:
            head = struct.pack("!BBH", first, masked | 126, n)
        else:
            head = struct.pack("!BBQ", first, masked | 127, n)
        payload = xor_mask(self.payload, self.mask) if self.mask else self.payload
        return head + self.mask + payload


@dataclass(frozen=True)
class Placed:
    """A frame of a stream and its place in it, which says where a mutation may go."""

    wire: Wire
    kind: str  # "first" or "continuation" (data frames), "control", "close", "intruder"
    compressed: bool = False  # a data frame of a compressed message


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def encode_all(frames: Sequence[Placed]) -> bytes:
    return b"".join(placed.wire.encode() for placed in frames)


# ----------------------------------------------------------------------------- stream model


@dataclass(frozen=True)
class Message:
    """A data message as the server means it; its frames depend on the compressor."""

    opcode: int
    payload: bytes  # UTF-8 for text (unless a mutation spoiled it)
    compressed: bool = False
    cuts: tuple[int, ...] = ()
    """Fragment boundaries, in thousandths of the payload on the wire (compressed or not)."""
    controls: tuple[tuple[Wire, ...], ...] = ()
    """The control frames sent after each fragment but the last."""


@dataclass(frozen=True)
class Stream:
    """What a server sends: messages and control frames, then maybe a close frame."""

    items: tuple[Message | Wire, ...]
    close: bytes | None = None  # the close frame's payload; None: no close frame
    after_close: bytes = b""  # bytes after the close frame, which nobody may read


def frames_of(stream: Stream, deflate: DeflateParams | None, level: int = 6) -> list[Placed]:
    """The stream's frames, compressed as a permessage-deflate server does (RFC 7692 7.2.1):
    raw deflate with the agreed window, a sync flush ending each message with its final
    ``00 00 ff ff`` left off, a fresh compressor per message with no context takeover."""
    compressor = None
    placed: list[Placed] = []
    for item in stream.items:
        if isinstance(item, Wire):
            placed.append(Placed(item, "control"))
            continue
        data = item.payload
        if item.compressed:
            assert deflate is not None
            if compressor is None:
                bits = -deflate.server_max_window_bits
                compressor = zlib.compressobj(level, zlib.DEFLATED, bits)
            data = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
            assert data.endswith(TAIL)
            data = data[:-4]
            if deflate.server_no_context_takeover:
                compressor = None
        bounds = [0, *(len(data) * cut // 1000 for cut in item.cuts), len(data)]
        last = len(bounds) - 2
        for i, (start, stop) in enumerate(pairwise(bounds)):
            opcode = item.opcode if i == 0 else CONTINUATION
            rsv = RSV1 if item.compressed and i == 0 else 0
            wire = Wire(opcode, data[start:stop], fin=i == last, rsv=rsv)
            placed.append(Placed(wire, "first" if i == 0 else "continuation", item.compressed))
            if i < last:
                placed.extend(Placed(control, "control") for control in item.controls[i])
    if stream.close is not None:
        placed.append(Placed(Wire(CLOSE, stream.close), "close"))
    return placed


# ----------------------------------------------------------------------------- strategies
# (Built once: Hypothesis validates each new strategy object, which dominated the run time
# when composites built theirs on every draw.)


def pick(draw: st.DrawFn, choices: Sequence[T]) -> T:
    """One of `choices`, drawn by index (integer strategies are cached; lists are not)."""
    return choices[draw(st.integers(0, len(choices) - 1))]


booleans = st.booleans()
small_text = st.text(max_size=12)  # any code point but surrogates: 1 to 4 bytes in UTF-8
small_binary = st.binary(max_size=20)
short_binary = st.binary(max_size=4)
units_text = st.text(min_size=1, max_size=4)
units_binary = st.binary(min_size=1, max_size=4)
seeds = st.integers(0, 1 << 32)
size_kinds = st.sampled_from(("small",) * 7 + ("16-bit",) * 3 + ("64-bit",))
lengths_16 = st.integers(126, 400)
lengths_64 = st.sampled_from((65535, 65536, 70000, 140000))  # (65535 still fits 16 bits)
big_sizes = st.sampled_from((126, 127, 200, 65535, 65536, 66000))
data_opcodes = st.sampled_from((TEXT, BINARY))
cut_lists = st.lists(st.integers(0, 1000), max_size=3).map(lambda cuts: tuple(sorted(cuts)))
control_frames = st.builds(
    Wire,
    st.sampled_from((PING, PONG)),
    st.binary(max_size=8) | st.binary(min_size=125, max_size=125),
)
interleaved = st.lists(control_frames, max_size=2).map(tuple)
window_bits = st.none() | st.integers(9, 15)
levels = st.sampled_from((0, 1, 6, 9))


@st.composite
def payloads(draw: st.DrawFn, opcode: int) -> bytes:
    """A message payload: mostly small, sometimes long enough for a 16- or 64-bit length."""
    size = draw(size_kinds)
    if size == "small":
        return draw(small_text).encode() if opcode == TEXT else draw(small_binary)
    length = draw(lengths_16 if size == "16-bit" else lengths_64)
    if opcode == TEXT:  # (a few bytes over `length`, ending on a whole character)
        unit = draw(units_text).encode()
        return unit * (length // len(unit) + 1)
    if draw(booleans):  # random bytes stay as long once compressed: 64-bit frames still
        return random.Random(draw(seeds)).randbytes(length)
    return (draw(units_binary) * length)[:length]


text_payloads, binary_payloads = payloads(TEXT), payloads(BINARY)


@st.composite
def messages(draw: st.DrawFn, compress: bool, interleave: bool = True) -> Message:
    """A data message in 1 to 4 fragments (empty ones too), control frames between them."""
    opcode = draw(data_opcodes)
    payload = draw(text_payloads if opcode == TEXT else binary_payloads)
    cuts = draw(cut_lists)
    controls = tuple(draw(interleaved) if interleave else () for _ in cuts)
    compressed = compress and draw(booleans)
    return Message(opcode, payload, compressed, cuts, controls)


# 1014 is left out: see test_close_code_1014_is_accepted_where_wsproto_refuses_it.
valid_close_codes = st.sampled_from((1000, 1001, 1002, 1003, *range(1007, 1014))) | st.integers(
    3000, 4999
)
bad_close_codes = (
    st.integers(0, 999)
    | st.sampled_from((1004, 1005, 1006, 1015))
    | st.integers(1016, 2999)
    | st.integers(5000, 0xFFFF)
)
close_payloads = (
    st.just(b"")
    | st.builds(close_payload, valid_close_codes)
    | st.builds(close_payload, valid_close_codes, small_text.map(str.encode))
)
closes = st.none() | close_payloads
stream_items = {
    compress: st.lists(messages(compress) | control_frames, max_size=5)
    for compress in (False, True)
}


@st.composite
def streams(draw: st.DrawFn, compress: bool) -> Stream:
    """Messages and control frames in any order, maybe a close frame and bytes after it."""
    items = draw(stream_items[compress])
    close = draw(closes)
    after = b"" if close is None else draw(short_binary)
    return Stream(tuple(items), close, after)


stream_strategies = {compress: streams(compress) for compress in (False, True)}


@st.composite
def deflate_answers(draw: st.DrawFn) -> tuple[DeflateParams, str]:
    """A server's permessage-deflate answer: our parameters and the header value."""
    params: list[tuple[str, str | None]] = []
    for flag in ("server_no_context_takeover", "client_no_context_takeover"):
        if draw(booleans):
            params.append((flag, None))
    for name in ("server_max_window_bits", "client_max_window_bits"):
        bits = draw(window_bits)
        if bits is not None:
            params.append((name, str(bits)))
    random.Random(draw(seeds)).shuffle(params)
    answer = "; ".join(["permessage-deflate", *(k if v is None else f"{k}={v}" for k, v in params)])
    return accept_response(params), answer


answers = deflate_answers()


@st.composite
def reads(draw: st.DrawFn, wire: bytes) -> tuple[bytes, ...]:
    """`wire` cut at random points into socket reads (none empty: b"" would be EOF)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    pieces = [wire[start:stop] for start, stop in pairwise([0, *cuts, len(wire)])]
    return tuple(piece for piece in pieces if piece)


# ----------------------------------------------------------------------------- mutations
# One violation injected into a valid stream. A mutation returns the new stream (or
# frames) and the close code that violation must fail the connection with (None when it
# may not be a violation at all). Nothing after a close frame is read, so every mutation
# goes before the close frame, or is the close frame.

BAD_UTF8 = (b"\xff", b"\x80", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80")
"""Inserted anywhere, each makes UTF-8 invalid: bytes never valid, a continuation byte
too many, a surrogate, a code point past U+10FFFF."""

StreamMutation: TypeAlias = Callable[[st.DrawFn, Stream, bool], tuple[Stream, int]]
WireMutation: TypeAlias = Callable[[st.DrawFn, list[Placed], bool], tuple[list[Placed], int | None]]


def spoil_utf8(draw: st.DrawFn, payload: bytes) -> bytes:
    if draw(booleans):
        return payload + b"\xe2\x98"  # ends inside a character
    at = draw(st.integers(0, len(payload)))
    return payload[:at] + pick(draw, BAD_UTF8) + payload[at:]


def text_not_utf8(draw: st.DrawFn, stream: Stream, compress: bool) -> tuple[Stream, int]:
    items = list(stream.items)
    texts = [i for i, m in enumerate(items) if isinstance(m, Message) and m.opcode == TEXT]
    if texts:
        i = pick(draw, texts)
    else:  # no text message to spoil: add one
        items.append(Message(TEXT, draw(small_text).encode(), compress and draw(booleans)))
        i = len(items) - 1
    message = items[i]
    assert isinstance(message, Message)
    items[i] = replace(message, payload=spoil_utf8(draw, message.payload))
    return replace(stream, items=tuple(items)), 1007


def close_reason_not_utf8(draw: st.DrawFn, stream: Stream, compress: bool) -> tuple[Stream, int]:
    reason = spoil_utf8(draw, draw(small_text).encode())
    return replace(stream, close=close_payload(draw(valid_close_codes), reason)), 1007


def bad_close_code(draw: st.DrawFn, stream: Stream, compress: bool) -> tuple[Stream, int]:
    reason = draw(small_text).encode()
    return replace(stream, close=close_payload(draw(bad_close_codes), reason)), 1002


def one_byte_close(draw: st.DrawFn, stream: Stream, compress: bool) -> tuple[Stream, int]:
    return replace(stream, close=bytes((draw(st.integers(0, 255)),))), 1002


def close_index(frames: list[Placed]) -> int:
    """Where the close frame is, or would go."""
    return len(frames) - 1 if frames and frames[-1].kind == "close" else len(frames)


def inside_at(frames: list[Placed], gap: int) -> bool:
    """Whether a frame inserted before `frames[gap]` lands inside a fragmented message."""
    inside = False
    for placed in frames[:gap]:
        if placed.kind in ("first", "continuation"):
            inside = not placed.wire.fin
    return inside


def insert(
    draw: st.DrawFn, frames: list[Placed], new: Sequence[Placed], inside: bool | None = None
) -> list[Placed] | None:
    """`frames` with `new` inserted before the close (inside a message or not, if asked)."""
    gaps = range(close_index(frames) + 1)
    if inside is not None:
        gaps = [gap for gap in gaps if inside_at(frames, gap) == inside]  # type: ignore[assignment]
    if not gaps:
        return None
    gap = pick(draw, gaps)
    return [*frames[:gap], *new, *frames[gap:]]


def modify(
    draw: st.DrawFn,
    frames: list[Placed],
    change: Callable[[Wire], Wire],
    which: Callable[[Placed], bool] = lambda placed: True,
) -> list[Placed] | None:
    """`frames` with one of the frames `which` selects changed; None if it selects none."""
    candidates = [i for i, placed in enumerate(frames) if which(placed)]
    if not candidates:
        return None
    i = pick(draw, candidates)
    return [*frames[:i], replace(frames[i], wire=change(frames[i].wire)), *frames[i + 1 :]]


def is_control(placed: Placed) -> bool:
    return placed.kind in ("control", "close")


def masked_frame(draw: st.DrawFn, frames: list[Placed], deflate: bool) -> tuple[list[Placed], int]:
    """RFC 6455 5.1: a server must not mask its frames."""
    key = draw(st.binary(min_size=4, max_size=4))
    changed = modify(draw, frames, lambda wire: replace(wire, mask=key))
    return changed or insert(draw, frames, [Placed(Wire(PING, mask=key), "control")]) or [], 1002


def reserved_bit(draw: st.DrawFn, frames: list[Placed], deflate: bool) -> tuple[list[Placed], int]:
    """RFC 6455 5.2: RSV bits no extension gave a meaning to."""
    bit = pick(draw, (RSV2, RSV3) if deflate else (RSV1, RSV2, RSV3))
    changed = modify(draw, frames, lambda wire: replace(wire, rsv=wire.rsv | bit))
    return changed or insert(draw, frames, [Placed(Wire(BINARY, rsv=bit), "first")]) or [], 1002


def rsv1_outside_a_first_frame(
    draw: st.DrawFn, frames: list[Placed], deflate: bool
) -> tuple[list[Placed], int]:
    """RFC 7692 6.1: RSV1 marks a compressed message on its first frame, nowhere else."""
    changed = modify(
        draw,
        frames,
        lambda wire: replace(wire, rsv=wire.rsv | RSV1),
        lambda placed: placed.kind in ("continuation", "control", "close"),
    )
    new = Placed(Wire(PING, rsv=RSV1), "control")
    return changed or insert(draw, frames, [new]) or [], 1002


def reserved_opcode(
    draw: st.DrawFn, frames: list[Placed], deflate: bool
) -> tuple[list[Placed], int]:
    opcode = pick(draw, RESERVED_OPCODES)
    changed = None
    if draw(booleans):
        changed = modify(draw, frames, lambda wire: replace(wire, opcode=opcode))
    new = Placed(Wire(opcode, draw(short_binary)), "control")
    return changed or insert(draw, frames, [new]) or [], 1002


def fragmented_control(
    draw: st.DrawFn, frames: list[Placed], deflate: bool
) -> tuple[list[Placed], int]:
    """RFC 6455 5.5: control frames must not be fragmented."""
    changed = modify(draw, frames, lambda wire: replace(wire, fin=False), is_control)
    new = Placed(Wire(pick(draw, (PING, PONG, CLOSE)), fin=False), "control")
    return changed or insert(draw, frames, [new]) or [], 1002


def long_control(draw: st.DrawFn, frames: list[Placed], deflate: bool) -> tuple[list[Placed], int]:
    """RFC 6455 5.5: control frame payloads are at most 125 bytes."""
    payload = draw(st.binary(min_size=126, max_size=130))
    new = Placed(Wire(pick(draw, (PING, PONG, CLOSE)), payload), "control")
    return insert(draw, frames, [new]) or [], 1002


def non_minimal_length(
    draw: st.DrawFn, frames: list[Placed], deflate: bool
) -> tuple[list[Placed], int]:
    """RFC 6455 5.2: the length must use the shortest of its three encodings."""

    def widen(wire: Wire) -> Wire:
        return replace(wire, width=pick(draw, (2, 8) if len(wire.payload) < 126 else (8,)))

    changed = modify(draw, frames, widen, lambda placed: len(placed.wire.payload) < 65536)
    new = Placed(widen(Wire(BINARY)), "first")
    return changed or insert(draw, frames, [new], inside=False) or [], 1002


def top_bit_length(
    draw: st.DrawFn, frames: list[Placed], deflate: bool
) -> tuple[list[Placed], int]:
    """RFC 6455 5.2: the most significant bit of a 64-bit length must be 0."""
    length = (1 << 63) | draw(st.integers(0, (1 << 63) - 1))
    wire = Wire(pick(draw, (TEXT, BINARY, CONTINUATION)), width=8, announce=length)
    return insert(draw, frames, [Placed(wire, "first")]) or [], 1002


def continuation_outside_a_message(
    draw: st.DrawFn, frames: list[Placed], deflate: bool
) -> tuple[list[Placed], int]:
    wire = Wire(CONTINUATION, draw(short_binary), fin=draw(booleans))
    return insert(draw, frames, [Placed(wire, "continuation")], inside=False) or [], 1002


def message_inside_a_message(
    draw: st.DrawFn, frames: list[Placed], deflate: bool
) -> tuple[list[Placed], int]:
    """RFC 6455 5.4: between the fragments of a message only control frames may come."""
    rsv = RSV1 if deflate and draw(booleans) else 0
    intruder = Wire(pick(draw, (TEXT, BINARY)), draw(short_binary), fin=draw(booleans), rsv=rsv)
    new = [Placed(intruder, "intruder")]
    changed = insert(draw, frames, new, inside=True)
    if changed is None:  # no fragmented message to intrude on: open one first
        opener = Placed(Wire(BINARY, b"open", fin=False), "first")
        changed = insert(draw, frames, [opener, *new], inside=False)
    return changed or [], 1002


def corrupt_deflate(
    draw: st.DrawFn, frames: list[Placed], deflate: bool
) -> tuple[list[Placed], int]:
    """A compressed message whose data opens with a deflate block of the reserved type 3.

    Every message starts on a block boundary (a sync flush ends byte-aligned), so its
    first three bits are a block header: 0x06 and 0x07 both announce type 3."""
    junk = pick(draw, (b"\x06", b"\x07"))
    changed = modify(
        draw,
        frames,
        lambda wire: replace(wire, payload=junk + wire.payload),
        lambda placed: placed.kind == "first" and placed.compressed,
    )
    new = Placed(Wire(BINARY, junk + draw(short_binary), rsv=RSV1), "first", True)
    return changed or insert(draw, frames, [new], inside=False) or [], 1007


def garbled_deflate(
    draw: st.DrawFn, frames: list[Placed], deflate: bool
) -> tuple[list[Placed], int | None]:
    """A byte of compressed data changed: a violation or not, both sides must agree."""
    flip = draw(st.integers(1, 255))

    def garble(wire: Wire) -> Wire:
        payload = bytearray(wire.payload)
        payload[draw(st.integers(0, len(payload) - 1))] ^= flip
        return replace(wire, payload=bytes(payload))

    def garbleable(placed: Placed) -> bool:
        return placed.compressed and bool(placed.wire.payload)

    changed = modify(draw, frames, garble, garbleable)
    new = Placed(Wire(BINARY, bytes((flip,)) + draw(short_binary), rsv=RSV1), "first", True)
    return changed or insert(draw, frames, [new], inside=False) or [], None


STREAM_MUTATIONS: dict[str, StreamMutation] = {
    "text not UTF-8": text_not_utf8,
    "close reason not UTF-8": close_reason_not_utf8,
    "bad close code": bad_close_code,
    "1-byte close payload": one_byte_close,
}
WIRE_MUTATIONS: dict[str, WireMutation] = {
    "masked frame": masked_frame,
    "reserved bit": reserved_bit,
    "reserved opcode": reserved_opcode,
    "fragmented control frame": fragmented_control,
    "control payload over 125": long_control,
    "non-minimal length": non_minimal_length,
    "64-bit length with the top bit": top_bit_length,
    "continuation outside a message": continuation_outside_a_message,
    "new message inside a fragmented one": message_inside_a_message,
}
DEFLATE_MUTATIONS: dict[str, WireMutation] = {
    **WIRE_MUTATIONS,
    "RSV1 on a continuation or control frame": rsv1_outside_a_first_frame,
    "corrupt deflate data": corrupt_deflate,
    "garbled deflate data": garbled_deflate,
}
mutation_names = {
    compress: st.sampled_from(
        (*STREAM_MUTATIONS, *(DEFLATE_MUTATIONS if compress else WIRE_MUTATIONS))
    )
    for compress in (False, True)
}


# ----------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """Server bytes for both sides, in reads, and what was done to them."""

    deflate: DeflateParams | None
    answer: str | None  # the server's Sec-WebSocket-Extensions value
    frames: tuple[Wire, ...]
    reads: tuple[bytes, ...]
    mutation: str | None = None
    code: int | None = None  # the close code the mutation must fail the connection with
    defused: bytes | None = None
    """When a new data frame intrudes on a compressed message: the wire with that frame's
    payload and FIN cleared, which gives wsproto nothing to inflate (see `expected_of`)."""


@st.composite
def cases(draw: st.DrawFn, *, compress: bool, mutate: bool) -> Case:
    deflate, answer = draw(answers) if compress else (None, None)
    stream = draw(stream_strategies[compress])
    mutation = draw(mutation_names[compress]) if mutate else None
    code = None
    if mutation in STREAM_MUTATIONS:
        stream, code = STREAM_MUTATIONS[mutation](draw, stream, compress)
    frames = frames_of(stream, deflate, draw(levels) if compress else 6)
    if mutation in DEFLATE_MUTATIONS:
        frames, code = DEFLATE_MUTATIONS[mutation](draw, frames, compress)
    wire = encode_all(frames) + stream.after_close
    return Case(
        deflate,
        answer,
        tuple(placed.wire for placed in frames),
        draw(reads(wire)),
        mutation,
        code,
        defused(frames, stream.after_close),
    )


def defused(frames: list[Placed], after: bytes) -> bytes | None:
    """The wire with an intruder on a compressed message emptied (None if there is none)."""
    compressed = False
    for i, placed in enumerate(frames):
        if placed.kind == "first":
            compressed = placed.compressed
        elif placed.kind == "intruder" and compressed:
            empty = replace(placed, wire=replace(placed.wire, payload=b"", fin=False))
            return encode_all([*frames[:i], empty, *frames[i + 1 :]]) + after
    return None


# ----------------------------------------------------------------------------- the two sides


@dataclass(frozen=True)
class Verdict:
    """The client failed the connection, with this close code."""

    code: int


Outcome: TypeAlias = Frame | Verdict
"""What a client reports: a whole message, a control frame, the peer's close, a verdict."""


class ReferenceDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, with control frames kept out of the message's state.

    wsproto takes the end of any final frame for the end of the message, a control frame's
    too: after a ping between two fragments of a compressed message it reads the rest as
    uncompressed, and fails with 1007 or delivers compressed bytes as the message. RFC 6455
    5.4 allows control frames there and RFC 7692 6.1 makes compression a property of the
    message, so that is a wsproto bug, not a verdict to compare ours with (the project's
    code fixed it with such a subclass before it had its own receive path). Here control
    frames pass without touching the message's state; RSV1 on one is left unclaimed, so
    wsproto still refuses it (1002).
    """

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if opcode.iscontrol():
            self._inbound_is_compressible = False  # its payload is not inflated
            return RsvBits(False, False, False)
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not self._inbound_is_compressible:  # a control frame: the message goes on
            return None
        return super().frame_inbound_complete(proto, fin)


def reference_extension(
    answer: str, deflate: DeflateParams, cls: type[PerMessageDeflate] = ReferenceDeflate
) -> PerMessageDeflate:
    """wsproto's extension finalized from the server's answer, checked against ours."""
    extension = cls()
    extension.finalize(answer)
    assert (
        extension.server_no_context_takeover,
        extension.client_no_context_takeover,
        extension.server_max_window_bits,
        extension.client_max_window_bits,
    ) == (
        deflate.server_no_context_takeover,
        deflate.client_no_context_takeover,
        deflate.server_max_window_bits,
        deflate.client_max_window_bits,
    )
    return extension


def reference(
    case: Case, cls: type[PerMessageDeflate] = ReferenceDeflate, reads: Sequence[bytes] = ()
) -> list[Outcome]:
    """What wsproto's client connection reports for the case's reads, fragments joined."""
    extensions = []
    if case.deflate is not None:
        assert case.answer is not None
        extensions.append(reference_extension(case.answer, case.deflate, cls))
    connection = Connection(ConnectionType.CLIENT, extensions=extensions)
    out: list[Outcome] = []
    parts: list[str | bytes] = []
    for read in reads or case.reads:
        connection.receive_data(read)
        for event in connection.events():
            if isinstance(event, TextMessage | BytesMessage):
                parts.append(event.data)
                if event.message_finished:
                    if isinstance(event, TextMessage):
                        out.append(Text("".join(parts)))  # type: ignore[arg-type]
                    else:
                        out.append(Binary(b"".join(parts)))  # type: ignore[arg-type]
                    parts = []
            elif isinstance(event, WsPing):
                out.append(Ping(bytes(event.payload)))
            elif isinstance(event, WsPong):
                out.append(Pong(bytes(event.payload)))
            else:
                assert isinstance(event, CloseConnection)
                # A close frame moves wsproto to REMOTE_CLOSING; a violation (ParseFailed,
                # reported as a CloseConnection too) leaves it OPEN.
                if connection.state is ConnectionState.REMOTE_CLOSING:
                    code = None if event.code == CloseReason.NO_STATUS_RCVD else int(event.code)
                    out.append(Close(code, event.reason or ""))
                else:
                    out.append(Verdict(int(event.code)))
                return out
    return out


def ours(
    case: Case, max_message_size: int = UNLIMITED, reads: Sequence[bytes] = ()
) -> tuple[list[Outcome], WsConnection]:
    """What our connection reports for the case's reads."""
    client = WsConnection(Negotiated(deflate=case.deflate), max_message_size)
    events: list[WsEvent] = []
    for read in reads or case.reads:
        events += client.receive_data(read)
    return outcomes(events), client


def outcomes(events: list[WsEvent]) -> list[Outcome]:
    """Our events as outcomes, checking that Finished comes once, last, after a close or
    a failure, and that a failure carries the right kind of error."""
    out: list[Outcome] = []
    for i, event in enumerate(events):
        if isinstance(event, Finished):
            assert i == len(events) - 1
            assert isinstance(events[i - 1], Close | Failed)
        elif isinstance(event, Failed):
            kind = MessageTooBig if event.close_code == 1009 else RemoteProtocolError
            assert isinstance(event.error, kind)
            out.append(Verdict(event.close_code))
        else:
            out.append(event)
    if out and isinstance(out[-1], Close | Verdict):
        assert isinstance(events[-1], Finished)
    return out


def sent_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Our frames, read by wsproto's frame decoder as a server (it refuses unmasked ones)."""
    decoder = FrameDecoder(client=False)
    decoder.receive_bytes(data)
    frames = []
    while (frame := decoder.process_buffer()) is not None:
        assert frame.frame_finished
        frames.append((int(frame.opcode), bytes(frame.payload)))  # type: ignore[arg-type]
    return frames


def assert_answered(client: WsConnection, outcome: list[Outcome]) -> None:
    """We queued a pong per ping, then a close frame: the server's code echoed, or our
    verdict; `close_code` is RFC 6455 7.1.5's (None while the connection is open)."""
    expected = [(PONG, event.data) for event in outcome if isinstance(event, Ping)]
    end = outcome[-1] if outcome else None
    close_code = None
    if isinstance(end, Verdict):
        expected.append((CLOSE, end.code.to_bytes(2, "big")))
        close_code = end.code
    elif isinstance(end, Close):
        expected.append((CLOSE, (end.code or 1000).to_bytes(2, "big")))
        close_code = end.code or 1005
    frames = sent_frames(client.data_to_send())
    assert [(op, payload[:2] if op == CLOSE else payload) for op, payload in frames] == expected
    assert client.close_code == close_code


def expected_of(case: Case) -> list[Outcome]:
    """wsproto's outcome, except for one divergence, itself checked precisely.

    A new TEXT/BINARY frame inside a fragmented compressed message is a protocol error
    (1002, RFC 6455 5.4) whatever it carries, and that is our verdict. wsproto runs its
    extension before its message decoder: it inflates the intruder's payload (and, with
    FIN set, the end of a message) as part of the compressed message, and fails with 1007
    when zlib chokes on that. Minimal case: ``41 00`` (a compressed text fragment, empty)
    then ``01 01 06`` (a text frame whose byte opens a deflate block of the reserved type).
    With the intruder's payload and FIN cleared, wsproto has nothing to inflate: its verdict
    must then be 1002, after the same events.
    """
    expected = reference(case)
    if case.defused is not None:
        defused = reference(case, reads=[case.defused])
        assert defused[-1] == Verdict(1002)
        assert expected[:-1] == defused[:-1]
        assert expected[-1] in (Verdict(1002), Verdict(1007))
        return defused
    return expected


def stream_end(case: Case) -> int | None:
    """Where a compressed message comes after the server's deflate stream ended, if one does:
    the index in `case.frames` of its first frame.

    A garbled byte can turn a block into the final one (BFINAL): the deflate stream ends
    there. Under context takeover the next compressed message is then read from an ended
    stream. wsproto fails it with 1007, by accident: having called zlib's `flush()` at the
    end of the previous message, which frees an ended stream, it gets "inconsistent stream
    state". Ours starts a fresh decompressor for it (see
    `test_message_after_the_servers_deflate_stream_ended_is_not_lost`), whose verdict on
    a message that still refers to the old window is its own.
    """
    assert case.deflate is not None
    decompressor = None
    compressed = False
    for i, wire in enumerate(case.frames):
        if wire.opcode >= CLOSE:
            continue
        if wire.opcode != CONTINUATION:  # a message begins
            compressed = bool(wire.rsv & RSV1)
            if compressed and decompressor is not None and decompressor.eof:
                return i
        if not compressed:
            continue
        if decompressor is None:
            decompressor = zlib.decompressobj(-case.deflate.server_max_window_bits)
        try:
            decompressor.decompress(wire.payload + (TAIL if wire.fin else b""))
        except zlib.error:
            return None  # a verdict of its own comes first
        if wire.fin and case.deflate.server_no_context_takeover:
            decompressor = None
    return None


def up_to_a_stream_end(case: Case) -> Case:
    """The case cut before a compressed message after the end of the server's deflate
    stream (see `stream_end`), once wsproto is shown to fail there with 1007; the case as
    it is if there is no such message, or the connection fails before it."""
    end = stream_end(case)
    if end is None:
        return case
    wire = b"".join(wire.encode() for wire in case.frames[:end])
    before = replace(case, frames=case.frames[:end], reads=(wire,) if wire else ())
    expected = reference(before)
    if expected and isinstance(expected[-1], Verdict):  # (e.g. the text so far was not UTF-8)
        return case  # the connection fails before it gets there
    assert reference(case) == [*expected, Verdict(1007)]
    hypothesis.event("garbled: a compressed message after the end of the deflate stream")
    return before


def assert_same_as_reference(case: Case) -> list[Outcome]:
    if case.mutation == "garbled deflate data":  # (the only way to end the deflate stream)
        case = up_to_a_stream_end(case)
    expected = expected_of(case)
    actual, client = ours(case)
    assert actual == expected
    assert_answered(client, actual)
    return actual


def assert_same_verdict(case: Case) -> None:
    hypothesis.event(f"mutation: {case.mutation}")  # (see pytest --hypothesis-show-statistics)
    outcome = assert_same_as_reference(case)
    hypothesis.event(f"ends with: {type(outcome[-1]).__name__} {getattr(outcome[-1], 'code', '')}")
    if case.code is not None:  # the mutation is a violation: both saw it, and the same
        assert outcome[-1] == Verdict(case.code)


# ----------------------------------------------------------------------------- 1-3


def label_features(case: Case) -> None:
    """Name what a valid case exercises (see pytest --hypothesis-show-statistics)."""
    inside, compressed, text, so_far = False, False, False, b""
    for wire in case.frames:
        n = len(wire.payload)
        if n >= 126:
            hypothesis.event("64-bit length" if n >= 65536 else "16-bit length")
        if wire.opcode >= CLOSE:
            if inside:
                hypothesis.event("control frame between fragments")
            continue
        if wire.opcode != CONTINUATION:  # a message begins
            compressed, text, so_far = bool(wire.rsv & RSV1), wire.opcode == TEXT, b""
        if not n:
            hypothesis.event("empty data frame")
        if not wire.fin or inside:
            hypothesis.event("compressed, fragmented" if compressed else "fragmented")
        inside = not wire.fin
        if text and not compressed:
            so_far += wire.payload
            try:
                so_far.decode()
            except UnicodeDecodeError:  # (the whole message is valid UTF-8)
                hypothesis.event("character split across fragments")


@settings(max_examples=examples(150), deadline=None, database=None)
@given(cases(compress=False, mutate=False))
def test_valid_stream_gives_wsproto_messages_control_frames_and_close(case: Case) -> None:
    label_features(case)
    outcome = assert_same_as_reference(case)
    assert not any(isinstance(event, Verdict) for event in outcome)


@settings(max_examples=examples(250), deadline=None, database=None)
@given(cases(compress=False, mutate=True))
def test_violation_fails_with_wsproto_verdict_after_the_same_messages(case: Case) -> None:
    assert_same_verdict(case)


@settings(max_examples=examples(150), deadline=None, database=None)
@given(cases(compress=True, mutate=False))
def test_valid_compressed_stream_gives_wsproto_messages_control_frames_and_close(
    case: Case,
) -> None:
    label_features(case)
    outcome = assert_same_as_reference(case)
    assert not any(isinstance(event, Verdict) for event in outcome)


@settings(max_examples=examples(250), deadline=None, database=None)
@given(cases(compress=True, mutate=True))
def test_violation_with_deflate_fails_with_wsproto_verdict_after_the_same_messages(
    case: Case,
) -> None:
    assert_same_verdict(case)


def test_wsproto_needs_its_deflate_fixed_for_a_ping_inside_a_compressed_message() -> None:
    deflate, answer = DeflateParams(), "permessage-deflate"
    text = "compressed " * 20
    message = Message(TEXT, text.encode(), True, (500,), ((Wire(PING, b"mid"),),))
    case = Case(deflate, answer, (), (encode_all(frames_of(Stream((message,)), deflate)),))
    delivered = [Ping(b"mid"), Text(text)]
    plain = reference(case, PerMessageDeflate)  # wsproto alone reads the rest uncompressed:
    assert plain[0] == delivered[0]
    assert plain[1] != delivered[1]  # garbage here (or 1007 when the cut is elsewhere)
    assert reference(case) == delivered
    assert ours(case)[0] == delivered


def test_message_after_the_servers_deflate_stream_ended_is_not_lost() -> None:
    """RFC 7692 7.2.3.4 lets a server flush a message with a final deflate block (BFINAL),
    and a server may always compress a message afresh. Here each message is a whole deflate
    stream, context takeover on. An ended zlib object would put what it is fed next into
    `unused_data`, and the second message would come out empty: ours starts a fresh
    decompressor after a stream's end. Reading it so, or failing with 1007 (wsproto's
    answer), are both right; losing it is not.
    """
    payloads = []
    for text in (b"first", b"second"):
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        payloads.append(compressor.compress(text) + compressor.flush(zlib.Z_FINISH))
    wire = b"".join(Wire(TEXT, payload, rsv=RSV1).encode() for payload in payloads)
    outcome, _ = ours(Case(DeflateParams(), "permessage-deflate", (), (wire,)))
    assert outcome[0] == Text("first")
    assert outcome[1] == Text("second")


def test_close_code_1014_is_accepted_where_wsproto_refuses_it() -> None:
    """1014 ("Bad Gateway") is in IANA's registry of close codes, so a server may send it;
    wsproto's list of codes predates it, and it fails the connection with 1002."""
    case = Case(None, None, (), (Wire(CLOSE, close_payload(1014, b"upstream")).encode(),))
    assert reference(case) == [Verdict(1002)]
    outcome, client = ours(case)
    assert outcome == [Close(1014, "upstream")]
    assert_answered(client, outcome)


# ----------------------------------------------------------------------------- 4. size limit

limits = st.integers(1, 300) | st.sampled_from((65535, 65536))
offsets = st.integers(-3, 3)
wide_chars = st.sampled_from(("a", "é", "☃", "🂡"))
message_counts = st.integers(1, 4)
plain_messages = {compress: messages(compress, interleave=False) for compress in (False, True)}
between = st.lists(control_frames, max_size=1)


@st.composite
def sized_payloads(draw: st.DrawFn, opcode: int, size: int) -> bytes:
    """A payload of exactly `size` bytes: compressible or not, 1- to 4-byte characters."""
    if opcode == TEXT:
        char = draw(wide_chars)
        width = len(char.encode())
        return (char * (size // width) + "a" * (size % width)).encode()
    if draw(booleans):
        return random.Random(draw(seeds)).randbytes(size)
    return (draw(units_binary) * size)[:size]


@st.composite
def limit_cases(draw: st.DrawFn) -> tuple[Case, int]:
    """Messages of sizes around a random limit, compressed or not, fragmented, pings
    between them (not inside: what comes before a failure is then the earlier messages)."""
    compress = draw(booleans)
    deflate, answer = draw(answers) if compress else (None, None)
    limit = draw(limits)
    items: list[Message | Wire] = []
    for _ in range(draw(message_counts)):
        size = draw(st.integers(0, 2 * limit)) if draw(booleans) else limit + draw(offsets)
        message = draw(plain_messages[compress])
        payload = draw(sized_payloads(message.opcode, max(0, size)))
        items += [replace(message, payload=payload), *draw(between)]
    stream = Stream(tuple(items), draw(closes))
    wire = encode_all(frames_of(stream, deflate))
    return Case(deflate, answer, (), draw(reads(wire))), limit


def size_of(message: Text | Binary) -> int:
    return len(message.text.encode()) if isinstance(message, Text) else len(message.data)


@settings(max_examples=examples(150), deadline=None, database=None)
@given(limit_cases())
def test_message_fails_with_1009_exactly_when_bigger_than_the_limit_once_inflated(
    case_and_limit: tuple[Case, int],
) -> None:
    case, limit = case_and_limit
    expected = reference(case)  # every message whole, whatever its size
    too_big = [
        i
        for i, event in enumerate(expected)
        if isinstance(event, Text | Binary) and size_of(event) > limit
    ]
    if too_big:
        expected = [*expected[: too_big[0]], Verdict(1009)]
    actual, client = ours(case, limit)
    assert actual == expected
    assert_answered(client, actual)


def test_deflate_bomb_fails_with_1009_without_being_inflated() -> None:
    inflated, limit = 16 << 20, 64 << 10
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(bytes(inflated)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    wire = Wire(BINARY, bomb[:-4], rsv=RSV1).encode()
    assert len(wire) < limit // 2  # a small frame: only inflating it shows its size
    case = Case(DeflateParams(), "permessage-deflate", (), (wire,))
    assert reference(case) == [Binary(bytes(inflated))]
    tracemalloc.start()
    try:
        actual, _ = ours(case, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert actual == [Verdict(1009)]
    assert peak < inflated // 16  # (about 3 times the limit: the bounded output, zlib's window)


# ----------------------------------------------------------------------------- 5. sending

sendable = (
    st.builds(Text, small_text)
    | st.builds(Binary, small_binary)
    | st.builds(Text, st.builds(lambda unit, n: unit * n, units_text, big_sizes))
    | st.builds(Binary, st.builds(lambda unit, n: unit * n, units_binary, big_sizes))
    | st.builds(Ping, st.binary(max_size=125))
    | st.builds(Pong, st.binary(max_size=125))
)
our_closes = st.none() | st.just(Close(None, "")) | st.builds(Close, valid_close_codes, small_text)


def frame_heads(wire: bytes) -> list[tuple[int, bool]]:
    """(first byte, mask bit) of each frame in `wire`, checking the lengths add up."""
    heads = []
    pos = 0
    while pos < len(wire):
        first, second = wire[pos], wire[pos + 1]
        n, pos = second & 0x7F, pos + 2
        if n == 126:
            (n,) = struct.unpack_from("!H", wire, pos)
            pos += 2
        elif n == 127:
            (n,) = struct.unpack_from("!Q", wire, pos)
            pos += 8
        pos += (4 if second & 0x80 else 0) + n
        heads.append((first, bool(second & 0x80)))
    assert pos == len(wire)
    return heads


def server_reads(server: Connection) -> list[Frame]:
    received: list[Frame] = []
    for event in server.events():
        if isinstance(event, TextMessage | BytesMessage):
            assert event.message_finished  # we never fragment
            data = event.data
            received.append(Text(data) if isinstance(data, str) else Binary(bytes(data)))
        elif isinstance(event, WsPing | WsPong):
            received.append((Ping if isinstance(event, WsPing) else Pong)(bytes(event.payload)))
        else:
            assert isinstance(event, CloseConnection)
            assert server.state is ConnectionState.REMOTE_CLOSING  # a close, not a failure
            code = None if event.code == CloseReason.NO_STATUS_RCVD else int(event.code)
            received.append(Close(code, event.reason or ""))
    return received


@settings(max_examples=examples(100), deadline=None, database=None)
@given(st.none() | answers, st.lists(sendable, max_size=5), our_closes)
def test_our_frames_are_read_by_a_wsproto_server_as_sent(
    answer: tuple[DeflateParams, str] | None, frames: list[Frame], close: Close | None
) -> None:
    deflate = None if answer is None else answer[0]
    client = WsConnection(Negotiated(deflate=deflate))
    sent = [*frames, *([close] if close else [])]
    for frame in sent:
        client.send(frame)
    wire = client.data_to_send()

    heads = frame_heads(wire)
    assert all(masked for _, masked in heads)  # RFC 6455 5.3: a client masks every frame
    compressed = [bool(first & RSV1) for first, _ in heads]
    assert compressed == [deflate is not None and isinstance(f, Text | Binary) for f in sent]
    extensions = [] if answer is None else [reference_extension(answer[1], answer[0])]
    server = Connection(ConnectionType.SERVER, extensions=extensions)
    server.receive_data(wire)
    assert server_reads(server) == sent
