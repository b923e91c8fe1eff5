"""The self-check's run and report (``python -m fastadl.selfcheck``; plan in fastadl/selfcheck.py)."""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable

import torch
from tqdm import tqdm

from fastadl.diagnostics.checks import AMP_OF, Row, agreement_rows, iteration_rows
from fastadl.diagnostics.timing import interleaved_medians
from fastadl.diagnostics.workloads import (
    cell_case,
    edge_case,
    fwd_bwd_step,
    iteration_case,
    randomize_running_stats,
    search_iteration,
    supernet_case,
)

DTYPES = ("fp32", "bf16")
# the search iteration also under fp16 with GradScaler (--amp fp16); on the CPU too: torch's
# CPU autocast runs float16 (this torch: fastadl/runtime/precision.py's Precision)
ITERATION_DTYPES = ("fp32", "bf16", "fp16")


def triton_status(device: torch.device, quick: bool) -> tuple[bool, bool, str]:
    """(usable, interpreted, why not) for the triton backend on ``device``."""
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return False, False, f"Triton is not installed ({e})"
    if device.type == "cuda":
        return True, False, ""
    if not quick:
        return False, False, "needs CUDA; on CPU --quick runs it through Triton's interpreter"
    from triton import knobs

    if not knobs.runtime.interpret:
        return False, False, "set TRITON_INTERPRET=1 before fastadl.kernels.triton is imported"
    return True, True, ""


def _smoke_row(device: torch.device) -> list[Row]:
    from fastadl.ops.triton.check import smoke_check

    verdict = smoke_check(device)
    status = "PASS" if verdict.ok else "FAIL"
    return [Row("kernel smoke check (auto's gate)", "triton", "fp32", status, verdict.reason)]


def _eval_mode(case) -> None:
    case.module.eval()
    randomize_running_stats(case.module)


def agreement_tasks(device, plan, backends) -> list[tuple[str, Callable[[], list[Row]]]]:
    tasks = []
    for label, shape in plan.edges.items():
        make = functools.partial(edge_case, shape)
        tasks.append((f"edge {label}", make))
    C, blocks, size = plan.cell
    cell = f"cell C={C} B={blocks} {size[0]}×{C}×{size[1]}×{size[2]}"
    tasks.append((cell, functools.partial(cell_case, C, blocks, size)))
    net = f"supernet {plan.net.label()}"
    tasks.append((net, functools.partial(supernet_case, plan.net)))
    out = []
    for label, make in tasks:

        def run(label=label, make=make):
            return agreement_rows(
                label, lambda b, like: make(b, device, like), backends, DTYPES, device
            )

        out.append((label + " (train)", run))

    def run_eval():
        def make(b, like):
            return supernet_case(plan.net, b, device, like)

        return agreement_rows(net + " (eval)", make, backends, ("fp32",), device, _eval_mode)

    out.append((net + " (eval)", run_eval))

    def run_iteration():
        like = supernet_case(plan.net, "reference", device).module  # every backend's state
        return iteration_rows(
            f"search iteration {plan.net.label()}",
            lambda b, amp: iteration_case(plan.net, b, amp, device, like),
            backends,
            ITERATION_DTYPES,
            device,
        )

    out.append((f"search iteration {plan.net.label()}", run_iteration))
    return out


def timing_table(device, plan, backends, progress) -> list[tuple[str, dict[str, float], int]]:
    """[(workload, backend → median seconds, repetitions)] for an edge, a cell and the
    search's iteration in each of ITERATION_DTYPES."""
    C, blocks, size = plan.cell
    shape = plan.edges[plan.timed_edge]
    spec = plan.iteration
    edge_reps, cell_reps, iteration_reps = plan.reps
    workloads = [
        (
            f"edge fwd+bwd {plan.timed_edge}",
            lambda b: fwd_bwd_step(edge_case(shape, b, device), device),
            edge_reps,
        ),
        (
            f"cell fwd+bwd C={C} B={blocks} {size[0]}×{C}×{size[1]}×{size[2]}",
            lambda b: fwd_bwd_step(cell_case(C, blocks, size, b, device), device),
            cell_reps,
        ),
    ]
    for dtype in ITERATION_DTYPES:
        amp = AMP_OF[dtype]
        workloads.append((
            f"search iteration {dtype} {spec.label()}",
            lambda b, amp=amp: search_iteration(spec.build(b).to(device), spec, device, amp),
            iteration_reps,
        ))  # fmt: skip
    table = []
    bar = tqdm(workloads, desc="timing", disable=None if progress else True, leave=False)
    for label, make, reps in bar:
        bar.set_postfix_str(label[:40])
        steps = {b: make(b) for b in backends}
        table.append((label, interleaved_medians(steps, reps, warmup=1), reps))
    return table


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _fmt_error(row: Row) -> str:
    return "" if row.error is None else f"{row.error:.3g}"


