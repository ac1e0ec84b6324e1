"""Pytest plugin: run Pykka's own test suite against `PooledActor`.

Loaded by `run.py` (``-p pooled_runtime``) into a pytest session whose rootdir holds the
``tests/`` package of Pykka's sdist; it is not part of this project's own test run.

Pykka's ``tests/conftest.py`` parametrises a session fixture, ``runtime``, over its
runtimes (actor class, event class, future class, sleep function). This plugin replaces
that parametrisation with the runtimes chosen by ``--pykka-runtime``:

``pooled``
    A `PooledActor` subclass on a fresh two-worker `Scheduler` with its defaults (direct
    handoff on); `pykka.ThreadingFuture`, `threading.Event` and `time.sleep`.
``pooled-nohandoff``
    The same on a scheduler made with ``handoff=False``: every turn runs on a worker.
``threading``
    Pykka's own threading runtime, for comparison.

Tests that do not use ``runtime`` never touch an actor runtime (envelopes, messages,
`ThreadingActor`'s own threads); they are left out and counted in the report. Tests that
cannot apply to the ``pooled`` runtime by design are deselected by `DESELECTED`, each with
its reason; a deselection that names no collected test fails the run.

A pooled turn may run in the test's own thread (handoff), where pytest-timeout's exception
can be caught as an actor's `BaseException`; so a test that passes only after its timeout
counts as failed.
"""

from __future__ import annotations

import json
import threading
import time
import unittest.mock
from collections import Counter
from collections.abc import Generator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pykka
import pytest

from gluegun_actors._runtime.pool import PooledActor, Scheduler

RUNTIMES = ("pooled", "pooled-nohandoff", "threading")
DEFAULT_RUNTIMES = ["pooled", "pooled-nohandoff"]

POOLED_WORKERS = 2
"""Workers of the pooled runtimes' schedulers: CI's core count, and a fixed number so a
run does not depend on the machine's."""

_HANDOFF_BLOCKS = (
    "its handler waits for an event the test sets after tell(); with handoff the tell runs "
    "that turn in the test's thread, which then waits for itself (runs on pooled-nohandoff)"
)

DESELECTED: dict[str, str] = {
    "tests/test_actor.py::test_messages_left_in_queue_after_actor_stops_receive_an_error": (
        _HANDOFF_BLOCKS
    ),
    "tests/test_actor.py::test_stop_requests_left_in_queue_after_actor_stops_are_handled": (
        _HANDOFF_BLOCKS
    ),
}
"""Pykka tests (node id without parameters) not run on the ``pooled`` runtime, with why."""


class PykkaContractActor(PooledActor):
    """The ``pooled`` runtime's actor class: Pykka's tests subclass it."""

    scheduler = Scheduler(POOLED_WORKERS, name="pykka-pooled")


class PykkaContractQueuedActor(PooledActor):
    """The ``pooled-nohandoff`` runtime's actor class."""

    scheduler = Scheduler(POOLED_WORKERS, name="pykka-queued", handoff=False)


_ACTOR_CLASSES: dict[str, type[pykka.Actor]] = {
    "pooled": PykkaContractActor,
    "pooled-nohandoff": PykkaContractQueuedActor,
    "threading": pykka.ThreadingActor,
}


