"""The Pareto study (``python -m fastadl.study pareto``): accuracy against measured latency.

Searches with a latency budget at several targets (and one without), retrains what each found
and R uniformly random genotypes with one budget, measures every network's latency the way the
budget is defined (the search's --deploy-model at --deploy-size on this machine's CPU, one
thread, eager, batch 1), and asks: is any random genotype both faster and more accurate than a
searched one?

**Decisions** (the issue leaves them open):
- A target is a quantile of the predicted latency of uniformly random genotypes (QUANTILE_DRAWS
  of them, the search's own cost table, fastadl/budget): 0.25 asks for a network faster than
  a quarter of random ones. Quantiles are reachable by construction; fractions of a typical
  network are not always (the tiny model's stem and head alone cost more than half of it).
  Targets relative to the unconstrained search's network would make the searches' configs
  depend on a finished run, and a study's configs are fixed when it starts (jobs.py). The
  targets are computed once and kept in study.json, so a rerun does not move them.
- Every search uses seed 0: the searches differ by their target only.
- A genotype's score is its mean final val mIoU over the retraining seeds; its latency is
  measured once, after every run has finished (so no other run loads the CPU while it is
  timed; the study's own runs are done by then), and kept in DIR/latency.json.
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Callable
from pathlib import Path

from fastadl.runtime.rundir.files import write_json_atomic
from fastadl.search import config as search_config
from fastadl.space.genotype import Genotype
from fastadl.space.random_genotype import random_genotype
from fastadl.study.jobs import STUDY_FILE, Job
from fastadl.study.plans import Flags, genotype_file, retrain_config
from fastadl.study.quality import genotype_key
from fastadl.study.stats import dominates, pareto_front

LATENCY_FILE = "latency.json"
BUDGET_FLAGS = ("latency_target", "flops_target", "seed")


def search_name(quantile: float | None) -> str:
    return "search-free" if quantile is None else f"search-q{round(100 * quantile)}"


QUANTILE_DRAWS = 1000


def saved_targets(out: Path) -> list[float] | None:
    """The targets (ms) an existing study in ``out`` was planned with, if any."""
    path = out / STUDY_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    return saved.get("settings", {}).get("targets_ms")


def quantile_targets(quantiles, predict_ms, blocks: int, layers: int, F: int, seed: int):
    """Each quantile of the predicted latency (ms) of QUANTILE_DRAWS random genotypes."""
    rng = random.Random(seed + 1)  # not the retrained genotypes' draw
    costs = sorted(predict_ms(random_genotype(rng, blocks, layers, F))
                   for _ in range(QUANTILE_DRAWS))  # fmt: skip
    return [round(costs[min(int(q * len(costs)), len(costs) - 1)], 3) for q in quantiles]


def plan_pareto(
    out: Path,
    targets: tuple[float, ...],
    n_random: int,
    seeds: int,
    retrain_epochs: int,
    draw_seed: int,
    search: Flags,
    train: Flags,
    predict_ms: Callable[[Genotype], float],
) -> tuple[dict, list[Job], dict[Path, Genotype]]:
    """(settings, jobs, genotype files to write) of a Pareto study in ``out``.

    targets: quantiles (see the module docstring); predict_ms: the predicted latency of a
    genotype's network (the search's own cost table).
    """
    preset, overrides = search
    for name in BUDGET_FLAGS:
        if name in overrides:
            raise search_config.ConfigError(f"--search-flags: --{name.replace('_', '-')} is "
                                            "set by the study")  # fmt: skip
    base = search_config.resolve(preset or search_config.DEFAULT_PRESET,
                                 {**overrides, "seed": 0})  # fmt: skip
    rng = random.Random(draw_seed)
    L, B, F = base.layers, base.block_multiplier, base.filter_multiplier
    drawn = [random_genotype(rng, B, L, F) for _ in range(n_random)]
    targets_ms = saved_targets(out) or quantile_targets(targets, predict_ms, B, L, F, draw_seed)
    files = {genotype_file(out, f"random-r{i}"): g for i, g in enumerate(drawn)}

    def retrain(name: str, group: str, genotype: str, info: dict) -> list[Job]:
        return [
            Job(f"train-{name}-t{t}", "train", group,
                retrain_config(train, genotype, t, retrain_epochs), {**info, "seed": t})
            for t in range(seeds)
        ]  # fmt: skip

    jobs: list[Job] = []
    for target, ms in ((None, None), *zip(targets, targets_ms, strict=True)):
        name = search_name(target)
        budget = {} if ms is None else {"latency_target": ms}
        cfg = search_config.resolve(preset or search_config.DEFAULT_PRESET,
                                    {**overrides, **budget, "seed": 0})  # fmt: skip
        jobs.append(Job(name, "search", "search", cfg, {"target": target, "target_ms": ms}))
        label = name.removeprefix("search-")
        jobs += retrain(f"searched-{label}", "searched", str(out / name),
                        {"after": name, "target": target, "target_ms": ms})  # fmt: skip
    for i, g in enumerate(drawn):
        jobs += retrain(f"random-r{i}", "random", str(genotype_file(out, f"random-r{i}")),
                        {"genotype": g.to_dict()})  # fmt: skip
    settings = {"targets": list(targets), "random": n_random, "seeds": seeds,
                "retrain_epochs": retrain_epochs, "draw_seed": draw_seed,
                "targets_ms": targets_ms}  # fmt: skip
    return settings, jobs, files


def measured_latencies(
    out: Path, genotypes: dict[str, Genotype], measure_ms: Callable[[Genotype], float]
) -> dict[str, float]:
    """genotype key → measured latency (ms), measuring only those DIR/latency.json lacks."""
    path = out / LATENCY_FILE
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key, genotype in genotypes.items():
        if key not in saved:
            saved[key] = round(measure_ms(genotype), 4)
            write_json_atomic(path, saved)
    return {k: saved[k] for k in genotypes}


def genotype_points(results: list[dict]) -> dict[str, dict]:
    """genotype key → {"group", "target", "scores", "score", "genotype"} of the retrained runs,
    the score being the mean final val mIoU over seeds."""
    points: dict[str, dict] = {}
    for r in results:
        if r["kind"] != "train" or r.get("val_miou") is None:
            continue
        key = genotype_key(r["name"])
        p = points.setdefault(key, {"group": r["group"], "target_ms": r["info"].get("target_ms"),
                                    "scores": [], "genotype": r.get("genotype")})  # fmt: skip
        p["scores"].append(r["val_miou"])
    for p in points.values():
        p["score"] = statistics.fmean(p["scores"])
    return points


def pareto_summary(points: dict[str, dict]) -> dict:
    """The front over every genotype, and for each searched one: its target (ms), its
    measured latency against the target, and the random genotypes that dominate it."""
    keys = list(points)
    coords = [(points[k]["latency_ms"], points[k]["score"]) for k in keys]
    front = [keys[i] for i in pareto_front(coords)]
    searched = {}
    for k in keys:
        p = points[k]
        if p["group"] != "searched":
            continue
        target = p["target_ms"]
        searched[k] = {
            "target_ms": target,
            "latency_ms": p["latency_ms"],
            "within_110": None if target is None else p["latency_ms"] <= 1.1 * target,
            "dominated_by": [q for q in keys if points[q]["group"] == "random"
                             and dominates(coords[keys.index(q)], coords[keys.index(k)])],
        }  # fmt: skip
    return {"front": front, "searched": searched,
            "undominated": all(not s["dominated_by"] for s in searched.values())}  # fmt: skip


def pareto_verdict(summary: dict) -> str:
    """The study's answer in a line."""
    if summary["undominated"]:
        return "no random genotype dominates a searched one"
    return "a random genotype dominates a searched one"


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def pareto_table(points: dict[str, dict], summary: dict) -> str:
    rows = ["| genotype | group | target (ms) | predicted (ms) | measured (ms) | val mIoU | "
            "front | dominated by |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for k, p in sorted(points.items(), key=lambda kv: kv[1]["latency_ms"]):
        s = summary["searched"].get(k, {})
        scores = ", ".join(f"{v:.3f}" for v in p["scores"])
        rows.append(
            f"| {k} | {p['group']} | {_ms(s.get('target_ms'))} | {_ms(p.get('predicted_ms'))} | "
            f"{_ms(p['latency_ms'])} | {p['score']:.3f} ({scores}) | "
            f"{'yes' if k in summary['front'] else ''} | {', '.join(s.get('dominated_by', []))} |"
        )
    return "\n".join(rows)


def write_pareto_report(out: Path, command: str, points: dict[str, dict], summary: dict,
                        context: dict) -> Path:  # fmt: skip
    """DIR/report.md, DIR/summary.json and DIR/plots/pareto.png of a finished Pareto study."""
    from fastadl.study.plots import plot_pareto

    keys = list(points)
    plot = plot_pareto(
        [
            {
                "cost": points[k]["latency_ms"],
                "score": points[k]["score"],
                "group": points[k]["group"],
                "label": k.removeprefix("searched-") if points[k]["group"] == "searched" else "",
            }
            for k in keys
        ],  # fmt: skip
        [keys.index(k) for k in summary["front"]],
        "ms",
        out / "plots" / "pareto.png",
    )
    verdict = pareto_verdict(summary)
    lines = [
        "# Pareto study: val mIoU against measured latency", "", f"    {command}", "",
        f"Latency: {context}", "", f"**{verdict}.**", "",
        pareto_table(points, summary), "", f"![pareto]({plot.relative_to(out)})", "",
    ]  # fmt: skip
    write_json_atomic(out / "summary.json", {"points": points, **summary, "context": context})
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def latency_model(model: str, blocks: int, layers: int, classes: int, size, threads: int = 1):
    """(predict_ms, measure_ms, context) for genotypes on ``model`` at ``size`` (H, W) on this
    CPU: the search's own cost table (fastadl/budget, cached) and an end-to-end timing."""
    from fastadl.budget.measure import cost_table, measure_latency
    from fastadl.budget.pieces import build_network, preset_config
    from fastadl.budget.table import genotype_cost

    cfg = preset_config(model, blocks, layers, classes)
    table = cost_table(cfg, size, "ms", threads=threads)

    def predict_ms(genotype: Genotype) -> float:
        return genotype_cost(table, genotype)

    def measure_ms(genotype: Genotype) -> float:
        return measure_latency(build_network(cfg, genotype), size, threads=threads)

    context = {"model": model, "size": list(size), "threads": threads, "device": "cpu",
               "runtime": "eager", "batch": 1}  # fmt: skip
    return predict_ms, measure_ms, context


def finish_pareto(out: Path, command: str, results: list[dict], predict_ms, measure_ms,
                  context: dict) -> dict:  # fmt: skip
    """Measure every retrained genotype (once), write the report; returns the summary."""
    points = genotype_points(results)
    genotypes = {k: Genotype.from_dict(p["genotype"]) for k, p in points.items()}
    measured = measured_latencies(out, genotypes, measure_ms)
    for k, p in points.items():
        p["latency_ms"] = measured[k]
        p["predicted_ms"] = round(predict_ms(genotypes[k]), 4)
    summary = pareto_summary(points)
    write_pareto_report(out, command, points, summary, context)
    return summary
