"""Agreement checks: a workload under each fast backend against ``reference``, float32 and
bfloat16 autocast, outputs, every gradient (inputs, op weights, α, β) and the BatchNorm
running statistics the step leaves behind; and the search's own iteration (also under fp16
with GradScaler): both losses, every parameter's update and the BatchNorm statistics."""

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
    dtype: str  # "fp32" | "bf16" | "fp16"
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

    return compare_rows(label, lambda b, d: run_case(fresh(b), d, device), backends, dtypes)


def compare_rows(
    label: str,
    run: Callable[[str, str], tuple[list[str], list]],
    backends: Sequence[str],
    dtypes: Sequence[str],
) -> list[Row]:
    """Rows for ``run(backend, dtype)`` → (names, tensors), the first tensor the output, against
    ``run("reference", "fp32")``: float32 exactly (agreement.agree's float32 rule), a lower
    precision against the reference's own error in it (its bfloat16 rule)."""
    want = {d: run("reference", d) for d in {"fp32", *dtypes}}
    names = want["fp32"][0]
    rows = []
    for backend in backends:
        for dtype in dtypes:
            try:
                got_names, got = run(backend, dtype)
                if got_names != names:
                    raise RuntimeError(f"a different set of tensors: {got_names[:3]}…")
                low = want[dtype][1] if dtype != "fp32" else None
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


AMP_OF = {"fp32": "off", "bf16": "bf16", "fp16": "fp16"}


def iteration_tensors(iteration, batches, device: torch.device) -> tuple[list[str], list]:
    """(names, tensors) of a search iteration's two steps (fastadl/search/architect.py's
    SearchIteration) on ``batches``, all float32: the weight step's loss (the "output"), the
    α/β step's, each weight's change divided by the learning rate (−(clipped gradient + weight
    decay): O(1) values, so the float32 rule sees them at a gradient's scale), the gradient α
    and β were stepped with (weight decay included, read from Adam's first moment; their
    change itself, lr·sign(gradient) on a first step, would turn a rounding-sized difference
    in a near-zero gradient into a 2·lr one), then the BatchNorm buffers after the weight step.

    Both steps start from the same weights: the α/β step is taken at the weights before the
    weight step, not after it. After a weight step at the search's learning rate the α
    gradient is ill-conditioned in float32: over random roundings of one float64 network
    (L = 3, F = 4, 33×35) the float32 reference's α gradient was 0.8-2.5 % from float64's and
    the cell path's 0.1-4 % (docs/TESTING.md), so two correct float32 runs disagree far beyond
    the float32 rule there. Each step alone is a forward and backward at a fixed point."""
    model = iteration.model
    arch = {id(p) for p in iteration.arch_params}
    weights = [(n, p) for n, p in model.named_parameters() if id(p) not in arch]
    start = {k: v.clone() for k, v in model.state_dict().items()}
    (_, _), (xb, yb) = batches
    with exact_fp32() if device.type == "cuda" else contextlib.nullcontext():
        loss = iteration.run(batches, 0, iteration.w_lr, arch=False)["loss"]
        iteration.watch.check()
        deltas = [(p.detach().float() - start[n].float()) / iteration.w_lr for n, p in weights]
        buffers = [(n, b.detach().float().clone()) for n, b in model.named_buffers()]
        model.load_state_dict(start)  # in place: the optimizers keep their parameters
        arch_loss = iteration.architect.step(xb, yb, 1, iteration.accumulate, iteration.watch)
        iteration.watch.check()
    adam = iteration.architect.optimizer
    beta1 = adam.param_groups[0]["betas"][0]
    arch_named = [(n, p) for n, p in model.named_parameters() if id(p) in arch]
    # no state: an fp16 step the GradScaler skipped (inf gradients)
    arch_grads = [
        adam.state.get(p, {}).get("exp_avg", torch.zeros_like(p)).detach().float() / (1 - beta1)
        for _, p in arch_named
    ]
    names = ["weight-step loss", "α/β-step loss", *(f"Δ/lr {n}" for n, _ in weights)]
    names += [f"α/β-step gradient {n}" for n, _ in arch_named]
    names += [f"buffer {n}" for n, _ in buffers]
    tensors = [loss.detach().float(), arch_loss.detach().float()]
    tensors += deltas + arch_grads + [b for _, b in buffers]
    return names, tensors


def iteration_rows(
    label: str,
    make: Callable[[str, str], tuple[object, object]],
    backends: Sequence[str],
    dtypes: Sequence[str],
    device: torch.device,
) -> list[Row]:
    """Rows for one search iteration under each backend and dtype against the reference's in
    float32; make(backend, amp) → (SearchIteration, batches), every backend's from the same
    state. The iteration is built before exact_fp32 takes TF32 away for the run."""
    return compare_rows(
        label,
        lambda b, d: iteration_tensors(*make(b, AMP_OF[d]), device),
        backends,
        dtypes,
    )
