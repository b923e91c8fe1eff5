"""ConfusionMatrix against torchmetrics, the NaN rule, ignore pixels, and the DDP helpers."""

from __future__ import annotations

import math

import pytest
import torch
from ddp_utils import run_processes
from torchmetrics.classification import MulticlassJaccardIndex

from fastadl.runtime import distributed
from fastadl.runtime.metrics import ConfusionMatrix


def _random_batch(n: int, c: int, h: int = 9, w: int = 13, ignore_frac: float = 0.2, seed: int = 0):
    """pred/target (n, h, w) with every class in both and ~ignore_frac of targets = 255."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (n, h, w), generator=g)
    # Mostly-correct predictions so IoUs spread over (0, 1) instead of all sitting near 1/(2c).
    pred = torch.where(
        torch.rand(n, h, w, generator=g) < 0.6, target, torch.randint(0, c, (n, h, w), generator=g)
    )
    target[torch.rand(n, h, w, generator=g) < ignore_frac] = 255
    flat_t, flat_p = target.flatten(), pred.flatten()
    flat_t[:c] = torch.arange(c)  # every class appears in target and prediction
    flat_p[:c] = torch.arange(c)
    return pred, target


def test_iou_and_miou_match_torchmetrics_with_ignore():
    c = 7
    cm = ConfusionMatrix(c, ignore_index=255)
    per_class = MulticlassJaccardIndex(c, average="none", ignore_index=255)
    macro = MulticlassJaccardIndex(c, average="macro", ignore_index=255)
    for seed in range(3):  # accumulation over several updates
        pred, target = _random_batch(2, c, seed=seed)
        cm.update(pred, target)
        per_class.update(pred, target)
        macro.update(pred, target)
    torch.testing.assert_close(cm.iou(), per_class.compute().double(), rtol=1e-6, atol=1e-6)
    assert cm.miou() == pytest.approx(float(macro.compute()), rel=1e-6)


def test_ignored_pixels_do_not_count():
    c = 3
    target = torch.tensor([[[0, 1, 255, 255]]])
    pred_a = torch.tensor([[[0, 1, 2, 2]]])
    pred_b = torch.tensor([[[0, 1, 0, 1]]])  # differs only where the target is ignored
    a, b = ConfusionMatrix(c), ConfusionMatrix(c)
    a.update(pred_a, target)
    b.update(pred_b, target)
    torch.testing.assert_close(a.matrix, b.matrix)
    assert int(a.matrix.sum()) == 2
    assert a.pixel_accuracy() == 1.0


def test_matrix_layout_is_target_by_pred():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[[2, 2, 1]]]), torch.tensor([[[0, 0, 1]]]))
    expected = torch.tensor([[0, 0, 2], [0, 1, 0], [0, 0, 0]])
    torch.testing.assert_close(cm.matrix, expected)
    assert cm.matrix.dtype == torch.int64
    # class 0: tp 0, union 2 → 0; class 1: 1/1; class 2: tp 0, union 2 → 0
    torch.testing.assert_close(cm.iou(), torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    assert cm.pixel_accuracy() == pytest.approx(1 / 3)


def test_absent_class_is_nan_and_excluded_from_miou():
    cm = ConfusionMatrix(4)
    # class 3 appears in neither target nor prediction; class 2 only in the prediction
    cm.update(torch.tensor([[[0, 1, 2, 1]]]), torch.tensor([[[0, 1, 1, 1]]]))
    iou = cm.iou()
    assert math.isnan(iou[3])
    assert iou[2] == 0.0  # predicted but never true: a real zero, not NaN
    assert cm.miou() == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)


def test_empty_matrix_scores_are_nan_and_reset_clears():
    cm = ConfusionMatrix(3)
    assert math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy())
    cm.update(torch.tensor([[[0]]]), torch.tensor([[[0]]]))
    assert int(cm.matrix.sum()) == 1
    cm.reset()
    assert int(cm.matrix.sum()) == 0 and math.isnan(cm.miou())


def test_label_outside_range_is_an_error_naming_the_value():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="target label 7"):
        cm.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 7]]]))


def test_per_class_table_lists_every_class_and_the_mean():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[[0, 1, 1]]]), torch.tensor([[[0, 1, 0]]]))
    table = cm.per_class_table(["road", "car", "sky"])
    lines = table.splitlines()
    assert lines[1].startswith("road") and "50.00" in lines[1]
    assert lines[3].startswith("sky") and "n/a" in lines[3]
    assert lines[-1].startswith("mIoU") and "50.00" in lines[-1]


def test_distributed_helpers_are_noops_in_one_process():
    assert not distributed.is_dist()
    assert distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.is_main_process()
    assert distributed.init_distributed("cpu") == torch.device("cpu")
    distributed.barrier()
    x = torch.tensor([3, 4])
    torch.testing.assert_close(
        distributed.all_reduce_mean(x), torch.tensor([3.0, 4.0], dtype=torch.float64)
    )
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[[1]]]), torch.tensor([[[1]]]))
    cm.all_reduce()
    assert int(cm.matrix.sum()) == 1
    distributed.cleanup()


def test_a_cuda_device_becomes_the_process_s_current_device(monkeypatch):
    """--device cuda:N in one process: set_device(N) before the loader's pin-memory thread and
    the telemetry ask for the current device (they would open and report GPU 0); plain "cuda" is
    the current device, named by its index."""
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(torch.device(d)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    assert distributed.init_distributed("cuda:1") == torch.device("cuda", 1)
    assert calls == [torch.device("cuda", 1)]
    assert distributed.init_distributed("cuda") == torch.device("cuda", 2)
    assert calls[-1] == torch.device("cuda", 2)
    assert distributed.init_distributed("cpu") == torch.device("cpu") and len(calls) == 2


def _worker(out_dir: str) -> None:
    device = distributed.init_distributed("cpu")
    rank = distributed.rank()
    mean = distributed.all_reduce_mean(torch.tensor([float(rank), 10.0 * rank]))
    cm = ConfusionMatrix(3)
    # rank r sees one pixel of class r, predicted correctly
    cm.update(torch.tensor([[[rank]]]), torch.tensor([[[rank]]]))
    cm.all_reduce()
    distributed.barrier()
    torch.save(
        {"device": str(device), "rank": rank, "mean": mean, "matrix": cm.matrix},
        f"{out_dir}/{rank}.pt",
    )


def test_two_process_gloo_all_reduce(tmp_path):
    world = 2
    run_processes(_worker, world, str(tmp_path))
    expected_matrix = torch.diag(torch.tensor([1, 1, 0]))
    for r in range(world):
        got = torch.load(tmp_path / f"{r}.pt", weights_only=True)
        assert got["device"] == "cpu" and got["rank"] == r
        torch.testing.assert_close(got["mean"], torch.tensor([0.5, 5.0]))
        torch.testing.assert_close(got["matrix"], expected_matrix)
