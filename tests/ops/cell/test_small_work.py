"""The cell path's thread policy: small cells run on one intra-op thread, then threads return."""

from __future__ import annotations

import pytest
import torch

from fastadl.ops.cell.small_work import SMALL_WORK_VALUES, threads_for, torch_threads

CPU = torch.device("cpu")


@pytest.fixture
def two_threads():
    with torch_threads(2):
        yield


def test_small_work_runs_single_threaded_and_restores(two_threads):
    with threads_for(SMALL_WORK_VALUES - 1, CPU):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_large_work_and_other_devices_keep_their_threads(two_threads):
    with threads_for(SMALL_WORK_VALUES, CPU):
        assert torch.get_num_threads() == 2
    with threads_for(1, torch.device("meta")):
        assert torch.get_num_threads() == 2


def test_threads_return_when_the_block_raises(two_threads):
    with pytest.raises(RuntimeError), threads_for(1, CPU):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


def test_a_small_cell_leaves_the_thread_count_as_it_found_it(two_threads):
    from fastadl import SearchCell

    cell = SearchCell(3, 2).train()
    s0 = torch.randn(2, 3, 5, 5, requires_grad=True)
    out = cell.forward_paths(s0, [torch.randn(2, 3, 5, 5)], torch.rand(5, 8).softmax(-1),
                             torch.ones(1))  # fmt: skip
    assert torch.get_num_threads() == 2
    out.sum().backward()
    assert torch.get_num_threads() == 2 and s0.grad is not None
