"""Suite-wide setup. Triton kernels run on CUDA when there is one, else through Triton's
interpreter: TRITON_INTERPRET must be set before any kernel module is imported (``@triton.jit``
reads it when it decorates), so it is set here, before pytest imports any test module. Under
the interpreter every launch is then bounds-checked (fastadl/kernels/triton/bounds_check.py)."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fastadl.ops.cell.small_work import torch_threads  # noqa: E402  (imports the kernels: after the above)

if os.environ.get("TRITON_INTERPRET") == "1":
    # every interpreted launch of the suite is bounds-checked: an access outside its tensors
    # raises instead of corrupting the heap (fastadl/kernels/triton/bounds_check.py)
    from fastadl.kernels.triton import bounds_check  # noqa: E402

    bounds_check.install()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread while a module runs: on a busy 2-core machine, OpenMP threads that wait
    on each other make small training steps several times slower."""
    with torch_threads(1):
        yield
