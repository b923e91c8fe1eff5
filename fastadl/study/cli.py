"""``python -m fastadl.study``: does the search beat chance? Studies of many searches and
retrainings, resumable, with a report (DIR/report.md, DIR/summary.json, DIR/plots/).

studies:
  searched-vs-random   for each seed, search (tiny preset) and retrain the searched genotype;
                       retrain genotypes drawn uniformly from the same cell space and uniformly
                       over the valid paths; every retraining with the same budget and seed
  cells                the check that cells matter on the task: clearly different cells (only
                       skips and pools, only separable convs, the paper's cell) on one path,
                       retrained with several seeds

examples:
  python -m fastadl.study searched-vs-random --seeds 3 --random 5 --out runs/study
  python -m fastadl.study searched-vs-random --out runs/study-cap --search-flags="--max-skips 2"
  python -m fastadl.study cells --seeds 3 --out runs/cells

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


def build_study_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m fastadl.study",
        description=__doc__.replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="study", required=True, metavar="STUDY", parser_class=OneLineParser)
    kinds = {
        "searched-vs-random": "searched genotypes against uniformly random ones",
        "cells": "do clearly different cells differ by more than seed noise?",
    }
    for name, text in kinds.items():
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--out", required=True, metavar="DIR", help="study directory (required)")
        s.add_argument("--seeds", type=_count(0 if name == "searched-vs-random" else 1),
                       default=3, metavar="N",
                       help="searches (seeds 0..N-1), or seeds per cell for 'cells' (default 3)")  # fmt: skip
        s.add_argument("--retrain-epochs", type=_count(1), default=RETRAIN_EPOCHS, metavar="E",
                       help="epochs of every retraining, tiny train preset otherwise "
                       f"(default {RETRAIN_EPOCHS})")  # fmt: skip
        s.add_argument("--train-flags", default="", metavar="FLAGS",
                       help='flags of python -m fastadl.train for every retraining, one quoted '
                       'string, e.g. --train-flags="--lr 0.02"')  # fmt: skip
        s.add_argument("--no-progress", action="store_true", help="no progress bars")
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


def main(argv: list[str] | None = None) -> int:
    args = parse(build_study_parser(), argv)
    if isinstance(args, int):
        return args
    from fastadl.runtime.preemption import Preempted
    from fastadl.runtime.steps import NonFiniteError
    from fastadl.study.jobs import open_study, run_jobs
    from fastadl.study.plans import plan_cells, plan_searched_vs_random
    from fastadl.study.report import verdict_line, write_report

    out = Path(args.out).resolve()
    command = "python -m fastadl.study " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    try:
        if args.study == "searched-vs-random" and not (args.seeds or args.random):
            raise ConfigError("--seeds and --random are both 0: nothing to run")
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {args.out} is a file, not a study directory")
        train = flag_overrides(TRAIN_CLI, args.train_flags, "--train-flags")
        if args.study == "cells":
            settings, jobs, files = plan_cells(out, args.seeds, args.retrain_epochs, train)
        else:
            search = flag_overrides(SEARCH_CLI, args.search_flags, "--search-flags")
            settings, jobs, files = plan_searched_vs_random(
                out, args.seeds, args.random, args.retrain_epochs, args.retrain_seed,
                args.draw_seed, search, train, args.fixed_path,
            )  # fmt: skip
        open_study(out, args.study, settings, jobs)
        for path, genotype in files.items():  # after the check: never overwrite another study's
            path.parent.mkdir(parents=True, exist_ok=True)
            genotype.save(path)

        def report(results):
            write_report(out, args.study, command, results, len(jobs))

        results = run_jobs(out, jobs, progress=not args.no_progress, after_each=report)
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
    summary = write_report(out, args.study, command, results, len(jobs))
    print(f"study done: {out / 'report.md'}\n{verdict_line(args.study, summary['verdict'])}")
    return 0
