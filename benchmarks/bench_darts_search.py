"""DARTS' CIFAR-10 search iteration (α step + weight step) per MixedOp backend, side by side.

    python benchmarks/bench_darts_search.py [--batch-size 64] [--rounds 2] [--iters 2] [--threads N]
    python benchmarks/bench_darts_search.py --edges [--batch-size 64] [--reps 10]
    pytest benchmarks/bench_darts_search.py --benchmark-only

The network is examples/darts_search.py at DARTS' search settings: 8 cells, C = 16, batch 64 of
32×32 images, one first-order search iteration = an α step on one batch plus a weight step on
another. The script runs each backend in a fresh process (so that process's peak memory is that
backend's: peak RSS on CPU, torch.cuda.max_memory_allocated on CUDA), ``--rounds`` times in
rotating order so a drifting machine affects every backend alike; each process runs one untimed
warm-up iteration, then ``--iters`` timed ones. It prints the median wall and CPU seconds per
iteration, the speed-ups against `reference` and the peak memory. ``--edges`` instead times one edge's forward
+ backward, normal (stride 1) and reduction (stride 2), at the network's three resolutions,
`reference` and `fused` interleaved in one process. ``fused+recompute`` is the fused backend with
recompute=True. The pytest cases time the same iteration in-process (batch 16 on CPU, so the
suite stays short; 64 on CUDA). Recorded figures: docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from bench_mixed_op import interleaved_medians

from fastadl import MixedOp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from darts_search import (  # noqa: E402
    DartsSearchNetwork,
    make_optimizers,
    random_batch,
    search_iteration,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
VARIANTS = {  # label → DartsSearchNetwork keyword arguments
    "reference": dict(backend="reference"),
    "fused": dict(backend="fused"),
    "fused+recompute": dict(backend="fused", recompute=True),
    "triton": dict(backend="triton"),
    "auto": dict(backend="auto"),
}


def make_iteration(variant: str, batch_size: int, device: str = DEVICE, **net_kwargs):
    """A closure running one search iteration of a freshly seeded network."""
    torch.manual_seed(0)
    net = DartsSearchNetwork(**VARIANTS[variant], **net_kwargs).to(device)
    w_opt, a_opt = make_optimizers(net)
    train = random_batch(batch_size, device=device, seed=1)
    val = random_batch(batch_size, device=device, seed=2)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def iteration() -> None:
        search_iteration(net, w_opt, a_opt, train, val)
        sync()

    return iteration


EDGES = {  # label → (channels C, input side, stride) of the network's edges at DARTS' settings
    "normal C16 32x32": (16, 32, 1),
    "reduce C32 32->16": (32, 32, 2),
    "normal C32 16x16": (32, 16, 1),
    "reduce C64 16->8": (64, 16, 2),
    "normal C64 8x8": (64, 8, 1),
}


def edge_step(C: int, side: int, stride: int, batch: int, backend: str):
    """A closure running one edge's forward + backward (DARTS' mixing weights: softmax(1e-3 z))."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    op = MixedOp(C, stride, backend=backend).to(DEVICE).train()
    x = torch.randn(batch, C, side, side, generator=gen).to(DEVICE).requires_grad_()
    alpha = (1e-3 * torch.randn(8, generator=gen)).to(DEVICE).requires_grad_()
    out = -(-side // stride)
    g = torch.randn(batch, C, out, out, generator=gen).to(DEVICE)

    def step() -> None:
        op.zero_grad(set_to_none=True)
        x.grad = alpha.grad = None
        op(x, alpha.softmax(-1)).backward(g)

    return step


def edges_main(batch: int, reps: int) -> None:
    """Median ms per edge forward + backward, reference and fused taking turns."""
    print(f"{'edge':<20}{'reference':>12}{'fused':>12}   speed-up")
    for label, (C, side, stride) in EDGES.items():
        steps = {b: edge_step(C, side, stride, batch, b) for b in ("reference", "fused")}
        med = interleaved_medians(steps, reps)
        ratio = med["reference"] / med["fused"]
        print(
            f"{label:<20}{med['reference'] * 1e3:10.2f}ms{med['fused'] * 1e3:10.2f}ms   {ratio:.2f}x"
        )


def peak_memory_mb() -> float:
    """Peak memory of this process so far: CUDA allocator peak on CUDA, else peak RSS."""
    if DEVICE == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@pytest.mark.parametrize("variant", ["reference", "fused", "fused+recompute", "triton"])
def test_darts_search_iteration(benchmark, variant):
    if variant == "triton" and DEVICE != "cuda":
        pytest.skip("the triton backend is timed on CUDA only (CPU runs it interpreted)")
    benchmark.group = "DARTS search iteration (alpha step + weight step)"
    batch = 64 if DEVICE == "cuda" else 16
    benchmark.extra_info.update(batch=batch, threads=torch.get_num_threads())
    benchmark.pedantic(make_iteration(variant, batch), rounds=3, warmup_rounds=1)


def child(variant: str, batch_size: int, iters: int) -> dict:
    """One backend in this process: a warm-up iteration, then ``iters`` timed ones."""
    iteration = make_iteration(variant, batch_size)
    before = peak_memory_mb()
    iteration()  # warm-up: oneDNN primitive caches, Triton autotuning
    times, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        iteration()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return dict(times=times, cpu=cpu, peak_mb=peak_memory_mb(), before_mb=before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch (DARTS: 64)")
    parser.add_argument("--rounds", type=int, default=2, help="processes per backend, in turn")
    parser.add_argument("--iters", type=int, default=2, help="timed iterations per process")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--variants", default=None,
        help="comma-separated, of " + ", ".join(VARIANTS) + " (default: all that run here)",
    )  # fmt: skip
    parser.add_argument("--edges", action="store_true", help="time single edges instead")
    parser.add_argument("--reps", type=int, default=10, help="--edges: repetitions per edge")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args.batch_size, args.iters)))
        return 0
    if args.edges:
        print(f"device={DEVICE} threads={torch.get_num_threads()} batch={args.batch_size}")
        edges_main(args.batch_size, args.reps)
        return 0
    default = [v for v in VARIANTS if v != "auto" and (v != "triton" or DEVICE == "cuda")]
    variants = args.variants.split(",") if args.variants else default
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    print(
        f"device={DEVICE} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"batch={args.batch_size} rounds={args.rounds} iters={args.iters}",
        flush=True,
    )
    results: dict[str, list[dict]] = {v: [] for v in variants}
    cmd = [sys.executable, __file__, "--batch-size", str(args.batch_size)]
    cmd += ["--iters", str(args.iters), "--threads", str(torch.get_num_threads())]
    for r in range(args.rounds):
        for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
            out = subprocess.run([*cmd, "--child", v], capture_output=True, text=True, check=False)
            if out.returncode:
                print(f"{v}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                return 1
            results[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
            res = results[v][-1]
            print(f"round {r + 1} {v}: wall {res['times']} cpu {res['cpu']}", file=sys.stderr)

    def median(key: str) -> dict[str, float]:
        return {
            v: statistics.median(t for res in rs for t in res[key]) for v, rs in results.items()
        }

    # CPU seconds as well: on a shared machine a process that waits for a core gets a longer
    # wall time for the same work (with one thread, its CPU time is that work)
    wall, cpu = median("times"), median("cpu")
    mem = "peak CUDA memory" if DEVICE == "cuda" else "peak RSS"
    print(
        f"{'variant':<17}{'wall s/it':>10}{'cpu s/it':>10}{'vs reference (wall, cpu)':>27}{mem:>18}"
    )
    for v in variants:
        ratio = "-"
        if "reference" in wall:
            ratio = f"{wall['reference'] / wall[v]:.2f}x, {cpu['reference'] / cpu[v]:.2f}x"
        peak = max(res["peak_mb"] for res in results[v]) / 1024
        print(f"{v:<17}{wall[v]:>10.2f}{cpu[v]:>10.2f}{ratio:>27}{peak:>14.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
