"""C++ kernels for the CPU cell path, built with the machine's C++ compiler at first use.

On the small maps of a search most ATen calls cost what their dispatch costs (oneDNN's
depthwise convs 30-100 µs each on 2²-8² maps); these loops cost what their arithmetic costs.
They are plain C++ with a C ABI and no torch headers, called through ctypes on tensors'
data pointers. The library is built once per machine, source and compiler (5-15 s on two busy
cores, the sources compiled in parallel) into ``cache_root()/cpu_kernels/<digest>/``
(fastadl/cache.py) and reused.

``library()`` is None, and the callers keep their ATen path, when ``FASTADL_CPU_KERNELS=0``
is set or no compiler is found or the build fails (then a warning says why, once).

``FASTADL_CPU_ISA`` picks the instruction set the library is compiled for: ``native`` (the
default: ``-march=native``, the build machine's widest vectors) or ``avx2`` (``-march=x86-64-v3``:
AVX2 and FMA, no AVX-512), which on an AVX-512 machine builds the code an AVX2-only CPU (an AMD
EPYC before Zen 4) runs. With ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_ENABLE_INSTRUCTIONS=AVX2`` for torch's own kernels it makes every CPU code path the AVX2
one (scripts/test_avx2.sh). ``vector_floats()`` says what the loaded library was built for.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from fastadl.cache import cache_root

SOURCES = ("dwconv.cpp", "bn_rows.cpp", "pointwise.cpp", "pools.cpp", "group.cpp", "parallel.cpp",
           "isa.cpp")  # fmt: skip
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno")  # -shared: the link
# Tuned to the machine it builds on; the digest includes the CPU, so a cache shared between
# different machines gets one library per CPU. FASTADL_CPU_ISA (module docstring) picks
# another target; the digest includes the flags, so each choice is its own library.
ISA_FLAGS = {"native": ("-march=native",), "avx2": ("-march=x86-64-v3",)}


def isa_flags() -> tuple[str, ...]:
    """The target flags FASTADL_CPU_ISA asks for (``native`` when unset)."""
    isa = os.environ.get("FASTADL_CPU_ISA", "native").strip().lower() or "native"
    if isa not in ISA_FLAGS:
        raise ValueError(f"FASTADL_CPU_ISA={isa!r}: expected one of {', '.join(ISA_FLAGS)}")
    return ISA_FLAGS[isa]


# The large calls split their work between torch's OpenMP threads (parallel.h: libgomp.so.1 is
# linked by soname, so in a torch process the kernels share torch's thread pool); a compiler
# without OpenMP builds them single-threaded.
OPENMP_FLAGS = ("-fopenmp",)
HEADERS = ("parallel.h",)

_P, _I = ctypes.c_void_p, ctypes.c_int64
SIGNATURES = {  # name: argument types (all return void)
    "fastadl_dw_conv_{}": [_P, _P, _P, _P] + [_I] * 10 + [ctypes.c_int],
    "fastadl_dw_conv_ex_{}": [_P, _P, _P, _P] + [_I] * 10 + [ctypes.c_int, _I, _I, ctypes.c_int],
    "fastadl_dw_wgrad_{}": [_P, _P, _P] + [_I] * 10,
    "fastadl_bn_forward_{}": [_P] * 5 + [_I] * 5 + [ctypes.c_double],
    "fastadl_mix_rows_{}": [_P] * 5 + [_I] * 6 + [ctypes.c_int],
    "fastadl_bn_backward_{}": [_P] * 13 + [_I] * 6,
    "fastadl_mix_backward_{}": [_P] * 6 + [_I] * 4,
    "fastadl_pointwise_{}": [_P] * 4 + [_I] * 5 + [ctypes.c_int],
    "fastadl_pointwise_wgrad_{}": [_P] * 3 + [_I] * 5,
    "fastadl_pools_forward_{}": [_P] * 4 + [_I] * 4,
    "fastadl_pools_backward_{}": [_P] * 4 + [_I] * 4 + [ctypes.c_int],
    "fastadl_group_forward_{}": [_P, ctypes.c_double],
    "fastadl_group_backward_{}": [_P],
}


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + platform.processor()
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(lines)))


def _compile(cxx: str, flags: tuple[str, ...], tmpdir: str) -> str | None:
    """Each source to an object file, all at once (one process per source: the build is
    compile-bound), then one link into tmpdir/lib.so; returns the first complaint or None."""
    objs, procs = [], []
    for s in SOURCES:
        obj = os.path.join(tmpdir, s + ".o")
        objs.append(obj)
        cmd = [cxx, *flags, "-c", str(Path(__file__).parent / s), "-o", obj]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))  # fmt: skip
    errors = [(p.communicate()[1], p.returncode) for p in procs]
    for stderr, code in errors:
        if code:
            return (stderr.strip().splitlines()[-1:] or [f"exit code {code}"])[0]
    r = subprocess.run([cxx, *flags, *objs, "-o", os.path.join(tmpdir, "lib.so")],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode:
        return (r.stderr.strip().splitlines()[-1:] or [f"exit code {r.returncode}"])[0]
    return None


def _build(cxx: str, out: Path) -> str | None:
    """Compile the sources into ``out``; returns the compiler's complaint on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # build in a private directory and rename: concurrent processes (pytest -n, DDP ranks)
    # never load a half-written library
    with tempfile.TemporaryDirectory(dir=out.parent) as tmpdir:
        err = None
        target = isa_flags()
        for flags in (FLAGS + OPENMP_FLAGS + target, FLAGS + target, FLAGS):
            err = _compile(cxx, flags, tmpdir)
            if err is None:
                os.replace(os.path.join(tmpdir, "lib.so"), out)
                return None
    return err


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.fastadl_parallel_threads.argtypes, lib.fastadl_parallel_threads.restype = [], ctypes.c_int
    lib.fastadl_parallel_min_work.argtypes, lib.fastadl_parallel_min_work.restype = [], _I
    lib.fastadl_vector_floats.argtypes, lib.fastadl_vector_floats.restype = [], ctypes.c_int
    for pattern, argtypes in SIGNATURES.items():
        for suffix in ("f32", "f64"):
            fn = getattr(lib, pattern.format(suffix))
            fn.argtypes, fn.restype = argtypes, None
    return lib


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded library, or None (see the module docstring)."""
    if os.environ.get("FASTADL_CPU_KERNELS", "1") == "0":
        return None
    cxx = _compiler()
    if cxx is None:
        warnings.warn("fastadl: no C++ compiler found (set CXX); the CPU cell path uses ATen "
                      "for its depthwise convs", stacklevel=2)  # fmt: skip
        return None
    digest = hashlib.sha256()
    for part in (*SOURCES, cxx, *FLAGS, *OPENMP_FLAGS, *isa_flags(), _cpu_signature()):
        digest.update(part.encode())
    for s in SOURCES + HEADERS:
        digest.update((Path(__file__).parent / s).read_bytes())
    path = cache_root() / "cpu_kernels" / digest.hexdigest()[:16] / "libfastadl_cpu.so"
    if not path.exists():
        err = _build(cxx, path)
        if err is not None:
            warnings.warn(f"fastadl: building the CPU kernels with {cxx} failed ({err}); the "
                          "CPU cell path uses ATen for its depthwise convs", stacklevel=2)  # fmt: skip
            return None
    return _bind(ctypes.CDLL(str(path)))


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_KERNELS: dict = {}


# The cost model's stand-in (``stand_in``): None, or the function each kernel call reports to.
_stand_in: list = [None]


@contextlib.contextmanager
def stand_in(record: Callable[[str], None]) -> Iterator[None]:
    """For the cost model (fastadl/diagnostics/measure.py): inside the block meta tensors take
    the kernels' route as CPU tensors of their shapes would (``serves`` holds for the meta
    device where the library is built) and each kernel call only calls ``record(name)``, so
    the route's ATen operators and kernel calls can be counted without data or arithmetic."""
    _stand_in[0] = record
    try:
        yield
    finally:
        _stand_in[0] = None


