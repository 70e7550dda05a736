import os
import sys
import tempfile

import pytest
import torch
from mmengine.registry import DefaultScope

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


@pytest.fixture(autouse=True)
def _keep_default_scope():
    """A Runner built in a test sets mmengine's process-wide default scope
    (mmdet's, mmseg's) and keeps it: later tests that build through
    spark_mm's registries would be sent to that library's. Scopes a test
    creates are dropped when it ends."""
    before = list(DefaultScope._instance_dict)
    yield
    for name in list(DefaultScope._instance_dict):
        if name not in before:
            del DefaultScope._instance_dict[name]
