"""``python -m fastadl.study``: does the search beat chance? Studies of many searches and
retrainings, resumable, with a report (DIR/report.md, DIR/summary.json, DIR/plots/).

studies:
  quality              study v2 (docs/SEARCH_QUALITY.md): the cell and the path judged apart,
                       each against random ones and against no search, every genotype
                       retrained with several seeds; exact permutation p-values, relative
                       gains with bootstrap intervals, the between-cell variance share
  searched-vs-random   for each seed, search (tiny preset) and retrain the searched genotype;
                       retrain genotypes drawn uniformly from the same cell space and uniformly
                       over the valid paths; every retraining with the same budget and seed
  cells                the check that cells matter on the task: clearly different cells (only
                       skips and pools, only separable convs, the paper's cell) on one path,
                       retrained with several seeds
  pareto               searches with a latency budget at several targets and without one,
                       random genotypes, all retrained and timed: val mIoU against measured
                       latency, the Pareto front, whether a random genotype dominates a
                       searched one (docs/BUDGET.md)

examples:
  python -m fastadl.study quality --out runs/quality --jobs 2
  python -m fastadl.study searched-vs-random --seeds 3 --random 5 --out runs/study
  python -m fastadl.study searched-vs-random --out runs/study-cap --search-flags="--max-skips 2"
  python -m fastadl.study cells --seeds 3 --out runs/cells
  python -m fastadl.study pareto --out runs/pareto --jobs 2

A killed or interrupted study continues from what it finished: run the same command again.
Exit status: 0 done, 2 bad input, 3 NaN/inf loss in a run, 4 stopped by SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fastadl.runtime.cli import (
    EXIT_INTERRUPTED,
    EXIT_NONFINITE,
    EXIT_PREEMPTED,
    USER_ERRORS,
    LoopCLI,
    OneLineParser,
    build_parser,
    fail,
    overrides_from,
    parse,
    user_message,
)
from fastadl.runtime.config import ConfigError
from fastadl.search.cli import CLI as SEARCH_CLI
from fastadl.train.cli import CLI as TRAIN_CLI

# The retraining budget of every study run (**decision**: half the tiny train preset's 40
# epochs of 50 steps, so 3 searches + 8 retrainings fit well inside an hour on a 2-core CPU).
RETRAIN_EPOCHS = 20


def _count(low: int):
    def parse_count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse_count


def _levels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected levels like 0,0,1,2, got {text!r}") from None


QUALITY_HELP = """Study v2: is the searched cell better than random cells and than no search, and
the searched path better than random paths of the same depth and than no search?

Genotypes (each retrained with seeds 0..S-1; the 'probe' model unless --train-flags sets
--model: small heads, so the cell matters):
  searched      the search's cell on the search's path (K searches)
  cell-prior    the search's cell on the prior path (what an untrained β decodes: all level 0)
  random-cell   R uniformly random cells on the prior path
  no-search     the cell an untrained α decodes, on the prior path
  random-path   the search's cell on P random paths nearest in depth to the search's path
