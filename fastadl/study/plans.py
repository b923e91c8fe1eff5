"""What each study runs: its jobs (jobs.Job), their configs and the genotypes they need.

**Decisions** (the issue leaves them open):
- Every retraining uses the tiny train preset with one budget (``--retrain-epochs``) and, in
  searched-vs-random, one seed: the same data, batches and initialisation seed for every
  genotype, so the groups differ by genotype only. The searches use seeds 0..N-1 (their own
  data, split and initialisation).
- The score of a run is its final validation mIoU (no best-epoch pick on the validation set).
- The cells check keeps the path fixed (the paper's first four levels, 0 0 0 1) and varies the
  op choices only: skips and pools vs separable convs on the same inputs, and the paper's cell.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from fastadl.runtime.config import ConfigError
from fastadl.search import config as search_config
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype, GenotypeError
from fastadl.space.random_genotype import random_genotype
from fastadl.study.jobs import Job
from fastadl.train import config as train_config

GENOTYPE_DIR = "genotypes"
CELLS_PATH = PAPER_GENOTYPE.path[:4]
# Two branches per block on the same inputs: only the ops differ between these two cells.
_INPUTS = (0, 1, 1, 2, 2, 3)
CHECK_CELLS: dict[str, Genotype] = {
    "skip-pool": Genotype(
        cell=tuple(
            zip(
                (
                    "skip_connect",
                    "max_pool_3x3",
                    "avg_pool_3x3",
                    "skip_connect",
                    "max_pool_3x3",
                    "skip_connect",
                ),
                _INPUTS,
                strict=True,
            )
        ),  # fmt: skip
        path=CELLS_PATH,
        filter_multiplier=4,
        block_multiplier=3,
        layers=4,
    ),  # fmt: skip
    "sep-conv": Genotype(
        cell=tuple(zip(("sep_conv_3x3",) * 6, _INPUTS, strict=True)),
        path=CELLS_PATH,
        filter_multiplier=4,
        block_multiplier=3,
        layers=4,
    ),  # fmt: skip
    "paper": Genotype(cell=PAPER_GENOTYPE.cell, path=CELLS_PATH, layers=4),
}

Flags = tuple[str | None, dict]  # (preset or None, overrides) from study.flag_overrides


def retrain_config(train: Flags, genotype: str, seed: int, epochs: int):
    preset, overrides = train
    for name in ("epochs", "seed", "genotype"):
        if name in overrides:
            raise ConfigError(f"--train-flags: --{name} is set by the study")
    changes = {**overrides, "epochs": epochs, "seed": seed, "genotype": genotype}
    return train_config.resolve(preset or train_config.DEFAULT_PRESET, changes)


def genotype_file(out: Path, name: str) -> Path:
    return out / GENOTYPE_DIR / f"{name}.json"


def plan_searched_vs_random(
    out: Path,
    seeds: int,
    n_random: int,
    retrain_epochs: int,
    retrain_seed: int,
    draw_seed: int,
    search: Flags,
    train: Flags,
    fixed_path: tuple[int, ...] | None = None,
) -> tuple[dict, list[Job], dict[Path, Genotype]]:
    """(settings, jobs, genotype files to write) of a searched-vs-random study in ``out``.

    Jobs interleave: search s0, its retraining, random r0, search s1, ... so a study that is
    stopped early already has both groups to compare. fixed_path: a control, random cells on
    this path (the cells are those of the same draw seed without it: the path is drawn and
    then replaced, so the two random groups are paired cell by cell).
    """
    preset, overrides = search
    if "seed" in overrides:
        raise ConfigError("--search-flags: --seed is set by the study (seeds 0..N-1)")

    def search_cfg(seed: int):
        return search_config.resolve(preset or search_config.DEFAULT_PRESET,
                                     {**overrides, "seed": seed})  # fmt: skip

    searches = [search_cfg(s) for s in range(seeds)]
    space = search_cfg(0)  # the space random genotypes are drawn from, also with --seeds 0
    rng = random.Random(draw_seed)
    drawn = [
        random_genotype(rng, space.block_multiplier, space.layers, space.filter_multiplier)
        for _ in range(n_random)
    ]
    if fixed_path is not None:
        try:
            drawn = [dataclasses.replace(g, path=fixed_path) for g in drawn]
        except GenotypeError as e:
            raise GenotypeError(f"--fixed-path {list(fixed_path)}: {e}") from None
    files = {genotype_file(out, f"random-r{i}"): g for i, g in enumerate(drawn)}
    searched, randoms = [], []
    for s, cfg in enumerate(searches):
        name = f"search-s{s}"
        searched.append(Job(name, "search", "search", cfg, {"seed": s}))
        retrain = retrain_config(train, str(out / name), retrain_seed, retrain_epochs)
        searched.append(Job(f"train-searched-s{s}", "train", "searched", retrain, {"seed": s}))
    for i, g in enumerate(drawn):
        retrain = retrain_config(train, str(genotype_file(out, f"random-r{i}")), retrain_seed,
                                retrain_epochs)  # fmt: skip
        info = {"draw": i, "genotype": g.to_dict()}
        randoms.append(Job(f"train-random-r{i}", "train", "random", retrain, info))
    jobs: list[Job] = []
    for k in range(max(seeds, n_random)):
        jobs += searched[2 * k : 2 * k + 2] + randoms[k : k + 1]
    settings = {"seeds": seeds, "random": n_random, "retrain_epochs": retrain_epochs,
                "retrain_seed": retrain_seed, "draw_seed": draw_seed,
                "fixed_path": None if fixed_path is None else list(fixed_path)}  # fmt: skip
    return settings, jobs, files


def plan_cells(
    out: Path, seeds: int, retrain_epochs: int, train: Flags
) -> tuple[dict, list[Job], dict[Path, Genotype]]:
    """(settings, jobs, genotype files) of the cells check: every CHECK_CELLS cell × seed."""
    files = {genotype_file(out, name): g for name, g in CHECK_CELLS.items()}
    jobs = [
        Job(
            f"train-{name}-s{s}",
            "train",
            name,
            retrain_config(train, str(genotype_file(out, name)), s, retrain_epochs),
            {"seed": s, "genotype": g.to_dict()},
        )  # fmt: skip
        for s in range(seeds)
        for name, g in CHECK_CELLS.items()
    ]
    return {"seeds": seeds, "retrain_epochs": retrain_epochs}, jobs, files
