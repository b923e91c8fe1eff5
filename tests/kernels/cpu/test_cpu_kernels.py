"""fastadl/kernels/cpu + fastadl/ops/cell/cpu/dwconv.py: the C++ depthwise convs equal ATen's (forward,
input gradient, weight gradient; float32 and float64; odd maps, rectangular and cropped
kernels, dilations, an input repeated along channels), and a missing or broken compiler
leaves the ATen path in charge with a warning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fastadl.kernels.cpu as cpu_kernels
from fastadl.kernels.cpu import accepts
from fastadl.ops.cell.cpu.dwconv import dw_conv
from fastadl.ops.cell.cpu.dwconv import dw_weight_grad_cpp as dw_weight_grad

pytestmark = pytest.mark.numerics  # float32 sums against ATen's (scripts/test_avx2.sh)

CL = torch.channels_last
SHAPES = [  # B, Cx, R (repeats), H, W, kh, kw, dilation
    (3, 5, 1, 7, 6, 3, 3, 1),
    (2, 4, 3, 5, 3, 5, 5, 2),
    (1, 7, 2, 2, 3, 5, 3, 1),
    (2, 17, 1, 9, 9, 5, 5, 2),  # 17 channels: one full vector block and a tail (float32)
    (2, 3, 1, 1, 1, 3, 3, 1),
    (2, 40, 2, 4, 4, 3, 5, 1),
    # the tiled paths of dwconv.cpp: pixel blocks of 8, 4, 2 and 1 along a row (W = 11, 16, 2),
    # channel tiles of 2 and 1 vectors with an overlapping last vector (33, 48, 70 channels),
    # 32- and 16-byte vectors and scalars (12, 6, 2 channels), weight-gradient tiles for
    # 1x1 (4 vectors), 3x3 (2 vectors), 5x5 and, for a 7x7, the general one-tap-at-a-time path
    (1, 33, 2, 7, 11, 5, 5, 1),
    (2, 48, 1, 16, 16, 5, 5, 1),
    (2, 20, 1, 2, 2, 3, 3, 1),
    (2, 70, 1, 3, 3, 1, 1, 1),
    (2, 64, 1, 5, 5, 3, 3, 2),
    (2, 12, 2, 6, 5, 3, 3, 1),
    (1, 6, 1, 4, 7, 5, 5, 1),
    (2, 2, 3, 5, 5, 3, 3, 2),
    (1, 9, 1, 8, 8, 7, 7, 1),
]


@pytest.fixture(autouse=True)
def _need_kernels():
    if not accepts(torch.zeros(1)):
        pytest.skip("the C++ kernels did not build on this machine (see the warning)")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B, Cx, R, H, W, kh, kw, d", SHAPES)
def test_depthwise_conv_and_gradients_match_aten(B, Cx, R, H, W, kh, kw, d, dtype):
    gen = torch.Generator().manual_seed(B + Cx + H * W + kh * kw + d)
    G = R * Cx
    x = torch.randn(B, Cx, H, W, generator=gen, dtype=dtype).contiguous(memory_format=CL)
    big = torch.randn(G, 1, kh + 2, kw + 4, generator=gen, dtype=dtype)
    w = big[..., 1 : 1 + kh, 2 : 2 + kw]  # a strided slice, as the union kernels are
    pad = ((kh - 1) // 2 * d, (kw - 1) // 2 * d)
    xr = x.repeat(1, R, 1, 1).requires_grad_(True)
    wr = w.detach().clone().requires_grad_(True)
    expected = F.conv2d(xr, wr, None, 1, pad, d, G)
    out = dw_conv(x, w, d)
    assert out.is_contiguous(memory_format=CL)
    torch.testing.assert_close(out, expected)
    g = torch.randn(expected.shape, generator=gen, dtype=dtype).contiguous(memory_format=CL)
    gx, gw = torch.autograd.grad(expected, (xr, wr), g)
    torch.testing.assert_close(dw_conv(g, w, d, flip=True).view(B, R, Cx, H, W).sum(1),
                               gx.view(B, R, Cx, H, W).sum(1))  # fmt: skip
    if kh == kw:
        # a sum over B·H·W pixels: float32 rounding grows with its square root (summation order
        # differs from ATen's)
        tol = {"rtol": 1e-5, "atol": 1e-5 * (B * H * W) ** 0.5} if dtype == torch.float32 else {}
        torch.testing.assert_close(dw_weight_grad(g, x, kh, d), gw, **tol)


def test_channel_count_must_divide():
    x = torch.randn(1, 3, 4, 4).contiguous(memory_format=CL)
    with pytest.raises(ValueError, match="multiple of input channels 3"):
        dw_conv(x, torch.randn(4, 1, 3, 3), 1)


def _fresh_library(monkeypatch, tmp_path, **env):
    monkeypatch.setenv("FASTADL_CACHE_DIR", str(tmp_path))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cpu_kernels.library.cache_clear()
    try:
        return cpu_kernels.library()
    finally:
        cpu_kernels.library.cache_clear()


def test_switched_off_by_environment(monkeypatch, tmp_path):
    assert _fresh_library(monkeypatch, tmp_path, FASTADL_CPU_KERNELS="0") is None


def test_broken_compiler_warns_and_falls_back(monkeypatch, tmp_path):
    with pytest.warns(UserWarning, match="building the CPU kernels with .*false failed"):
        assert _fresh_library(monkeypatch, tmp_path, CXX="false") is None


def test_built_once_into_the_cache(monkeypatch, tmp_path):
    assert _fresh_library(monkeypatch, tmp_path) is not None
    (built,) = tmp_path.glob("cpu_kernels/*/libfastadl_cpu.so")
    stamp = built.stat().st_mtime_ns
    assert _fresh_library(monkeypatch, tmp_path) is not None
    assert built.stat().st_mtime_ns == stamp  # loaded, not rebuilt


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return {w for line in f if line.startswith("flags") for w in line.split()}
    except OSError:
        return set()


@pytest.mark.skipif("avx2" not in _cpu_flags(), reason="not an x86 CPU with AVX2")
def test_isa_switch_builds_avx2_code(monkeypatch):
    """FASTADL_CPU_ISA=avx2 builds its own library (in the user's cache: the AVX2 test run
    builds it anyway) of 8-float vectors, where the native build of an AVX-512 machine uses 16
    (scripts/test_avx2.sh runs the numerics tests that way)."""
    monkeypatch.delenv("FASTADL_CPU_ISA", raising=False)
    cpu_kernels.library.cache_clear()
    native = cpu_kernels.library()
    monkeypatch.setenv("FASTADL_CPU_ISA", "avx2")
    cpu_kernels.library.cache_clear()
    try:
        forced = cpu_kernels.library()
    finally:
        monkeypatch.undo()
        cpu_kernels.library.cache_clear()
    assert native.fastadl_vector_floats() == (16 if "avx512f" in _cpu_flags() else 8)
    assert forced.fastadl_vector_floats() == 8
    assert forced._name != native._name  # each target is its own library in the cache
    monkeypatch.setenv("FASTADL_CPU_ISA", "avx3000")
    with pytest.raises(ValueError, match="FASTADL_CPU_ISA='avx3000'"):
        cpu_kernels.isa_flags()


def test_fake_tensors_are_not_taken():
    """Under FakeTensorMode (cost model, tracing) the data pointers are not real data."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        fake = torch.empty(2, 3)
    assert cpu_kernels.accepts(torch.empty(2, 3))
    assert not cpu_kernels.accepts(fake)


def test_stand_in_takes_meta_tensors_and_only_records_the_calls():
    """The cost model's stand-in: inside it a meta tensor takes the kernels' route and a
    kernel call is recorded, not run; outside it meta tensors are refused again."""
    if cpu_kernels.library() is None:
        pytest.skip("the C++ kernels are not built (FASTADL_CPU_KERNELS=0 or no compiler)")
    meta = torch.empty(2, 3, device="meta")
    calls = []
    with cpu_kernels.stand_in(calls.append):
        assert cpu_kernels.accepts(meta)
        cpu_kernels.kernel("dw_conv", torch.float32)(meta.data_ptr(), 0, 0)
    assert calls == ["dw_conv"]
    assert not cpu_kernels.accepts(meta)
    assert cpu_kernels.kernel("dw_conv", torch.float32) is not None
