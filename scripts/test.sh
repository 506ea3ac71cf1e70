#!/usr/bin/env bash
# The project's checks: lint, types, tests (run from the repository root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin}
"$PY/ruff" check .
"$PY/ruff" format --check .
"$PY/mypy"
HF_HUB_OFFLINE=1 "$PY/pytest" "$@"
