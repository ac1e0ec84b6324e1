"""Where a key lives: rendezvous (highest random weight) hashing over shard indices.

Every shard gets a weight for a key, a hash of the key's bytes and the shard's index;
the key lives on the shard with the highest weight. Adding shard n moves exactly the
keys whose new top weight is n's, about 1/(n+1) of them, and nothing else moves.

Keys cross processes and Python versions, so a key is plain data (`str`, `bytes`,
`int`, or tuples of these) and its bytes are a canonical encoding of that data, not
`pickle` (whose bytes may change between versions) nor `hash()` (randomized per
process). `True` and `1` are the same key, as they are in a dict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TypeAlias

from gluegun_actors.errors import InvalidArgument

__all__ = ["Key", "check_key", "key_bytes", "key_digest", "place"]

Key: TypeAlias = "str | bytes | int | tuple[Key, ...]"
"""A shard key: plain data that means the same in every process."""

_MAX_DEPTH = 8
"""How deeply tuples may nest in a key."""


def check_key(key: object) -> Key:
    """`key` if it is a valid shard key, else `InvalidArgument` saying what keys are."""
    key_bytes(key)
    return key  # type: ignore[return-value]


def key_bytes(key: object) -> bytes:
    """The canonical bytes of a key: a type tag, a length, the data; tuples recursively."""
    parts: list[bytes] = []
    _encode(key, parts, 0, key)
    return b"".join(parts)


def _encode(value: object, parts: list[bytes], depth: int, whole: object) -> None:
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        parts += (b"s", len(data).to_bytes(4, "big"), data)
    elif isinstance(value, bytes):
        parts += (b"b", len(value).to_bytes(4, "big"), value)
    elif isinstance(value, int):  # bool too: True == 1, as dict keys
        text = str(int(value)).encode("ascii")
        parts += (b"i", len(text).to_bytes(4, "big"), text)
    elif isinstance(value, tuple) and depth < _MAX_DEPTH:
        parts += (b"t", len(value).to_bytes(4, "big"))
        for item in value:
            _encode(item, parts, depth + 1, whole)
    else:
        raise InvalidArgument(
            f"a shard key must be plain data (str, bytes, int, or a tuple of these, "
            f"nested at most {_MAX_DEPTH} deep), got {whole!r}"
        )


def key_digest(data: bytes) -> str:
    """A short, stable name for a key's bytes (32 hex digits), for store entries."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _weight(data: bytes, shard: int) -> int:
    digest = hashlib.blake2b(data, digest_size=8, salt=shard.to_bytes(8, "big")).digest()
    return int.from_bytes(digest, "big")


def place(data: bytes, shards: Iterable[int]) -> int:
    """The shard (an index among `shards`) with the highest weight for the key's bytes.

    Ties, which take a 64-bit collision, go to the higher index.
    """
    return max(shards, key=lambda shard: (_weight(data, shard), shard))
