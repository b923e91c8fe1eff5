"""The whole search iteration (weight step on trainA + α/β step on trainB) per backend.

    python benchmarks/bench_search_step.py                         # anchor: F=8, L=12, B=5, 64² crops
    python benchmarks/bench_search_step.py --size 256 --reps 2     # 256² crops
    python benchmarks/bench_search_step.py --backends auto --recompute --compile
    pytest benchmarks/bench_search_step.py --benchmark-only        # one cell / one iteration groups

The iteration is the search's own: ``fastadl.search.architect.SearchIteration``, which the
search loop runs (FlatSGD weight step with gradient clip, then the Architect's Adam step on α
and β, the non-finite watch read at its end, the search's TF32 setting; the search's default
learning rates), on a SuperNet built like the search builds it. Each backend runs in a process
of its own (as a user's search does), and they are timed interleaved (every repetition runs each backend once,
in rotating order, one at a time) after one warm-up iteration each; the medians are reported
with their ratio to ``reference``, and each process's peak memory (peak RSS on CPU,
``torch.cuda.max_memory_allocated`` on CUDA), so one backend's high-water mark never hides
another's. docs/PERFORMANCE.md has the recorded figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from fastadl import SuperNet
from fastadl.search.architect import SearchIteration
from fastadl.search.config import SearchConfig

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Setting:
    size: int = 64
    layers: int = 12
    filter_multiplier: int = 8
    blocks: int = 5
    batch: int = 2
    classes: int = 19


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Iteration:
    """One backend's supernet, optimizers and fixed trainA/trainB batches; ``run()`` = one step."""

    def __init__(self, s: Setting, backend: str, device: str = DEVICE, recompute: bool = False,
                 compile: bool = False):  # fmt: skip
        torch.manual_seed(0)
        self.device = device
        self.model = SuperNet(
            s.classes, s.layers, s.filter_multiplier, s.blocks, backend=backend,
            recompute=recompute,
        ).to(device)  # fmt: skip
        # the search's builder: compile_regions with --compile, as the search decides it
        cfg = SearchConfig(compile=compile)
        iteration = SearchIteration(self.model, cfg, torch.device(device))
        gen = torch.Generator().manual_seed(1)
        shape = (s.batch, 3, s.size, s.size)
        self.xa = torch.randn(shape, generator=gen).to(device)
        self.xb = torch.randn(shape, generator=gen).to(device)
        self.ya = torch.randint(0, s.classes, (s.batch, s.size, s.size), generator=gen).to(device)
        self.yb = torch.randint(0, s.classes, (s.batch, s.size, s.size), generator=gen).to(device)
        self.step = iteration.closure(((self.xa, self.ya), (self.xb, self.yb)))

    def run(self) -> float:
        """One weight step + one α/β step + the watch read; returns its wall-clock seconds."""
        sync(self.device)
        t0 = time.perf_counter()
        self.step()
        sync(self.device)
        return time.perf_counter() - t0


class Worker:
    """One variant's Iteration in a process of its own, driven over a pipe.

    A user's search process runs one backend, so each variant is timed in one: in a shared
    process, one reference iteration (1.3 GB of tensors allocated and freed) left auto's later
    iterations 1.2-1.6x slower on this CPU, at one thread too (docs/PERFORMANCE.md). Only one
    worker computes at a time (the parent waits for each reply)."""

    def __init__(self, s: Setting, backend: str, recompute: bool, compile: bool, threads: int):
        args = [sys.executable, __file__, "--child-worker", backend, "--size", str(s.size),
                "--layers", str(s.layers), "--filter-multiplier", str(s.filter_multiplier),
                "--blocks", str(s.blocks), "--batch", str(s.batch), "--threads", str(threads)]  # fmt: skip
        args += ["--recompute"] * recompute + ["--compile"] * compile
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.build_s = self._ask(None)["build_s"]

    def _ask(self, command: str | None) -> dict:
        if command:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.proc.args[3]} exited ({self.proc.wait()})")
        return json.loads(line)

    def run(self) -> float:
        return self._ask("run")["s"]

    def close(self) -> dict:
        """Ends the worker; returns its peak memory (peak RSS, CUDA peak) over all its iterations."""
        mem = self._ask("memory")
        self.proc.stdin.close()
        self.proc.wait()
        return mem


