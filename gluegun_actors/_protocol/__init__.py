"""The protocol cores, sans-IO: bytes and commands in, events and bytes out.

Nothing here touches a socket, a thread or a clock, so every rule is tested in memory.

- HTTP/1.1: `http1` (the client core: pipelining, framing, ending), `http1_request` (the
  request grammar and serializer), `http1_response` (the rules around h11's response
  parser, and the whole-101 fast path), `http1_exchange` (one request and its response:
  state tables, body framing), `http1_events` (what the core reports).
- WebSocket: `ws` (the client core after the handshake: one receive path, message
  assembly, the closing handshake), `ws_frames` (the frame parser), `ws_send` (frames we
  send: masking), `ws_close` (close codes), `ws_deflate` (permessage-deflate, bounded),
  `ws_handshake` (the upgrade's headers and the check of the 101).
"""
