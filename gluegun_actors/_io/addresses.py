"""Socket addresses: IP literals parsed without a lookup, names through `getaddrinfo`."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, TypeAlias

__all__ = ["AddrInfo", "Address", "addresses_of", "host_port", "numeric_addresses", "resolve"]

Address: TypeAlias = tuple[Any, ...]
"""A socket address as `getaddrinfo` gives it: (host, port) or (host, port, flow, scope)."""

AddrInfo: TypeAlias = tuple[socket.AddressFamily, socket.SocketKind, int, Address]
"""What a connect needs: family, socket type, protocol and address."""


def host_port(host: str, port: int) -> str:
    """`host:port` as messages, reprs and URLs show it: an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve(host: str, port: int) -> list[AddrInfo]:
    """Every stream address of `host:port` (blocking: run it off the reactor thread)."""
    return addresses_of(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def numeric_addresses(host: str, port: int) -> list[AddrInfo] | None:
    """The addresses of an IP literal, without a lookup; None for a name to resolve.

    Plain IPv4 and IPv6 literals are parsed here: `getaddrinfo` releases the GIL, and with
    thousands of connects in flight every release hands it to another thread. Other forms
    (a scope id, "127.1") go through `getaddrinfo` with `AI_NUMERICHOST`.
    """
    if not 0 <= port <= 65535:
        return None
    if "%" not in host:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
            literal = socket.inet_ntop(family, ip.packed)  # the form getaddrinfo gives
            address: Address = (literal, port) if ip.version == 4 else (literal, port, 0, 0)
            return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, address)]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, TypeError, ValueError, OverflowError):
        return None
    return addresses_of(infos)


def addresses_of(infos: list[tuple[Any, ...]]) -> list[AddrInfo]:
    """`getaddrinfo` results without their canonical names."""
    return [(family, kind, proto, address) for family, kind, proto, _, address in infos]
