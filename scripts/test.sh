#!/usr/bin/env bash
# The project's checks: lint, types, tests (run from the repository root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin}
"$PY/ruff" check .
"$PY/ruff" format --check .
"$PY/mypy"
# One worker per core, a test file per worker at a time (its module fixtures built once);
# MEDCITE_TEST_WORKERS=0 (or -n 0 in the arguments) runs in this process.
HF_HUB_OFFLINE=1 "$PY/pytest" -n "${MEDCITE_TEST_WORKERS:-auto}" --dist loadfile "$@"
