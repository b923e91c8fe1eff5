"""Proxy scores of a quality study's genotypes (fastadl/search/proxy.py) and how well they rank
the retrained ones (Kendall's τ), cached in DIR/proxy.json.

Each search's supernet scores the genotypes built from that search (searched, cell-prior,
random-path) and the ones every search shares (random-cell, no-search): τ per supernet over
those, and over the prior-path cells alone (where only the cell differs).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from fastadl.runtime.rundir.files import write_json_atomic
from fastadl.space.genotype import Genotype
from fastadl.study.quality import genotype_key
from fastadl.study.stats import kendall_tau

PROXY_FILE = "proxy.json"
SHARED = ("random-cell", "no-search")
PRIOR_PATH_GROUPS = ("random-cell", "no-search", "cell-prior")


def scored_genotypes(results: list[dict]) -> dict[str, dict[str, dict]]:
    """search name → genotype key → {"group", "genotype", "retrained" (mean over seeds)}."""
    runs: dict[str, dict] = {}
    for r in results:
        if r.get("kind") != "train" or r.get("val_miou") is None or "genotype" not in r:
            continue
        key = genotype_key(r["name"])
        entry = runs.setdefault(key, {"group": r["group"], "genotype": r["genotype"], "runs": []})
        entry["runs"].append(float(r["val_miou"]))
    searches = sorted({r["name"] for r in results if r.get("kind") == "search"})
    table: dict[str, dict[str, dict]] = {}
    for search in searches:
        suffix = search.removeprefix("search")  # "-s0"
        table[search] = {
            key: {**e, "retrained": statistics.fmean(e["runs"])}
            for key, e in runs.items()
            if e["group"] in SHARED or key.endswith(suffix)
        }
    return table


def proxy_scores(out: Path, results: list[dict], progress: bool = True) -> dict:
    """search → genotype key → proxy score, computing (and caching) the missing ones."""
    from fastadl.search.proxy import SearchProxy

    path = out / PROXY_FILE
    cache = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for search, genotypes in scored_genotypes(results).items():
        missing = [k for k in genotypes if k not in cache.get(search, {})]
        if not missing:
            continue
        proxy = SearchProxy(out / search)
        for key in missing:
            score = proxy.score(Genotype.from_dict(genotypes[key]["genotype"], key))
            cache.setdefault(search, {})[key] = score
            write_json_atomic(path, cache)
            if progress:
                print(f"proxy {search} {key}: {score:.4f}", flush=True)
    return cache


def proxy_tau(results: list[dict], scores: dict) -> dict:
    """Per search: τ between proxy and retrained scores over all its genotypes and over the
    prior-path cells; and which searched genotype the proxy would pick (K searches,
    selection by proxy) with its retrained score against the searched mean."""
    table = scored_genotypes(results)
    out: dict = {"per_search": {}}
    for search, genotypes in table.items():
        have = {k: e for k, e in genotypes.items() if k in scores.get(search, {})}
        if len(have) < 3:
            continue
        cells = {k: e for k, e in have.items() if e["group"] in PRIOR_PATH_GROUPS}
        out["per_search"][search] = {
            "genotypes": len(have),
            "tau": kendall_tau([scores[search][k] for k in have],
                               [e["retrained"] for e in have.values()]),
            "tau_prior_path_cells": kendall_tau([scores[search][k] for k in cells],
                                                [e["retrained"] for e in cells.values()]),
        }  # fmt: skip
    taus = [v["tau"] for v in out["per_search"].values()]
    if taus:
        out["mean_tau"] = statistics.fmean(taus)
    picks = {
        search: (scores[search][f"searched{search.removeprefix('search')}"],
                 table[search][f"searched{search.removeprefix('search')}"]["retrained"])
        for search in table
        if f"searched{search.removeprefix('search')}" in scores.get(search, {})
    }  # fmt: skip
    if len(picks) >= 2:
        best = max(picks, key=lambda s: picks[s][0])
        out["selection"] = {
            "picked": best,
            "picked_retrained": picks[best][1],
            "searched_mean": statistics.fmean(v[1] for v in picks.values()),
        }
    return out
