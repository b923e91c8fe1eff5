// Per-edge 1x1 convs of a fan-out group (fastadl/ops/cell/fanout.py::pointwise): for every row
// (position m, kind r, edge e) a C x C matrix-vector product with that (r, e)'s own matrix.
// MKL runs them either as one block-diagonal GEMM (E times the arithmetic) or as a batched GEMM
// that is slow below 16 channels; here every (r, e)'s matrix stays in cache while blocks of
// positions stream through them.
//   d, out: rows at d + m*sm + (r*E + e)*C (channels contiguous), both (M, R, E, C)-shaped;
//   w[r, e, o, i] at w + r*s0 + e*s1 + o*s2 + i*s3;
//   transpose = 0: out[m, r, e, o] = sum_i w[r, e, o, i] d[m, r, e, i]   (the forward)
//   transpose = 1: out[m, r, e, i] = sum_o w[r, e, o, i] d[m, r, e, o]   (its input gradient)
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel.h"

namespace {

// One row's product with the output held in registers: N (= C) known at compile time.
template <typename T, int N>
inline void row_fixed(const T* dr, T* orow, const T* wt) {
  T acc[N] = {};
  for (int i = 0; i < N; ++i) {
    const T di = dr[i];
    for (int o = 0; o < N; ++o) acc[o] += di * wt[i * N + o];
  }
  for (int o = 0; o < N; ++o) orow[o] = acc[o];
}

// Four rows at once (stride sm apart): four independent FMA chains hide the FMA latency and
// each weight vector load serves four rows.
template <typename T, int N>
inline void rows4_fixed(const T* dr, T* orow, const T* wt, int64_t sm) {
  T a0[N] = {}, a1[N] = {}, a2[N] = {}, a3[N] = {};
  for (int i = 0; i < N; ++i) {
    const T d0 = dr[i], d1 = dr[sm + i], d2 = dr[2 * sm + i], d3 = dr[3 * sm + i];
    const T* col = wt + i * N;
    for (int o = 0; o < N; ++o) {
      a0[o] += d0 * col[o];
      a1[o] += d1 * col[o];
      a2[o] += d2 * col[o];
      a3[o] += d3 * col[o];
    }
  }
  for (int o = 0; o < N; ++o) {
    orow[o] = a0[o];
    orow[sm + o] = a1[o];
    orow[2 * sm + o] = a2[o];
    orow[3 * sm + o] = a3[o];
  }
}

// 8 channels in float: one 32-byte vector per row, four rows per step (GCC vector extension).
typedef float v8f __attribute__((vector_size(32)));

inline v8f load8(const float* p) {
  v8f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// K rows at once (stride sm apart), C = 8*NV channels: K*NV independent accumulators hide
// the FMA latency and each weight vector load serves K rows.
template <int K, int NV>
inline void rows_f(const float* dr, float* orow, const float* wt, int64_t sm) {
  constexpr int C = 8 * NV;
  v8f acc[K][NV] = {};
  for (int i = 0; i < C; ++i) {
    v8f col[NV];
    for (int v = 0; v < NV; ++v) col[v] = load8(wt + i * C + 8 * v);
    for (int k = 0; k < K; ++k) {
      const float dk = dr[k * sm + i];
      for (int v = 0; v < NV; ++v) acc[k][v] += dk * col[v];
    }
  }
  for (int k = 0; k < K; ++k)
    for (int v = 0; v < NV; ++v) std::memcpy(orow + k * sm + 8 * v, &acc[k][v], sizeof(v8f));
}

template <typename T>
inline bool rows4_special(const T*, T*, const T*, int64_t, int64_t) { return false; }

template <>
inline bool rows4_special<float>(const float* dr, float* orow, const float* wt, int64_t sm,
                                 int64_t C) {
  switch (C) {
    case 8: rows_f<4, 1>(dr, orow, wt, sm); return true;
    case 32: rows_f<4, 4>(dr, orow, wt, sm); return true;
    default: return false;  // 16: rows4_fixed (one 64-byte vector per row) was faster
  }
}

template <typename T>
inline void row_any(const T* dr, T* orow, const T* wt, int64_t C) {
  for (int64_t o = 0; o < C; ++o) orow[o] = 0;
  for (int64_t i = 0; i < C; ++i) {
    const T di = dr[i];
    for (int64_t o = 0; o < C; ++o) orow[o] += di * wt[i * C + o];
  }
}

// Rows are taken in blocks of kRowBlock positions, every (r, e) of a block before the next
// block: a block's rows (kRowBlock · R·E·C values) stay in cache while each (r, e) slice of
// them is read, where one pass per (r, e) over all M rows re-read every row from memory R·E
// times. Blocks are split between threads (parallel.h); kRowBlock is a multiple of the 4-row
// step, so which rows take the 4-row kernel does not depend on the thread count.
constexpr int64_t kRowBlock = 64;

template <typename T>
void pointwise(const T* d, T* out, const T* w, const int64_t* ws, int64_t M, int64_t sm,
               int64_t R, int64_t E, int64_t C, int transpose) {
  std::vector<T> wts(R * E * C * C);  // per (r, e): wt[i, o], the input i's column
  for (int64_t r = 0; r < R; ++r)
    for (int64_t e = 0; e < E; ++e) {
      const T* wre = w + r * ws[0] + e * ws[1];
      T* wt = wts.data() + (r * E + e) * C * C;
      for (int64_t o = 0; o < C; ++o)
        for (int64_t i = 0; i < C; ++i)
          wt[i * C + o] = transpose ? wre[i * ws[2] + o * ws[3]] : wre[o * ws[2] + i * ws[3]];
    }
  const int64_t blocks = (M + kRowBlock - 1) / kRowBlock;
  fastadl::parallel_ranges(blocks, M * R * E * C * 2, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t lo = b * kRowBlock, hi = std::min(M, lo + kRowBlock);
      for (int64_t k = 0; k < R * E; ++k) {
        const int64_t off = k * C;
        const T* wp = wts.data() + k * C * C;
        int64_t m = lo;
        if (C == 8 || C == 16 || C == 32)
          for (; m + 4 <= hi; m += 4) {
            if (rows4_special<T>(d + m * sm + off, out + m * sm + off, wp, sm, C))
              continue;
            if (C == 8)
              rows4_fixed<T, 8>(d + m * sm + off, out + m * sm + off, wp, sm);
            else if (C == 16)
              rows4_fixed<T, 16>(d + m * sm + off, out + m * sm + off, wp, sm);
            else
              rows4_fixed<T, 32>(d + m * sm + off, out + m * sm + off, wp, sm);
          }
        for (; m < hi; ++m) {
          const T* dr = d + m * sm + off;
          T* orow = out + m * sm + off;
          switch (C) {
            case 8: row_fixed<T, 8>(dr, orow, wp); break;
            case 16: row_fixed<T, 16>(dr, orow, wp); break;
            case 32: row_fixed<T, 32>(dr, orow, wp); break;
            default: row_any<T>(dr, orow, wp, C);
          }
        }
      }
    }
  });
}

