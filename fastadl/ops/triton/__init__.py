"""The `triton` backend: autograd functions over fastadl/kernels/triton (functions.py), the
mixed op built from them (backend.py) and `auto`'s per-device check (check.py)."""
