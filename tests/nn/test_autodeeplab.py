"""The final Auto-DeepLab network (docs/METHOD.md §5): sizes, shapes, drop-path, errors."""

import random

import pytest
import torch

from fastadl.nn import AutoDeepLab
from fastadl.nn.derived.autodeeplab import PAPER_SIZES
from fastadl.nn.derived.decoder import atrous_rates_for
from fastadl.nn.derived.flops import count_multiply_adds
from fastadl.nn.derived.ops import make_op
from fastadl.space.genotype import PAPER_GENOTYPE, Genotype, GenotypeError
from fastadl.space.primitives import DERIVED_PRIMITIVES
from fastadl.space.trellis import levels_at


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def random_genotype(seed, layers=12, must_visit=None):
    rng = random.Random(seed)
    while True:
        cell = tuple(
            (rng.choice(DERIVED_PRIMITIVES), rng.randrange(2 + b))
            for b in range(5)
            for _ in range(2)
        )
        path, prev = [], 0
        for layer in range(1, layers + 1):
            level = rng.choice([t for t in levels_at(layer) if abs(t - prev) <= 1])
            path.append(level)
            prev = level
        if must_visit is None or must_visit in path:
            return Genotype(cell=cell, path=tuple(path))


# Hand-made paths: up and down moves, level 3, a descent right at cell 1, an end at /32 and /4.
PATHS = [
    (1, 2, 3, 3, 2, 1, 0, 1, 2, 3, 2, 3),  # first cell strided, third cell at /32
    (0, 1, 0, 1, 2, 3, 2, 1, 0, 0, 1, 0),  # ends at /4
    (0, 0, 1),  # the shortest allowed path
]
ALL_OPS_CELL = (
    ("skip_connect", 0),
    ("max_pool_3x3", 1),
    ("avg_pool_3x3", 0),
    ("skip_connect", 1),
    ("dil_conv_3x3", 1),
    ("sep_conv_5x5", 2),
    ("max_pool_3x3", 3),
    ("avg_pool_3x3", 0),
    ("skip_connect", 4),
    ("dil_conv_5x5", 5),
)


@pytest.mark.parametrize("preset", ["S", "M", "L"])
def test_param_counts_match_paper(preset):
    with torch.device("meta"):  # no weights initialised: just shapes
        model = AutoDeepLab.from_preset(preset, num_classes=19)
    assert abs(n_params(model) / 1e6 - PAPER_SIZES[preset][0]) <= 0.01


def test_presets_filter_multiplier():
    with torch.device("meta"):
        for name, F in [("S", 20), ("M", 32), ("L", 48), ("tiny", 8)]:
            assert AutoDeepLab.from_preset(name).filter_multiplier == F
    with pytest.raises(ValueError, match="preset"):
        AutoDeepLab.from_preset("XL")


def test_only_classifier_has_bias():
    with torch.device("meta"):
        model = AutoDeepLab.from_preset("S")
    biased = [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None
    ]
    assert biased == ["decoder.classifier"]


@pytest.mark.parametrize("preset", ["S", "M", "L"])
def test_multiply_adds_near_paper(preset):
    with torch.device("meta"):
        model = AutoDeepLab.from_preset(preset)
    macs = count_multiply_adds(model, (1024, 2048)) / 1e9
    paper = PAPER_SIZES[preset][1]
    assert abs(macs / paper - 1) < 0.10, (macs, paper)


def test_multiply_adds_meta_equals_real_forward():
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = AutoDeepLab.from_preset("tiny").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 65, 97))
    assert count_multiply_adds(model, (65, 97)) == counter.get_total_flops() / 2
    model.train()  # the count leaves the model's mode alone
    count_multiply_adds(model, (33, 33))
    assert model.training


@pytest.mark.parametrize(
    "genotype, size",
    [(PAPER_GENOTYPE, (65, 97)), (PAPER_GENOTYPE, (40, 31))]
    + [(Genotype(cell=ALL_OPS_CELL, path=PATHS[0]), (65, 97))]
    + [(Genotype(cell=PAPER_GENOTYPE.cell, path=p, layers=len(p)), (57, 38)) for p in PATHS[1:]]
    + [(random_genotype(s, must_visit=3), (65, 97)) for s in range(2)],
)
def test_forward_shape_odd_sizes(genotype, size):
    torch.manual_seed(0)
    model = AutoDeepLab(
        genotype,
        num_classes=5,
        filter_multiplier=4,
        stem_channels=(8, 8, 16),
        head_channels=16,
        low_level_channels=8,
    )
    model.train()
    y = model(torch.randn(2, 3, *size))
    assert y.shape == (2, 5, *size)
    assert torch.isfinite(y).all()
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 5, *size)


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = AutoDeepLab(
        Genotype(cell=ALL_OPS_CELL, path=PATHS[0]),
        num_classes=3,
        filter_multiplier=4,
        stem_channels=(8, 8, 16),
        head_channels=16,
        low_level_channels=8,
        drop_path_prob=0.2,
    )
    x = torch.randn(2, 3, 49, 71)
    target = torch.randint(0, 3, (2, 49, 71))
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_batch_of_one_trains():
    model = AutoDeepLab.from_preset("tiny", num_classes=3).train()
    model(torch.randn(1, 3, 33, 45)).sum().backward()


