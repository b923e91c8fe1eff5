"""Compiled code only, each family with its launchers: ``triton/`` (Triton kernels) and
``cpu/`` (C++ kernels built at first use). No nn.Module, no autograd; importing this package
imports neither Triton nor a compiler."""
