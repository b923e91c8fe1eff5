"""Triton kernels and their plain-Python launchers (imported as ``fastadl.kernels.triton``).

Importing this package imports no Triton: each kernel module does, when it is imported.

One module per kernel family, each with private ``@triton.jit`` kernels, plain launchers and its
bytes read/written per call in the module docstring:
- ``weighted_sum``: Σ_k w_k · y_k over stacked branch outputs, and its backward (dy_k, dw_k).
- ``dwconv``: depthwise 3×3/5×5, dilation 1/2, optional fused input ReLU: forward, input grad,
  weight grad.
- ``edge_dwconv``: an edge's four first-stage ReLU → depthwise convs from one read of x, and its
  backward.
- ``pool``: 3×3 max + avg pool with their BatchNorm sums, and its backward.
- ``nhwc``: the channels-last tiling they share (and why channels-last); ``reduce``: the
  deterministic second stage of every reduction (no atomics anywhere).
"""
