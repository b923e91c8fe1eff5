"""Genotype, JSON round trip, cell decoding and Viterbi path decoding (docs/METHOD.md §4)."""

import itertools
import json

import pytest
import torch

from fastadl.space.cell_topology import edge_index, num_edges
from fastadl.space.genotype import (
    PAPER_GENOTYPE,
    Genotype,
    GenotypeError,
    decode_cell,
    path_log_prob,
    viterbi,
)
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.trellis import count_paths, normalize_betas


def all_valid_paths(L):
    for path in itertools.product(range(4), repeat=L):
        prev, ok = 0, True
        for layer, level in enumerate(path, start=1):
            if level > min(layer, 3) or abs(level - prev) > 1:
                ok = False
                break
            prev = level
        if ok:
            yield path


@pytest.mark.parametrize("L", [1, 2, 3, 5, 6])
@pytest.mark.parametrize("seed", range(4))
def test_viterbi_matches_brute_force(L, seed):
    g = torch.Generator().manual_seed(seed)
    nb = normalize_betas(torch.randn(L, 4, 3, generator=g) * 2)
    best = max(all_valid_paths(L), key=lambda p: path_log_prob(nb, p))
    found = viterbi(nb)
    assert found == best
    assert path_log_prob(nb, found) == pytest.approx(path_log_prob(nb, best))


def test_path_counts():
    for L in range(1, 7):
        assert count_paths(L) == sum(1 for _ in all_valid_paths(L))
    assert count_paths(12) == 75_025


def test_viterbi_follows_a_forced_path():
    target = (1, 2, 3, 3, 2, 1, 0)
    betas = torch.full((len(target), 4, 3), -20.0)
    prev = 0
    for i, level in enumerate(target):
        betas[i, prev, level - prev + 1] = 20.0
        prev = level
    assert viterbi(normalize_betas(betas)) == target


def test_decode_cell_never_returns_none():
    alphas = torch.zeros(num_edges(5), len(PRIMITIVES))
    alphas[:, PRIMITIVES.index("none")] = 10.0  # none dominates every edge
    alphas[:, PRIMITIVES.index("sep_conv_5x5")] = 1.0
    cell = decode_cell(alphas)
    assert len(cell) == 10
    assert all(op == "sep_conv_5x5" for op, _ in cell)


def test_decode_cell_top2_on_hand_built_alphas():
    alphas = torch.zeros(num_edges(5), len(PRIMITIVES))
    # block 3 (0-based 2): inputs 0..3; make input 3 strongest with dil_conv_3x3, input 0 second
    # with max_pool; input 1 has a huge `none` weight that must not count.
    alphas[edge_index(2, 3), PRIMITIVES.index("dil_conv_3x3")] = 5.0
    alphas[edge_index(2, 0), PRIMITIVES.index("max_pool_3x3")] = 3.0
    alphas[edge_index(2, 1), PRIMITIVES.index("none")] = 50.0
    alphas[edge_index(2, 2), PRIMITIVES.index("skip_connect")] = 1.0
    cell = decode_cell(alphas)
    assert cell[4:6] == (("dil_conv_3x3", 3), ("max_pool_3x3", 0))


def test_genotype_json_round_trip(tmp_path):
    g = Genotype(
        cell=PAPER_GENOTYPE.cell,
        path=(1, 1, 2, 3),
        filter_multiplier=4,
        block_multiplier=5,
        layers=4,
    )
    assert Genotype.from_json(g.to_json()) == g
    p = tmp_path / "genotype.json"
    g.save(p)
    assert Genotype.load(p) == g


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"path": [0]}', "missing field"),
        ('{"cell": [["sep_conv_3x3", 0]], "path": [0], "block_multiplier": 5}', "pairs"),
        ('{"cell": 3, "path": [0]}', "cell"),
    ],
)
def test_malformed_genotype_json_gives_clear_error(text, fragment):
    with pytest.raises(GenotypeError, match=fragment):
        Genotype.from_json(text, source="bad.json")


def test_invalid_genotype_fields_are_named(tmp_path):
    d = PAPER_GENOTYPE.to_dict()
    d["cell"][3] = ["none", 0]
    with pytest.raises(GenotypeError, match=r"cell\[3\]"):
        Genotype.from_dict(d)
    d = PAPER_GENOTYPE.to_dict()
    d["path"][4] = 0  # 1 -> 0 is a legal move ...
    d["path"][5] = 3  # ... but 0 -> 3 is not
    with pytest.raises(GenotypeError, match=r"path\[5\]"):
        Genotype.from_dict(d)
    d = PAPER_GENOTYPE.to_dict()
    d["cell"][0] = ["sep_conv_3x3", 2]  # block 1 only sees inputs 0 and 1
    with pytest.raises(GenotypeError, match=r"cell\[0\]"):
        Genotype.from_dict(d)
    missing = tmp_path / "nope.json"
    with pytest.raises(GenotypeError, match="nope.json"):
        Genotype.load(missing)


def test_paper_genotype_matches_the_method_document():
    assert PAPER_GENOTYPE.path == (0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1)
    assert PAPER_GENOTYPE.blocks() == [
        (("dil_conv_5x5", 0), ("sep_conv_3x3", 1)),
        (("sep_conv_3x3", 0), ("dil_conv_3x3", 1)),
        (("sep_conv_3x3", 3), ("sep_conv_3x3", 0)),
        (("sep_conv_5x5", 4), ("sep_conv_5x5", 2)),
        (("sep_conv_5x5", 3), ("dil_conv_5x5", 5)),
    ]
    assert (PAPER_GENOTYPE.filter_multiplier, PAPER_GENOTYPE.block_multiplier) == (8, 5)
    assert json.loads(PAPER_GENOTYPE.to_json())["layers"] == 12
