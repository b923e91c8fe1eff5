"""The derived network as a segmentation_models_pytorch encoder (fastadl/nn/derived/smp_encoder.py)."""

import math
import random

import pytest
import torch

from fastadl.nn import AutoDeepLab
from fastadl.nn.derived.smp_encoder import register_smp_encoder
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype
from fastadl.space.random_genotype import random_genotype

smp = pytest.importorskip(
    "segmentation_models_pytorch",
    reason="segmentation_models_pytorch cannot be imported (it needs torchvision, and the CPU "
    "build of torch 2.13.0 this project and its CI use has no torchvision that imports beside it)",
)

pytestmark = pytest.mark.usefixtures("one_thread")
SEARCHED = random_genotype(random.Random(3), blocks=5, layers=12, filter_multiplier=8)
ODD = (67, 45)
SMALL_UNET = dict(encoder_weights=None, classes=3, decoder_channels=(32, 16, 16, 8, 8))
SMALL_UNET_4 = {**SMALL_UNET, "decoder_channels": (32, 16, 8, 8)}
SHORT = Genotype(cell=PAPER_GENOTYPE.cell, path=(0, 0, 1, 2), layers=4)  # deepest feature /16


def unet(genotype, name, **kwargs):
    register_smp_encoder(name, genotype, "tiny")
    return smp.Unet(name, **{**SMALL_UNET, **kwargs})


@pytest.mark.parametrize("genotype", [PAPER_GENOTYPE, SEARCHED], ids=["paper", "searched"])
def test_unet_at_an_odd_size_forward_backward_and_reported_shapes(genotype):
    torch.manual_seed(0)
    model = unet(genotype, f"fastadl-test-{genotype.path}")
    x = torch.randn(2, 3, *ODD)
    features = model.encoder(x)
    assert model.encoder.out_channels == [f.shape[1] for f in features]
    reductions = [1, *model.encoder.features.feature_info.reduction()]
    assert reductions == [1, 2, 4, 8, 16, 32][: len(features)]
    for f, r in zip(features, reductions, strict=True):
        assert tuple(f.shape[-2:]) == tuple(math.ceil(s / r) for s in ODD)
    assert model.encoder.output_stride == 32

    logits = model(x)
    assert logits.shape == (2, 3, *ODD)
    logits.square().mean().backward()
    stem_grad = model.encoder.features.stem.conv0[0].weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0


def test_unet_trains_a_few_steps_on_one_batch():
    torch.manual_seed(0)
    model = unet(SEARCHED, "fastadl-test-train")
    x, y = torch.randn(2, 3, 41, 57), torch.randint(0, 3, (2, 41, 57))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


def test_fpn_on_a_size_divisible_by_its_output_stride():
    register_smp_encoder("fastadl-test-fpn", PAPER_GENOTYPE, "tiny")
    model = smp.FPN(
        "fastadl-test-fpn",
        encoder_weights=None,
        classes=2,
        decoder_pyramid_channels=32,
        decoder_segmentation_channels=32,
    )
    out = model(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, 2, 64, 96)
    out.mean().backward()


def test_a_trained_networks_weights_go_into_the_encoder():
    torch.manual_seed(2)
    net = AutoDeepLab.from_preset("tiny", PAPER_GENOTYPE, 4).eval()
    model = smp.Unet(register_smp_encoder("fastadl-test-net", network=net), **SMALL_UNET).eval()
    encoder = model.encoder.features
    assert encoder.stem is not net.stem  # smp deep-copies the registered params
    for (k, a), (_, b) in zip(
        encoder.state_dict().items(),
        {**net.stem.state_dict(prefix="stem."), **net.cells.state_dict(prefix="cells.")}.items(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_depth_and_dilation_beyond_the_path_are_refused_clearly():
    register_smp_encoder("fastadl-test-short", SHORT, "tiny")
    with pytest.raises(ValueError, match="encoder_depth <= 4"):
        smp.Unet("fastadl-test-short", **SMALL_UNET)
    model = smp.Unet("fastadl-test-short", encoder_depth=4, **SMALL_UNET_4)
    assert model(torch.randn(1, 3, *ODD)).shape == (1, 3, *ODD)
    with pytest.raises(ValueError, match="output_stride 8"):
        smp.DeepLabV3Plus(
            "fastadl-test-short", encoder_depth=4, encoder_weights=None, encoder_output_stride=8
        )


def test_more_input_channels_get_a_fresh_first_conv():
    register_smp_encoder("fastadl-test-4ch", SHORT, "tiny")
    model = smp.Unet("fastadl-test-4ch", in_channels=4, encoder_depth=4, **SMALL_UNET_4)
    assert model.encoder.out_channels[0] == 4
    assert model(torch.randn(2, 4, 33, 35)).shape == (2, 3, 33, 35)
