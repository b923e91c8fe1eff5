"""Generated malformed inputs for the bad-input sweep (tests/data/test_bad_inputs.py and
scripts/bad_input_sweep.py): datasets of every format, genotype and config JSON, checkpoints,
CLI flags. Each case is a command line plus what its one error line must name.

``make_cases(root)`` writes every case's files under ``root``; ``run_case`` runs one in-process
(``main(argv)``) and judges it: non-zero exit, one ``error:`` line naming the file, field or
flag (a dataset-layout hint may follow on indented lines), no traceback, and a run directory
that is absent, resumable, or (for a refused resume) exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bad_input_case import SEARCH_RUN, SYNTH, TRAIN_RUN, Case
from bad_inputs_datasets import dataset_cases
from bad_inputs_files import checkpoint_cases, config_cases, genotype_cases
from bad_inputs_flags import flag_cases

from fastadl import evaluate, predict
from fastadl.search import cli as search
from fastadl.train import cli as train

__all__ = ["TRAIN_RUN", "Case", "Outcome", "make_cases", "run_case"]

COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "search": search.main,
    "train": train.main,
    "evaluate": evaluate.main,
    "predict": predict.main,
}


def _snapshot(run: Path) -> dict[str, str]:
    if not run.exists():
        return {}
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file()
    }


@dataclass
class Outcome:
    case: Case
    code: int
    err: str
    traceback: bool
    clear: bool
    run_dir_ok: bool
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- the sweep
def make_seeds(base: Path) -> dict[str, Path]:
    """One finished micro run per loop (for the config, checkpoint and flag cases)."""
    seeds = {"search": base / "seeds" / "search", "train": base / "seeds" / "train"}
    for command, run in seeds.items():
        flags = SEARCH_RUN if command == "search" else TRAIN_RUN
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert COMMANDS[command]([*flags, *SYNTH, "--out", str(run)]) == 0, command
    return seeds


def make_cases(base: Path) -> list[Case]:
    seeds = make_seeds(base)
    return [
        *dataset_cases(base),
        *genotype_cases(base),
        *config_cases(base, seeds),
        *checkpoint_cases(base, seeds),
        *flag_cases(base, seeds),
    ]


def _run_dir_ok(case: Case, before: dict[str, str]) -> bool:
    """Absent, or a run directory the loops can resume (config.json and latest load), or, for
    a refused resume, exactly as it was."""
    run = case.run_dir
    if run is None or not run.exists():
        return True
    if case.resume:
        return _snapshot(run) == before
    from fastadl.runtime.config import ConfigError
    from fastadl.runtime.rundir.checkpoint import (
        CheckpointError,
        latest_checkpoint,
        load_checkpoint,
    )
    from fastadl.search import config
    from fastadl.train import config as train_config

    cls = config.CONFIG if case.command == "search" else train_config.CONFIG
    try:
        if (run / "config.json").exists():
            cls.from_dict(json.loads((run / "config.json").read_text()))
        if latest_checkpoint(run) is not None:
            load_checkpoint(run)
    except (ConfigError, CheckpointError, ValueError):
        return False
    return True


def run_case(case: Case) -> Outcome:
    before = _snapshot(case.run_dir) if case.resume and case.run_dir else {}
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = COMMANDS[case.command](case.argv)
    except BaseException as e:  # noqa: BLE001 - anything escaping main is a failure to report
        import traceback

        code = -1
        err.write("Traceback (most recent call last):\n" + "".join(traceback.format_exception(e)))
    text = err.getvalue()
    # a warning said at the start (e.g. of a short schedule: these runs take 1 step) is no error
    lines = [
        line for line in text.splitlines() if line.strip() and not line.startswith("warning: ")
    ]
    problems = []
    if code in (0, -1):
        problems.append(f"exit status {code}")
    tb = "Traceback" in text
    first = lines[0] if lines else ""
    if not first.startswith("error: "):
        problems.append(f"first stderr line is {first[:120]!r}")
    if any(not line[:1].isspace() for line in lines[1:]):
        problems.append("more than one error line")
    missing = [n for n in case.names if n not in first]
    if missing:
        problems.append(f"error line does not name {missing}")
    ok_dir = _run_dir_ok(case, before)
    if not ok_dir:
        problems.append("the run directory is left unresumable or changed")
    clear = not problems and not tb
    return Outcome(case, code, text, tb, clear, ok_dir, problems)
