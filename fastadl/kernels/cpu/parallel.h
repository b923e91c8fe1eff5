// Splitting a kernel's independent work between the intra-op threads torch uses.
//
// The library is built with -fopenmp where the compiler takes it and links libgomp.so.1 by
// soname; in a process where torch has loaded its own libgomp.so.1 (the CPU and CUDA wheels'
// OpenMP parallel backend) the loader reuses that one, so these regions run on torch's thread
// pool and obey torch.set_num_threads (fastadl/ops/cell/small_work.py sets one thread on small maps).
// A second pool would spin against torch's workers on the same cores (docs/PERFORMANCE.md).
// Without OpenMP everything runs on the calling thread.
//
// Each thread gets a contiguous range of an index that the caller's arithmetic does not reduce
// over, so results are bit-identical whatever the thread count.
#pragma once

#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastadl {

// Below this many elements touched (about 0.1 ms of work) a call stays on one thread: a
// fork/join costs a few µs, and on a busy machine every region waits for its slowest thread,
// so only calls that gain clearly take the second one.
constexpr int64_t kParallelMinWork = 1 << 17;

// f(lo, hi) over [0, n) split into one contiguous range per thread when work is large enough.
template <typename F>
void parallel_ranges(int64_t n, int64_t work, F&& f) {
#ifdef _OPENMP
  if (n > 1 && work >= kParallelMinWork && !omp_in_parallel() && omp_get_max_threads() > 1) {
#pragma omp parallel
    {
      const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
      const int64_t lo = n * t / T, hi = n * (t + 1) / T;
      if (lo < hi) f(lo, hi);
    }
    return;
  }
#endif
  f(0, n);
}

}  // namespace fastadl
