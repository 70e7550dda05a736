import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import spark_mm  # noqa: E402,F401  (registers everything)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
