"""The cell-level fast path: one trellis node (its up to 3 paths) as one autograd node.
Entry: fast.py's ``fast_cell``; ``cpu/`` holds the C++ kernels' tensor wrappers."""
