"""Suite-wide setup. Triton kernels run on CUDA when there is one, else through Triton's
interpreter: TRITON_INTERPRET must be set before any kernel module is imported (``@triton.jit``
reads it when it decorates), so it is set here, before pytest imports any test module."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