// The weight gradient: gw[r, e, o, i] = sum_m g[m, r, e, o] d[m, r, e, i], gw (R, E, C, C)
// contiguous; g and d rows as in pointwise. Eight output rows o at a time are held in
// accumulators (N = C known at compile time) while the positions stream through in blocks of
// kSumBlock, each block's sums added into double totals: a float chain over all M positions
// (P·N·H·W, thousands) erred up to M·u relative to the sum of |terms|; blocked, the error is
// below kSumBlock·u for any M (dwconv.cpp's weight gradient has the derivation), whatever the
// vector width.
constexpr int64_t kSumBlock = 64;

template <typename T, int N>
void wgrad_fixed(const T* g, const T* d, T* gw, int64_t M, int64_t sm, int64_t off) {
  for (int o0 = 0; o0 < N; o0 += 8) {
    double tot[8][N] = {};
    for (int64_t m0 = 0; m0 < M; m0 += kSumBlock) {
      T acc[8][N] = {};
      for (int64_t m = m0; m < std::min(M, m0 + kSumBlock); ++m) {
        const T* gr = g + m * sm + off + o0;
        const T* dr = d + m * sm + off;
        for (int o = 0; o < 8; ++o) {
          const T go = gr[o];
          for (int i = 0; i < N; ++i) acc[o][i] += go * dr[i];
        }
      }
      for (int o = 0; o < 8; ++o)
        for (int i = 0; i < N; ++i) tot[o][i] += acc[o][i];
    }
    for (int o = 0; o < 8; ++o)
      for (int i = 0; i < N; ++i) gw[(o0 + o) * N + i] = static_cast<T>(tot[o][i]);
  }
}

