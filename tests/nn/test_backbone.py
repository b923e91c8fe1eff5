"""The derived network as a timm-style feature extractor (fastadl/nn/derived/backbone.py)."""

import math
import random

import pytest
import torch

from fastadl.nn import AutoDeepLab
from fastadl.nn.derived.autodeeplab import trunk
from fastadl.nn.derived.backbone import AutoDeepLabFeatures, autodeeplab_backbone
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype
from fastadl.space.random_genotype import random_genotype

pytestmark = pytest.mark.usefixtures("one_thread")
SEARCHED = random_genotype(random.Random(3), blocks=5, layers=12, filter_multiplier=8)
ODD = (67, 45)  # neither side divisible by 2


def check_features(backbone, features, size):
    """Reported channels and reductions against the features' shapes (sizes round up)."""
    info = backbone.feature_info
    assert len(features) == len(info)
    assert info.channels() == [f.shape[1] for f in features]
    for f, r in zip(features, info.reduction(), strict=True):
        assert tuple(f.shape[-2:]) == tuple(math.ceil(s / r) for s in size)
    assert info.reduction() == [2**k for k in range(1, len(features) + 1)]


@pytest.mark.parametrize("genotype", [PAPER_GENOTYPE, SEARCHED], ids=["paper", "searched"])
def test_features_at_an_odd_size_match_their_description(genotype):
    torch.manual_seed(0)
    backbone = autodeeplab_backbone(genotype, "tiny")
    features = backbone(torch.randn(2, 3, *ODD))
    check_features(backbone, features, ODD)
    deepest = 4 * 2 ** max(genotype.path)
    assert backbone.feature_info.reduction(-1) == deepest
    # each scale's feature is the last cell at that level along the path
    last_at = {4 * 2**lvl: f"cells.{i}" for i, lvl in enumerate(genotype.path)}
    for d in backbone.feature_info:
        if d["reduction"] > 2:
            assert d["module"] == last_at.get(d["reduction"], "stem.conv2")


def test_an_int_width_sets_the_cells_channels():
    backbone = autodeeplab_backbone(PAPER_GENOTYPE, 12, stem_channels=(8, 8, 16))
    channels = backbone.feature_info.channels()
    assert channels[0] == 8
    # cell channels are B · F · 2^level with B = 5 blocks
    assert channels[1:] == [5 * 12 * 2**k for k in range(len(channels) - 1)]
    check_features(backbone, backbone(torch.randn(1, 3, 40, 33)), (40, 33))


def test_features_are_the_trained_networks_own_tensors():
    torch.manual_seed(1)
    net = AutoDeepLab.from_preset("tiny", SEARCHED, 4, input_scale=[2.0] * 3, input_shift=[0.5] * 3)
    net.eval()
    backbone = AutoDeepLabFeatures.from_network(net)
    assert backbone.stem is net.stem and backbone.cells is net.cells
    x = torch.randn(1, 3, *ODD)
    with torch.no_grad():
        every = trunk(net, x, range(2 + len(net.cells)))
        features = backbone(x)
    levels = (-1, 0, *net.path)  # trunk position → level (-1: the /2 tap)
    for f, r in zip(features, backbone.feature_info.reduction(), strict=True):
        level = int(math.log2(r)) - 2
        position = max(p for p, lvl in enumerate(levels) if lvl == level)
        torch.testing.assert_close(f, every[position], rtol=0, atol=0)


def test_out_indices_pick_features_and_bad_ones_are_named():
    backbone = autodeeplab_backbone(PAPER_GENOTYPE, "tiny", out_indices=(1, 3))
    assert backbone.feature_info.reduction() == [4, 16]
    features = backbone(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in features] == backbone.feature_info.channels()
    with pytest.raises(ValueError, match="feature levels"):
        autodeeplab_backbone(PAPER_GENOTYPE, "tiny", out_indices=(7,))
    with pytest.raises(ValueError, match="int width"):
        autodeeplab_backbone(PAPER_GENOTYPE, 2.5)


def test_a_path_that_never_stays_at_level_0_reports_the_stems_output_at_4():
    genotype = Genotype(cell=PAPER_GENOTYPE.cell, path=(1, 2, 2), layers=3)
    backbone = autodeeplab_backbone(genotype, "tiny")
    assert backbone.feature_info.module_name() == ["stem.conv1", "stem.conv2", "cells.0", "cells.2"]
    check_features(backbone, backbone(torch.randn(1, 3, 33, 31)), (33, 31))
