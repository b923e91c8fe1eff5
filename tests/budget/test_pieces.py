"""The derived network's pieces (fastadl/budget/pieces.py): the table's keys are exactly the
pieces genotypes use, and multiply-adds and parameters summed over a genotype's pieces equal
the whole network's counts."""

import random

import pytest

from fastadl.budget.measure import cost_table
from fastadl.budget.pieces import build_network, head_keys, link_keys, preset_config
from fastadl.budget.table import cell_positions, genotype_cost
from fastadl.nn.derived.flops import count_multiply_adds
from fastadl.space.random_genotype import random_genotype
from tests.space.test_genotype import all_valid_paths

SIZE = (37, 51)  # odd: every level rounds up


def test_keys_are_exactly_the_pieces_of_every_path():
    for layers in (3, 5, 6):
        paths = list(all_valid_paths(layers))
        links = {key for path in paths for key in cell_positions(path)}
        heads = {(path[2], path[-1]) for path in paths}
        assert links == set(link_keys(layers))
        assert heads == set(head_keys(layers))


def test_counts_equal_the_whole_network():
    # B = 2 and the tiny stem make some cells' preprocess0 an identity (channels match)
    blocks = 2
    cfg = preset_config("tiny", blocks=blocks, layers=4, num_classes=5)
    macs = cost_table(cfg, SIZE, "GMACs", cache=False)
    params = cost_table(cfg, SIZE, "Mparams", cache=False)
    rng = random.Random(blocks)
    for _ in range(3):
        genotype = random_genotype(rng, blocks, 4, 8)
        net = build_network(cfg, genotype)
        whole_params = sum(p.numel() for p in net.parameters()) / 1e6
        assert genotype_cost(macs, genotype) == pytest.approx(
            count_multiply_adds(net, SIZE) / 1e9, rel=1e-12
        )
        assert genotype_cost(params, genotype) == pytest.approx(whole_params, rel=1e-12)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown model"):
        preset_config("XL")
    with pytest.raises(ValueError, match="unknown model configuration keys"):
        cost_table({"filters": 8}, SIZE, "GMACs", cache=False)
    with pytest.raises(ValueError, match="unit"):
        cost_table(preset_config("tiny"), SIZE, "flops", cache=False)
