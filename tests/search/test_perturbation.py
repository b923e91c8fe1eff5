"""Op and input selection by perturbation (Wang et al. 2021) against α-magnitude decoding."""

import dataclasses

import pytest
import torch

from fastadl.search.perturbation import select_inputs, select_ops, without_op
from fastadl.space.cell_topology import edge_offset, num_edges
from fastadl.space.genotype import Genotype, decode_cell
from fastadl.space.primitives import PRIMITIVES
from tests.search.test_collapse_guards import micro_task, skip_heavy_alphas

pytestmark = pytest.mark.usefixtures("one_thread")

NONE, SKIP = PRIMITIVES.index("none"), PRIMITIVES.index("skip_connect")


def test_removing_an_op_moves_its_weight_to_none_and_keeps_the_others():
    alphas = torch.randn(5, len(PRIMITIVES))
    before = alphas[2].softmax(-1)
    after = without_op(alphas, 2, SKIP, NONE)[2].softmax(-1)
    assert after[SKIP] == 0
    assert after[NONE] == pytest.approx(float(before[NONE] + before[SKIP]), rel=1e-5)
    others = [k for k in range(len(PRIMITIVES)) if k not in (SKIP, NONE)]
    torch.testing.assert_close(after[others], before[others])
    torch.testing.assert_close(
        without_op(alphas, 2, SKIP, NONE)[[0, 1, 3, 4]], alphas[[0, 1, 3, 4]]
    )


def test_perturbation_keeps_the_op_the_supernet_relies_on_not_the_largest_alpha():
    blocks = 3
    alphas = torch.nn.Parameter(skip_heavy_alphas(blocks))  # α says skip_connect everywhere
    # ...but the "supernet" only needs one conv per edge, a different one per row
    needed = [2 + row % 6 for row in range(num_edges(blocks))]
    needed = [k if k != SKIP else k + 1 for k in needed]
    important = torch.arange(num_edges(blocks), dtype=torch.float32)  # later inputs matter more

    def evaluate():
        w = alphas.detach().softmax(-1)
        rows = torch.arange(len(needed))
        return float((important + 1) @ w[rows, needed])

    tuned = []
    chosen = select_ops(alphas, PRIMITIVES, evaluate, lambda: tuned.append(1), seed=3)
    assert chosen == needed and len(tuned) == num_edges(blocks)  # fine-tuned after every edge
    assert all(op == "skip_connect" for op, _ in decode_cell(skip_heavy_alphas(blocks)))
    cell = select_inputs(alphas, PRIMITIVES, chosen, evaluate)
    # per block the two most important inputs (the last two), the stronger first
    for b in range(blocks):
        expected = [(PRIMITIVES[needed[edge_offset(b) + s]], s) for s in (1 + b, b)]
        assert list(cell[2 * b : 2 * b + 2]) == expected
    Genotype(cell, (0, 0, 0), filter_multiplier=2, block_multiplier=blocks, layers=3)  # valid
    # α is left on the chosen cell: every dropped edge on none
    w = alphas.detach().softmax(-1)
    assert (
        w[edge_offset(1) + 0, NONE] == 1 and w[edge_offset(1) + 2, needed[edge_offset(1) + 2]] == 1
    )


def test_search_with_perturbation_selection(tmp_path):
    task = micro_task(tmp_path, op_selection="perturbation", perturbation_images=4,
                      perturbation_steps=1, epochs=1, arch_start_epoch=0)  # fmt: skip
    before = [p.detach().clone() for p in task.model.weight_parameters()]
    record = task.validate(1)
    assert record["op_selection"] == "perturbation"
    cell = tuple(tuple(p) for p in record["genotype"]["cell"])
    w = task.model.alphas.detach().softmax(-1)
    for b, pair in enumerate(Genotype.from_dict(record["genotype"]).blocks()):
        for op, source in pair:
            assert w[edge_offset(b) + source, PRIMITIVES.index(op)] == 1
    assert len(cell) == 2 * task.cfg.block_multiplier
    changed = any(not torch.equal(p, q) for p, q in
                  zip(task.model.weight_parameters(), before, strict=True))  # fmt: skip
    assert changed  # fine-tuned between edges
    plain = micro_task(tmp_path / "plain", epochs=1, arch_start_epoch=0)
    assert "op_selection" not in plain.validate(1)
    assert dataclasses.asdict(task.cfg)["op_selection"] == "perturbation"
