"""The search-quality study (``python -m fastadl.study quality``): its genotypes and jobs.

The cell and the path are judged separately, each against what a user gets without the search:

    group        cell                                 path
    searched     the search's                         the search's
    cell-prior   the search's                         the prior path (what an untrained β decodes)
    random-cell  uniform over the decodable cells     the prior path
    no-search    what an untrained α decodes          the prior path
    random-path  the search's                         uniform among the paths nearest in depth
                                                      (sum of levels) to the search's, not it

Cell level: cell-prior against random-cell and no-search (same path, only the cell differs).
Path level: searched against random-path (same cell, paths of the same depth) and against
cell-prior (same cell, the path no search gives). Every genotype is retrained with seeds
0..S-1, the same seeds for all, so runs differ by genotype and seed only.

**Decisions** (the issue leaves them open): the prior path is ``path_prior.prior_path`` (all
level 0); the no-search cell decodes α = 1e-3·N(0, 1) (SuperNet's initialisation) drawn with
the draw seed; depth-matched paths are taken in order of |Δ depth|, ties in a seeded random
order, so a searched path of unique depth still gets its nearest neighbours. Genotypes that
depend on a search are written when that search has finished (``derive``).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import torch

from fastadl.search import config as search_config
from fastadl.space.cell_topology import num_edges
from fastadl.space.genotype import Genotype, decode_cell
from fastadl.space.path_prior import all_paths, prior_path
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.random_genotype import random_cell
from fastadl.study.jobs import Job
from fastadl.study.plans import Flags, genotype_file, retrain_config

GROUPS = {
    "searched": "searched cell, searched path",
    "cell-prior": "searched cell, prior path",
    "random-cell": "random cell, prior path",
    "no-search": "untrained-α cell, prior path",
    "random-path": "searched cell, depth-matched random path",
}


def genotype_key(job_name: str) -> str:
    """The genotype a retraining job trains, from its name: train-<genotype>-t<seed>."""
    return job_name.removeprefix("train-").rsplit("-t", 1)[0]


def untrained_cell(blocks: int, seed: int) -> tuple[tuple[str, int], ...]:
    """The cell an untrained search decodes: α = 1e-3·N(0, 1) as SuperNet draws it."""
    g = torch.Generator().manual_seed(seed)
    return decode_cell(1e-3 * torch.randn(num_edges(blocks), len(PRIMITIVES), generator=g))


def matched_paths(searched: tuple[int, ...], count: int, seed: int) -> list[tuple[int, ...]]:
    """``count`` other paths nearest in depth (sum of levels) to ``searched``; ties in a random
    order fixed by ``seed``."""
    rng = random.Random(seed)
    others = [p for p in all_paths(len(searched)) if p != searched]
    keyed = [(abs(sum(p) - sum(searched)), rng.random(), p) for p in others]
    return [p for _, _, p in sorted(keyed)[:count]]


def derive_genotype(out: Path, job: Job) -> None:
    """Write the genotype file of a job that depends on a finished search (info["derive"])."""
    spec = job.info.get("derive")
    if not spec:
        return
    searched = Genotype.load(out / spec["search"] / "genotype.json")
    if spec["path"] == "prior":
        path = prior_path(searched.layers)
    else:
        path = matched_paths(searched.path, spec["index"] + 1, spec["draw_seed"])[-1]
    target = Path(job.config.genotype)
    target.parent.mkdir(parents=True, exist_ok=True)
    dataclasses.replace(searched, path=path).save(target)


def plan_quality(
    out: Path,
    searches: int,
    cells: int,
    seeds: int,
    paths: int,
    retrain_epochs: int,
    draw_seed: int,
    search: Flags,
    train: Flags,
) -> tuple[dict, list[Job], dict[Path, Genotype]]:
    """(settings, jobs, genotype files to write now) of a quality study in ``out``.

    Jobs are ordered so every dependency comes first and a study stopped early already has
    groups to compare: the random and no-search cells' retrainings interleave with the searches,
    each search's dependants follow it.
    """
    preset, overrides = search
    cfgs = [
        search_config.resolve(preset or search_config.DEFAULT_PRESET, {**overrides, "seed": s})
        for s in range(max(searches, 1))
    ]
    space = cfgs[0]
    L, B, F = space.layers, space.block_multiplier, space.filter_multiplier
    prior = prior_path(L)
    rng = random.Random(draw_seed)

    def genotype(cell) -> Genotype:
        return Genotype(cell, prior, filter_multiplier=F, block_multiplier=B, layers=L)

    files = {genotype_file(out, f"random-cell-r{i}"): genotype(random_cell(rng, B))
             for i in range(cells)}  # fmt: skip
    files[genotype_file(out, "no-search")] = genotype(untrained_cell(B, draw_seed))

    def retrain(name: str, group: str, file: Path, info: dict) -> list[Job]:
        return [
            Job(f"train-{name}-t{t}", "train", group,
                retrain_config(train, str(file), t, retrain_epochs), {**info, "seed": t})
            for t in range(seeds)
        ]  # fmt: skip

    fixed = [
        retrain(path.stem, "random-cell" if path.stem != "no-search" else "no-search", path,
                {"genotype": g.to_dict()})
        for path, g in files.items()
    ]  # fmt: skip
    searched = []
    for k in range(searches):
        name = f"search-s{k}"
        jobs = [Job(name, "search", "search", cfgs[k], {"seed": k})]
        jobs += retrain(f"searched-s{k}", "searched", out / name, {"after": name})
        derived = {"cell-prior": {"path": "prior"}}
        for j in range(paths):
            derived[f"random-path-p{j}"] = {"path": "matched", "index": j, "draw_seed": draw_seed}
        for label, spec in derived.items():
            group = "random-path" if label.startswith("random-path") else label
            file = genotype_file(out, f"{label}-s{k}")
            jobs += retrain(f"{label}-s{k}", group, file,
                            {"after": name, "derive": {"search": name, **spec}})  # fmt: skip
        searched.append(jobs)
    order: list[Job] = []
    for k in range(max(len(fixed), len(searched))):
        order += (searched[k] if k < len(searched) else []) + (fixed[k] if k < len(fixed) else [])
    settings = {"searches": searches, "cells": cells, "seeds": seeds, "paths": paths,
                "retrain_epochs": retrain_epochs, "draw_seed": draw_seed}  # fmt: skip
    return settings, order, files
