"""The quality study's numbers: per-level tests, variance share, DIR/report.md + summary.json.

A genotype's score is the mean final val mIoU over its retraining seeds; group tests compare
genotypes (fastadl/study/stats.py says why). The comparisons (fastadl/study/quality.py):

    cell   cell-prior vs random-cell, cell-prior vs no-search        (path fixed: the prior path)
    path   searched vs random-path, searched vs cell-prior (paired)  (cell fixed: the search's)

no-search is one genotype, so "cell-prior vs no-search" compares runs (K·S against S), which
asks whether the searched cells beat that one cell, not cells in general.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

from fastadl.runtime.rundir.files import write_json_atomic
from fastadl.study.quality import GROUPS, genotype_key
from fastadl.study.report import markdown_table, search_table
from fastadl.study.stats import (
    bootstrap_relative_gain,
    paired_pvalue,
    permutation_pvalue,
    variance_share,
)

ALPHA = 0.05  # the one-sided significance level


def genotype_scores(results: list[dict]) -> dict[str, dict[str, list[float]]]:
    """group → genotype (quality.genotype_key) → the runs' final val mIoU."""
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.get("kind") == "train" and r.get("val_miou") is not None:
            genotype = genotype_key(r["name"])
            scores[r["group"]][genotype].append(float(r["val_miou"]))
    return {g: dict(v) for g, v in scores.items()}


def _means(group: dict[str, list[float]]) -> list[float]:
    return [statistics.fmean(v) for v in group.values()]


def compare(a: list[float], b: list[float], unit: str) -> dict:
    """One-sided permutation test of mean(a) > mean(b) and the relative gain with its 95 %
    bootstrap interval; ``unit`` says what the values are (genotypes or runs)."""
    if not a or not b:
        return {"complete": False}
    gain, low, high = bootstrap_relative_gain(a, b)
    p = permutation_pvalue(a, b)
    return {"complete": True, "unit": unit, "n": [len(a), len(b)], "mean": [statistics.fmean(a),
            statistics.fmean(b)], "p": p, "gain": gain, "gain_ci": [low, high],
            "min_p": 1 / math.comb(len(a) + len(b), len(a)), "significant": p < ALPHA}  # fmt: skip


def paired(scores: dict, a: str, b: str) -> dict:
    """searched vs cell-prior for the same search: the sign-flip test on per-search
    differences (genotype a-s{k} against b-s{k})."""
    sa, sb = scores.get(a, {}), scores.get(b, {})
    diffs = []
    for name, values in sa.items():
        twin = name.replace(f"{a}-", f"{b}-", 1)
        if twin in sb:
            diffs.append(statistics.fmean(values) - statistics.fmean(sb[twin]))
    if not diffs:
        return {"complete": False}
    p = paired_pvalue(diffs)
    return {"complete": True, "differences": diffs, "p": p, "min_p": 2.0 ** -len(diffs),
            "significant": p < ALPHA}  # fmt: skip


