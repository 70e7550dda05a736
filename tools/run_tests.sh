#!/usr/bin/env bash
# Set up whatever is missing (tools/setup_env.sh), then run the test suite.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k mask -x`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARK_MM_VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export SPARK_MM_VENV="$VENV"
cd "$ROOT"
bash tools/setup_env.sh
exec "$VENV/bin/python" -m pytest tests -q "$@"
