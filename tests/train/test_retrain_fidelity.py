"""The retrained network's TF training details (docs/METHOD.md §5): ASPP dropout,
BatchNorm momentum / epsilon, input normalisation, and which presets use them."""

import dataclasses

import numpy as np
import pytest
import torch

from fastadl.data.transforms import to_tensors
from fastadl.nn.batchnorm import batchnorms
from fastadl.nn.derived.autodeeplab import AutoDeepLab
from fastadl.nn.derived.decoder import ASPP
from fastadl.nn.derived.fold_batchnorm import count_batchnorms, fold_batchnorm
from fastadl.train import config as train_config
from fastadl.train.config import TrainConfig
from fastadl.train.model import build_model, paper_prefix

GENOTYPE = paper_prefix(4)
pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(preset: str = "tiny", **changes) -> TrainConfig:
    return dataclasses.replace(train_config.PRESETS[preset], model="tiny", **changes)


def test_aspp_dropout_drops_a_tenth_in_training_and_nothing_in_eval():
    torch.manual_seed(0)
    drop = ASPP(12, 32, (1, 2, 3), dropout=0.1)
    plain = ASPP(12, 32, (1, 2, 3))
    plain.load_state_dict(drop.state_dict())  # dropout has no parameters: same keys
    x = torch.randn(2, 12, 9, 11)
    y, z = drop(x), plain(x)  # training mode
    zeroed = (y == 0) & (z != 0)
    assert 0.07 < zeroed.sum() / (z != 0).sum() < 0.13  # keep_prob 0.9
    kept = y != 0
    torch.testing.assert_close(y[kept], z[kept] / 0.9)  # survivors scaled by 1 / keep_prob
    assert not torch.equal(drop(x), y)  # a fresh mask per forward
    plain.load_state_dict(drop.state_dict())  # the same running statistics
    drop.eval(), plain.eval()
    assert torch.equal(drop(x), plain(x))


@pytest.mark.parametrize("preset", ["cityscapes", "voc", "ade20k"])
def test_paper_presets_use_the_tf_training_details(preset):
    cfg = train_config.PRESETS[preset]
    assert (cfg.aspp_dropout, cfg.bn_momentum, cfg.backbone_bn_eps, cfg.input_norm) == (
        0.1, 3e-4, 1e-3, "unit_range",
    )  # fmt: skip
    model = build_model(tiny_cfg(preset), GENOTYPE, 5)
    assert model.aspp.dropout.p == 0.1
    assert all(bn.momentum == 3e-4 for bn in batchnorms(model))  # TF decay 0.9997 everywhere
    assert {bn.eps for bn in batchnorms(model.stem) + batchnorms(model.cells)} == {1e-3}
    assert {bn.eps for bn in batchnorms(model.aspp) + batchnorms(model.decoder)} == {1e-5}


def test_tiny_preset_keeps_pytorch_defaults():
    model = build_model(train_config.PRESETS["tiny"], GENOTYPE, 5)
    assert model.aspp.dropout.p == 0.0 and model.input_scale is None
    assert {(bn.momentum, bn.eps) for bn in batchnorms(model)} == {(0.1, 1e-5)}


@pytest.mark.parametrize("momentum, eps", [(3e-4, 1e-3), (0.1, 1e-5)])
def test_bn_settings_act_on_running_statistics_and_normalisation(momentum, eps):
    torch.manual_seed(0)
    model = AutoDeepLab.from_preset("tiny", GENOTYPE, 5, bn_momentum=momentum, backbone_bn_eps=eps)
    bn = model.stem.conv0[1]
    x = torch.randn(2, 3, 33, 31)
    with torch.no_grad():
        h = model.stem.conv0[0](x)
        model(x)
    mean = h.mean(dim=(0, 2, 3))
    var = h.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_mean, momentum * mean)  # from 0
    torch.testing.assert_close(bn.running_var, (1 - momentum) + momentum * var)  # from 1
    bn.eval()
    with torch.no_grad():
        y = bn(h)
    expected = (h - bn.running_mean[:, None, None]) / (bn.running_var[:, None, None] + eps).sqrt()
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)


def test_unit_range_input_is_tf_preprocessing_of_the_pixels():
    image = np.random.default_rng(1).integers(0, 256, (21, 27, 3), dtype=np.uint8)
    x, _ = to_tensors(image, np.zeros((21, 27), dtype=np.int64))  # ImageNet-normalised
    tf_input = torch.from_numpy(image).permute(2, 0, 1).float() * (2 / 255) - 1
    torch.manual_seed(0)
    tf_model = build_model(tiny_cfg(input_norm="unit_range"), GENOTYPE, 5).eval()
    plain = build_model(tiny_cfg(), GENOTYPE, 5).eval()
    assert tf_model.state_dict().keys() == plain.state_dict().keys()  # checkpoints interchange
    plain.load_state_dict(tf_model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(tf_model(x[None]), plain(tf_input[None]), rtol=1e-4, atol=1e-4)


def test_tf_preset_network_folds_and_exports_with_its_input_affine():
    """Export folds every BN (epsilon 1e-3 included) and traces the [-1, 1] affine into the
    graph, so an exported package takes the same ImageNet-normalised input as evaluate."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg("cityscapes"), GENOTYPE, 5).eval()
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        expected = model(x)
        fold_batchnorm(model)
        assert count_batchnorms(model) == 0
        exported = torch.export.export(model, (x,)).module()
        torch.testing.assert_close(exported(x), expected, rtol=1e-4, atol=1e-4)


def test_configs_saved_before_these_fields_load_with_pytorch_defaults():
    saved = train_config.PRESETS["tiny"].to_dict()
    for name in ("aspp_dropout", "bn_momentum", "backbone_bn_eps", "input_norm"):
        del saved[name]
    assert TrainConfig.from_dict(saved) == train_config.PRESETS["tiny"]


@pytest.mark.parametrize(
    "field, value",
    [("aspp_dropout", 1.0), ("bn_momentum", 1.5), ("backbone_bn_eps", 0.0), ("input_norm", "x")],
)
def test_bad_training_details_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        train_config.resolve("tiny", {field: value})
