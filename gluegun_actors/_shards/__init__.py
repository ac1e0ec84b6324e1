"""Connection shards on Ray: the internals of `gluegun_actors.shards`.

- `placement`: keys as plain data, their stable bytes, rendezvous hashing;
- `handles`: what crosses processes in place of a `Connection` or a `StreamRef`, and the
  errors that say a shard was lost or a key moved;
- `specs`: how to reopen a key (`Spec`), checked to be plain data, and the spec store
  in Ray's key-value store, outside every shard;
- `translate`: owner messages to bytes (handles swapped in, exceptions kept whole);
- `outbox`: the shard's side of a remote owner (its mailbox, batches, acknowledgements);
- `pump`: the owner's side (long polls, no duplicates, shard loss, backpressure);
- `shard`: the shard actor, a manager per owner inside one Ray worker process.

Importing this package needs Ray; without it the error says how to install it.
"""

from __future__ import annotations

try:
    import ray
except ImportError as error:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "gluegun_actors.shards runs on Ray, which is not installed: "
        "pip install 'gluegun_actors[ray]'"
    ) from error

__all__ = ["ray"]
