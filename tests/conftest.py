import os
import sys
import tempfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# Subprocesses (`python tools/train.py`, tools/dist_train.sh) must use the
# interpreter running the tests, also when its venv is not activated.
os.environ['PATH'] = os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH']
# The fast path's tuner caches its choices per machine; tests (and the tools
# they start) keep theirs apart from the user's cache.
os.environ.setdefault('SPARK_MM_TUNING_CACHE',
                      tempfile.mkdtemp(prefix='spark_mm_tuning_'))

import spark_mm  # noqa: E402,F401  (registers everything)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
