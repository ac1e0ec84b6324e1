"""Run the Autobahn|Testsuite client cases with gluegun_actors as the agent.

Theory of operation: `wstest -m fuzzingserver` (Python 2.7, from the venv that
`install_autobahn.sh` makes) listens on 127.0.0.1 at a free port, with a spec generated
from `fuzzingserver.json` and a fresh report folder. This driver, in the project's
Python 3, then speaks to it only through gluegun_actors:

1. `/getCaseCount` tells how many cases the spec selected;
2. each case N is `/runCase?case=N&agent=gluegun_actors`: an echo client (compression
   offered) that sends every Text/Binary back until the peer closes or the connection
   goes down, bounded by a time limit per case;
3. `/updateReports?agent=gluegun_actors` makes wstest write `index.json`, which the
   driver summarises: verdict counts (`behavior`, `behaviorClose`), every failed case
   with its description, the slowest cases. Exit status 1 when any case failed.

wstest runs in a process group of its own and is always stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

from gluegun_actors import connection, websocket  # noqa: E402
from gluegun_actors.errors import (  # noqa: E402
    AwaitTimeout,
    ConnectionDown,
    GluegunError,
)
from gluegun_actors.message import Binary, Close, Frame, Text  # noqa: E402

AGENT = "gluegun_actors"
HOST = "127.0.0.1"
SPEC_TEMPLATE = HERE / "fuzzingserver.json"
DEFAULT_VENV = ROOT / ".autobahn-venv"

CI_CASES = [f"{n}.*" for n in range(1, 12)] + ["12.1.*", "13.1.*"]
"""`--ci`: every non-compression group, plus one group each of 12.* and 13.* (deflate)."""

MAX_MESSAGE_SIZE = 32 * 1024 * 1024
"""Cases 9.1.6 / 9.2.6 send 16 MiB messages; leave room above that."""
CLOSING_TIMEOUT_MS = 2000
"""A close that the fuzzing server never completes should not stall a case for long."""
CONNECT_TIMEOUT_MS = 5000
"""Bound on TCP connect and on the WebSocket upgrade answer."""
DEFAULT_CASE_LIMIT_S = 120.0
"""Per-case bound; the slowest cases (9.*, 500 KB-16 MiB messages) need seconds, not minutes."""
CLOSING_WAIT_S = CLOSING_TIMEOUT_MS / 1000 + 5.0
"""After the peer's Close (or a stream error) the connection must go down within this."""
MAX_NOTES = 10
"""Errors tolerated in one case before the driver gives it up."""
SERVER_START_LIMIT_S = 60.0
"""How long wstest may take to start listening."""
REPORT_LIMIT_S = 300.0
"""How long `/updateReports` may take (it writes one HTML and one JSON file per case)."""
SLOWEST = 10

