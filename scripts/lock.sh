#!/usr/bin/env bash
# Refresh the committed locks (requirements/py3XX.lock): the whole dependency
# tree of alpha-panda[dev] plus its build backend, pinned with hashes, for
# Python 3.11 and 3.12 on Linux. Run after changing dependencies in
# pyproject.toml, then commit the locks; the README's two commands install
# only from them. uv resolves for both versions from any interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${TMPDIR:-/tmp}/alpha-panda-lock-tools"
[ -x "$tools/bin/uv" ] || { python3 -m venv "$tools" && "$tools/bin/pip" install --quiet "uv>=0.5"; }
for version in 3.11 3.12; do
    out="requirements/py${version/./}.lock"
    "$tools/bin/uv" pip compile pyproject.toml requirements/build.in \
        --extra dev --generate-hashes --python-version "$version" --python-platform x86_64-manylinux_2_36 \
        --index-url https://pypi.org/simple --no-header --quiet --output-file "$out" "$@"
    echo "wrote $out ($(grep -c '==' "$out") packages)"
done