Report: one-sided exact permutation p-values over genotypes, relative gains with 95 %
bootstrap intervals, the between-cell variance share, plots per level. --jobs 2 runs two
retrainings at once (each uses one thread): about halves the wall clock on a 2-core CPU."""


def add_common(s: argparse.ArgumentParser) -> None:
    """Flags every study has."""
    s.add_argument("--out", required=True, metavar="DIR", help="study directory (required)")
    s.add_argument("--retrain-epochs", type=_count(1), default=RETRAIN_EPOCHS, metavar="E",
                   help="epochs of every retraining, tiny train preset otherwise "
                   f"(default {RETRAIN_EPOCHS})")  # fmt: skip
    s.add_argument("--train-flags", default="", metavar="FLAGS",
                   help="flags of python -m fastadl.train for every retraining, one quoted "
                   'string, e.g. --train-flags="--lr 0.02"')  # fmt: skip
    s.add_argument("--jobs", type=_count(1), default=1, metavar="N",
                   help="runs at once, each in its own process (default 1)")  # fmt: skip
    s.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_study_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m fastadl.study",
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="study", required=True, metavar="STUDY", parser_class=OneLineParser)
    quality = sub.add_parser("quality", help="study v2: cell and path against random and no search",
                             description=QUALITY_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_common(quality)
    quality.add_argument("--searches", type=_count(0), default=3, metavar="K",
                         help="searches, seeds 0..K-1 (default 3)")  # fmt: skip
    quality.add_argument("--cells", type=_count(0), default=6, metavar="R",
                         help="random cells on the prior path (default 6)")  # fmt: skip
    quality.add_argument("--seeds", type=_count(1), default=2, metavar="S",
                         help="retraining seeds of every genotype, 0..S-1 (default 2)")  # fmt: skip
    quality.add_argument("--paths", type=_count(0), default=2, metavar="P",
                         help="depth-matched random paths per search (default 2)")  # fmt: skip
    quality.add_argument("--draw-seed", type=int, default=0, metavar="S",
                         help="seed of the random cells, paths and the untrained α (default 0)")  # fmt: skip
    quality.add_argument("--no-proxy", action="store_true",
                         help="skip the proxy scores (each genotype inside each search's "
                         "supernet, after the last run) and their Kendall τ")  # fmt: skip
    quality.add_argument("--search-flags", default="", metavar="FLAGS",
                         help="flags of python -m fastadl.search for every search, e.g. "
                         '--search-flags="--path-decoding prior-corrected"')  # fmt: skip
    add_pareto(sub)
    kinds = {
        "searched-vs-random": "searched genotypes against uniformly random ones",
        "cells": "do clearly different cells differ by more than seed noise?",
    }
    for name, text in kinds.items():
        s = sub.add_parser(name, help=text, description=text)
        add_common(s)
        s.add_argument("--seeds", type=_count(0 if name == "searched-vs-random" else 1),
                       default=3, metavar="N",
                       help="searches (seeds 0..N-1), or seeds per cell for 'cells' (default 3)")  # fmt: skip
        if name == "searched-vs-random":
            s.add_argument("--random", type=_count(0), default=5, metavar="N",
                           help="random genotypes (default 5; 0 with a search variant compares "
                           "it against another study's random group)")  # fmt: skip
            s.add_argument("--search-flags", default="", metavar="FLAGS",
                           help="flags of python -m fastadl.search for every search, e.g. "
                           '--search-flags="--max-skips 2" (default: the tiny preset)')  # fmt: skip
            s.add_argument("--retrain-seed", type=int, default=0, metavar="S",
                           help="seed of every retraining: same data, order and init (default 0)")  # fmt: skip
            s.add_argument("--draw-seed", type=int, default=0, metavar="S",
                           help="seed of the random genotype draws (default 0)")  # fmt: skip
            s.add_argument("--fixed-path", type=_levels, metavar="L1,L2,...",
                           help="a control: the random cells on this path (levels per layer, "
                           "e.g. 0,0,0,0, what an untrained β decodes to) instead of random "
                           "paths")  # fmt: skip
    return p


PARETO_HELP = """Accuracy against latency: searches with --latency-target at each --targets quantile
(and one without a target, all seed 0), R uniformly random genotypes, every genotype retrained
with the same budget and seeds, then every network timed on this CPU (one thread, eager, batch
1, at --deploy-size, the retraining model). A target q is the q-quantile of the predicted
latency of 1000 random genotypes. Report: the table, the Pareto front, whether any random
genotype is both faster and more accurate than a searched one, the plot."""


def _quantiles(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected quantiles like 0.2,0.5, got {text!r}") from None
    if not values or any(not 0 < v < 1 for v in values) or len(set(values)) < len(values):
        raise argparse.ArgumentTypeError(f"quantiles must be distinct, in (0, 1): {text!r}")
    return values


def add_pareto(sub) -> None:
    s = sub.add_parser("pareto", help="accuracy against measured latency, searched and random",
                       description=PARETO_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_common(s)
    s.add_argument("--targets", type=_quantiles, default=(0.2, 0.5), metavar="Q1,Q2",
                   help="latency targets as quantiles of random genotypes' predicted latency "
                   "(default 0.2,0.5)")  # fmt: skip
    s.add_argument("--random", type=_count(1), default=10, metavar="R",
                   help="random genotypes (default 10)")  # fmt: skip
    s.add_argument("--seeds", type=_count(1), default=1, metavar="S",
                   help="retraining seeds of every genotype, 0..S-1 (default 1)")  # fmt: skip
    s.add_argument("--deploy-size", default="256x256", metavar="HxW",
                   help="input size the latency is for (default 256x256)")  # fmt: skip
    s.add_argument("--draw-seed", type=int, default=0, metavar="S",
                   help="seed of the random genotypes (default 0)")  # fmt: skip
    s.add_argument("--search-flags", default="", metavar="FLAGS",
                   help="flags of python -m fastadl.search for every search")  # fmt: skip


def flag_overrides(spec: LoopCLI, text: str, option: str) -> tuple[str | None, dict]:
    """(preset or None, config overrides) from a quoted flag string of a loop's CLI."""
    argv = shlex.split(text)
    parser = build_parser(spec, argv)

    def error(message: str):
        raise ConfigError(f"{option}: {message}")

    parser.error = error
    args = parser.parse_args(argv)
    for flag in ("out", "resume"):
        if getattr(args, flag):
            raise ConfigError(f"{option}: --{flag} is set by the study")
    return args.preset, overrides_from(args, spec.config.CONFIG)


