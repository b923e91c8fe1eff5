#!/usr/bin/env bash
# The numerics-sensitive tests (pytest marker `numerics`) with every CPU code path forced to
# AVX2, as an AVX2-only machine (an AMD EPYC before Zen 4) runs them: torch's own kernels
# (ATen's dispatch, oneDNN, MKL) and fastadl's C++ kernels (FASTADL_CPU_ISA, built into their
# own cache entry on the first run). On an AVX-512 machine this is how CI sees the float32
# summation orders of the 8-wide code paths (issue 23). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
export FASTADL_CPU_ISA=avx2
# torch.compile's cache of its own: inductor reused kernels compiled on the native (AVX-512)
# paths under ATEN_CPU_CAPABILITY=avx2 and computed NaN and garbage indices (docs/TESTING.md)
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-${TMPDIR:-/tmp}/torchinductor_avx2_$(id -u)}"
exec "${PYTHON:-python}" -m pytest -m numerics "$@"