def equal_depth_paths(results: list[dict]) -> list[dict]:
    """Do paths of equal depth differ? For every cell retrained on >= 2 different paths of one
    depth (sum of levels; the searched and depth-matched random paths share a cell), the
    variance share between those paths against seed noise."""
    runs: dict[tuple, dict[tuple, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        g = r.get("genotype")
        if r.get("kind") != "train" or r.get("val_miou") is None or not g:
            continue
        cell = tuple(tuple(b) for b in g["cell"])
        runs[(cell, sum(g["path"]))][tuple(g["path"])].append(float(r["val_miou"]))
    found = []
    for (_, depth), paths in runs.items():
        usable = {p: v for p, v in paths.items() if len(v) >= 2}
        if len(usable) >= 2:
            share = variance_share(list(usable.values()))
            found.append({"depth": depth, "paths": [list(p) for p in usable], **share})
    return found


def level_tests(scores: dict) -> dict:
    """The cell-level and path-level comparisons, and the between-cell variance share."""
    g = {name: scores.get(name, {}) for name in GROUPS}
    runs = {name: [v for vs in g[name].values() for v in vs] for name in GROUPS}
    cell = {
        "vs_random": compare(_means(g["cell-prior"]), _means(g["random-cell"]), "genotypes"),
        "vs_no_search": compare(runs["cell-prior"], runs["no-search"], "runs"),
    }
    path = {
        "vs_random": compare(_means(g["searched"]), _means(g["random-path"]), "genotypes"),
        "vs_no_search": paired(scores, "searched", "cell-prior"),
    }
    prior_cells = [
        v for name in ("random-cell", "no-search", "cell-prior") for v in g[name].values()
    ]
    share = {}
    for label, groups in (("random cells", list(g["random-cell"].values())),
                          ("all cells on the prior path", prior_cells)):  # fmt: skip
        usable = [v for v in groups if len(v) >= 2]
        if len(usable) >= 2:
            share[label] = variance_share(usable)
    return {"cell": cell, "path": path, "variance_share": share}


def _fmt(x, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def tests_table(tests: dict) -> list[str]:
    lines = ["| level | comparison | unit | n | means | one-sided p (min possible) | "
             "relative gain [95 % CI] |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for level in ("cell", "path"):
        for name, t in tests[level].items():
            if not t.get("complete"):
                lines.append(f"| {level} | {name} | | | not enough runs yet | | |")
                continue
            if "differences" in t:
                d = ", ".join(f"{x:+.4f}" for x in t["differences"])
                lines.append(f"| {level} | {name} (paired by search) | searches | "
                             f"{len(t['differences'])} | differences {d} | "
                             f"{_fmt(t['p'], 3)} ({_fmt(t['min_p'], 3)}) | |")  # fmt: skip
                continue
            low, high = t["gain_ci"]
            lines.append(
                f"| {level} | {name} | {t['unit']} | {t['n'][0]} vs {t['n'][1]} | "
                f"{_fmt(t['mean'][0])} vs {_fmt(t['mean'][1])} | {_fmt(t['p'], 3)} "
                f"({_fmt(t['min_p'], 3)}) | {100 * t['gain']:+.1f} % [{100 * low:+.1f}, "
                f"{100 * high:+.1f}] |"
            )
    return lines


def proxy_lines(proxy: dict | None) -> list[str]:
    if not proxy or not proxy.get("per_search"):
        return ["not computed yet (after the last run)"]
    lines = ["| supernet | genotypes | τ (all) | τ (prior-path cells) |", "|---|---|---|---|"]
    lines += [f"| {s} | {v['genotypes']} | {_fmt(v['tau'], 3)} | {_fmt(v['tau_prior_path_cells'], 3)} |"
              for s, v in proxy["per_search"].items()]  # fmt: skip
    lines += ["", f"Mean τ over supernets: **{_fmt(proxy.get('mean_tau'), 3)}**."]
    if "selection" in proxy:
        sel = proxy["selection"]
        lines.append(
            f"Selection by proxy among the searches: {sel['picked']}, retrained "
            f"{_fmt(sel['picked_retrained'])} (mean of the searched genotypes "
            f"{_fmt(sel['searched_mean'])})."
        )
    return lines


def write_quality_report(
    out: Path, command: str, results: list[dict], total: int, proxy: dict | None = None
) -> dict:
    """DIR/summary.json, DIR/report.md and DIR/plots/{cell,path}.png from the results so far;
    proxy: quality_proxy.proxy_tau's numbers, once computed."""
    from fastadl.study.plots import plot_groups

    scores = genotype_scores(results)
    tests = level_tests(scores)
    tests["equal_depth_paths"] = equal_depth_paths(results)
    stats = {
        group: {"n": len(v), "mean": statistics.fmean(_means(v)), "values": _means(v),
                "std": statistics.stdev(_means(v)) if len(v) > 1 else 0.0}
        for group, v in scores.items()
    }  # fmt: skip
    summary = {"kind": "quality", "finished_runs": len(results), "total_runs": total,
               "scores": scores, "groups": stats, "tests": tests, "proxy": proxy,
               "results": results}  # fmt: skip
    write_json_atomic(out / "summary.json", summary)
    plots = []
    for level, names in (("cell", ("cell-prior", "random-cell", "no-search")),
                         ("path", ("searched", "random-path", "cell-prior"))):  # fmt: skip
        shown = {n + "\n" + GROUPS[n].replace(", ", ",\n"): stats[n] for n in names if n in stats}
        if shown:
            plots.append(plot_groups(shown, f"{level} level", out / "plots" / f"{level}.png",
                                     dots="genotypes, mean of their seeds"))  # fmt: skip
    depth = tests.get("equal_depth_paths", [])
    depth_lines = [
        f"- depth {d['depth']}, paths {', '.join(' '.join(map(str, p)) for p in d['paths'])}: "
        f"share **{d['share']:.2f}** (σ_between {math.sqrt(d['between_var']):.4f}, σ_seed "
        f"{math.sqrt(d['within_var']):.4f})"
        for d in depth
    ]
    share_lines = [
        f"- {label}: σ²_between / (σ²_between + σ²_seed) = **{s['share']:.2f}** "
        f"(σ_between {math.sqrt(s['between_var']):.4f}, σ_seed {math.sqrt(s['within_var']):.4f}; "
        f"{s['genotypes']} genotypes, {s['runs']} runs)"
        for label, s in tests["variance_share"].items()
    ]
    group_lines = [
        "| group | what | genotypes | mean of genotype means | std |",
        "|---|---|---|---|---|",
    ]
    group_lines += [f"| {g} | {GROUPS.get(g, g)} | {s['n']} | {_fmt(s['mean'])} | {_fmt(s['std'])} |"
                    for g, s in stats.items()]  # fmt: skip
    lines = [
        "# Search-quality study", "", f"Command: `{command}`", "",
        f"Finished runs: {len(results)} of {total}.", "", *group_lines, "",
        "## Tests (one-sided: the first group scores higher)", "", *tests_table(tests), "",
        "## Between-genotype variance share", "", *(share_lines or ["not enough runs yet"]), "",
        "## Paths of equal depth with the same cell (do paths matter beyond their depth?)", "",
        *(depth_lines or ["no cell was retrained on two paths of one depth"]), "",
        "## Proxy (validation mIoU inside the search's supernet) against retrained mIoU", "",
        *proxy_lines(proxy), "",
        "## Runs", "", markdown_table(results), "",
        *([search_table(results), ""] if any(r.get("kind") == "search" for r in results) else []),
        *[f"![{p.stem}](plots/{p.name})" for p in plots], "",
    ]  # fmt: skip
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return summary
