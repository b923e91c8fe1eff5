"""The Triton backend's tests: seeded as the kernel tests are (tests/kernels/triton/conftest.py)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
