"""The trellis SuperNet: shapes, cell counts, β normalisation, gradients (docs/METHOD.md §2)."""

import pytest
import torch

from fastadl.nn import SearchCell, SuperNet
from fastadl.nn.search.mixed_op import MixedOp
from fastadl.space.trellis import COARSER, FINER, normalize_betas, num_cell_evaluations, num_nodes


def small_net(layers=3, F=2, classes=4, **kw):
    torch.manual_seed(0)
    return SuperNet(classes, layers=layers, filter_multiplier=F, **kw)


@pytest.mark.parametrize("size", [(33, 47), (65, 65), (17, 9)])  # odd sizes
def test_output_shape_on_odd_inputs(size):
    net = small_net(layers=4)
    y = net(torch.randn(2, 3, *size))
    assert y.shape == (2, 4, *size)


def test_full_depth_runs_45_cells_105_evaluations_20_edges(monkeypatch):
    net = small_net(layers=12, F=1, classes=3, block_multiplier=5)
    cells = [m for m in net.modules() if isinstance(m, SearchCell)]
    assert len(cells) == 45 == num_nodes(12)
    assert all(sum(isinstance(e, MixedOp) for e in c.edges) == 20 for c in cells)
    per_node = {id(c): 0 for c in cells}  # a node evaluates its cell once per incoming path
    forward_paths = SearchCell.forward_paths

    def counting(self, s0, s1s, weights, betas):
        per_node[id(self)] += len(s1s)
        return forward_paths(self, s0, s1s, weights, betas)

    monkeypatch.setattr(SearchCell, "forward_paths", counting)
    with torch.no_grad():
        y = net(torch.randn(1, 3, 33, 47))
    assert y.shape == (1, 3, 33, 47)
    assert sum(per_node.values()) == 105 == num_cell_evaluations(12)
    assert sorted(set(per_node.values())) == [1, 2, 3]


@pytest.mark.parametrize("L", [1, 2, 3, 12])
def test_normalized_betas_sum_to_one_over_allowed_targets(L):
    torch.manual_seed(L)
    nb = normalize_betas(torch.randn(L, 4, 3))
    for i in range(L):
        for s in range(4):
            row = nb[i, s]
            if s > min(i, 3):  # no node at this level in layer i
                assert torch.equal(row, torch.zeros(3))
                continue
            torch.testing.assert_close(row.sum(), torch.tensor(1.0))
            allowed = (row > 0).sum().item()
            assert allowed == (2 if s in (0, 3) else 3)
    assert torch.all(nb[:, 0, FINER] == 0) and torch.all(nb[:, 3, COARSER] == 0)


def test_net_normalized_betas_is_eq7_softmax():
    net = small_net(layers=5)
    with torch.no_grad():
        net.betas.normal_()
    nb = net.normalized_betas()
    expected = torch.softmax(net.betas[4, 2], -1)  # level 2 (interior) has 3 targets
    torch.testing.assert_close(nb[4, 2], expected)
    expected = torch.softmax(net.betas[4, 3, :2], -1)  # level 3 cannot go coarser
    torch.testing.assert_close(nb[4, 3, :2], expected)


def test_one_backward_reaches_every_alpha_and_every_reachable_beta():
    net = small_net(layers=4)
    net(torch.randn(2, 3, 19, 23)).logsumexp(1).mean().backward()
    assert torch.all(net.alphas.grad != 0)
    from fastadl.space.trellis import transition_mask

    reachable = transition_mask(4)
    assert torch.all(net.betas.grad[reachable] != 0)
    assert torch.all(net.betas.grad[~reachable] == 0)
    assert all(p.grad is not None for p in net.weight_parameters())


def test_parameters_split_and_state_dict():
    net = small_net()
    assert net.alphas.shape == (20, 8) and net.betas.shape == (3, 4, 3)
    sd = net.state_dict()
    assert "alphas" in sd and "betas" in sd
    arch = net.arch_parameters()
    weights = net.weight_parameters()
    assert len(arch) == 2
    assert len(weights) + 2 == len(list(net.parameters()))
    assert 0 < net.alphas.abs().max() < 1e-2  # 1e-3·N(0,1) init


def test_genotype_from_net_is_valid():
    net = small_net(layers=5, F=3)
    g = net.genotype()
    assert len(g.path) == 5 and len(g.cell) == 10
    assert (g.filter_multiplier, g.block_multiplier, g.layers) == (3, 5, 5)


def test_other_block_counts():
    net = SuperNet(2, layers=2, filter_multiplier=2, block_multiplier=3)
    assert net.alphas.shape == (2 + 3 + 4, 8)
    assert net(torch.randn(1, 3, 20, 20)).shape == (1, 2, 20, 20)
