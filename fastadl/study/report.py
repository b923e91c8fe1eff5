"""A study's numbers: mean ± std per group, the verdict, and DIR/report.md + DIR/summary.json.

std is the sample standard deviation (n - 1 in the denominator; 0 for a single run), the
conservative choice for groups of 3 and 5.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from fastadl.runtime.rundir.files import write_json_atomic
from fastadl.search.arch_stats import op_histogram


def group_stats(results: list[dict]) -> dict[str, dict]:
    """group → {"n", "mean", "std", "values"} of the final val mIoU of its finished runs."""
    groups: dict[str, list[float]] = {}
    for r in results:
        if r.get("kind") == "train" and r.get("val_miou") is not None:
            groups.setdefault(r["group"], []).append(float(r["val_miou"]))
    return {
        g: {
            "n": len(v),
            "mean": statistics.fmean(v),
            "std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "values": v,
        }
        for g, v in groups.items()
    }


def searched_vs_random_verdict(stats: dict[str, dict]) -> dict:
    """Does the searched group's mean exceed the random group's by more than its std?"""
    s, r = stats.get("searched"), stats.get("random")
    if not s or not r:
        return {"complete": False}
    margin = s["mean"] - r["mean"]
    return {
        "complete": True,
        "margin": margin,
        "random_std": r["std"],
        "beats_random_by_one_std": margin > r["std"],
    }


def cells_verdict(stats: dict[str, dict]) -> dict:
    """Do the cells' means differ by more than their seed-to-seed spread (largest group std)?"""
    if len(stats) < 2:
        return {"complete": False}
    means = [g["mean"] for g in stats.values()]
    spread = max(g["std"] for g in stats.values())
    return {
        "complete": True,
        "range_of_means": max(means) - min(means),
        "largest_seed_std": spread,
        "cells_matter": max(means) - min(means) > spread,
    }


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _genotype_row(result: dict) -> tuple[str, str, str]:
    """(path, cell as op(input) per block, op-group shares) of a result's genotype."""
    g = result.get("genotype")
    if not g:
        return "", "", ""
    cell = [tuple(p) for p in g["cell"]]
    blocks = [f"{cell[i][0]}({cell[i][1]}) + {cell[i + 1][0]}({cell[i + 1][1]})"
              for i in range(0, len(cell), 2)]  # fmt: skip
    shares = op_histogram(cell)
    text = ", ".join(f"{k} {v:.2f}" for k, v in shares.items())
    return str(g["path"]), "; ".join(blocks), text


def markdown_table(results: list[dict]) -> str:
    """One row per finished retraining: run, group, final / first-epoch val mIoU, genotype."""
    lines = [
        "| run | group | final val mIoU | first-epoch val mIoU | path | cell | op shares |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("kind") != "train":
            continue
        path, cell, shares = _genotype_row(r)
        lines.append(
            f"| {r['name']} | {r['group']} | {_fmt(r['val_miou'])} | "
            f"{_fmt(r.get('first_val_miou'))} | {path} | {cell} | {shares} |"
        )
    return "\n".join(lines)


def search_table(results: list[dict]) -> str:
    """One row per finished search: supernet val mIoU, how far α and β moved, the decoded cell."""
    lines = [
        "| search | first / final supernet val mIoU | mean max softmax(α) | α entropy | "
        "β entropy | skips | op shares (of the decoded cell) | path |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.get("kind") != "search":
            continue
        a = r.get("arch", {})
        shares = ", ".join(f"{k} {v:.2f}" for k, v in a.get("op_shares", {}).items())
        frozen = (
            f" (α/β frozen after epoch {a['arch_frozen_at']})" if a.get("arch_frozen_at") else ""
        )
        lines.append(
            f"| {r['name']} | {_fmt(r.get('first_val_miou'), 3)} / {_fmt(r['val_miou'], 3)} | "
            f"{_fmt(a.get('alpha_max_mean'), 3)} | {_fmt(a.get('alpha_entropy'), 3)} | "
            f"{_fmt(a.get('beta_entropy'), 3)} | {a.get('skip_count', '')}{frozen} | {shares} | "
            f"{r.get('genotype', {}).get('path', '')} |"
        )
    return "\n".join(lines)


def verdict_line(kind: str, verdict: dict) -> str:
    if not verdict.get("complete"):
        return "Verdict: not enough finished groups yet."
    if kind == "searched-vs-random":
        yes = "exceeds" if verdict["beats_random_by_one_std"] else "does not exceed"
        return (f"Verdict: searched mean − random mean = {verdict['margin']:+.4f}, which {yes} "
                f"one std of the random group ({verdict['random_std']:.4f}).")  # fmt: skip
    yes = "more" if verdict["cells_matter"] else "not more"
    return (f"Verdict: the cells' means span {verdict['range_of_means']:.4f}, {yes} than the "
            f"largest seed-to-seed std ({verdict['largest_seed_std']:.4f}).")  # fmt: skip


def stats_table(stats: dict[str, dict]) -> str:
    lines = ["| group | runs | mean val mIoU | std | values |", "|---|---|---|---|---|"]
    for g, s in stats.items():
        values = ", ".join(f"{v:.4f}" for v in s["values"])
        lines.append(f"| {g} | {s['n']} | {_fmt(s['mean'])} | {_fmt(s['std'])} | {values} |")
    return "\n".join(lines)


def write_report(out: Path, kind: str, command: str, results: list[dict], total: int) -> dict:
    """DIR/summary.json, DIR/report.md and DIR/plots/*.png from the results so far."""
    from fastadl.study.plots import plot_groups, plot_op_shares

    stats = group_stats(results)
    verdict = (
        searched_vs_random_verdict(stats) if kind == "searched-vs-random" else cells_verdict(stats)
    )
    summary = {"kind": kind, "finished_runs": len(results), "total_runs": total,
               "groups": stats, "verdict": verdict, "results": results}  # fmt: skip
    write_json_atomic(out / "summary.json", summary)
    plots = []
    if stats:
        plots.append(plot_groups(stats, kind, out / "plots" / "groups.png"))
    trained = [r for r in results if r.get("kind") == "train" and r.get("genotype")]
    if kind == "searched-vs-random" and trained:
        plots.append(plot_op_shares(trained, out / "plots" / "op_shares.png"))
    lines = [
        f"# {kind} study",
        "",
        f"Command: `{command}`",
        "",
        f"Finished runs: {len(results)} of {total}.",
        "",
        stats_table(stats),
        "",
        verdict_line(kind, verdict),
        "",
        markdown_table(results),
        "",
        *([search_table(results), ""] if any(r.get("kind") == "search" for r in results) else []),
        "",
        *[f"![{p.stem}](plots/{p.name})" for p in plots],
        "",
    ]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return summary
