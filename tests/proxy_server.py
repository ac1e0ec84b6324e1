"""A real proxy for tests: `pproxy` (HTTP CONNECT and SOCKS5 on one port) in its own process.

`pproxy_server()` starts `python -m pproxy -l http+socks5://127.0.0.1:0[#user:pass]`, reads
the port it bound from its first line of output, and kills it on exit. `--auth 0` makes
it check the credentials of every connection (by default it trusts an address that
authenticated once, which would hide a wrong password after a right one).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

START_TIMEOUT: Final = 10.0
"""Seconds pproxy may take to print the address it listens on."""

_LISTENING: Final = re.compile(r"Serving on .*?127\.0\.0\.1:(\d+) by ")


@dataclass(frozen=True, slots=True)
class Pproxy:
    """A running pproxy: its port, and the proxy URLs for each kind, with credentials."""

    port: int
    credentials: str = ""
    """`user:password`, or "" when the proxy asks for none."""

    def url(self, scheme: str, credentials: str | None = None) -> str:
        """The proxy's URL for `scheme` (http, socks5), with its own credentials or those given."""
        userinfo = self.credentials if credentials is None else credentials
        return f"{scheme}://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"


@contextmanager
def pproxy_server(credentials: str = "") -> Iterator[Pproxy]:
    """Run pproxy with HTTP CONNECT and SOCKS5 on one port, asking for `credentials`
    (`user:password`) if given; yield it once it listens, kill it afterwards."""
    listen = "http+socks5://127.0.0.1:0" + (f"#{credentials}" if credentials else "")
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pproxy", "-l", listen, "--auth", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = process.stdout
    assert output is not None
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(output.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT)  # bounded: a pproxy that says nothing is killed below
        found = _LISTENING.search(lines[0]) if lines else None
        if found is None:
            raise RuntimeError(f"pproxy did not start: {lines!r}")
        yield Pproxy(int(found.group(1)), credentials)
    finally:
        process.kill()
        process.wait(10)
        output.close()