def test_paper_structure():
    with torch.device("meta"):
        model = AutoDeepLab.from_preset("S")
    # stride 2 exactly where the path goes down; C = F * 2^level
    strides = [c.stride for c in model.cells]
    assert strides == [1, 1, 1, 2, 2, 1, 2, 1, 2, 1, 1, 1]
    assert [c.C for c in model.cells] == [20 * 2**s for s in PAPER_GENOTYPE.path]
    assert model.output_stride == 8
    assert model.aspp.rates == (12, 24, 36)
    assert atrous_rates_for(16) == (6, 12, 18) and atrous_rates_for(32) == (3, 6, 9)
    # H^{l-2} preprocessing only when channels differ
    assert not isinstance(model.cells[0].preprocess0, torch.nn.Identity)  # 64 → 20
    assert model.decoder.low_level[0].in_channels == 5 * 20  # third cell, at /4


def test_strided_ops_halve_rounding_up():
    x = torch.randn(1, 6, 21, 10)
    for name in DERIVED_PRIMITIVES:
        for stride, shape in [(1, (21, 10)), (2, (11, 5))]:
            assert make_op(name, 6, stride)(x).shape == (1, 6, *shape), (name, stride)


def test_drop_path_train_only_and_scheduled():
    torch.manual_seed(0)
    model = AutoDeepLab.from_preset("tiny", num_classes=4, drop_path_prob=0.5)
    x = torch.randn(4, 3, 33, 41)
    with torch.no_grad():
        model.train()
        dropped = model(x)
        model.drop_path_prob = 0.0
        clean = model(x)
        assert torch.equal(clean, model(x))  # no randomness left without drop-path
        assert not torch.allclose(dropped, clean)
        model.drop_path_prob = 0.5
        model.set_drop_path_progress(0.0)  # start of the schedule: nothing dropped yet
        assert torch.equal(model(x), clean)
        model.eval()
        model.set_drop_path_progress(1.0)
        ev = model(x)
        model.drop_path_prob = 0.0
        assert torch.equal(ev, model(x))
    # schedule: linear in progress, deeper cells drop more, skip branches never dropped
    model.drop_path_prob = 0.4
    model.set_drop_path_progress(0.5)
    n = len(model.cells)
    for i, cell in enumerate(model.cells):
        ps = [dp.p for dp in cell.drop_paths if hasattr(dp, "p")]
        assert ps and all(p == pytest.approx(0.4 * 0.5 * (i + 1) / n) for p in ps)
    skip_cell = AutoDeepLab(
        Genotype(cell=ALL_OPS_CELL, path=PATHS[2], layers=3), filter_multiplier=2
    )
    kinds = [type(dp).__name__ for dp in skip_cell.cells[0].drop_paths]
    assert [k == "Identity" for k in kinds] == [op == "skip_connect" for op, _ in ALL_OPS_CELL]


def test_genotype_errors():
    with pytest.raises(GenotypeError, match="third cell"):
        AutoDeepLab(Genotype(cell=PAPER_GENOTYPE.cell, path=(0, 1), layers=2))
    with pytest.raises(GenotypeError, match="Genotype"):
        AutoDeepLab(("not", "a genotype"))
    bad = Genotype(cell=PAPER_GENOTYPE.cell, path=PAPER_GENOTYPE.path)
    object.__setattr__(bad, "path", (0, 2) + bad.path[2:])  # tampered after validation
    with pytest.raises(GenotypeError, match="path"):
        AutoDeepLab(bad)
    d = PAPER_GENOTYPE.to_dict()
    assert AutoDeepLab(d, filter_multiplier=2).path == PAPER_GENOTYPE.path
    d["cell"][0] = ["conv_7x7", 0]
    with pytest.raises(GenotypeError, match="conv_7x7"):
        AutoDeepLab(d)
