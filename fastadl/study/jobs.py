"""A study as a list of resumable jobs (searches and retrainings) in one study directory.

    DIR/study.json              what the study is (kind, settings, the jobs' configs): a rerun
                                with other settings is refused, the same command continues it
    DIR/<job>/                  each job's own run directory (fastadl.search / fastadl.train)
    DIR/<job>/result.json       written when the job has finished: its final val mIoU, ...

A job whose result.json exists is skipped; any other is run with ``resume=True``, which continues
it from its latest checkpoint (exactly, see fastadl/runtime/loop.py) or starts it when it has none. So a
study killed at any moment continues from what it finished by running the same command again.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastadl.runtime.config import ConfigError, config_from_dict
from fastadl.runtime.rundir.files import write_json_atomic
from fastadl.search.config import SearchConfig
from fastadl.train.config import TrainConfig

STUDY_FILE = "study.json"
RESULT_FILE = "result.json"
CONFIGS = {"search": SearchConfig, "train": TrainConfig}


@dataclass(frozen=True)
class Job:
    """One run of a study: ``name`` is its directory under the study, ``kind`` "search" or
    "train", ``group`` what the report groups it by (e.g. "searched", "random", a cell name),
    ``info`` plain values the report shows (seed, genotype source, ...)."""

    name: str
    kind: str
    group: str
    config: SearchConfig | TrainConfig
    info: dict[str, Any]

    def to_dict(self) -> dict:
        d = {"name": self.name, "kind": self.kind, "group": self.group, "info": self.info}
        return {**d, "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, d: dict, source: str) -> Job:
        config = config_from_dict(CONFIGS[d["kind"]], d["config"], f"{source} ({d['name']})")
        return cls(d["name"], d["kind"], d["group"], config, dict(d["info"]))


def open_study(out: Path, kind: str, settings: dict, jobs: list[Job]) -> None:
    """Create ``out/study.json``, or check that the one there describes the same study.

    Raises ConfigError naming the file and the first setting that differs.
    """
    path = out / STUDY_FILE
    record = {"kind": kind, "settings": settings, "jobs": [j.to_dict() for j in jobs]}
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not a study file ({e})") from None
        if not isinstance(saved, dict) or saved.get("kind") != kind:
            raise ConfigError(f"{path} holds another kind of study; pass another --out")
        for key, value in settings.items():
            if saved.get("settings", {}).get(key) != value:
                raise ConfigError(
                    f"{path} holds a study with {key} = {saved['settings'].get(key)!r}, "
                    f"not {value!r}: run the same command to continue it, or pass another --out"
                )
        if saved.get("jobs") != record["jobs"]:
            raise ConfigError(
                f"{path} holds a study whose runs were configured differently (another "
                "fastadl version or other flags); pass another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)


def read_result(out: Path, job: Job) -> dict | None:
    """The finished job's result.json, or None while it has not finished."""
    path = out / job.name / RESULT_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    if job.kind == "search" and "arch" not in result:  # written before results held it
        result["arch"] = last_arch_summary(out / job.name / "metrics.jsonl")
    return result


ARCH_KEYS = ("alpha_max_mean", "alpha_entropy", "beta_entropy", "skip_count", "op_shares",
             "arch_frozen_at")  # fmt: skip


def last_arch_summary(metrics_path: Path) -> dict:
    """The architecture summary of a search's last epoch record (fastadl/search/arch_stats.py)."""
    from fastadl.runtime.rundir.metrics_log import read

    epochs = [r for r in read(metrics_path) if r.get("kind") == "epoch"]
    return {k: epochs[-1][k] for k in ARCH_KEYS if epochs and k in epochs[-1]}


def run_job(out: Path, job: Job, progress: bool) -> dict:
    """Run (or continue) ``job`` to the end and write its result.json; returns the result."""
    from fastadl.search.searcher import run_search
    from fastadl.train.trainer import run_train

    run_dir = out / job.name
    run = run_search if job.kind == "search" else run_train
    start = time.perf_counter()
    loop = run(job.config, run_dir, resume=True, progress=progress)
    result = {
        "name": job.name,
        "kind": job.kind,
        "group": job.group,
        "val_miou": loop.val_miou[-1] if loop.val_miou else None,
        "first_val_miou": loop.val_miou[0] if loop.val_miou else None,
        "steps": loop.step,
        # the last (re)start's share only: a resumed job does not know its earlier time
        "seconds": round(time.perf_counter() - start, 1),
        "info": job.info,
    }
    if job.kind == "search" or (run_dir / "genotype.json").is_file():
        result["genotype"] = json.loads((run_dir / "genotype.json").read_text(encoding="utf-8"))
    if job.kind == "search":
        result["arch"] = last_arch_summary(run_dir / "metrics.jsonl")
    write_json_atomic(run_dir / RESULT_FILE, result)
    return result


def run_jobs(
    out: Path,
    jobs: list[Job],
    *,
    progress: bool = True,
    after_each: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Run every unfinished job in order (a finished one is read back); returns all results.

    after_each(results so far) runs after every job, e.g. to rewrite the report.
    """
    from tqdm import tqdm

    from fastadl.runtime.hooks import live_output

    live = live_output()  # a terminal: a live bar; a log: one plain line per run started
    results: list[dict] = []
    done = [read_result(out, j) for j in jobs]
    bar = tqdm(
        total=len(jobs),
        initial=sum(r is not None for r in done),
        desc="study",
        unit="run",
        disable=not (progress and live),
        dynamic_ncols=True,
        position=0,
    )
    for job, result in zip(jobs, done, strict=True):
        if result is None:
            bar.set_postfix_str(job.name)
            if progress and not live:
                print(
                    f"study: run {bar.n + 1}/{len(jobs)}: {job.name}", file=sys.stderr, flush=True
                )
            result = run_job(out, job, progress)
            bar.update()
            if progress:
                miou = result["val_miou"]
                shown = "n/a" if miou is None else f"{miou:.4f}"
                tqdm.write(f"{job.name}: final val mIoU {shown}")
                sys.stdout.flush()
        results.append(result)
        if after_each is not None:
            after_each(results)
    bar.close()
    return results
