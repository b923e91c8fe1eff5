"""The functional mixed op: Σ_k w_k · op_k(x), dispatched to a backend.

Backends share one semantics (docs/ARCHITECTURE.md "Mixed-op backends"); ``reference`` is
the literal sum over the reference op modules and is never removed. ``fused`` is
fastadl/ops/edge/fused.py, ``triton`` fastadl/ops/triton/backend.py (imported only when used, so
``import fastadl`` never imports Triton). ``auto`` picks triton for a CUDA tensor on a device
where the Triton kernels passed their smoke check (fastadl/ops/triton/check.py: run once per
device, cached), fused otherwise.

That is what a lone edge runs. A search cell (SearchCell, SuperNet) whose edges are ``auto`` or
``fused`` runs the cell-level path instead, on every device (fastadl/ops/cell/fast.py), so
Triton never runs in a search: on a CPU the path's calls take the C++ kernels, on CUDA their
ATen twins (``auto_summary`` says which, for the self-check's report and the search's help).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

BACKENDS: tuple[str, ...] = ("reference", "fused", "triton", "auto")


def reference_mixed_op(
    x: torch.Tensor, weights: torch.Tensor, ops: Sequence[nn.Module], primitives: Sequence[str]
) -> torch.Tensor:
    """x: (N, C, H, W); weights: (K,) mixing weights in ``primitives`` order → (N, C, H, W).

    `none` is skipped: its weight only matters through the softmax that produced ``weights``.
    At stride 2 the output is (N, C, ceil(H/2), ceil(W/2)) (fastadl/ops/reference.py).
    """
    out = None
    for w, op, name in zip(weights, ops, primitives, strict=True):
        if name == "none":
            continue
        y = w * op(x)
        out = y if out is None else out + y
    if out is None:  # every candidate is `none`: zeros of the output's shape
        out = ops[0](x)
    return out


def check_backend(backend: str) -> str:
    """Return ``backend`` if it names a backend, else raise a ValueError listing them."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown mixed-op backend {backend!r}; choose one of {BACKENDS}")
    return backend


def auto_backend(device: torch.device) -> str:
    """What ``auto`` means on ``device``: triton on a CUDA device whose cached Triton smoke check
    passed (the first call per device runs it), fused everywhere else."""
    if device.type != "cuda":
        return "fused"
    from fastadl.ops.triton.check import triton_verdict

    return "triton" if triton_verdict(device).ok else "fused"


def cell_path_ops(device: torch.device) -> str:
    """What the cell-level path's calls run on ``device``: "C++ kernels" where
    fastadl/kernels/cpu serves it (a CPU, the library built), "ATen ops" elsewhere (CUDA)."""
    from fastadl.kernels.cpu import serves

    return "C++ kernels" if serves(device) else "ATen ops"


def auto_summary(device: torch.device, edge_backend: str | None = None) -> str:
    """One line: what ``auto`` runs on ``device`` in a search cell and in a lone edge
    (``edge_backend``, or auto_backend(device), which on CUDA runs the Triton check once)."""
    from fastadl.ops.cell.fast import CELL_BACKENDS

    assert "auto" in CELL_BACKENDS  # the sentence below says so
    edge = edge_backend or auto_backend(device)
    return (
        f"search cells: the cell-level path on {cell_path_ops(device)}; "
        f"a lone MixedOp (or an edge outside that path): {edge}"
    )


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """The concrete backend ``backend`` means for a tensor on x's device (auto → auto_backend)."""
    if check_backend(backend) == "auto":
        return auto_backend(x.device)
    return backend


def mixed_op(
    x: torch.Tensor,
    weights: torch.Tensor,
    ops: Sequence[nn.Module],
    primitives: Sequence[str],
    backend: str = "auto",
    recompute: bool = False,
    stride: int = 1,
) -> torch.Tensor:
    """Dispatch the mixed op to ``backend`` (one of BACKENDS). Shapes as reference_mixed_op.

    recompute: the fused backend keeps only the edge's inputs for backward and recomputes its
    intermediates there (other backends ignore it).
    stride: the ops' stride (the ops were built with it). The Triton kernels are stride-1 only,
    so a stride-2 edge runs ``fused`` (on the same device) when ``triton`` is asked for.
    """
    backend = resolve_backend(backend, x)
    if backend == "triton" and stride != 1:
        backend = "fused"
    if backend == "fused":
        from fastadl.ops.edge.fused import fused_mixed_op

        out = fused_mixed_op(x, weights, ops, primitives, recompute=recompute)
        if out is not None:
            return out
    elif backend == "triton":
        from fastadl.ops.triton.backend import triton_mixed_op

        return triton_mixed_op(x, weights, ops, primitives)
    return reference_mixed_op(x, weights, ops, primitives)
