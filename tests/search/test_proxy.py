"""The proxy score: a genotype evaluated inside a search's supernet with inherited weights."""

import dataclasses

import pytest
import torch

from fastadl.nn import SuperNet
from fastadl.search.proxy import SearchProxy, genotype_network
from fastadl.search.searcher import run_search
from fastadl.space.genotype import Genotype
from fastadl.space.primitives import PRIMITIVES
from fastadl.space.trellis import normalize_betas
from tests.search.test_search import MICRO

pytestmark = pytest.mark.usefixtures("one_thread")

GENOTYPE = Genotype(
    cell=(("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 2), ("max_pool_3x3", 0)),
    path=(0, 1, 1),
    filter_multiplier=2,
    block_multiplier=2,
    layers=3,
)


def net_and_input():
    torch.manual_seed(0)
    net = SuperNet(3, layers=3, filter_multiplier=2, block_multiplier=2, backend="reference")
    return net.eval(), torch.randn(2, 3, 19, 21)


def test_architecture_weights_select_the_genotype_exactly():
    net, _ = net_and_input()
    g = genotype_network(net, GENOTYPE)
    weights = g.alphas.softmax(-1)
    # α row = edge_offset(block) + input: block 0 has rows 0-1, block 1 rows 2-4
    kept = {0: "sep_conv_3x3", 1: "skip_connect", 4: "dil_conv_3x3", 2: "max_pool_3x3"}
    for row in range(weights.shape[0]):
        op = kept.get(row, "none")
        expected = torch.zeros(len(PRIMITIVES))
        expected[PRIMITIVES.index(op)] = 1.0
        torch.testing.assert_close(weights[row], expected)
    betas = normalize_betas(g.betas)
    assert betas[0, 0, 1] == 1 and betas[1, 0, 2] == 1 and betas[2, 1, 1] == 1
    assert list(g.heads) == ["1"] and len(net.heads) == 4  # the original is left as it was


def perturbed(net, name):
    with torch.no_grad():
        dict(net.named_parameters())[name].add_(1.0)
    return net


def test_only_the_genotypes_ops_and_path_affect_the_output():
    net, x = net_and_input()
    base = genotype_network(net, GENOTYPE)(x)
    # sep_conv_5x5 (op 5) on edge 0 of the path's layer-2 node: not in the genotype
    unused = "nodes.layer2_level1.cell.edges.0.ops.5.op.1.weight"
    # an op of a node off the path (layer 2, level 0)
    off_path = "nodes.layer2_level0.cell.edges.0.ops.4.op.1.weight"
    for name in (unused, off_path):
        net2, _ = net_and_input()
        torch.testing.assert_close(genotype_network(perturbed(net2, name), GENOTYPE)(x), base)
    # sep_conv_3x3 (op 4) on edge 0 of the same node: the genotype's first branch
    net3, _ = net_and_input()
    used = "nodes.layer2_level1.cell.edges.0.ops.4.op.1.weight"
    changed = genotype_network(perturbed(net3, used), GENOTYPE)(x)
    assert (changed - base).abs().max() > 1e-4


def test_search_proxy_scores_genotypes_of_a_finished_search(tmp_path):
    cfg = dataclasses.replace(MICRO, epochs=1, layers=3, workers=0, threads=0)
    run_search(cfg, tmp_path, progress=False)
    proxy = SearchProxy(tmp_path)
    searched = Genotype.load(tmp_path / "genotype.json")
    scores = [proxy.score(searched), proxy.score(dataclasses.replace(searched, path=(0, 0, 0)))]
    assert all(0 <= s <= 1 for s in scores)
    with pytest.raises(ValueError, match="B = 2, L = 4"):
        proxy.score(dataclasses.replace(GENOTYPE, layers=4, path=(0, 0, 0, 0)))
