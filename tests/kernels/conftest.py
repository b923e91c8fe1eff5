"""Kernel tests: on CUDA when there is one, else on CPU through Triton's interpreter.

TRITON_INTERPRET must be set before any kernel module is imported (``@triton.jit`` reads it when
it decorates), so it is set here, before pytest imports the test modules of this folder.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
