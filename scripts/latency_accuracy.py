"""How well the latency model predicts: for N random genotypes of a model at one input size,
the predicted latency (fastadl.budget's table, summed) against the measured median of the
whole network, their relative errors and Kendall's τ (issue 25's acceptance; docs/BUDGET.md).

    python scripts/latency_accuracy.py --model tiny --size 256x256
    python scripts/latency_accuracy.py --model S --size 512x1024 --clock cpu

The table is built first (or read from the cache), then the networks are measured: each in
turn, or with --interleave one call of each per round. On a busy machine use --clock cpu (one
thread's CPU time: other processes' share of the cores does not count) and --interleave, and
say so beside the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

import torch

from fastadl.budget.measure import cost_table, measure_latency
from fastadl.budget.pieces import build_network, preset_config
from fastadl.budget.table import genotype_cost
from fastadl.budget.timing import (
    CLOCKS,
    REPEATS,
    device_name,
    interleaved_medians_ms,
    intra_op_threads,
    runnable,
    settled_heap,
)
from fastadl.space.random_genotype import random_genotype
from fastadl.study.stats import kendall_tau


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="tiny", help="preset: tiny, probe, S, M, L")
    p.add_argument("--size", default="256x256", type=parse_size, help="input HxW")
    p.add_argument("--genotypes", type=int, default=10, help="random genotypes (default 10)")
    p.add_argument("--seed", type=int, default=1, help="their seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", default="wall", choices=sorted(CLOCKS))
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument(
        "--interleave",
        action="store_true",
        help="time the networks in turn, one call each per round (--repeats rounds), so that "
        "a busy machine's changing load meets them alike",
    )
    args = p.parse_args(argv)
    cfg = preset_config(args.model)
    timing = dict(threads=args.threads, repeats=args.repeats, clock=args.clock)
    start = time.time()
    table = cost_table(cfg, args.size, "ms", **timing)
    print(f"table: {time.time() - start:.0f} s, context factors {table.context['context_factors']}")
    rng = random.Random(args.seed)
    B, L, F = cfg["blocks"], cfg["layers"], cfg["filter_multiplier"]
    genotypes = [random_genotype(rng, B, L, F) for _ in range(args.genotypes)]
    predicted = [genotype_cost(table, g) for g in genotypes]
    if args.interleave:
        device = torch.device("cpu")
        fns = [runnable(build_network(cfg, g), [(1, 3, *args.size)], device, torch.float32)
               for g in genotypes]  # fmt: skip
        with settled_heap(), intra_op_threads(args.threads), torch.inference_mode():
            measured = interleaved_medians_ms(fns, device, args.repeats, args.clock)
    else:
        nets = [build_network(cfg, g) for g in genotypes]
        measured = [measure_latency(net, args.size, **timing) for net in nets]
    rows = []
    for g, p_ms, m_ms in zip(genotypes, predicted, measured, strict=True):
        rows.append({"path": g.path, "predicted": p_ms, "measured": m_ms})
        err = 100 * (p_ms - m_ms) / m_ms
        print(f"{''.join(map(str, g.path))}  predicted {p_ms:9.2f} ms  measured "
              f"{m_ms:9.2f} ms  error {err:+6.1f} %", flush=True)  # fmt: skip
    errors = [100 * (r["predicted"] - r["measured"]) / r["measured"] for r in rows]
    tau = kendall_tau([r["predicted"] for r in rows], [r["measured"] for r in rows])
    worst = max(abs(e) for e in errors)
    print(f"{args.model} {args.size[0]}x{args.size[1]} on {device_name('cpu')}, torch "
          f"{torch.__version__}, {args.threads} thread(s), clock {args.clock}: worst error "
          f"{worst:.1f} %, Kendall tau {tau:.3f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "errors": errors, "tau": tau, "args": vars(args)}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
