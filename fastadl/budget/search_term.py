"""A search's cost budget: the penalty on the expected cost, what the records, the progress line
and genotype.json say of it (docs/BUDGET.md, "Searching for a budget").

The penalty is a hinge on the relative excess, weighted separately for α and β:

    w_α · max(0, E(α, sg(β)) / target − 1) + w_β · max(0, E(sg(α), β) / target − 1)

(sg = stop-gradient; the two terms have the same value, so α's gradient is w_α times, β's w_β
times the one of the hinge). Below the target it is zero: a budget is a constraint, not a
second objective, so α and β are left to the segmentation loss once the expected network fits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastadl.budget.deploy import REPORTED_UNITS, TARGET_UNITS, parse_size
from fastadl.budget.expected import DenseCost, dense_cost, expected_cost
from fastadl.budget.table import CostTable, genotype_cost
from fastadl.runtime.rundir.files import write_json_atomic
from fastadl.space.genotype import Genotype
from fastadl.space.primitives import PRIMITIVES


@dataclass
class Budget:
    """The target (in ``unit``), the two weights and the tables the search was started with:
    ``tables[unit]`` prices the penalty, the others only the decoded genotype's report."""

    unit: str
    target: float
    weight_alpha: float
    weight_beta: float
    tables: Mapping[str, CostTable]
    layers: int
    primitives: Sequence[str] = PRIMITIVES
    context: Mapping[str, object] = field(default_factory=dict)  # deploy size, device, model
    decoder: Callable[[], Genotype] | None = None  # set: the hinge reads the decoded cost

    def __post_init__(self) -> None:
        if self.target <= 0:
            raise ValueError(f"the cost target must be > 0, got {self.target}")
        self.dense: DenseCost = dense_cost(self.tables[self.unit], self.layers, self.primitives)

    def expected(self, alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """E[cost] in ``unit`` (0-d, differentiable; fastadl/budget/expected.py)."""
        if self.dense.link.device != alphas.device:  # copied to the search's device once
            self.dense = self.dense.to(alphas.device)
        return expected_cost(self.dense, alphas, betas, self.primitives)

    def estimate(self, alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """What the hinge reads: the expected cost, or with a ``decoder`` (the search's own
        decoding) the decoded network's cost carrying the expected cost's gradient
        (straight-through): the mode a decode takes can cost far less than the mean."""
        expected = self.expected(alphas, betas)
        if self.decoder is None:
            return expected
        decoded = genotype_cost(self.tables[self.unit], self.decoder())
        return expected + (decoded - expected).detach()

    def hinge(self, alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.estimate(alphas, betas) / self.target - 1)

    def penalty(self, alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """The module docstring's penalty (0-d); a term whose weight is 0 is not computed."""
        total = alphas.new_zeros(())
        if self.weight_alpha:
            total = total + self.weight_alpha * self.hinge(alphas, betas.detach())
        if self.weight_beta:
            total = total + self.weight_beta * self.hinge(alphas.detach(), betas)
        return total

    def predicted(self, genotype: Genotype) -> dict:
        """The genotype's cost in every table's unit, the target and where the figures hold."""
        costs = {u: round(genotype_cost(t, genotype), 6) for u, t in self.tables.items()}
        return {**costs, "target": self.target, "unit": self.unit, **self.context}

    def record(self, alphas: torch.Tensor, betas: torch.Tensor, genotype: Genotype) -> dict:
        """Fields of the search's epoch record: expected and decoded cost against the target."""
        with torch.no_grad():
            expected = float(self.expected(alphas, betas))
        decoded = genotype_cost(self.tables[self.unit], genotype)
        return {
            "expected_cost": expected,
            "decoded_cost": decoded,
            "cost_target": self.target,
            "cost_unit": self.unit,
        }

    def progress(self, record: Mapping[str, object]) -> str:
        """ ", cost 12.3 (expected 13.1) / 10.0 ms" for the progress line."""
        return (
            f", cost {record['decoded_cost']:.3g} (expected {record['expected_cost']:.3g}) / "
            f"{self.target:.3g} {self.unit}"
        )

    def save_genotype(self, genotype: Genotype, path) -> None:
        """genotype.json with a ``predicted_cost`` object beside the genotype's fields
        (Genotype.load reads the file and leaves it out)."""
        data = {**genotype.to_dict(), "predicted_cost": self.predicted(genotype)}
        Genotype.from_dict(data)  # the file must stay a loadable genotype
        write_json_atomic(Path(path), data)


TableBuilder = Callable[..., CostTable]


def search_budget(
    cfg,
    num_classes: int,
    default_size: Callable[[], tuple[int, int]],
    build: TableBuilder | None = None,
) -> Budget | None:
    """The Budget of a SearchConfig's flags (None without a target, and nothing else done),
    its tables built once (and cached by ``build``, default fastadl/budget/measure.py's
    cost_table) for the derived ``--deploy-model`` at --deploy-size, else ``default_size()``."""
    targets = {k: getattr(cfg, k) for k in TARGET_UNITS if getattr(cfg, k)}
    if not targets:
        return None
    size = parse_size(cfg.deploy_size) if cfg.deploy_size else tuple(default_size())
    if build is None:
        from fastadl.budget.measure import cost_table as build
    from fastadl.budget.pieces import preset_config

    ((flag, target),) = targets.items()  # config.check allows one
    unit = TARGET_UNITS[flag]
    model = preset_config(cfg.deploy_model, cfg.block_multiplier, cfg.layers, num_classes)
    # the target's table prices the penalty; all three go into genotype.json ("ms" measured on
    # the deploy device, the others counted)
    tables = {
        u: build(model, size, u, device=cfg.deploy_device, threads=cfg.deploy_threads)
        for u in (unit, *(u for u in REPORTED_UNITS if u != unit))
    }
    context = {
        "deploy_size": list(size),
        "deploy_device": cfg.deploy_device,
        "deploy_model": cfg.deploy_model,
        "deploy_threads": cfg.deploy_threads,
    }
    return Budget(
        unit, target, cfg.cost_weight_alpha, cfg.cost_weight_beta, tables, cfg.layers,
        context=context,
    )  # fmt: skip
