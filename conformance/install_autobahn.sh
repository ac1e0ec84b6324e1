#!/usr/bin/env bash
# Install the Autobahn|Testsuite (wstest) into a Python 2.7 virtualenv, from PyPI only.
#
# Usage: conformance/install_autobahn.sh [VENV_DIR]     (default: <repo>/.autobahn-venv)
#
# wstest is Python 2 only. The 2.7 interpreter comes from pyenv (or $AUTOBAHN_PY27);
# the venv is made by virtualenv<20.22 (the last line that can still create a 2.7 venv
# and carries its own pip/setuptools wheels for 2.7), installed into a throwaway Python 3
# venv that is removed afterwards. Running it again is a no-op when VENV_DIR/bin/wstest works.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV_DIR="${1:-$ROOT/.autobahn-venv}"
case "$VENV_DIR" in /*) ;; *) VENV_DIR="$PWD/$VENV_DIR" ;; esac

# autobahntestsuite 25.10.1 pins its direct dependencies (autobahn 0.10.9, Twisted 19.10,
# pyOpenSSL 19.1, cryptography 3.3.2, ...); the rest are pinned here to the last releases
# that install on 2.7, so that the set is the same on every machine.
PY2_PINS=(
  "autobahntestsuite==25.10.1"
  "autobahn==0.10.9" "Twisted==19.10.0" "txaio==2.1.0" "six==1.16.0"
  "pyOpenSSL==19.1.0" "cryptography==3.3.2" "cffi==1.15.1" "pycparser==2.21"
  "service-identity==18.1.0" "pyasn1==0.5.1" "pyasn1-modules==0.3.0" "idna==2.10"
  "ipaddress==1.0.23" "enum34==1.1.10" "attrs==21.4.0" "Automat==22.10.0"
  "constantly==15.1.0" "hyperlink==21.0.0" "incremental==16.10.1" "PyHamcrest==1.10.1"
  "zope.interface==4.6.0" "typing==3.10.0.0" "klein==17.10.0" "Werkzeug==1.0.1"
  "Jinja2==2.11.3" "MarkupSafe==1.1.1" "unittest2==1.1.0" "linecache2==1.0.0"
  "traceback2==1.4.0" "wsaccel==0.6.6" "ujson==2.0.3" "setuptools==44.0.0"
)

wstest_works() {
  [ -x "$VENV_DIR/bin/wstest" ] && "$VENV_DIR/bin/wstest" --help >/dev/null 2>&1
}

if wstest_works; then
  echo "autobahn: $VENV_DIR/bin/wstest already works; nothing to do"
  exit 0
fi

PY27="${AUTOBAHN_PY27:-}"
if [ -z "$PY27" ] && command -v pyenv >/dev/null 2>&1; then
  PY27="$(pyenv prefix 2.7.18 2>/dev/null || pyenv prefix 2.7 2>/dev/null || true)"
  [ -n "$PY27" ] && PY27="$PY27/bin/python"
fi
if [ -z "$PY27" ] && command -v python2.7 >/dev/null 2>&1; then
  PY27="$(command -v python2.7)"
fi
if [ -z "$PY27" ] || ! "$PY27" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
  echo "autobahn: no Python 2.7 found (pyenv 2.7.18, python2.7, or set AUTOBAHN_PY27)" >&2
  exit 2
fi

PY3="${AUTOBAHN_PY3:-python3}"
TOOLS="$(mktemp -d "${TMPDIR:-/tmp}/autobahn-tools.XXXXXX")"
trap 'rm -rf "$TOOLS"' EXIT

echo "autobahn: virtualenv<20.22 into a throwaway Python 3 venv"
"$PY3" -m venv "$TOOLS/venv"
"$TOOLS/venv/bin/pip" install -q 'virtualenv<20.22'

echo "autobahn: Python 2.7 venv at $VENV_DIR ($PY27)"
rm -rf "$VENV_DIR"
# --no-download / --no-periodic-update: use the pip/setuptools/wheel that virtualenv carries.
"$TOOLS/venv/bin/virtualenv" -q --no-download --no-periodic-update -p "$PY27" "$VENV_DIR"

echo "autobahn: pip install ${PY2_PINS[*]}"
"$VENV_DIR/bin/python" -m pip install -q --no-cache-dir "${PY2_PINS[@]}"

if ! wstest_works; then
  echo "autobahn: wstest was installed but does not run:" >&2
  "$VENV_DIR/bin/wstest" --help >&2 || true
  exit 1
fi
echo "autobahn: ready: $VENV_DIR/bin/wstest"
