"""Agreement checks: a workload under each fast backend against ``reference``, float32 and
bfloat16 autocast, outputs, every gradient (inputs, op weights, α, β) and the BatchNorm
running statistics the step leaves behind."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from fastadl.agreement import Agreement, agree, exact_fp32, outputs_and_grads
from fastadl.diagnostics.workloads import Case


@dataclass(frozen=True)
class Row:
    check: str  # e.g. "edge s4 2×8×81×81"
    backend: str
    dtype: str  # "fp32" | "bf16"
    status: str  # "PASS" | "FAIL" | "SKIP"
    worst: str = ""  # the worst tensor, or why skipped / what raised
    error: float | None = None  # normalised error, tolerance 1
    detail: str = ""


def run_case(case: Case, dtype: str, device: torch.device) -> tuple[list[str], list]:
    """(names, tensors): output and gradients of one forward + backward, then the buffers.

    bf16: autocast around the forward only, the backward outside it, as the search loop runs.
    """

    def forward():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            return case.forward()

    with exact_fp32() if device.type == "cuda" else contextlib.nullcontext():
        tensors = outputs_and_grads(forward, case.wrt())
    names, buffers = case.buffers()
    return case.names + names, tensors + buffers


def agreement_rows(
    label: str,
    make: Callable[[str, object], Case],
    backends: Sequence[str],
    dtypes: Sequence[str],
    device: torch.device,
    prepare: Callable[[Case], None] = lambda case: None,
) -> list[Row]:
    """Rows for ``make(backend, like)`` under each backend and dtype against the reference.

    make builds a Case for a backend; ``like`` is the reference's module (state to copy).
    prepare runs on every Case before its forward (e.g. eval mode). A backend that raises is
    a FAIL row naming the exception, so one broken backend never hides the others' results.
    """
    base = make("reference", None)
    prepare(base)
    state = {k: v.clone() for k, v in base.module.state_dict().items()}

    def fresh(backend: str) -> Case:
        case = make(backend, base.module)
        case.module.load_state_dict(state)
        prepare(case)
        return case

    want = {d: run_case(fresh("reference"), d, device) for d in {"fp32", *dtypes}}
    names = want["fp32"][0]
    rows = []
    for backend in backends:
        for dtype in dtypes:
            try:
                got_names, got = run_case(fresh(backend), dtype, device)
                if got_names != names:
                    raise RuntimeError(f"a different set of tensors: {got_names[:3]}…")
                low = want[dtype][1] if dtype == "bf16" else None
                result: Agreement = agree(got, want["fp32"][1], names, low)
            except Exception as e:  # noqa: BLE001 - a crash is this backend's FAIL, not ours
                first = (str(e).strip().splitlines() or [""])[0][:160]
                rows.append(
                    Row(label, backend, dtype, "FAIL", f"raised {type(e).__name__}", None, first)
                )
                continue
            status = "PASS" if result.ok else "FAIL"
            rows.append(
                Row(label, backend, dtype, status, result.worst, result.error, result.detail)
            )
    return rows
