"""``python -m fastadl.cost --genotype G --size HxW``: a derived network's predicted latency,
multiply-adds and parameters (and, with --measure, its measured latency), from the tables of
its pieces (docs/BUDGET.md). fastadl/cost.py hands over to ``main`` when --genotype is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from fastadl.budget.measure import RUNTIMES, cost_table, measure_latency
from fastadl.budget.pieces import build_network, preset_config
from fastadl.budget.table import genotype_cost
from fastadl.budget.timing import CLOCKS, REPEATS, device_name
from fastadl.nn.derived.autodeeplab import PRESETS
from fastadl.runtime.cli import USER_ERRORS, command_parser, fail
from fastadl.runtime.distributed import resolve_device
from fastadl.space.genotype import Genotype, GenotypeError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' → (H, W), both >= 1."""
    h, sep, w = text.lower().partition("x")
    try:
        size = (int(h), int(w))
    except ValueError:
        size = None
    if not sep or size is None or min(size) < 1:
        raise argparse.ArgumentTypeError(
            f"expected HxW with H, W >= 1 (e.g. 512x1024), got {text!r}"
        )
    return size


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "python -m fastadl.cost --genotype G",
        "Predicted latency, multiply-adds and parameters of the network a genotype derives, "
        "summed from per-piece tables measured once per device and cached; --measure also "
        "times the whole network.",
    )
    p.add_argument(
        "--genotype",
        required=True,
        help="genotype.json, a search run's directory, 'paper' or 'paper:N' (as in train)",
    )
    p.add_argument("--size", required=True, type=parse_size, help="deployment input HxW")
    p.add_argument("--model", default="S", choices=sorted(PRESETS), help="network preset")
    p.add_argument("--classes", type=int, default=19, help="classes of the classifier")
    p.add_argument("--device", default="cpu", help="device to measure on: cpu, cuda, cuda:1")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--runtime", default="eager", choices=RUNTIMES, help="runtime deployed with")
    p.add_argument(
        "--clock",
        default="wall",
        choices=sorted(CLOCKS),
        help="wall: elapsed time; cpu: the thread's CPU time (one CPU thread; for a busy machine)",
    )
    p.add_argument("--repeats", type=int, default=REPEATS, help="timed calls per median")
    p.add_argument("--measure", action="store_true", help="also time the whole network")
    p.add_argument("--no-cache", action="store_true", help="measure the tables again")
    return p


def report(args: argparse.Namespace, genotype: Genotype) -> None:
    cfg = preset_config(args.model, genotype.block_multiplier, len(genotype.path), args.classes)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    timing = dict(threads=args.threads, dtype=dtype, repeats=args.repeats, clock=args.clock)
    cache = not args.no_cache
    counts = {u: cost_table(cfg, args.size, u, cache=cache) for u in ("GMACs", "Mparams")}
    H, W = args.size
    print(f"model {args.model} (F={cfg['filter_multiplier']}, B={cfg['blocks']}, "
          f"L={cfg['layers']}, {args.classes} classes), input {H}x{W}, path "
          f"{''.join(map(str, genotype.path))}")  # fmt: skip
    print(f"multiply-adds      {genotype_cost(counts['GMACs'], genotype):10.3f} GMACs")
    print(
        f"parameters         {genotype_cost(counts['Mparams'], genotype):10.3f} Mparams", flush=True
    )
    print(
        f"timing the pieces on {device_name(device)} (cached for the next call) ...",
        file=sys.stderr,
        flush=True,
    )
    ms = cost_table(cfg, args.size, "ms", device, runtime=args.runtime, cache=cache, **timing)
    predicted = genotype_cost(ms, genotype)
    print(f"device {device_name(device)}, {args.threads} thread(s), {args.dtype}, "
          f"{args.runtime}, clock {args.clock}")  # fmt: skip
    print(f"predicted latency  {predicted:10.2f} ms")
    if args.measure:
        net = build_network(cfg, genotype)
        measured = measure_latency(net, args.size, device, **timing)
        error = 100 * (predicted - measured) / measured
        print(f"measured latency   {measured:10.2f} ms (median), prediction error {error:+.1f} %")


def main(argv: list[str] | None, load_genotype: Callable[[str], Genotype]) -> int:
    """The --genotype command; ``load_genotype`` reads --genotype (train's loader)."""
    args = build_parser().parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or args.classes < 1:
        return fail("--threads, --repeats and --classes must be >= 1")
    try:
        genotype = load_genotype(args.genotype)
    except (GenotypeError, OSError) as e:
        return fail(f"--genotype {args.genotype}: {e}")
    try:
        args.device = str(resolve_device(args.device))  # "auto" resolved, a bad one said
    except ValueError as e:
        return fail(str(e))
    try:
        report(args, genotype)
    except USER_ERRORS as e:
        return fail(str(e))
    return 0
