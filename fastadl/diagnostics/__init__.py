"""Diagnostics shared by ``python -m fastadl.selfcheck`` and ``python -m fastadl.cost``:
timing (timing.py), the workloads both run per backend (workloads.py), the agreement checks
(checks.py), the cost model (flops.py, counting.py, gpus.py).

Nothing here imports Triton at import time, so the CLIs' ``--help`` stays free of it.
"""
