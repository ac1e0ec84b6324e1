"""The documentation site builds with `mkdocs build --strict`, and its reference is whole.

Strict mode turns every warning into a failure: a page missing from the navigation, a
link or anchor that does not resolve, a cross-reference to an object that does not
exist, a docstring that mkdocstrings cannot parse. The site needs the `docs` extra
(`pip install -e '.[docs]'`); without mkdocs these tests are skipped.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

PUBLIC_MODULES = (
    "connection",
    "http",
    "websocket",
    "aio",
    "message",
    "events",
    "mailbox",
    "errors",
    "supervisor",
    "manager",
    "testing",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for this module's tests."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[docs]'")
    pytest.importorskip(
        "mkdocstrings_handlers.python",
        reason="mkdocstrings[python] is not installed: pip install -e '.[docs]'",
    )
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-6000:]}"
    return out


@pytest.mark.timeout(180)
def test_site_builds_strict_with_every_page(site: Path) -> None:
    for page in ("index.html", "getting-started/index.html", "architecture/index.html"):
        assert (site / page).is_file(), page
    for module in PUBLIC_MODULES:
        assert (site / "reference" / module / "index.html").is_file(), module


def _public_callables(module_name: str) -> list[str]:
    """The functions and classes a module exports: its `__all__`, else what it defines."""
    module = importlib.import_module(f"gluegun_actors.{module_name}")
    exported = getattr(module, "__all__", None)
    found = []
    for name, value in vars(module).items():
        if not (inspect.isfunction(value) or inspect.isclass(value)):
            continue
        if exported is None:
            if not name.startswith("_") and value.__module__ == module.__name__:
                found.append(name)
        elif name in exported:
            found.append(name)
    return found


@pytest.mark.timeout(180)
@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_reference_documents_every_public_function_and_class(site: Path, module_name: str) -> None:
    """Each public function or class has a docstring, so its reference entry is rendered
    (mkdocstrings leaves out objects without one)."""
    html = (site / "reference" / module_name / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="gluegun_actors\.([\w.]+)"', html))
    missing = [
        name for name in _public_callables(module_name) if f"{module_name}.{name}" not in anchors
    ]
    assert not missing, f"gluegun_actors.{module_name}: no reference entry for {missing}"


def test_docs_stand_alone() -> None:
    """The pages cite nothing outside the site, such as a contract file not in the repo."""
    for page in DOCS.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert "API.md" not in text, f"{page.relative_to(ROOT)} cites API.md"
