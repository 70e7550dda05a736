# Sourced by tools/quickstart.sh and tools/run_tests.sh: resolve the venv
# (SPARK_MM_VENV, default <repo>/.venv; a relative path is taken from the
# caller's folder), enter the repository and set up whatever is missing.
# Leaves VENV set to the venv's absolute path.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${SPARK_MM_VENV:-$ROOT/.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export SPARK_MM_VENV="$VENV"
cd "$ROOT"
bash tools/setup_env.sh