def pareto_flags(args: argparse.Namespace):
    """(search flags, train flags) of a Pareto study: the retraining model (tiny unless
    --train-flags says) is the one every search's budget prices, at --deploy-size on one CPU
    thread."""
    train = flag_overrides(TRAIN_CLI, args.train_flags, "--train-flags")
    train = (train[0], {"model": "tiny", **train[1]})
    search = flag_overrides(SEARCH_CLI, args.search_flags, "--search-flags")
    search = (search[0], {**search[1], "deploy_model": train[1]["model"],
                          "deploy_size": args.deploy_size, "deploy_threads": 1,
                          "deploy_device": "cpu"})  # fmt: skip
    return search, train


def plan_study(args: argparse.Namespace, out: Path, latency=None):
    """(settings, jobs, genotype files to write, prepare(job) or None) of the chosen study;
    latency: the Pareto study's pareto_latency (predict_ms, measure_ms, context)."""
    from fastadl.study.plans import plan_cells, plan_searched_vs_random
    from fastadl.study.quality import derive_genotype, plan_quality

    if args.study == "pareto":
        from fastadl.study.pareto import plan_pareto

        search, train = pareto_flags(args)
        plan = plan_pareto(out, args.targets, args.random, args.seeds, args.retrain_epochs,
                           args.draw_seed, search, train, latency[0])  # fmt: skip
        return (*plan, None)
    train = flag_overrides(TRAIN_CLI, args.train_flags, "--train-flags")
    if args.study == "cells":
        return (*plan_cells(out, args.seeds, args.retrain_epochs, train), None)
    search = flag_overrides(SEARCH_CLI, args.search_flags, "--search-flags")
    if args.study == "quality":
        if not (args.searches or args.cells):
            raise ConfigError("--searches and --cells are both 0: nothing to run")
        train = (train[0], {"model": "probe", **train[1]})
        plan = plan_quality(out, args.searches, args.cells, args.seeds, args.paths,
                            args.retrain_epochs, args.draw_seed, search, train)  # fmt: skip
        return (*plan, lambda job: derive_genotype(out, job))
    if not (args.seeds or args.random):
        raise ConfigError("--seeds and --random are both 0: nothing to run")
    plan = plan_searched_vs_random(out, args.seeds, args.random, args.retrain_epochs,
                                   args.retrain_seed, args.draw_seed, search, train,
                                   args.fixed_path)  # fmt: skip
    return (*plan, None)


