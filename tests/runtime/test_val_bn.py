"""Search-time validation with per-path batch statistics (config ``val_bn``): the supernet runs
in eval mode except its BatchNorms, which normalise each path with that path's own batch
statistics, and every running statistic ends exactly where it was."""

import pytest
import torch

from fastadl.data import build_dataset
from fastadl.nn import SuperNet
from fastadl.nn.batchnorm import batch_statistics, batchnorms
from fastadl.runtime.precision import Precision
from fastadl.runtime.validation import validation_scores
from fastadl.search import config

pytestmark = pytest.mark.usefixtures("one_thread")


def trained_net(backend: str = "auto") -> SuperNet:
    """A 3-layer supernet (nodes with 1, 2 and 3 incoming paths) whose running statistics have
    moved away from their initial values, in eval mode."""
    torch.manual_seed(0)
    net = SuperNet(4, layers=3, filter_multiplier=2, block_multiplier=2, backend=backend)
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(2, 3, 17, 19) * 3 + 1)
    return net.eval()


def buffers(net):
    return {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "batches" in k}


def unchanged(net, before) -> bool:
    state = net.state_dict()
    return all(torch.equal(state[k], v) for k, v in before.items())


def test_batch_statistics_restores_every_running_statistic_exactly():
    net = trained_net()
    before = buffers(net)
    assert any("num_batches_tracked" in k for k in before)
    x = torch.randn(2, 3, 17, 19)
    with torch.no_grad(), batch_statistics(net):
        assert all(bn.training for bn in batchnorms(net)) and not net.training
        y = net(x)
        assert not unchanged(net, before)  # the forward moved them
    assert unchanged(net, before)  # bitwise, num_batches_tracked included
    assert not any(m.training for m in net.modules())  # modes restored
    with torch.no_grad():
        assert not torch.allclose(net(x), y)  # the running averages give another answer


def test_batch_statistics_restores_after_an_error():
    net = trained_net()
    before = buffers(net)
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), batch_statistics(net):
        net(torch.randn(2, 3, 17, 19))
        raise RuntimeError("boom")
    assert unchanged(net, before)


# Odd sizes, large enough that the /32 level's BatchNorms see more than 2 values per channel
# (over 2 the backends' different summation orders are amplified beyond float32 tolerance).
@pytest.mark.parametrize("size", [(33, 35), (45, 29)])
def test_per_path_batch_statistics_match_the_reference_and_the_training_forward(size):
    fast, ref = trained_net("auto"), trained_net("reference")  # same seed: same weights
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        with batch_statistics(fast):
            y_fast = fast(x)
        with batch_statistics(ref):  # the reference evaluates a node's paths one by one
            y_ref = ref(x)
        y_train = ref.train()(x)  # what the weight and α/β steps see (batch statistics)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y_ref, y_train)


def test_validation_option_changes_the_score_and_not_the_network():
    cfg = config.resolve("tiny", {"val_batch_size": 4, "workers": 0})
    val = build_dataset("synthetic", None, "val", crop_size=None, train=False, num_images=8)
    torch.manual_seed(0)
    net = SuperNet(val.num_classes, layers=2, filter_multiplier=2, block_multiplier=2)
    with torch.no_grad():
        net(torch.randn(4, 3, 64, 64) * 2)  # running statistics unlike the data's
    before = buffers(net)
    precision = Precision("off", "cpu")
    running = validation_scores(net, val, cfg, torch.device("cpu"), precision)
    batch = validation_scores(net, val, cfg, torch.device("cpu"), precision, batch_stats=True)
    assert running != batch
    assert unchanged(net, before)
    assert net.training  # left in the mode it was found in


def test_val_bn_presets():
    assert config.PRESETS["tiny"].val_bn == "running"  # unchanged behaviour
    assert config.PRESETS["paper"].val_bn == "batch"
    with pytest.raises(ValueError, match="val_bn must be one of"):
        config.resolve("tiny", {"val_bn": "mixed"})
