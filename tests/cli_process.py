"""The `gluegun` command as the tests run it: in a subprocess, with pipes or a terminal.

`run` waits for a command to finish; `Live` keeps one running and reads its stdout and
stderr lines as they come (reader threads, so a wait never blocks past its timeout);
`Terminal` runs one on a pseudo-terminal, to type into it as a person would. Every wait
is bounded, and every process is killed on exit if it is still running.
"""

from __future__ import annotations

import os
import pty
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
RUN_TIMEOUT: Final = 30.0
"""Seconds a whole command may take."""
WAIT: Final = 10.0
"""Seconds to wait for one expected line or piece of output."""
SCRIPT: Final = Path(sys.executable).parent / "gluegun"
"""The console script that `pip install` puts next to the interpreter."""


def command(*args: str, script: bool = False) -> list[str]:
    """The command line: `python -m gluegun_actors ...`, or the installed script."""
    if script:
        return [str(SCRIPT), *args]
    return [sys.executable, "-m", "gluegun_actors", *args]


def environment(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


def run(
    *args: str, stdin: str | bytes = "", script: bool = False, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run to the end with `stdin` piped in; stdout and stderr as text."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run(
        command(*args, script=script),
        input=data,
        capture_output=True,
        env=environment(),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound once, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _end(process: subprocess.Popen[Any]) -> None:
    """Kill `process` if it is still running, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait(WAIT)


class Live(AbstractContextManager["Live"]):
    """A running command with piped stdin, stdout and stderr, read line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            command(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment(),
            cwd=ROOT,
            text=True,
        )
        self.stdout: queue.Queue[str | None] = queue.Queue()
        self.stderr: queue.Queue[str | None] = queue.Queue()
        self.seen_stdout: list[str] = []
        self.seen_stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        for stream, lines in (
            (self.process.stdout, self.stdout),
            (self.process.stderr, self.stderr),
        ):
            threading.Thread(target=_pump, args=(stream, lines), daemon=True).start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _end(self.process)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def line(self, *, stderr: bool = False, timeout: float = WAIT) -> str:
        """The next line (without its newline); AssertionError after `timeout` or at EOF."""
        lines, seen = (self.stderr, self.seen_stderr) if stderr else (self.stdout, self.seen_stdout)
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s; so far: {seen}") from None
        if line is None:
            lines.put(None)  # stays at EOF for later calls
            raise AssertionError(f"the output ended; it was: {seen}")
        seen.append(line)
        return line

    def line_containing(self, text: str, *, stderr: bool = False, limit: int = 50) -> str:
        """Skip lines until one contains `text` (at most `limit` lines)."""
        for _ in range(limit):
            line = self.line(stderr=stderr)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {limit} lines")

    def write(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = WAIT) -> int:
        return self.process.wait(timeout)

    def rest(self, *, stderr: bool = False) -> list[str]:
        """The remaining lines once the process has ended (waits for its EOF)."""
        lines = []
        for _ in range(10_000):
            try:
                lines.append(self.line(stderr=stderr))
            except AssertionError:
                break
        return lines


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


class Terminal(AbstractContextManager["Terminal"]):
    """A command on a pseudo-terminal: its stdin, stdout and stderr are the terminal."""

    def __init__(self, args: list[str], **env: str) -> None:
        main, child = pty.openpty()
        self._fd = main
        self.output = b""
        try:
            self.process = subprocess.Popen(
                args,
                stdin=child,
                stdout=child,
                stderr=child,
                env=environment(TERM="xterm", **env),
                cwd=ROOT,
                start_new_session=True,  # the terminal becomes its controlling terminal
            )
        finally:
            os.close(child)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _end(self.process)
        os.close(self._fd)

    def type(self, text: str) -> None:
        os.write(self._fd, text.encode())

    def read_until(self, marker: str, timeout: float = WAIT, *, since: int = 0) -> str:
        """Read the screen's bytes until `marker` has appeared (at byte `since` or later);
        all read so far, as text."""
        wanted = marker.encode()
        deadline = time.monotonic() + timeout
        while self.output.find(wanted, since) < 0:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                text = self.output.decode(errors="replace")
                raise AssertionError(f"{marker!r} did not appear; the terminal shows {text!r}")
        return self.output.decode(errors="replace")

    def read_prompt(self, after: str) -> None:
        """Wait until `after` is shown and the prompt (`>`) is drawn after it: from then
        on the terminal is in raw mode, so Ctrl-C and Ctrl-D reach the prompt as keys."""
        self.read_until(after)
        since = self.output.rfind(after.encode()) + len(after)
        self.read_until(">", since=since)

    def wait(self, timeout: float = WAIT) -> int:
        """Wait for the exit, reading what is left on the terminal meanwhile."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.05)
        code = self.process.wait(max(deadline - time.monotonic(), 0.1))
        while self._read(0.05):
            pass
        return code

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self._fd, 65_536)
        except OSError:  # EIO: every process on the terminal has closed it
            return False
        self.output += data
        return bool(data)
