"""Latency tables (fastadl/budget/measure.py) at a tiny size: every piece timed, the sum over a
genotype positive and finite, the cache read back without timing anything. No accuracy asserts:
timings on a shared machine are noise (docs/BUDGET.md has the figures)."""

import math
import random

import pytest
import torch

from fastadl.budget import measure
from fastadl.budget.measure import cost_table, measure_latency
from fastadl.budget.pieces import build_network, link_keys, op_keys, preset_config
from fastadl.budget.table import genotype_cost
from fastadl.budget.timing import interleaved_medians_ms
from fastadl.space.random_genotype import random_genotype

SIZE = (33, 45)
CFG = preset_config("tiny", blocks=2, layers=3, num_classes=3)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTADL_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_latency_table_times_every_piece_and_is_cached(cache_dir, monkeypatch):
    threads = torch.get_num_threads()
    table = cost_table(CFG, SIZE, "ms", repeats=2, clock="cpu")
    assert torch.get_num_threads() == threads  # restored
    assert set(table.link) == set(link_keys(3)) and set(table.op) == set(op_keys())
    values = [table.fixed, *table.link.values(), *table.op.values(), *table.head.values()]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    genotype = random_genotype(random.Random(0), 2, 3, 8)
    total = genotype_cost(table, genotype)
    assert math.isfinite(total) and total > 0
    assert table.context["threads"] == 1 and table.context["size"] == list(SIZE)
    assert set(table.context["context_factors"]) >= {"fixed", "link", "head"}
    assert len(list((cache_dir / "budget").glob("ms-*.json"))) == 1

    def no_timing(*args, **kwargs):
        raise AssertionError("a cached table was timed again")

    monkeypatch.setattr(measure, "piece_cost", no_timing)
    monkeypatch.setattr(measure, "calibrated", no_timing)
    assert cost_table(CFG, SIZE, "ms", repeats=2, clock="cpu") == table
    with pytest.raises(AssertionError, match="timed again"):  # another context: not the file
        cost_table(CFG, SIZE, "ms", repeats=2, clock="cpu", dtype=torch.float64)


def test_measure_latency_is_a_positive_median(cache_dir):
    net = build_network(CFG, random_genotype(random.Random(1), 2, 3, 8))
    ms = measure_latency(net, SIZE, repeats=3)
    assert math.isfinite(ms) and ms > 0
    assert not net.training


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"unit": "s"}, "unit"),
        ({"runtime": "export"}, "not supported"),
        ({"threads": 0}, "threads"),
        ({"clock": "cpu", "threads": 2}, "clock 'cpu'"),
    ],
)
def test_bad_requests_name_the_argument(cache_dir, kwargs, message):
    kwargs = {"unit": "ms", **kwargs}
    with pytest.raises(ValueError, match=message):
        cost_table(CFG, SIZE, **kwargs)


def test_interleaved_medians_one_per_function():
    calls = []
    fns = [lambda i=i: calls.append(i) for i in range(3)]
    medians = interleaved_medians_ms(fns, torch.device("cpu"), rounds=4, clock="cpu")
    assert len(medians) == 3 and all(math.isfinite(m) and m >= 0 for m in medians)
    assert calls == [0, 1, 2] * 5  # a warm-up round, then 4 rounds, each in turn