def kernel(name: str, dtype):
    """The library's ``fastadl_<name>_<f32|f64>`` for a torch dtype (looked up once)."""
    record = _stand_in[0]
    if record is not None:
        return lambda *args: record(name)
    key = (name, dtype)
    fn = _KERNELS.get(key)
    if fn is None:
        fn = _KERNELS[key] = getattr(library(), f"fastadl_{name}_{_SUFFIX[dtype]}")
    return fn


def parallel_threads() -> int:
    """The threads the kernels' large calls split their work between now (torch's intra-op
    thread count where they share torch's OpenMP runtime); 0 when built without OpenMP or not
    built."""
    lib = library()
    return 0 if lib is None else lib.fastadl_parallel_threads()


def parallel_min_work() -> int:
    """Elements a call must touch before its work is split between threads (parallel.h)."""
    lib = library()
    return 0 if lib is None else lib.fastadl_parallel_min_work()


def vector_floats() -> int:
    """Floats in the widest vector register the library was compiled to use (16 with AVX-512,
    8 with AVX2, 4 with SSE or NEON, 1 for none); 0 when not built."""
    lib = library()
    return 0 if lib is None else lib.fastadl_vector_floats()


def serves(device: torch.device) -> bool:
    """Whether the kernels run on ``device``: built, and the CPU (they read and write host
    memory through data pointers, so a CUDA tensor always takes the callers' ATen route)."""
    if device.type == "meta" and _stand_in[0] is not None:
        return library() is not None
    return device.type == "cpu" and library() is not None


def accepts(t) -> bool:
    """Whether the kernels are built and take tensor t: a plain tensor (not a subclass such as
    FakeTensor or a tracing wrapper, whose data pointer is not real data), float32/64, on a
    device they serve."""
    return type(t) is torch.Tensor and t.dtype in _SUFFIX and serves(t.device)
