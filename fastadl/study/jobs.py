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


def ready(job: Job, finished: set[str]) -> bool:
    """Whether the job this one depends on (info["after"], a job name) has finished."""
    after = job.info.get("after")
    return after is None or after in finished


def run_jobs(
    out: Path,
    jobs: list[Job],
    *,
    progress: bool = True,
    after_each: Callable[[list[dict]], None] | None = None,
    prepare: Callable[[Job], None] | None = None,
    workers: int = 1,
) -> list[dict]:
    """Run every unfinished job (a finished one is read back); returns all results, in the
    order of ``jobs``.

    A job waits for the job named in its info["after"]. prepare(job) runs just before a job
    starts (e.g. to write a genotype that depends on a finished search); after_each(results so
    far) after every finished job, e.g. to rewrite the report. workers > 1 runs that many jobs
    at once, each in its own process (spawned; no progress bars of their own: one line per
    finished job), always starting the first ready job in list order; a job's numbers do not
    depend on what runs beside it.
    """
    from tqdm import tqdm

    from fastadl.runtime.hooks import live_output

    live = live_output()  # a terminal: a live bar; a log: one plain line per run started
    done = {j.name: r for j, r in zip(jobs, (read_result(out, j) for j in jobs), strict=True)
            if r is not None}  # fmt: skip
    bar = tqdm(total=len(jobs), initial=len(done), desc="study", unit="run",
               disable=not (progress and live), dynamic_ncols=True, position=0)  # fmt: skip

    def started(job: Job) -> None:
        bar.set_postfix_str(job.name)
        if progress and not live:
            print(f"study: run {len(done) + 1}/{len(jobs)}: {job.name}", file=sys.stderr,
                  flush=True)  # fmt: skip

    def finish(job: Job, result: dict) -> None:
        done[job.name] = result
        bar.update()
        if progress or workers > 1:
            miou = result["val_miou"]
            shown = "n/a" if miou is None else f"{miou:.4f}"
            tqdm.write(f"{job.name}: final val mIoU {shown}")
            sys.stdout.flush()
        if after_each is not None:
            after_each([done[j.name] for j in jobs if j.name in done])

    if after_each is not None and done:
        after_each([done[j.name] for j in jobs if j.name in done])
    pending = [j for j in jobs if j.name not in done]
    if workers <= 1:
        for job in pending:
            if prepare is not None:
                prepare(job)
            started(job)
            finish(job, run_job(out, job, progress))
    else:
        _run_parallel(out, pending, workers, prepare, started, finish, set(done))
    bar.close()
    return [done[j.name] for j in jobs]


def _run_parallel(out, pending, workers, prepare, started, finish, finished: set[str]) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    running: dict = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        while pending or running:
            while len(running) < workers:
                job = next((j for j in pending if ready(j, finished)), None)
                if job is None:
                    break
                pending.remove(job)
                if prepare is not None:
                    prepare(job)
                started(job)
                running[pool.submit(run_job, out, job, False)] = job
            if not running:
                names = ", ".join(j.name for j in pending)
                raise RuntimeError(f"jobs wait for jobs that are not in the study: {names}")
            complete, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in complete:
                job = running.pop(future)
                result = future.result()  # a job's exception stops the study here
                finished.add(job.name)
                finish(job, result)
