// Splitting a kernel's independent work between threads, for the large calls only (the cell
// path runs its small cells on one thread; a thread start costs ~15 us).
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

int fastadl_threads();  // the count set from Python (torch's intra-op threads), bn_rows.cpp

// f(lo, hi) over [0, n) in chunks whose bounds are multiples of align; serial when the call
// is small (work: about the number of values it touches) or one thread is allowed.
template <typename F>
void parallel_chunks(int64_t n, int64_t align, int64_t work, F f) {
  const int64_t units = (n + align - 1) / align;
  const int64_t t = std::min<int64_t>(fastadl_threads(), units);
  if (t <= 1 || work < (int64_t(1) << 17)) {
    f(int64_t(0), n);
    return;
  }
  const int64_t per = (units + t - 1) / t * align;
  std::vector<std::thread> others;
  for (int64_t i = 1; i < t; ++i) {
    const int64_t lo = i * per, hi = std::min(n, (i + 1) * per);
    if (lo < hi) others.emplace_back(f, lo, hi);
  }
  f(int64_t(0), std::min(n, per));
  for (auto& th : others) th.join();
}
