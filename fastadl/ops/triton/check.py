"""The `auto` backend's gate for Triton: a kernel smoke check, run once per device and cached.

Policy (**decision**, issue 10; the paper is silent): ``auto`` picks ``triton`` for a CUDA
tensor only on a device where the Triton kernels have run once and matched the reference, and
``fused`` everywhere else. The check runs the first time ``auto`` meets a CUDA device: one tiny
edge with all eight primitives through the triton backend (every kernel family: pools with
their BN sums, the fused first stage, depthwise convs, the weighted sum; forward and backward,
training mode) and the fused first stage for three edges at once, each against the reference
in float32 without TF32. It costs a few seconds the first time (Triton compiles the kernels,
then caches them on disk) and a dictionary lookup afterwards. If Triton is missing, cannot
compile for the GPU (e.g. a P100: Triton needs compute capability 7.0+), raises, or disagrees
with the reference, ``auto`` uses ``fused`` on that device and warns once, naming the reason and
``python -m fastadl.selfcheck``. An explicit ``backend="triton"`` is never second-guessed.

Verdicts are cached in memory per device and on disk per GPU model, torch, Triton and kernel
source (``~/.cache/fastadl/triton_verdicts.json``; ``$FASTADL_CACHE_DIR`` or
``$XDG_CACHE_HOME/fastadl`` move it): later processes skip the check, and a failure found by
``python -m fastadl.selfcheck`` (which also runs the paper's real shapes) stops ``auto`` from
picking triton in every later process too, until a self-check passes there again or the
kernels change. Deleting the file forgets every verdict.

Inside torch.compile tracing a check cannot run: ``auto`` then uses the cached verdict, or
``fused`` if the device has not been checked yet (call ``triton_verdict(device)`` before
compiling to let ``auto`` pick triton there).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fastadl.agreement import agree, exact_fp32, outputs_and_grads
from fastadl.cache import cache_root
from fastadl.ops.reference import OPS
from fastadl.space.primitives import PRIMITIVES


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""  # why not, in one line


_VERDICTS: dict[tuple[str, int], Verdict] = {}


def _key(device: torch.device) -> tuple[str, int]:
    index = device.index
    if index is None:
        index = torch.cuda.current_device() if device.type == "cuda" else 0
    return device.type, index


def verdicts_path() -> Path:
    """Where verdicts persist across processes (see the module docstring)."""
    return cache_root() / "triton_verdicts.json"


@functools.cache
def _kernel_sources_digest() -> str:
    import fastadl.kernels.triton as kernels

    digest = hashlib.sha256()
    for path in sorted(Path(kernels.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _identity(device: torch.device) -> str:
    """What a verdict is valid for: GPU model, capability, torch, Triton, kernel sources."""
    import triton

    name = torch.cuda.get_device_name(device)
    major, minor = torch.cuda.get_device_capability(device)
    return (
        f"{name} sm_{major}{minor} | torch {torch.__version__} | triton {triton.__version__} "
        f"| kernels {_kernel_sources_digest()}"
    )


def _read_stored(device: torch.device) -> Verdict | None:
    try:
        stored = json.loads(verdicts_path().read_text())[_identity(device)]
        return Verdict(bool(stored["ok"]), str(stored.get("reason", "")))
    except Exception:  # noqa: BLE001 - no file, no entry, unreadable, no triton: not known
        return None


def _store(device: torch.device, verdict: Verdict, source: str) -> None:
    """Best effort: a read-only or full home directory only costs the next process a check."""
    path = verdicts_path()
    try:
        stored = json.loads(path.read_text()) if path.exists() else {}
        entry = {"ok": verdict.ok, "reason": verdict.reason, "source": source}
        stored[_identity(device)] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(stored, indent=1) + "\n")
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001
        pass


def record_verdict(device: torch.device, verdict: Verdict, source: str = "") -> None:
    """Set what ``auto`` believes about Triton on ``device`` in this process and, for a CUDA
    device, in later ones (``source`` says who found it, e.g. the self-check)."""
    device = torch.device(device)
    _VERDICTS[_key(device)] = verdict
    if device.type == "cuda":
        _store(device, verdict, source)


def triton_verdict(device: torch.device) -> Verdict:
    """The cached verdict for ``device``; the first call per process reads the stored one or
    runs smoke_check (and warns when triton is ruled out)."""
    key = _key(torch.device(device))
    verdict = _VERDICTS.get(key)
    if verdict is not None:
        return verdict
    if torch.compiler.is_compiling():  # no kernels can run while tracing; decide later
        return Verdict(False, "not checked yet (first use was inside torch.compile)")
    device = torch.device(*key)
    verdict = _read_stored(device) if device.type == "cuda" else None
    if verdict is None:
        verdict = smoke_check(device)
        if device.type == "cuda":
            _store(device, verdict, "smoke check")
    _VERDICTS[key] = verdict
    if not verdict.ok:
        warnings.warn(
            f"fastadl: backend 'auto' uses 'fused' on {key[0]}:{key[1]}: the Triton kernels "
            f"failed a check there ({verdict.reason}); run `python -m fastadl.selfcheck "
            f"--device {key[0]}:{key[1]}` for details (verdicts are kept in {verdicts_path()})",
            RuntimeWarning,
            stacklevel=2,
        )
    return verdict


def smoke_check(device: torch.device) -> Verdict:
    """Run the Triton kernels once on ``device`` against the reference (not cached)."""
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), exact_fp32():
            torch.manual_seed(0)
            for name, check in (("edge", _edge_check), ("multi-edge first stage", _multi_check)):
                worst = check(device)
                if not worst.ok:
                    return Verdict(False, f"{name}: {worst.worst} off ({worst.detail})")
    except Exception as e:  # noqa: BLE001 - any failure means: do not pick triton here
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return Verdict(False, f"{type(e).__name__}: {first}"[:300])
    return Verdict(True)


def _edge_check(device: torch.device):
    from fastadl.ops.dispatch import reference_mixed_op
    from fastadl.ops.triton.backend import triton_mixed_op

    C, shape = 3, (2, 3, 5, 6)  # tiny: the check also runs interpreted in the CPU tests
    ref_ops = nn.ModuleList(OPS[p](C, False) for p in PRIMITIVES).to(device).train()
    tri_ops = copy.deepcopy(ref_ops)
    x = torch.randn(shape, device=device)
    alpha = torch.randn(len(PRIMITIVES), device=device)
    results = []
    for fn, ops in ((reference_mixed_op, ref_ops), (triton_mixed_op, tri_ops)):
        xg, ag = x.clone().requires_grad_(), alpha.clone().requires_grad_()
        wrt = [xg, ag, *ops.parameters()]
        run = outputs_and_grads(lambda: fn(xg, ag.softmax(0), ops, PRIMITIVES), wrt)  # noqa: B023
        results.append(run + [b.float() for b in ops.buffers()])
    names = ["output", "x", "alpha"] + [f"grad {n}" for n, _ in ref_ops.named_parameters()]
    names += [f"buffer {n}" for n, _ in ref_ops.named_buffers()]
    return agree(results[1], results[0], names)


def _multi_check(device: torch.device):
    from fastadl.ops.triton.functions import edge_dwconv_multi

    E, C, shape = 3, 3, (2, 3, 5, 6)
    x = torch.randn(shape, device=device)
    banks = [torch.randn(E, C, k * k, device=device) for k in (3, 5, 3, 5)]

    def reference(x, *banks):
        out = []
        for e in range(E):
            r = F.relu(x)
            for bank, (k, d) in zip(banks, ((3, 1), (5, 1), (3, 2), (5, 2)), strict=True):
                w = bank[e].view(C, 1, k, k)
                out.append(F.conv2d(r, w, padding=d * (k - 1) // 2, dilation=d, groups=C))
        return torch.stack(out).view(E, 4, *x.shape).permute(0, 1, 2, 4, 5, 3)

    def triton(x, *banks):
        return edge_dwconv_multi(x.permute(0, 2, 3, 1), *banks)

    results = []
    for fn in (reference, triton):
        xg = x.clone().requires_grad_()
        bg = [b.clone().requires_grad_() for b in banks]
        results.append(outputs_and_grads(lambda: fn(xg, *bg), [xg, *bg]))  # noqa: B023
    return agree(results[1], results[0], ["output", "x", "w_s3", "w_s5", "w_d3", "w_d5"])