def pareto_latency(args, search, train):
    """The Pareto study's latency model: (predict_ms, measure_ms, context)."""
    from fastadl.budget.deploy import parse_size
    from fastadl.runtime.loading import build_datasets
    from fastadl.search import config as search_config
    from fastadl.study.pareto import latency_model

    try:
        size = parse_size(args.deploy_size)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    cfg = search_config.resolve(search[0] or search_config.DEFAULT_PRESET, search[1])
    classes = build_datasets(cfg, augment=False)[0].num_classes
    return latency_model(train[1]["model"], cfg.block_multiplier, cfg.layers, classes, size)


def main(argv: list[str] | None = None) -> int:
    args = parse(build_study_parser(), argv)
    if isinstance(args, int):
        return args
    from fastadl.runtime.preemption import Preempted
    from fastadl.runtime.steps import NonFiniteError
    from fastadl.study.jobs import open_study, run_jobs
    from fastadl.study.quality_report import write_quality_report
    from fastadl.study.report import write_report

    out = Path(args.out).resolve()
    command = "python -m fastadl.study " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {args.out} is a file, not a study directory")
        # the Pareto study's latency model: its targets at the start, its timings at the end
        latency = pareto_latency(args, *pareto_flags(args)) if args.study == "pareto" else None
        settings, jobs, files, prepare = plan_study(args, out, latency)
        open_study(out, args.study, settings, jobs)
        for path, genotype in files.items():  # after the check: never overwrite another study's
            path.parent.mkdir(parents=True, exist_ok=True)
            genotype.save(path)

        def report(results):
            if args.study == "pareto":  # its report times the networks: once, at the end
                return None
            if args.study == "quality":
                return write_quality_report(out, command, results, len(jobs))
            return write_report(out, args.study, command, results, len(jobs))

        results = run_jobs(out, jobs, progress=not args.no_progress, after_each=report,
                           prepare=prepare, workers=args.jobs)  # fmt: skip
    except NonFiniteError as e:
        return fail(f"{e}; run the same command again to retry from the last checkpoint",
                    EXIT_NONFINITE)  # fmt: skip
    except Preempted as e:
        print(f"{e.signal_name}: stopped after a checkpoint; continue with the same command",
              file=sys.stderr)  # fmt: skip
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        return fail("interrupted: continue with the same command", EXIT_INTERRUPTED)
    except (*USER_ERRORS, OSError) as e:
        return fail(user_message(e))
    final_report(args, out, command, results, report, latency)
    return 0


def final_report(args, out: Path, command: str, results: list[dict], report, latency) -> None:
    """The finished study's report (the quality study's proxy scores, the Pareto study's
    timings first), and its verdict in a line."""
    from fastadl.study.quality_report import write_quality_report
    from fastadl.study.report import verdict_line

    if args.study == "pareto":
        from fastadl.study.pareto import finish_pareto, pareto_verdict

        summary = finish_pareto(out, command, results, *latency)
        print(f"study done: {out / 'report.md'}\n{pareto_verdict(summary)}")
    elif args.study == "quality":
        proxy = None
        if not args.no_proxy:
            from fastadl.study.quality_proxy import proxy_scores, proxy_tau

            proxy = proxy_tau(results, proxy_scores(out, results, not args.no_progress))
        write_quality_report(out, command, results, len(results), proxy)
        print(f"study done: {out / 'report.md'}")
    else:
        summary = report(results)
        print(f"study done: {out / 'report.md'}\n{verdict_line(args.study, summary['verdict'])}")
