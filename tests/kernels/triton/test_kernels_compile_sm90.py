"""Every kernel, at the exact launch configs its launcher picks for the search's real shapes,
compiles for an H100 (sm_90) without register spills, on any machine: Triton compiles ahead of
time with its bundled ptxas.

The interpreter the other tests use accepts code that the GPU compiler rejects; this guards the
GPU path when no GPU is at hand. A subprocess runs without TRITON_INTERPRET, swaps each kernel
for a recorder, calls the real launchers on CPU tensors of the real shapes (nothing runs), then
compiles what they would launch with the specialisation the JIT itself would apply: the JIT's
own argument binder gives the signature, the constexpr-folded integers (== 1) and the
``tt.divisibility=16`` attributes of pointers and integers (CPU allocations are 64-byte aligned,
CUDA's 512: both divisible by 16, so pointer attributes match a GPU run).

Coverage, trimmed to what proves the point (a fused-edge compile takes ~3 s of CPU, the
others ~0.5 s; 71 compiles in 75 s of CPU, measured 2026-11-25 on the project's 2-core VM):
- float32, every channel block (BLOCK_C) the launchers pick for the paper's levels (C = 8,
  16, 32, 64 on 81², 41², 21², 11² maps, batch 2) and the tiny preset's (C = 4 on 16² maps,
  batch 8), BLOCK_C ∈ {4, 8, 16, 32, 64}: the 5×5 dilated depthwise conv (the most taps: the
  most registers), the fused edge for one weight set, the pools, the weighted sum, and the
  sum_rows variants they need. Tile elements are fixed per kernel, so registers barely move
  with BLOCK_C; the other cases take the block with the fewest pixels per program (C = 64):
  3×3 depthwise, and the fused edge for E = 2 and 3 weight sets (E_BLOCK 2 and 4; E = 1 is a
  separate compile because the JIT folds an integer argument equal to 1 into a constant).
- bfloat16 at C = 16 and float16 at C = 32 (activations in the half type, filters and mixing
  weights float32, what autocast hands the kernels): every kernel family once in bf16, all
  but the fused edge again in fp16.
"""

import os
import subprocess
import sys
import textwrap
import time

import pytest

SCRIPT = textwrap.dedent(
    r"""
    import contextlib, io, re, sys, time
    import torch, triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature
    from fastadl.kernels.triton import dwconv, edge_dwconv, pool, reduce, weighted_sum

    launches = []

    class Recorder:
        def __init__(self, fn):
            self.fn = fn

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launches.append((self.fn, args, kwargs))

    for mod in (dwconv, edge_dwconv, pool, reduce, weighted_sum):
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, JITFunction) and name.endswith("_kernel"):
                setattr(mod, name, Recorder(obj))
    knobs.runtime.interpret = True  # only so the launchers accept CPU tensors; nothing launches

    PAPER = {8: (2, 81, 81), 16: (2, 41, 41), 32: (2, 21, 21), 64: (2, 11, 11)}
    TINY = {4: (8, 16, 16)}

    def launch_all(C, dtype, specs, sets):
        N, H, W = {**PAPER, **TINY}[C]
        x = torch.randn(N, H, W, C).to(dtype)
        for k, d in specs:
            w = torch.randn(C, 1, k, k)
            dwconv.dwconv_fwd(x, w, d, True)
            dwconv.dwconv_bwd_input(x, x, w, d, True)
            dwconv.dwconv_bwd_weight(x, x, w, d, True)
        for E in sets:
            banks = [torch.randn(E, C, k * k) for k, _ in edge_dwconv.BRANCHES]
            edge_dwconv.edge_dwconv_fwd(x, *banks)
            edge_dwconv.edge_dwconv_bwd(torch.randn(E, 4, *x.shape).to(dtype), x, *banks)
        mx, av, stats, arg = pool.pool3x3_fwd(x)
        pool.pool3x3_bwd(x, x, stats, mx, av, arg, stats)
        ys = torch.randn(7, *x.shape).to(dtype)
        weighted_sum.weighted_sum_fwd(ys, torch.randn(7))
        weighted_sum.weighted_sum_bwd(x, ys, torch.randn(7))

    for C in (4, 8, 16, 32, 64):
        launch_all(C, torch.float32, [(5, 2)], [1])
    launch_all(64, torch.float32, [(3, 1)], [2, 3])  # E = 2 → E_BLOCK 2, E = 3 → E_BLOCK 4
    launch_all(16, torch.bfloat16, [(5, 2)], [1])
    launch_all(32, torch.float16, [(5, 2)], [])
    knobs.runtime.interpret = False

    target = GPUTarget("cuda", 90, 32)
    backend = make_backend(target)
    binders, seen, block_cs, dtypes = {}, set(), set(), set()
    for fn, args, kwargs in launches:
        if fn not in binders:
            binders[fn] = create_function_from_signature(fn.signature, fn.params, backend)
        bound, spec, opts = binders[fn](*args, **kwargs)
        options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, spec, opts)
        # one compile per kernel, constexprs and argument types (the first real shape's attrs)
        key = (fn.__name__, tuple(sorted(signature.items())),
               tuple(sorted((str(k), v) for k, v in constexprs.items())), options.num_warps)
        if key in seen:
            continue
        seen.add(key)
        named = {fn.arg_names[k[0]]: v for k, v in constexprs.items()}
        block_cs.add((fn.__name__, named.get("BLOCK_C")))
        dtypes.add(next(t for t in signature.values() if t.startswith("*")))
        log, t0 = io.StringIO(), time.perf_counter()
        with contextlib.redirect_stdout(log):
            triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                           options=options.__dict__)
        spills = [int(s) for s in re.findall(r"(\d+) bytes spill stores", log.getvalue())]
        regs = re.findall(r"Used (\d+) registers", log.getvalue())
        folded = sorted(set(named) - {p.name for p in fn.params if p.is_constexpr})  # ints == 1
        divisible = sorted(fn.arg_names[k[0]] for k, v in attrs.items() if v)
        print(f"{time.perf_counter() - t0:.1f}s", fn.__name__, named, "warps", options.num_warps, "regs", regs, "spills", spills,
              "folded", folded, "div16", divisible)
        assert spills and not any(spills), f"{key}: register spills {spills}"
    for name in {n for n, b in block_cs if b is not None}:  # every kernel with channel blocks
        got = sorted(b for n, b in block_cs if n == name)
        assert got == [4, 8, 16, 32, 64], f"{name}: BLOCK_C {got}"
    assert {"*fp32", "*bf16", "*fp16"} <= dtypes, dtypes
    print("compiled", len(seen))
    """
)


def test_kernels_compile_for_sm90_without_spills(tmp_path):
    pytest.importorskip("triton.backends.nvidia", reason="Triton without its NVIDIA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_DUMP_PTXAS_LOG="1", TRITON_CACHE_DIR=str(tmp_path))  # fresh cache: ptxas runs
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "compiled" in run.stdout
    print(run.stdout.splitlines()[-1], f"in {time.perf_counter() - t0:.0f} s")
