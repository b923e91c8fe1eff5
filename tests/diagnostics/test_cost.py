"""The cost model (``python -m fastadl.cost``): its analytical FLOPs against
torch.utils.flop_counter on the reference path, its piece-by-piece counts against a count of
the whole network, its Triton launch table against real launches, and the CLI."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from fastadl import SuperNet, cost
from fastadl.diagnostics.counting import LAUNCHES, Counts, count, flop_formulas
from fastadl.diagnostics.measure import ROUTES, measure_pieces
from fastadl.diagnostics.pieces import iteration_flops, iteration_pieces
from fastadl.diagnostics.workloads import NetSpec
from fastadl.kernels import cpu

SMALL = NetSpec(3, 1, 2, 3, 2, 33, 35)  # all four levels, the stride-4 H^{l-2} corner, odd


def _counted_flops(s: NetSpec) -> tuple[int, int, int]:
    """(forward, weight-step backward, α/β-step backward) FLOPs of the reference SuperNet."""
    with torch.device("meta"):
        net = SuperNet(s.classes, layers=s.layers, filter_multiplier=s.filter_multiplier,
                       block_multiplier=s.block_multiplier, backend="reference").train()  # fmt: skip
        x = torch.empty(s.batch, 3, s.height, s.width)
        y = torch.zeros(s.batch, s.height, s.width, dtype=torch.long)
    mapping = flop_formulas()  # flop_counter, a grouped conv's weight gradient divided by groups
    result = []
    for step in ("weight", "arch"):
        for p in net.arch_parameters():
            p.requires_grad_(step == "arch")
        counter = FlopCounterMode(display=False, custom_mapping=mapping)
        with counter:
            loss = F.cross_entropy(net(x), y, ignore_index=255)
            wrt = net.weight_parameters() if step == "weight" else net.arch_parameters()
            torch.autograd.grad(loss, wrt, allow_unused=True)
        by_op = counter.get_flop_counts()["Global"]  # the reference runs only convolutions
        assert set(by_op) <= {torch.ops.aten.convolution, torch.ops.aten.convolution_backward}
        result += [by_op[torch.ops.aten.convolution], by_op[torch.ops.aten.convolution_backward]]
    assert result[0] == result[2]  # the same forward twice
    return result[0], result[1], result[3]


def test_flops_match_torch_flop_counter_on_the_reference_path():
    model = iteration_flops(iteration_pieces(SMALL))
    forward, weight_backward, arch_backward = _counted_flops(SMALL)
    for name, ours, theirs in (
        ("forward", model.weight_forward, forward),
        ("weight-step backward", model.weight_backward, weight_backward),
        ("α/β-step backward", model.arch_backward, arch_backward),
    ):
        assert abs(ours - theirs) <= 0.05 * theirs, f"{name}: model {ours:,} vs counted {theirs:,}"


def _whole_network(s: NetSpec, route: str) -> dict[str, Counts]:
    """The counts of a whole weight step's and α/β step's forward and backward, on meta tensors
    (the cpu route: with the C++ kernels' stand-in, each call one launch)."""
    calls = []
    on_cpu = cpu.stand_in(calls.append) if route == "cpu" else contextlib.nullcontext()
    with torch.device("meta"), on_cpu:
        net = s.build(ROUTES[route]).train()
        x = torch.empty(s.batch, 3, s.height, s.width)
        y = torch.zeros(s.batch, s.height, s.width, dtype=torch.long)
        weights, arch = net.weight_parameters(), net.arch_parameters()
        whole = {}
        for step, wrt, frozen in (("weight", weights, arch), ("arch", arch, weights)):
            for p in frozen:
                p.requires_grad_(False)

            def run(wrt=wrt):
                loss = F.cross_entropy(net(x), y, ignore_index=255)
                torch.autograd.grad(loss, wrt, allow_unused=True)

            calls.clear()
            whole[step] = count(run, (lambda: list(net.parameters())) if step == "weight" else None)
            whole[step].launches += len(calls)
            for p in frozen:
                p.requires_grad_(True)
    return whole


@pytest.mark.parametrize("route", ["cuda", "cpu", "reference"])
def test_piece_counts_add_up_to_the_whole_network(route, one_thread):
    """The pieces leave out the β-weighted sums, the softmaxes and autograd's gradient
    accumulation between pieces: a few per cent of the launches and bytes."""
    if route == "cpu" and cpu.library() is None:
        pytest.skip("the C++ kernels are not built: the cpu route is the cuda route")
    s = NetSpec(6, 1, 1, 3, 2, 17, 19)  # layer 6 runs the repeating layer's modules
    pieces = measure_pieces(s, iteration_pieces(s), route)
    whole = _whole_network(s, route)
    for step in ("weight", "arch"):
        got, want = pieces[step], whole[step]
        for field in ("launches", "bytes", "saved", "flops"):
            a, b = getattr(got, field), getattr(want, field)
            assert abs(a - b) <= 0.1 * b, f"{step} {field}: pieces {a:,} vs whole network {b:,}"


@pytest.mark.parametrize("route", ["cuda", "cpu"])
def test_counting_each_distinct_piece_once_gives_the_totals_of_counting_every_piece(route):
    """At a depth where layers repeat (L = 6, on small maps, where the C++ kernels
    take the calls): the same totals, exactly, from far fewer pieces."""
    s = NetSpec(6, 1, 1, 3, 2, 13, 15)
    every, distinct = iteration_pieces(s, distinct=False), iteration_pieces(s)
    assert len(distinct) < len(every) * 0.6
    fast = measure_pieces(s, distinct, route, ("weight",))
    slow = measure_pieces(s, every, route, ("weight",))
    assert fast == slow
    assert fast["weight"].launches > 0


def test_meta_tensors_count_what_fake_tensors_count():
    """The cost model counts on meta tensors (fast); FakeTensorMode's CPU tensors carry their
    device, so their layouts are eager's: both must count the same operators and bytes."""
    s = NetSpec(2, 1, 2, 3, 2, 13, 15)
    pieces = iteration_pieces(s)
    meta = measure_pieces(s, pieces, "cuda", ("weight", "arch", "forward"))
    fake = measure_pieces(s, pieces, "cuda", ("weight", "arch", "forward"), fake=True)
    assert meta == fake


def test_the_paper_preset_counts_few_distinct_pieces():
    """What keeps ``--preset paper`` within a minute (docs/PERFORMANCE.md: its measured time):
    past layer 5 no layer adds a distinct piece, so the count does not grow with depth."""
    paper = NetSpec(12, 8, 5, 19, 2, 321, 321)
    pieces = iteration_pieces(paper)
    assert len(pieces) == len(iteration_pieces(NetSpec(6, 8, 5, 19, 2, 321, 321))) <= 45
    assert max(p.layer for p in pieces) <= 5
    assert sum(p.count for p in pieces) == len(iteration_pieces(paper, distinct=False))


def test_triton_launch_table_matches_the_launchers(monkeypatch):
    """Every fastadl:: op launches as many kernels as LAUNCHES says (real launches, counted)."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    import fastadl.ops.triton.functions  # noqa: F401  (registers torch.ops.fastadl.*)
    from fastadl.kernels.triton import dwconv, edge_dwconv, pool, reduce, weighted_sum

    launched = []

    class Counting:
        def __init__(self, fn):
            self.fn = fn

        def __getitem__(self, grid):
            launched.append(self.fn)
            return self.fn[grid]

    for mod in (dwconv, edge_dwconv, pool, reduce, weighted_sum):
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, JITFunction | InterpretedFunction) and name.endswith("_kernel"):
                monkeypatch.setattr(mod, name, Counting(obj))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    x, w = torch.randn(1, 3, 4, 2, device=dev), torch.randn(2, 1, 3, 3, device=dev)
    banks = [torch.randn(1, 2, k * k, device=dev) for k in (3, 5, 3, 5)]
    ys = torch.randn(3, 1, 3, 4, 2, device=dev)
    mx, av, stats, arg = pool.pool3x3_fwd(x)
    ops = torch.ops.fastadl
    calls = {
        "weighted_sum": lambda: ops.weighted_sum(ys, torch.ones(3, device=dev)),
        "weighted_sum_backward": lambda: ops.weighted_sum_backward(
            x, ys, torch.ones(3, device=dev)
        ),
        "dwconv": lambda: ops.dwconv(x, w, 1, True),
        "dwconv_backward_input": lambda: ops.dwconv_backward_input(x, x, w, 1, True),
        "dwconv_backward_weight": lambda: ops.dwconv_backward_weight(x, x, w, 1, True),
        "edge_dwconv_multi": lambda: ops.edge_dwconv_multi(x, *banks),
        "edge_dwconv_multi_backward": lambda: ops.edge_dwconv_multi_backward(
            torch.randn(1, 4, *x.shape, device=dev), x, *banks
        ),
        "pool3x3": lambda: ops.pool3x3(x),
        "pool3x3_backward": lambda: ops.pool3x3_backward(x, x, stats, mx, av, arg, stats),
    }
    assert set(calls) == set(LAUNCHES)
    for name, call in calls.items():
        launched.clear()
        call()
        assert len(launched) == LAUNCHES[name], f"{name}: {len(launched)} launches"


def test_cost_cli_prints_counts_projections_and_timings(capsys, one_thread):
    argv = ["--preset", "tiny", "--layers", "2", "--crop-size", "24", "--batch-size", "2",
            "--routes", "cuda,cpu", "--time-iters", "1", "--val-size", "40x32",
            "--no-progress"]  # fmt: skip
    assert cost.main(argv) == 0
    out = capsys.readouterr().out
    for row in (
        "cuda: search cells on the cell-level path, ATen ops",
        "cpu: search cells on the cell-level path",
        "FLOPs needed (analytic)",
        "FLOPs as run (flop_counter)",
        "minimum bytes moved",
        "saved activations",
        "kernel launches: forward + backward",
        "kernel launches: optimizer steps",
        "validation forward 32×40: FLOPs",
    ):
        assert row in out
    for gpu in ("P100", "V100", "A100", "H100"):
        assert f"{gpu} (" in out and f"{gpu}, CUDA graphs" in out
    for column in ("weight steps", "α/β steps", "optimizer steps", "validation",
                   "data loading*", "per epoch (α/β)", "whole search"):  # fmt: skip
        assert column in out
    assert "projected search on the cuda route" in out and "on the cpu route" not in out
    assert "counted: the steps' pieces, optimizer steps, validation" in out
    assert "*estimated: data loading at 40 ms per image" in out
    assert "the paper: 3 days = 72 hours on one P100" in out
    assert "timed on cpu" in out and "whole search" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--gpus", "X100"], "--gpus"),
        (["--data", "folder"], "--train-images"),
        (["--routes", "fused"], "--routes"),
        (["--val-size", "512"], "--val-size"),
        (["--load-ms", "-1"], "--load-ms"),
        (["--preset", "tiny", "--epochs", "0"], "epochs"),
    ],
)
def test_cost_cli_errors_are_one_line(argv, message, capsys):
    assert cost.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
