"""The connection actor layer (Gun's `gun.erl`) and what surrounds it.

- `actor`: the connection actor, its state machine and sessions;
- `commands`: the messages it understands;
- `handle`: `Connection`, the caller's handle, where the actor publishes what callers
  may check without a round trip;
- `destination`: where it delivers, how it notices the owner die, and whether the owner
  is backlogged (the mailbox high-water mark);
- `outage`: why it is not up, for the errors waits raise and the WARNING log;
- `http_session`, `ws_session`, `stream`: the protocol sessions and per-stream state;
- `timers`, `trace`, `info`, `stats`: its timers, its event hook (redacted in the log),
  its `info()` snapshot, its counters.
"""
