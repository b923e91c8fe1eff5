"""What ``auto`` runs is what the search's --help and the self-check's report line say
(fastadl/ops/dispatch.py::auto_summary, built from the decisions the dispatch takes): a search
cell takes the cell-level path on every device, its calls the C++ kernels on a CPU where they are
built and ATen ops on CUDA; a lone edge takes auto_backend's choice."""

from __future__ import annotations

import pytest
import torch

from fastadl import SearchCell
from fastadl.kernels.cpu import accepts
from fastadl.ops.cell.fast import cell_path_enabled
from fastadl.ops.dispatch import auto_backend, auto_summary, cell_path_ops
from fastadl.search.config import SearchConfig

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


def test_cell_path_ops_is_the_kernels_own_gate(cpu_kernels):
    x = torch.zeros(2, 3)
    assert cell_path_ops(CPU) == ("C++ kernels" if accepts(x) else "ATen ops")
    assert cell_path_ops(CUDA) == "ATen ops"  # CUDA tensors never reach a C++ kernel
    if cpu_kernels == "no C++ kernels":
        assert cell_path_ops(CPU) == "ATen ops"


def test_an_auto_search_cell_takes_the_cell_path():
    assert cell_path_enabled(SearchCell(3, 2, backend="auto"))
    assert not cell_path_enabled(SearchCell(3, 2, backend="triton"))


@pytest.mark.parametrize("cpu_kernels", ["C++ kernels"], indirect=True)
def test_help_and_report_line_say_what_the_dispatch_does(cpu_kernels):
    help_text = SearchConfig.__dataclass_fields__["backend"].metadata["help"]
    for device, name in ((CPU, "CPU"), (CUDA, "CUDA")):
        assert f"{cell_path_ops(device)} on {name}" in help_text, (name, help_text)
    assert "no Triton" in help_text
    line = auto_summary(CPU)
    assert "the cell-level path on C++ kernels" in line
    assert line.endswith(f": {auto_backend(CPU)}")
    assert "the cell-level path on ATen ops" in auto_summary(CUDA, edge_backend="triton")