def child_worker(s: Setting, backend: str, recompute: bool, compile: bool) -> None:
    """The worker's side: build, then answer "run" (one iteration's seconds) and "memory"."""
    t0 = time.perf_counter()
    it = Iteration(s, backend, recompute=recompute, compile=compile)
    print(json.dumps({"build_s": time.perf_counter() - t0}), flush=True)
    for command in sys.stdin:
        if command.strip() == "run":
            print(json.dumps({"s": it.run()}), flush=True)
        elif command.strip() == "memory":
            cuda = torch.cuda.max_memory_allocated() / 2**20 if DEVICE == "cuda" else None
            print(json.dumps({"peak_rss_mb": peak_rss_mb(), "cuda_peak_mb": cuda}), flush=True)


def interleaved(its: dict, reps: int) -> dict[str, list[float]]:
    """Every repetition runs each variant once, the order rotating, after one warm-up each."""
    names = list(its)
    first = {}
    for n in names:
        first[n] = its[n].run()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            times[n].append(its[n].run())
    return times | {f"{n}:first": [first[n]] for n in names}


def peak_rss_mb() -> float:
    """This process's peak resident set size. /proc's VmHWM where there is one: getrusage's
    ru_maxrss survives fork + exec, so a child would report its parent's peak at the fork."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default="reference,auto", help="comma-separated backends")
    p.add_argument("--size", type=int, default=64, help="crop side in pixels")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--filter-multiplier", type=int, default=8)
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--reps", type=int, default=3, help="timed iterations per backend")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--recompute", action="store_true", help="also time auto with recompute")
    p.add_argument("--compile", action="store_true", help="also time auto with --compile")
    p.add_argument("--child-worker", metavar="BACKEND", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    s = Setting(a.size, a.layers, a.filter_multiplier, a.blocks, a.batch)
    if a.child_worker:
        child_worker(s, a.child_worker, a.recompute, a.compile)
        return 0
    variants = {b: (b, False, False) for b in a.backends.split(",")}
    if a.recompute:
        variants["auto+recompute"] = ("auto", True, False)
    if a.compile:
        variants["auto+compile"] = ("auto", False, True)
    workers = {name: Worker(s, *v, a.threads) for name, v in variants.items()}
    times = interleaved(workers, a.reps)
    print(f"setting: {s}, device {DEVICE}, threads {a.threads or torch.get_num_threads()}, "
          f"reps {a.reps}, one process per variant")  # fmt: skip
    print("times:", {n: [round(t, 3) for t in ts] for n, ts in times.items()}, flush=True)
    ref = statistics.median(times["reference"]) if "reference" in times else None
    print(
        f"{'variant':<16} {'s/iter':>8} {'first':>8} {'vs ref':>8} {'peak MB':>9} {'compile s':>9}"
    )
    for name, (_, _, comp) in variants.items():
        med = statistics.median(times[name])
        mem = workers[name].close()
        peak = f"{mem['cuda_peak_mb'] or mem['peak_rss_mb']:.0f}"
        ratio = f"1/{ref / med:.1f}" if ref else ""
        first = times[f"{name}:first"][0]
        build = workers[name].build_s if comp else 0.0  # construction includes compiling
        print(f"{name:<16} {med:8.3f} {first:8.2f} {ratio:>8} {peak:>9} {build:9.1f}", flush=True)
    return 0


# ------------------------------------------------------------------ pytest-benchmark groups

SMALL = Setting(size=32, layers=4, filter_multiplier=4, blocks=5, batch=2)
BENCH_BACKENDS = ("reference", "fused", "auto")


@pytest.mark.parametrize("backend", BENCH_BACKENDS)
def test_search_iteration(benchmark, backend):
    benchmark.group = "search iteration (F=4, L=4, B=5, 32²)"
    it = Iteration(SMALL, backend)
    it.run()
    benchmark(it.run)


@pytest.mark.parametrize("backend", BENCH_BACKENDS)
def test_cell_forward_backward(benchmark, backend):
    """One trellis node's cell on 3 incoming paths at the paper's s8 level (2×16×41×41)."""
    from fastadl import SearchCell

    benchmark.group = "cell, 3 paths, forward + backward (C=16, 41², B=5)"
    torch.manual_seed(0)
    cell = SearchCell(16, 5, backend=backend).to(DEVICE).train()
    s0 = torch.randn(2, 16, 41, 41, device=DEVICE, requires_grad=True)
    s1 = [torch.randn(2, 16, 41, 41, device=DEVICE, requires_grad=True) for _ in range(3)]
    alpha = (1e-3 * torch.randn(20, 8, device=DEVICE)).requires_grad_()
    beta = torch.full((3,), 1 / 3, device=DEVICE, requires_grad=True)

    def step():
        out = cell.forward_paths(s0, s1, alpha.softmax(-1), beta)
        out.sum().backward()
        sync(DEVICE)

    step()
    benchmark(step)


if __name__ == "__main__":
    sys.exit(main())