// float: the same with vector accumulators (acc[o][v] covers inputs 8v..8v+7).
typedef double v8d __attribute__((vector_size(64)));

template <int N>
void wgrad_f(const float* g, const float* d, float* gw, int64_t M, int64_t sm, int64_t off) {
  constexpr int NV = N / 8;
  for (int o0 = 0; o0 < N; o0 += 8) {
    v8d tot[8][NV] = {};
    for (int64_t m0 = 0; m0 < M; m0 += kSumBlock) {
      v8f acc[8][NV] = {};
      for (int64_t m = m0; m < std::min(M, m0 + kSumBlock); ++m) {
        const float* gr = g + m * sm + off + o0;
        const float* dr = d + m * sm + off;
        v8f dv[NV];
        for (int v = 0; v < NV; ++v) dv[v] = load8(dr + 8 * v);
        for (int o = 0; o < 8; ++o) {
          const float go = gr[o];
          for (int v = 0; v < NV; ++v) acc[o][v] += go * dv[v];
        }
      }
      for (int o = 0; o < 8; ++o)
        for (int v = 0; v < NV; ++v) tot[o][v] += __builtin_convertvector(acc[o][v], v8d);
    }
    for (int o = 0; o < 8; ++o)
      for (int v = 0; v < NV; ++v) {
        const v8f sum = __builtin_convertvector(tot[o][v], v8f);
        std::memcpy(gw + (o0 + o) * N + 8 * v, &sum, 32);
      }
  }
}

template <typename T>
inline bool wgrad_special(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t) {
  return false;
}

template <>
inline bool wgrad_special<float>(const float* g, const float* d, float* gw, int64_t M,
                                 int64_t sm, int64_t off, int64_t C) {
  switch (C) {
    case 8: wgrad_f<8>(g, d, gw, M, sm, off); return true;
    case 16: wgrad_f<16>(g, d, gw, M, sm, off); return true;
    case 32: wgrad_f<32>(g, d, gw, M, sm, off); return true;
    default: return false;
  }
}

template <typename T>
void pointwise_wgrad(const T* g, const T* d, T* gw, int64_t M, int64_t sm, int64_t R,
                     int64_t E, int64_t C) {
  // each (r, e)'s C×C gradient is one thread's (parallel.h)
  fastadl::parallel_ranges(R * E, M * R * E * C * 2, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t off = k * C;
      T* out = gw + k * C * C;
      if (wgrad_special<T>(g, d, out, M, sm, off, C)) continue;
      switch (C) {
        case 8: wgrad_fixed<T, 8>(g, d, out, M, sm, off); break;
        case 16: wgrad_fixed<T, 16>(g, d, out, M, sm, off); break;
        case 32: wgrad_fixed<T, 32>(g, d, out, M, sm, off); break;
        default: {  // other channel counts (not the search's): double sums
          std::vector<double> acc(C * C, 0.0);
          for (int64_t m = 0; m < M; ++m)
            for (int64_t o = 0; o < C; ++o)
              for (int64_t i = 0; i < C; ++i)
                acc[o * C + i] += static_cast<double>(g[m * sm + off + o]) * d[m * sm + off + i];
          for (int64_t j = 0; j < C * C; ++j) out[j] = static_cast<T>(acc[j]);
        }
      }
    }
  });
}

}  // namespace

extern "C" {

#define FASTADL_PW(T, S)                                                                     \
  void fastadl_pointwise_##S(const T* d, T* out, const T* w, const int64_t* ws, int64_t M,  \
                             int64_t sm, int64_t R, int64_t E, int64_t C, int transpose) {  \
    pointwise<T>(d, out, w, ws, M, sm, R, E, C, transpose);                                  \
  }

#define FASTADL_PWG(T, S)                                                                    \
  void fastadl_pointwise_wgrad_##S(const T* g, const T* d, T* gw, int64_t M, int64_t sm,    \
                                   int64_t R, int64_t E, int64_t C) {                        \
    pointwise_wgrad<T>(g, d, gw, M, sm, R, E, C);                                            \
  }

FASTADL_PWG(float, f32)
FASTADL_PWG(double, f64)
FASTADL_PW(float, f32)
FASTADL_PW(double, f64)

}  // extern "C"
