#!/usr/bin/env bash
# Create .venv (once) and install Alpha Panda from the committed lock
# (requirements/py3XX.lock: every package pinned with its hashes, the local
# servers and test tools included), then the project itself, editable and
# without dependencies. Re-installs only when the lock or pyproject.toml
# changes. Refresh the lock with scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

pick_python() {
    for candidate in "${PYTHON:-}" python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        "$candidate" -c "" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)'; then
            echo "$candidate"; return 0
        fi
    done
    echo "alpha-panda needs Python 3.11 or 3.12 (bytewax 0.21.1 ships no wheels for newer)" >&2
    return 1
}

if [ ! -x .venv/bin/python ]; then
    py=$(pick_python)
    echo "==> creating .venv with $($py --version)" >&2
    "$py" -m venv .venv
fi

version=$(.venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
lock="requirements/py${version}.lock"
[ -f "$lock" ] || { echo "no lock for Python ${version}: $lock (run scripts/lock.sh)" >&2; exit 1; }

stamp=".venv/.installed"
want=$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing the locked dependencies ($lock) into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --require-hashes --no-deps -r "$lock" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
        --no-deps --no-build-isolation -e . >&2
    .venv/bin/python -m pip check >&2
    echo "$want" > "$stamp"
fi

# The project's own bytecode, written now: where PYTHONDONTWRITEBYTECODE is set (many images set it),
# Python would otherwise compile every module of an editable install on every start (60-90 ms a run).
.venv/bin/python -m compileall -q -j 0 schemas operators connectors dataflows alpha_panda >&2