def print_rows(rows: list[Row]) -> None:
    widths = (max(len(r.check) for r in rows), 9, 5, 6, 9)
    head = ("check", "backend", "dtype", "result", "error")
    print(
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
        + "  worst tensor (tolerance: error ≤ 1)"
    )
    for r in rows:
        cells = (r.check, r.backend, r.dtype, r.status, _fmt_error(r))
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        print(f"{line}  {r.worst}{'  ' + r.detail if r.detail else ''}")


def print_timing(table, backends) -> None:
    width = max(len(label) for label, _, _ in table)
    print(
        f"\n{'timing (median, interleaved)'.ljust(width)}" + "".join(f"{b:>22}" for b in backends)
    )
    for label, med, n in table:
        cells = []
        for b in backends:
            ratio = "" if b == "reference" else f" ({med['reference'] / med[b]:.2f}×)"
            cells.append(f"{med[b] * 1e3:.2f} ms{ratio}".rjust(22))
        print(label.ljust(width) + "".join(cells) + f"   ({n} reps)")


def triton_verdict_from(rows: list[Row]):
    """What the self-check's rows say about triton on this device (for ``auto``)."""
    from fastadl.ops.triton.check import Verdict

    bad = [r for r in rows if r.backend == "triton" and r.status == "FAIL"]
    if not bad:
        return Verdict(True)
    return Verdict(
        False, f"selfcheck: {bad[0].check} {bad[0].dtype}: {bad[0].worst} {bad[0].detail}".strip()
    )


def run_selfcheck(device: torch.device, plan, quick: bool, timing: bool, progress: bool) -> bool:
    from fastadl.ops.dispatch import auto_summary
    from fastadl.ops.triton.check import record_verdict

    usable, interpreted, why = triton_status(device, quick)
    fast = ["fused"] + (["triton"] if usable else [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(
        f"fastadl self-check: {device} ({name}), torch {torch.__version__}, threads={torch.get_num_threads()}"
    )
    print(
        f"backends: reference (ground truth), {', '.join(fast)}"
        + (" (interpreted)" if interpreted else "")
    )
    rows: list[Row] = []
    if not usable:
        rows.append(Row("all checks", "triton", "-", "SKIP", why))
    tasks = agreement_tasks(device, plan, fast)
    if usable and device.type == "cuda":
        tasks.insert(0, ("kernel smoke check", lambda: _smoke_row(device)))
    bar = tqdm(tasks, desc="checks", disable=None if progress else True, leave=False)
    for label, task in bar:
        bar.set_postfix_str(label[:40])
        rows.extend(task())
    print()
    print_rows(rows)

    broken = {r.backend for r in rows if r.status == "FAIL"}  # a wrong backend is not timed
    timed = [b for b in ("reference", *fast) if not (b == "triton" and interpreted)]
    timed = [b for b in timed if b == "reference" or b not in broken]
    if timing:
        table = timing_table(device, plan, timed, progress)
        print_timing(table, timed)
        if interpreted:
            print("(triton is not timed under the interpreter)")

    failed = [r for r in rows if r.status == "FAIL"]
    verdict = triton_verdict_from(rows)
    if usable and device.type == "cuda":
        record_verdict(device, verdict, f"python -m fastadl.selfcheck (pid {os.getpid()})")
    print(f"\nauto on {device}: {auto_summary(device)}")
    print(
        "search iteration: the search's own (fastadl/search/architect.py's SearchIteration: "
        "FlatSGD weight step, Architect α/β step, GradScaler under fp16, TF32 in cuDNN "
        "convolutions only), in fp32, bf16 and fp16"
    )
    if not verdict.ok and device.type == "cuda":
        print("triton FAILED here: auto will not pick it on this device (recorded for later runs)")
    checked = sum(r.status != "SKIP" for r in rows)
    if failed:
        print(f"FAIL: {len(failed)} of {checked} checks failed")
        return False
    print(f"PASS: {checked} checks")
    return True
