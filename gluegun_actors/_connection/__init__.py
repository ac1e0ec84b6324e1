"""The connection actor layer (Gun's `gun.erl`) and what surrounds it.

- `actor`: the connection actor, its state machine and sessions;
- `commands`: the messages it understands;
- `handle`: `Connection`, the caller's handle, where the actor publishes what callers
  may check without a round trip;
- `owner`: where it delivers, and how it notices the owner die;
- `timers`, `trace`, `info`: its timers, its event hook, its `info()` snapshot.
"""
