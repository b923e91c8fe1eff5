"""Suite-wide setup. Triton kernels run on CUDA when there is one, else through Triton's
interpreter: TRITON_INTERPRET must be set before any kernel module is imported (``@triton.jit``
reads it when it decorates), so it is set here, before pytest imports any test module. Under
the interpreter every launch is then bounds-checked (fastadl/kernels/triton/bounds_check.py)."""

import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fastadl.ops.cell.small_work import torch_threads  # noqa: E402  (imports the kernels: after the above)

if os.environ.get("TRITON_INTERPRET") == "1":
    # every interpreted launch of the suite is bounds-checked: an access outside its tensors
    # raises instead of corrupting the heap (fastadl/kernels/triton/bounds_check.py)
    from fastadl.kernels.triton import bounds_check  # noqa: E402

    bounds_check.install()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread while a module runs: on a busy 2-core machine, OpenMP threads that wait
    on each other make small training steps several times slower."""
    with torch_threads(1):
        yield


# The routes of the cell path's CPU calls (fastadl/ops/cell/cpu/). Every C++ kernel is taken only
# where fastadl.kernels.cpu.accepts(t) holds, which needs a plain CPU tensor and a built library;
# a CUDA tensor fails the first test, so CUDA runs every call's ATen twin: the "no C++ kernels"
# route, which is the only check of the code a GPU search runs.
CPU_KERNEL_ROUTES = ("C++ kernels", "no C++ kernels")


@pytest.fixture(params=CPU_KERNEL_ROUTES)
def cpu_kernels(request, monkeypatch) -> str:
    """Run the test on one route of the cell path (its name is the value):
    - "C++ kernels": the CPU's default (skipped where the library is not built: the test would
      run the route below);
    - "no C++ kernels": ``library()`` answers None, so, as on CUDA, every ``accepts`` is False;
      and every fastadl module's ``kernel`` raises, so a call that bypassed ``accepts`` fails;
    - "ATen depthwise convs" (by indirect parametrization): only the depthwise convs and their
      weight gradients leave the kernels, as on CPU maps larger than the kernels' range.
    """
    import fastadl.ops.cell.fast  # noqa: F401  (imports every module that calls a kernel)
    from fastadl.kernels import cpu
    from fastadl.ops.cell import conv_runs
    from fastadl.ops.cell.cpu import dw_crop

    route = request.param
    if route == "C++ kernels" and cpu.library() is None:
        pytest.skip("the C++ kernels are not built (FASTADL_CPU_KERNELS=0 or no compiler)")
    elif route == "no C++ kernels":
        monkeypatch.setattr(cpu, "library", lambda: None)

        def refuse(name, dtype):
            raise AssertionError(f"C++ kernel {name} called on the no-C++-kernels route")

        real = cpu.kernel
        for mod_name, mod in list(sys.modules.items()):
            if mod_name.startswith("fastadl.") and getattr(mod, "kernel", None) is real:
                monkeypatch.setattr(mod, "kernel", refuse)
    elif route == "ATen depthwise convs":
        monkeypatch.setattr(conv_runs, "NATIVE_MAX_PIXELS", 0)
        monkeypatch.setattr(dw_crop, "NATIVE_WGRAD_MAX_PIXELS", 0)
    else:
        assert route == "C++ kernels", f"unknown route {route!r}"
    return route
