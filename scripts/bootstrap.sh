#!/usr/bin/env bash
# Create .venv (once) and install the project with the extras named in $1
# ("dev" by default). Re-installs only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"

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
    .venv/bin/python -m pip install --quiet --upgrade pip >&2
fi

stamp=".venv/.installed-${extras}"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> installing alpha-panda[${extras}] into .venv" >&2
    .venv/bin/python -m pip install --quiet -e ".[${extras}]" >&2
    echo "$want" > "$stamp"
fi
