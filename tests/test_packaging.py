"""The distributions: what the wheel and the sdist carry and declare, and an editable
install that static tools in another project can follow.

The sdist and the wheel are built once per module with `python -m build` (the wheel
from the sdist, as an installer would). Building and installing fetch the build backend
from the package index, as `pip install -e .` does.
"""

from __future__ import annotations

import email.message
import email.parser
import subprocess
import sys
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import gluegun_actors

ROOT = Path(__file__).resolve().parent.parent
VERSION = gluegun_actors.__version__
BUILD_TIMEOUT = 50
"""Seconds a build or an install may take (pytest-timeout stops a test at 60)."""

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Dists:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dists]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT,
    )
    yield Dists(
        wheel=out / f"gluegun_actors-{VERSION}-py3-none-any.whl",
        sdist=out / f"gluegun_actors-{VERSION}.tar.gz",
    )


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"gluegun_actors-{VERSION}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text)


def test_wheel_carries_the_package_its_type_marker_and_the_testing_servers(
    dists: Dists,
) -> None:
    with zipfile.ZipFile(dists.wheel) as archive:
        names = set(archive.namelist())
    for name in (
        "gluegun_actors/__init__.py",
        "gluegun_actors/py.typed",
        "gluegun_actors/testing/__init__.py",
        "gluegun_actors/testing/_embedded.py",
        f"gluegun_actors-{VERSION}.dist-info/licenses/LICENSE",
    ):
        assert name in names
    package_files = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "gluegun_actors").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert package_files <= names, "every module of the package is in the wheel"
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"gluegun_actors", f"gluegun_actors-{VERSION}.dist-info"}


def test_wheel_declares_mit_python_3_11_to_3_13_and_the_extras(dists: Dists) -> None:
    metadata = _wheel_metadata(dists.wheel)
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Requires-Python"] == ">=3.11"
    classifiers = metadata.get_all("Classifier") or []
    for minor in (11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Typing :: Typed" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")], "the SPDX field says it"
    assert {"test", "docs", "bench", "release", "speedups"} <= set(
        metadata.get_all("Provides-Extra") or []
    )
    core = sorted(
        requirement.split(">", 1)[0].split("<", 1)[0]
        for requirement in metadata.get_all("Requires-Dist") or []
        if "extra ==" not in requirement
    )
    assert core == ["h11", "pykka", "wsproto"], "anything else goes in an extra"


def test_sdist_carries_the_docs_examples_tests_and_license(dists: Dists) -> None:
    prefix = f"gluegun_actors-{VERSION}/"
    with tarfile.open(dists.sdist) as archive:
        names = {name.removeprefix(prefix) for name in archive.getnames()}
    for name in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "PKG-INFO"):
        assert name in names
    wanted = [
        path.relative_to(ROOT).as_posix()
        for folder in ("gluegun_actors", "docs", "examples", "tests")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".md") and "__pycache__" not in path.parts
    ]
    missing = [name for name in wanted if name not in names]
    assert not missing, f"not in the sdist: {missing}"
    hidden = {name for name in names if "__pycache__" in name or name.startswith(".")}
    assert hidden <= {".gitignore"}, "no caches, virtual environments or VCS files"


def test_editable_install_is_visible_to_mypy_in_another_project(tmp_path: Path) -> None:
    """`pip install -e .` as the README says; then mypy, run from a project of its own
    against that environment, type-checks code that uses gluegun_actors."""
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-e", str(ROOT)],
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT,
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "mypy.ini").write_text("[mypy]\nstrict = True\n")
    (project / "good.py").write_text(
        "from gluegun_actors import connection\n"
        "\n"
        "conn: connection.Connection = connection.open('localhost', 8080)\n"
        "protocol: connection.Protocol = connection.await_up(conn, 5000)\n"
    )
    (project / "bad.py").write_text(
        "from gluegun_actors import connection\n\nconn = connection.open('localhost', '8080')\n"
    )

    def mypy(file: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--python-executable", str(python), file],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )

    good = mypy("good.py")
    assert good.returncode == 0, good.stdout
    bad = mypy("bad.py")
    assert bad.returncode == 1, bad.stdout
    assert 'bad.py:3: error: Argument 2 to "open" has incompatible type "str"' in bad.stdout