VERDICT_ORDER = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
"""Always shown in the table; other verdicts (WRONG CODE, UNCLEAN, ...) follow when seen."""
FAILING_BEHAVIOR = frozenset({"FAILED"})
FAILING_CLOSE = frozenset({"FAILED", "UNCLEAN"})
"""As Autobahn's own report colours them: these are the red cells."""
PASSING_BEHAVIOR = frozenset({"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "NO_CLOSE"})


@dataclass(frozen=True, slots=True)
class CaseRun:
    """What the driver saw of one case (the verdict itself comes from wstest)."""

    number: int
    seconds: float
    outcome: str
    """"closed" (the connection went down), "limit" (the case's time limit ran out),
    "limit while closing" (not down CLOSING_WAIT_S after a Close or a stream error),
    or "error: ..." (no WebSocket could be opened, or errors piled up)."""
    echoed: int
    notes: tuple[str, ...] = ()


# -- wstest ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def write_spec(path: Path, outdir: Path, cases: Sequence[str], exclude: Sequence[str]) -> None:
    """The template with this run's report folder and cases (the port is set at start)."""
    spec: dict[str, Any] = json.loads(SPEC_TEMPLATE.read_text())
    spec["outdir"] = str(outdir)
    spec["cases"] = list(cases)
    spec["exclude-cases"] = list(exclude)
    path.write_text(json.dumps(spec, indent=3))


def wait_listening(proc: subprocess.Popen[bytes], port: int, limit_s: float, log: Path) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"wstest exited with {proc.returncode} before listening:\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"wstest did not listen on {HOST}:{port} within {limit_s:.0f} s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def fuzzingserver(wstest: Path, spec: Path, workdir: Path, log: Path) -> Iterator[int]:
    """Start wstest on a free port; yield the port; stop its whole process group on exit."""
    port = free_port()
    data = json.loads(spec.read_text())
    data["url"] = f"ws://{HOST}:{port}"
    spec.write_text(json.dumps(data, indent=3))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(wstest), "-m", "fuzzingserver", "-s", str(spec), "-u", "0"],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_listening(proc, port, SERVER_START_LIMIT_S, log)
        yield port
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# -- gluegun_actors as the agent ---------------------------------------------------------


def ws_options(compress: bool) -> websocket.Options:
    return websocket.options(
        compress=compress,
        max_message_size=MAX_MESSAGE_SIZE,
        closing_timeout=CLOSING_TIMEOUT_MS,
    )


def remaining_ms(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


@dataclass(slots=True)
class Session:
    """One connection upgraded on one path; `run` echoes or collects until it ends."""

    port: int
    path: str
    options: websocket.Options
    deadline: float
    echo: bool

    def run(self) -> tuple[str, list[Frame], list[str]]:
        """Returns (outcome, frames received, notes)."""
        conn = connection.open(
            HOST, self.port, connection.options(retry=0, connect_timeout=CONNECT_TIMEOUT_MS)
        )
        frames: list[Frame] = []
        notes: list[str] = []
        try:
            try:
                proto = connection.await_up(conn, CONNECT_TIMEOUT_MS)
                stream = websocket.upgrade_with_protocol(conn, proto, self.path, [], self.options)
                websocket.await_upgrade(conn, stream, CONNECT_TIMEOUT_MS)
            except GluegunError as error:
                return f"error: {type(error).__name__}: {error}", frames, notes
            return self._loop(conn, stream, frames, notes), frames, notes
        finally:
            connection.close(conn)
            connection.flush(conn)

    def _loop(
        self, conn: connection.Connection, stream: Any, frames: list[Frame], notes: list[str]
    ) -> str:
        # Two phases: OPEN echoes until the case's deadline; CLOSING (after the peer's Close
        # or a stream error, when the connection runs the close handshake) waits at most
        # CLOSING_WAIT_S more for the connection to go down. Every receive is bounded.
        phase, deadline = "open", self.deadline
        while True:
            left = remaining_ms(deadline)
            if left == 0:
                return "limit" if phase == "open" else "limit while closing"
            try:
                frame = websocket.receive(conn, stream, left)
            except AwaitTimeout:
                continue  # `left` is now 0
            except ConnectionDown:  # ConnectionTerminated too: the connection is gone
                return "closed"
            except GluegunError as error:
                # The library failed the WebSocket (bad UTF-8, protocol error, too big):
                # it sends its close and waits for the peer; wait for the connection.
                notes.append(f"{type(error).__name__}: {error}")
                if len(notes) >= MAX_NOTES:
                    return "error: too many stream errors"
                phase, deadline = "closing", self._closing_deadline(deadline)
                continue
            frames.append(frame)
            if isinstance(frame, Close):
                phase, deadline = "closing", self._closing_deadline(deadline)
            elif self.echo and phase == "open" and isinstance(frame, Text | Binary):
                try:
                    websocket.send(conn, stream, frame)
                except GluegunError as error:
                    notes.append(f"send: {type(error).__name__}: {error}")
                    if len(notes) >= MAX_NOTES:
                        return "error: too many send errors"

    @staticmethod
    def _closing_deadline(deadline: float) -> float:
        return min(deadline, time.monotonic() + CLOSING_WAIT_S)


def control(port: int, path: str, limit_s: float) -> list[Frame]:
    """A command of the fuzzing server: upgrade on `path`, collect frames until it closes."""
    session = Session(port, path, ws_options(False), time.monotonic() + limit_s, echo=False)
    outcome, frames, _ = session.run()
    if outcome != "closed":
        raise SystemExit(f"wstest {path}: {outcome}")
    return frames


def case_count(port: int) -> int:
    for frame in control(port, "/getCaseCount", 30.0):
        if isinstance(frame, Text):
            return int(json.loads(frame.text))
    raise SystemExit("wstest /getCaseCount sent no count")


def case_id(port: int, number: int) -> str:
    """The case's id ("9.1.6"), asked of wstest; used only to label driver trouble."""
    with contextlib.suppress(GluegunError, SystemExit, ValueError):
        for frame in control(port, f"/getCaseInfo?case={number}", 10.0):
            if isinstance(frame, Text):
                return str(json.loads(frame.text)["id"])
    return f"#{number}"


def run_case(port: int, number: int, limit_s: float, compress: bool) -> CaseRun:
    started = time.monotonic()
    session = Session(
        port,
        f"/runCase?case={number}&agent={AGENT}",
        ws_options(compress),
        started + limit_s,
        echo=True,
    )
    outcome, frames, notes = session.run()
    echoed = sum(1 for f in frames if isinstance(f, Text | Binary))
    return CaseRun(number, time.monotonic() - started, outcome, echoed, tuple(notes))


# -- the report --------------------------------------------------------------------------


def load_index(outdir: Path) -> dict[str, dict[str, Any]]:
    index = json.loads((outdir / "index.json").read_text())
    return dict(index.get(AGENT, {}))


def case_sort_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split(".") if part.isdigit())


def is_failed(result: dict[str, Any]) -> bool:
    return (
        result.get("behavior") not in PASSING_BEHAVIOR
        or result.get("behaviorClose") in FAILING_CLOSE
    )


def case_details(outdir: Path, result: dict[str, Any]) -> dict[str, Any]:
    try:
        return dict(json.loads((outdir / str(result["reportfile"])).read_text()))
    except (OSError, KeyError, ValueError):
        return {}


def one_line(text: str, width: int = 160) -> str:
    flat = " ".join(str(text).replace("<br/>", " ").split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def summarise(
    index: dict[str, dict[str, Any]],
    outdir: Path,
    expected: int,
    runs: list[CaseRun],
    verbose: bool,
) -> int:
    """Print the summary; return the number of failed (or missing) cases."""
    behavior = Counter(str(r.get("behavior")) for r in index.values())
    close = Counter(str(r.get("behaviorClose")) for r in index.values())
    verdicts = list(VERDICT_ORDER) + sorted((set(behavior) | set(close)) - set(VERDICT_ORDER))
    print(f"\nAutobahn client cases for agent {AGENT}: {len(index)} reported of {expected} run")
    print(f"  {'verdict':<16}{'behavior':>10}{'behaviorClose':>15}")
    for verdict in verdicts:
        print(f"  {verdict:<16}{behavior.get(verdict, 0):>10}{close.get(verdict, 0):>15}")

    failed = sorted((c for c, r in index.items() if is_failed(r)), key=case_sort_key)
    print(f"\nFAILED cases: {len(failed)}")
    for case in failed:
        result = index[case]
        details = case_details(outdir, result)
        print(
            f"  {case}: behavior={result.get('behavior')} "
            f"behaviorClose={result.get('behaviorClose')} "
            f"remoteCloseCode={result.get('remoteCloseCode')}"
        )
        print(f"    description: {one_line(details.get('description', '?'))}")
        print(f"    expectation: {one_line(details.get('expectation', '?'))}")
        print(f"    result:      {one_line(details.get('result', '?'))}")
        print(f"    close:       {one_line(details.get('resultClose', '?'))}")

    slowest = sorted(index.items(), key=lambda item: -int(item[1].get("duration") or 0))
    print(f"\nSlowest {min(SLOWEST, len(slowest))} cases (ms, as timed by wstest):")
    for case, result in slowest[:SLOWEST]:
        print(f"  {case:<10}{int(result.get('duration') or 0):>8}  {result.get('behavior')}")

    ids = sorted(index, key=case_sort_key)  # wstest numbers the cases in this order

    def label(run: CaseRun) -> str:
        return ids[run.number - 1] if len(ids) == expected else f"#{run.number}"

    errored = [r for r in runs if r.notes]
    if errored:
        print(
            f"\n{len(errored)} cases raised in the agent before the connection went down "
            "(mostly the library failing the WebSocket on a bad frame, which those cases call "
            "for; also echoes racing the peer's close)"
            + ("; -v lists them" if not verbose else ":")
        )
        for run in errored if verbose else []:
            print(f"  {label(run)}: {one_line(run.notes[0])}")
    trouble = [r for r in runs if r.outcome != "closed"]
    if trouble:
        print(f"\nDriver trouble: {len(trouble)} cases did not end with the connection going down:")
        for run in trouble:
            print(f"  {label(run)}: {run.outcome} after {run.seconds:.1f} s")
            for note in run.notes[:3]:
                print(f"    {one_line(note)}")
    missing = max(0, expected - len(index))
    if missing:
        print(f"\n{missing} case(s) ran but are missing from index.json")
    return len(failed) + missing


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--cases",
        default="*",
        help='comma-separated case patterns, e.g. "1.*,9.1.6" (default: "*", every case)',
    )
    parser.add_argument("--exclude", default="", help="comma-separated case patterns to leave out")
    parser.add_argument("--ci", action="store_true", help=f"the CI subset: {','.join(CI_CASES)}")
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path(os.environ.get("AUTOBAHN_VENV", DEFAULT_VENV)),
        help="the Python 2.7 venv from install_autobahn.sh (default: $AUTOBAHN_VENV or "
        ".autobahn-venv at the repo root)",
    )
    parser.add_argument(
        "--case-limit",
        type=float,
        default=DEFAULT_CASE_LIMIT_S,
        help=f"seconds allowed per case (default {DEFAULT_CASE_LIMIT_S:.0f})",
    )
    parser.add_argument(
        "--no-compress", action="store_true", help="do not offer permessage-deflate"
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        help="keep wstest's reports (HTML + JSON) here; default: a temp folder, removed",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    return parser.parse_args(argv)


def split_patterns(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wstest = args.venv / "bin" / "wstest"
    if not os.access(wstest, os.X_OK):
        print(
            f"{wstest} not found: run conformance/install_autobahn.sh {args.venv}",
            file=sys.stderr,
        )
        return 2
    cases = CI_CASES if args.ci else split_patterns(args.cases)

    with tempfile.TemporaryDirectory(prefix="autobahn-") as tmp:
        work = Path(tmp)
        outdir = args.report_dir.resolve() if args.report_dir else work / "reports"
        if outdir.exists() and any(outdir.iterdir()):
            if not (outdir / "index.json").exists():
                print(f"{outdir} is not empty and holds no earlier report", file=sys.stderr)
                return 2
            shutil.rmtree(outdir)  # an earlier report of this driver
        outdir.mkdir(parents=True, exist_ok=True)
        spec_path = work / "fuzzingserver.json"
        write_spec(spec_path, outdir, cases, split_patterns(args.exclude))
        log = work / "wstest.log"

        started = time.monotonic()
        runs: list[CaseRun] = []
        with fuzzingserver(wstest, spec_path, work, log) as port:
            count = case_count(port)
            print(f"wstest on {HOST}:{port}: {count} cases ({','.join(cases)})", flush=True)
            for number in range(1, count + 1):
                run = run_case(port, number, args.case_limit, not args.no_compress)
                runs.append(run)
                if run.outcome != "closed":
                    label = case_id(port, number)
                    print(
                        f"  [{number}/{count}] {label}: {run.outcome} after {run.seconds:.1f} s",
                        flush=True,
                    )
                elif args.verbose:
                    print(f"  [{number}/{count}] {run.seconds:.2f} s, {run.echoed} echoed")
                elif number % 50 == 0:
                    print(
                        f"  {number}/{count} cases, {time.monotonic() - started:.0f} s", flush=True
                    )
            cases_s = time.monotonic() - started
            control(port, f"/updateReports?agent={AGENT}", REPORT_LIMIT_S)
        total_s = time.monotonic() - started
        index = load_index(outdir)
        failed = summarise(index, outdir, count, runs, args.verbose)
        own = resource.getrusage(resource.RUSAGE_SELF)
        wstest_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(
            f"\nTime: {cases_s:.1f} s for the cases, {total_s:.1f} s with the reports; CPU: "
            f"driver+gluegun_actors {own.ru_utime + own.ru_stime:.1f} s, "
            f"wstest {wstest_cpu.ru_utime + wstest_cpu.ru_stime:.1f} s"
        )
        if args.report_dir:
            print(f"Reports: {outdir}/index.html")
        print(f"autobahn: {count - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
