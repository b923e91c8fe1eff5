"""Heap corruption made visible on any machine.

A write past a buffer does not fail where it happens: glibc notices a damaged heap at some
later free(), or never, depending on the allocator's layout and the CPU's code paths. On AMD
EPYC machines (AVX2, no AVX-512) the interpreted Triton network test aborted with "corrupted
double-linked list"; on Intel ones the same writes went unnoticed. The writer was oneDNN's
AVX2 backward of a 1×1 stride-2 convolution (brgconv_strided:avx2, torch 2.13.0's oneDNN
3.12) on channels-last tensors of fewer than 8 channels: DARTS' factorized reduce, fed
channels-last by the `triton` backend. fastadl/ops/reference.py now hands oneDNN NCHW there.

These tests run such code in a child process under glibc's malloc checking (libc_malloc_debug,
MALLOC_CHECK_=3: every free checks its neighbours) with oneDNN held to AVX2 as on those
machines, so a corrupting write aborts the child on Intel and AMD alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HUNG_AFTER_S = 180
MALLOC_DEBUG = [  # glibc >= 2.34 moved MALLOC_CHECK_ into this preloadable library
    p
    for d in ("/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib")
    if os.path.exists(p := os.path.join(d, "libc_malloc_debug.so.0"))
]

FACTORIZED_REDUCE = """
import torch
from fastadl.ops.reference import FactorizedReduce

torch.manual_seed(0)
for C in range(1, 8):
    for size in (8, 16):
        for _ in range(3):
            op = FactorizedReduce(C, max(C, 2))
            x = torch.randn(4, C, size, size).contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            y = op(x)
            y.backward(torch.randn_like(y).contiguous(memory_format=torch.channels_last))
print("done")
"""

TRITON_DARTS_NETWORK = """
import sys
import torch
sys.path.insert(0, sys.argv[1])
from darts_search import DartsSearchNetwork, random_batch
from fastadl import convert_mixed_ops

torch.set_num_threads(1)
torch.manual_seed(0)
net = DartsSearchNetwork(num_classes=5, backend="reference", C=2, layers=3, steps=2, multiplier=2)
net = convert_mixed_ops(net, "triton")
x, y = random_batch(4, 8, classes=5, seed=2)
for _ in range(4):
    loss = torch.nn.functional.cross_entropy(net(x), y)
    torch.autograd.grad(loss, [*net.arch_parameters(), *net.weight_parameters()])
print("done")
"""


def run_heap_checked(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a child Python under glibc's malloc checking, oneDNN at AVX2."""
    if not MALLOC_DEBUG:
        pytest.skip("glibc's libc_malloc_debug.so.0 is not installed")
    child_env = {
        **os.environ,
        "LD_PRELOAD": MALLOC_DEBUG[0],
        "MALLOC_CHECK_": "3",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        **env,
    }
    try:
        return subprocess.run(
            [sys.executable, "-c", script, *args],
            env=child_env, capture_output=True, text=True, timeout=HUNG_AFTER_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"the child still ran after {HUNG_AFTER_S} s under malloc checking (it takes 5-15 s): "
            "after a corrupting write glibc's allocator often deadlocks instead of aborting\n"
            f"{(e.stderr or b'')[-2000:]!r}"
        )


def assert_clean(result: subprocess.CompletedProcess) -> None:
    tail = (result.stdout + result.stderr)[-2000:]
    assert result.returncode == 0 and result.stdout.strip().endswith("done"), (
        f"exit code {result.returncode} under malloc checking:\n{tail}"
    )


def test_factorized_reduce_backward_on_channels_last_keeps_the_heap_intact():
    assert_clean(run_heap_checked(FACTORIZED_REDUCE))


def test_interpreted_triton_network_keeps_the_heap_intact():
    from tests.ops.test_backends import triton_skip_reason

    reason = triton_skip_reason(False)
    if reason:
        pytest.skip(reason)
    result = run_heap_checked(TRITON_DARTS_NETWORK, str(ROOT / "examples"), TRITON_INTERPRET="1")
    assert_clean(result)
