// What parallel.h's regions would run on, for the tests and diagnostics.
#include "parallel.h"

extern "C" {

// The threads a large call would split its work between now; 0 when built without OpenMP.
int fastadl_parallel_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 0;
#endif
}

// Calls touching fewer elements stay on the calling thread.
int64_t fastadl_parallel_min_work() { return fastadl::kParallelMinWork; }

}  // extern "C"
