"""Frames a client sends (RFC 6455 5.2-5.3): header, masking key, masked payload.

Masking is the costly part of sending. A frame is built as separate chunks (the header
with its key, then the masked payload) so the connection can join a batch of frames in
one copy. Masking keys come from `os.urandom` in batches shared by every connection
(RFC 6455 10.3 asks for a strong source); with `gluegun_actors[speedups]` installed the
XOR runs in C (`websockets.speedups.apply_mask`).
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Callable
from typing import Final

__all__ = ["FIN", "MAX_CONTROL_PAYLOAD", "RSV1", "encode_frame", "mask", "random_word"]

FIN: Final = 0x80
RSV1: Final = 0x40
MAX_CONTROL_PAYLOAD: Final = 125
"""RFC 6455 5.5: control frame payloads are at most 125 bytes."""

_MASKED: Final = 0x80
_HEAD_7: Final = struct.Struct("!BB4s")
_HEAD_16: Final = struct.Struct("!BBH4s")
_HEAD_64: Final = struct.Struct("!BBQ4s")

_INT_MASK_LIMIT: Final = 1024
"""Below this payload size masking through one big-int XOR beats four `translate` passes."""
_MASK_KEY_BATCH: Final = 256
"""Random words drawn from `os.urandom` per call."""

_words: deque[bytes] = deque()
"""Unused random 4-byte words, shared by every connection in the process: a connection that
sends once does not keep a batch of its own (256 keys are ~11 KiB)."""


def random_word() -> bytes:
    """Four random bytes nothing has used: a masking key, or a quarter of a handshake key.

    `deque.pop` is atomic, so threads never share one; two threads finding the pool empty
    at once each draw a batch, which only adds words.
    """
    try:
        return _words.pop()
    except IndexError:
        batch = os.urandom(4 * _MASK_KEY_BATCH)
        _words.extend(batch[i : i + 4] for i in range(4, len(batch), 4))
        return batch[:4]


_IDENTITY: Final = bytes(range(256))
_XOR_TABLES: Final = [
    (int.from_bytes(_IDENTITY) ^ int.from_bytes(bytes((key,)) * 256)).to_bytes(256)
    for key in range(256)
]


def mask_python(payload: bytes, key: bytes) -> bytes | bytearray:
    """XOR `payload` with the repeated 4-byte `key` (RFC 6455 5.3), in pure Python."""
    n = len(payload)
    if n < _INT_MASK_LIMIT:
        stream = (key * ((n >> 2) + 1))[:n]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(
            n, "little"
        )
    out = bytearray(payload)
    for offset in range(4):
        out[offset::4] = out[offset::4].translate(_XOR_TABLES[key[offset]])
    return out


mask: Callable[[bytes, bytes], bytes | bytearray]
try:  # the optional C masking of the websockets package (gluegun_actors[speedups]):
    from websockets.speedups import apply_mask as mask  # 64 KiB in ~3 us instead of ~130 us
except ImportError:  # pragma: no cover - depends on what is installed
    mask = mask_python


def encode_frame(out: list[bytes | bytearray], first: int, payload: bytes) -> None:
    """Append a masked client frame to `out`: header and key, then the masked payload.

    `first` is the first byte (FIN, RSV and opcode bits).
    """
    n = len(payload)
    key = random_word()
    if n < 126:
        out.append(_HEAD_7.pack(first, _MASKED | n, key))
    elif n < 65536:
        out.append(_HEAD_16.pack(first, _MASKED | 126, n, key))
    else:
        out.append(_HEAD_64.pack(first, _MASKED | 127, n, key))
    if n:
        out.append(mask(payload, key))
