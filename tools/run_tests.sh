#!/usr/bin/env bash
# Set up whatever is missing (tools/setup_env.sh), then run the test suite.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k mask -x`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common/set_up.sh"
exec "$VENV/bin/python" -m pytest tests -q "$@"
