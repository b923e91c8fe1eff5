"""Exported model (AOTInductor package) vs eager PyTorch: time per image, S model at 1024×2048.

    python benchmarks/bench_export.py                         # S, 1024x2048, fp32 (+ bf16 if the CPU has it)
    python benchmarks/bench_export.py --reps 5 --threads 2 --dtypes fp32
    python benchmarks/bench_export.py --checkpoint runs/train-S  # a trained network instead

Run by hand (minutes: each AOTI compile of the 12-cell S network takes a few, each eager
forward seconds); it is not part of the test suite and defines no pytest benchmark. The
network is the paper's genotype at F = 20 with 19 classes (Cityscapes) in eval mode, randomly
initialised unless --checkpoint is given (timing does not depend on the weights). "eager" is
what ``python -m fastadl.predict`` runs (the network as trained, BatchNorm unfolded);
"aoti" is the package ``python -m fastadl.export`` writes (BN folded, compiled), run through
``torch._inductor.aoti_load_package`` in this process. Variants are timed interleaved (each
repetition runs every variant once, in turn) and medians reported, because a shared machine
drifts; docs/PERFORMANCE.md has the recorded figures.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fastadl.deploy.exporter import CastingNetwork, write_aoti
from fastadl.deploy.inference import model_from_checkpoint
from fastadl.export import parse_size
from fastadl.nn.derived.autodeeplab import AutoDeepLab
from fastadl.nn.derived.fold_batchnorm import fold_batchnorm
from fastadl.space.genotype import PAPER_GENOTYPE

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def bf16_supported() -> bool:
    """Native bf16 on this CPU (AVX512-BF16 / AMX): without it bf16 is emulated, not faster."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def build_network(args: argparse.Namespace) -> torch.nn.Module:
    if args.checkpoint:
        return model_from_checkpoint(args.checkpoint, torch.device("cpu")).model.eval()
    torch.manual_seed(0)
    return AutoDeepLab.from_preset(args.model, PAPER_GENOTYPE, num_classes=19).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="S", choices=("S", "M", "L", "tiny"))
    p.add_argument("--checkpoint", help="time a trained network (run dir or .pt) instead")
    p.add_argument("--size", type=parse_size, default=(1024, 2048), metavar="HxW")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per variant")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--keep", help="folder to keep the packages in (default: a temporary one)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = [d for d in args.dtypes.split(",") if d]
    if "bf16" in dtypes and not bf16_supported():
        print("bf16: skipped, this CPU has no native bf16 (AVX512-BF16 / AMX)")
        dtypes.remove("bf16")

    base = build_network(args)
    x = torch.randn(1, 3, *args.size, generator=torch.Generator().manual_seed(0))
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_export_"))
    folder.mkdir(parents=True, exist_ok=True)
    variants: dict[str, torch.nn.Module] = {}
    with torch.no_grad():
        for dtype in dtypes:
            variants[f"eager {dtype}"] = CastingNetwork(copy.deepcopy(base), DTYPES[dtype]).eval()
            net = copy.deepcopy(base)
            fold_batchnorm(net)
            net = CastingNetwork(net, DTYPES[dtype]).eval()
            out = folder / f"{args.model}_{dtype}.pt2"
            start = time.perf_counter()
            write_aoti(net, x, out, {"fastadl.bench": "1"})
            print(f"aoti {dtype}: export + compile {time.perf_counter() - start:.0f} s -> {out}")
            variants[f"aoti {dtype}"] = torch._inductor.aoti_load_package(str(out))

        reference = variants[f"eager {dtypes[0]}"](x)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for name, fn in variants.items():  # warm-up, and agreement with the first eager run
            y = fn(x)
            same = (y.argmax(1) == reference.argmax(1)).float().mean().item()
            diff = (y - reference).abs().max().item()
            print(f"{name:>10}: max |logit - eager {dtypes[0]}| {diff:.2e}, same class {same:.2%}")
        for rep in range(args.reps):
            names = list(variants)
            names = names[rep % len(names) :] + names[: rep % len(names)]  # rotate the order
            for name in names:
                start = time.perf_counter()
                variants[name](x)
                times[name].append(time.perf_counter() - start)

    h, w = args.size
    print(
        f"\n{args.model} at {h}x{w}, batch 1, {torch.get_num_threads()} thread(s), "
        f"median of {args.reps} (interleaved), torch {torch.__version__}"
    )
    first = statistics.median(times[f"eager {dtypes[0]}"])
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:>10}: {med * 1e3:9.1f} ms/image   {first / med:5.2f}x vs eager {dtypes[0]}")


if __name__ == "__main__":
    main()