def _runtime(name: str) -> Any:
    from tests.types import Runtime  # Pykka's, importable once its rootdir is on sys.path

    return Runtime(
        name=name,
        actor_class=_ACTOR_CLASSES[name],
        event_class=threading.Event,
        future_class=pykka.ThreadingFuture,
        sleep_func=time.sleep,
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pykka-contract", "Pykka's test suite on gluegun's runtimes")
    group.addoption(
        "--pykka-runtime",
        action="append",
        choices=RUNTIMES,
        help="run Pykka's runtime-parametrised tests on this runtime (repeatable; "
        f"default: {' and '.join(DEFAULT_RUNTIMES)})",
    )
    group.addoption(
        "--pykka-report",
        metavar="PATH",
        help="write per-runtime outcome counts and failures to PATH as JSON",
    )


def _selected(config: pytest.Config) -> list[str]:
    chosen: list[str] = config.getoption("pykka_runtime") or DEFAULT_RUNTIMES
    return [name for name in RUNTIMES if name in chosen]


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``runtime`` with our runtimes before Pykka's fixture params apply.

    A ``parametrize`` mark on the test takes precedence over the fixture's own params.
    """
    if "runtime" not in metafunc.fixturenames:
        return
    params = [pytest.param(_runtime(name), id=name) for name in _selected(metafunc.config)]
    metafunc.definition.add_marker(
        pytest.mark.parametrize("runtime", params, indirect=True, scope="session")
    )


def _runtime_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None or "runtime" not in callspec.params:
        return None
    name: str = callspec.params["runtime"].name
    return name


def _base(item: pytest.Item) -> str:
    """The node id without its parameters."""
    return item.nodeid.split("[", 1)[0]


class _Tally:
    """Outcome counts per runtime, written to ``--pykka-report``."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.runtimes: dict[str, Counter[str]] = {}
        self.failures: list[str] = []
        self.deselected: list[str] = []
        self.independent = 0
        self.stale: list[str] = []
        self._runtime_of: dict[str, str] = {}
        self._outcome: dict[str, str] = {}
        self._collected: set[str] = set()  # node ids without parameters, -k or not

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self._collected.update(_base(item) for item in items)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        keep: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            runtime = _runtime_of(item)
            base = _base(item)
            if runtime is None:
                self.independent += 1
                dropped.append(item)
            elif runtime == "pooled" and base in DESELECTED:
                self.deselected.append(item.nodeid)
                dropped.append(item)
            else:
                self._runtime_of[item.nodeid] = runtime
                keep.append(item)
        # After -k and --deselect (they report to pytest_deselected): a deselection that
        # names no test of a collected file is stale.
        self._collected.update(_base(item) for item in items)
        if "pooled" in _selected(config):
            files = {base.split("::", 1)[0] for base in self._collected}
            self.stale = sorted(
                base
                for base in DESELECTED
                if base.split("::", 1)[0] in files and base not in self._collected
            )
        for runtime in _selected(config):
            self.runtimes[runtime] = Counter(
                deselected=len(self.deselected) if runtime == "pooled" else 0
            )
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self._runtime_of:
            return
        if report.failed:
            self._outcome[report.nodeid] = "error" if report.when != "call" else "failed"
        elif report.skipped and report.nodeid not in self._outcome:
            self._outcome[report.nodeid] = "skipped"
        elif report.when == "call" and report.passed:
            self._outcome.setdefault(report.nodeid, "passed")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for nodeid, outcome in self._outcome.items():
            self.runtimes[self._runtime_of[nodeid]][outcome] += 1
            if outcome in ("failed", "error"):
                self.failures.append(nodeid)
        if self.stale:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.path:
            Path(self.path).write_text(
                json.dumps(
                    {
                        "runtimes": {k: dict(v) for k, v in self.runtimes.items()},
                        "failures": sorted(self.failures),
                        "deselected": {i: DESELECTED[i.split("[", 1)[0]] for i in self.deselected},
                        "runtime_independent": self.independent,
                        "stale_deselections": self.stale,
                    },
                    indent=2,
                )
            )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        terminalreporter.section("pykka contract")
        for runtime, counts in self.runtimes.items():
            text = ", ".join(f"{counts[k]} {k}" for k in sorted(counts) if counts[k])
            write(f"{runtime}: {text or 'nothing run'}")
        for nodeid in self.deselected:
            write(f"deselected {nodeid}: {DESELECTED[nodeid.split('[', 1)[0]]}")
        write(f"{self.independent} runtime-independent tests not run")
        for base in self.stale:
            write(f"STALE deselection (no such pooled test): {base}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A test that passed only at its timeout hung: a turn swallowed the timeout.

    pytest-timeout's clock starts with the setup, so the call may end a little short of it;
    none of Pykka's tests takes a tenth of the timeout.
    """
    report: pytest.TestReport = yield
    limit = item.config.getoption("timeout", None)
    hung = bool(limit) and call.duration >= 0.9 * float(limit)
    if report.when == "call" and report.passed and hung:
        report.outcome = "failed"
        report.longrepr = (
            f"passed only after {call.duration:.1f}s, at its {limit}s timeout: it hung, "
            "and an actor's turn in the test's thread caught pytest-timeout's exception"
        )
    return report


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Tally(config.getoption("pykka_report")), "pykka-tally")


class _Mocker:
    """The part of pytest-mock's ``mocker`` Pykka's tests use, if pytest-mock is absent."""

    Mock = unittest.mock.Mock
    MagicMock = unittest.mock.MagicMock
    NonCallableMock = unittest.mock.NonCallableMock

    def __init__(self) -> None:
        self._patchers: list[Any] = []
        self.patch = SimpleNamespace(object=self._patch_object)

    def _patch_object(self, target: Any, attribute: str, *args: Any, **kwargs: Any) -> Any:
        patcher = unittest.mock.patch.object(target, attribute, *args, **kwargs)
        self._patchers.append(patcher)
        return patcher.start()

    def stopall(self) -> None:
        while self._patchers:
            self._patchers.pop().stop()


try:
    import pytest_mock  # noqa: F401  (its plugin provides ``mocker``)
except ImportError:

    @pytest.fixture
    def mocker() -> Iterator[_Mocker]:
        shim = _Mocker()
        yield shim
        shim.stopall()
