"""Kernel tests: on CUDA when there is one, else on CPU through Triton's interpreter
(TRITON_INTERPRET is set by tests/conftest.py)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
