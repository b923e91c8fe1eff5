"""The deterministic second stage (fastadl/kernels/triton/reduce.py::sum_rows) over many rows, the
weight-gradient grid sizing (fastadl/kernels/triton/nhwc.py::reduce_grid), and the device guard every
launcher takes (a launch for tensors on cuda:1 must run on device 1, not the current one)."""

import ast
import pathlib
import types

import pytest
import torch

from fastadl.kernels.triton import nhwc
from fastadl.kernels.triton.reduce import sum_rows

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: interpreted (conftest.py)
KERNELS_DIR = pathlib.Path(nhwc.__file__).parent


@pytest.mark.parametrize(
    "R, M",
    [
        (70, 200),  # three row steps (32 + 32 + 6) and two column blocks, both with tails
        (1, 5),  # minimal
    ],
)
def test_sum_rows_matches_torch_sum(R, M):
    part = torch.randn(R, M, device=DEVICE)
    torch.testing.assert_close(sum_rows(part), part.sum(0), rtol=1e-5, atol=1e-5)


def test_sum_rows_of_a_column_slice():
    wide = torch.randn(40, 30, device=DEVICE)
    torch.testing.assert_close(sum_rows(wide[:, 7:19]), wide[:, 7:19].sum(0))


def test_reduce_grid_is_sized_from_the_work_and_the_sm_count():
    cpu = torch.device("cpu")  # sized as a GPU with INTERPRETER_SMS SMs
    target = nhwc.PROGRAMS_PER_SM * nhwc.INTERPRETER_SMS
    # plenty of work: the grid fills the device, every tile covered exactly once in order
    grid, tiles = nhwc.reduce_grid(2 * 81 * 81, 8, 16, 8, cpu)
    assert grid == (target, 1) and (grid[0] - 1) * tiles < 2 * 81 * 81 / 16 <= grid[0] * tiles
    # several channel blocks and weight sets share the target
    grid, _ = nhwc.reduce_grid(2 * 81 * 81, 128, 1, 64, cpu, sets=2)
    assert grid == (target // 4, 2, 2)
    # little work: at least MIN_PIXELS_PER_PROG pixels per program
    grid, tiles = nhwc.reduce_grid(2 * 11 * 11, 64, 1, 64, cpu)
    assert grid == (triton_cdiv(2 * 11 * 11, nhwc.MIN_PIXELS_PER_PROG), 1)
    # never more programs than tiles, never zero
    assert nhwc.reduce_grid(5, 8, 16, 8, cpu, programs=9) == ((1, 1), 1)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def test_device_guard_makes_the_tensors_device_current(monkeypatch):
    """A fake second GPU: the guard must enter torch.cuda.device with the tensor's device."""
    entered = []

    class FakeDevice:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            entered.append(self.device)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.cuda, "device", FakeDevice)
    on_gpu1 = types.SimpleNamespace(device=torch.device("cuda", 1))  # all the guard reads
    with nhwc.device_guard(on_gpu1):
        pass
    monkeypatch.undo()
    assert entered == [torch.device("cuda", 1)]
    with nhwc.device_guard(torch.empty(1)):  # CPU (interpreter): nothing to switch
        pass


def _launches_outside_guard(tree: ast.AST) -> list[int]:
    """Line numbers of kernel launches ``name[grid](...)`` not inside ``with device_guard(..)``."""
    bad = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, ast.With):
            names = [ast.unparse(item.context_expr) for item in node.items]
            guarded = guarded or any("device_guard(" in n for n in names)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Subscript)
            and ast.unparse(node.func.value).endswith("_kernel")
            and not guarded
        ):
            bad.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return bad


def test_every_launch_is_inside_a_device_guard():
    launches = 0
    for path in sorted(KERNELS_DIR.glob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        launches += source.count("_kernel[")
        assert not _launches_outside_guard(tree), f"{path.name}: unguarded launch(es)"
    assert launches >= 10  # every launcher was seen (a renamed pattern would hide them)
