// The elementwise and BatchNorm work of a fan-out group (fastadl/ops/cell/fanout.py) in single
// passes: each call replaces 5-15 small ATen calls, whose dispatch is what they cost on the
// search's small maps.
//
// Index spaces are written (p, q, r, e, c): path p < P, position q < Q within a path, row r < n
// (a BatchNorm'd branch kind), edge e < E, channel c < C. Every tensor is a base pointer plus
// strides for (p, q, r, e) in elements; c is always contiguous. Statistics are over q, per
// (p, r, e, c); sums are accumulated in double.
#include <cmath>
#include <cstdint>
#include <vector>

#include "parallel.h"

namespace {

struct Layout {  // element offset of (p, q, r, e, 0)
  int64_t sp, sq, sr, se;
  int64_t at(int64_t p, int64_t q, int64_t r, int64_t e) const {
    return p * sp + q * sq + r * sr + e * se;
  }
};

Layout layout(const int64_t* s) { return Layout{s[0], s[1], s[2], s[3]}; }

// Each (r, e) pair k = r·E + e is one thread's whole business (its statistics are over q), so
// the calls split k between threads (parallel.h) and walk q outermost: every pass reads each
// position's rows once, contiguously, instead of one (r, e) slice of every row per pass.
inline std::vector<int64_t> pair_offsets(const Layout& L, int64_t k0, int64_t k1, int64_t E) {
  std::vector<int64_t> off(k1 - k0);
  for (int64_t k = k0; k < k1; ++k) off[k - k0] = (k / E) * L.sr + (k % E) * L.se;
  return off;
}

// z <- (z - mean) / sqrt(var + eps) in place over q, batch statistics (biased variance);
// mean, var, inv: (P, n, E, C) contiguous.
template <typename T>
void bn_forward(T* z, const int64_t* zs, T* mean, T* var, T* inv, int64_t P, int64_t Q,
                int64_t n, int64_t E, int64_t C, double eps) {
  const Layout L = layout(zs);
  fastadl::parallel_ranges(n * E, P * Q * n * E * C, [&](int64_t k0, int64_t k1) {
    const int64_t K = k1 - k0;
    const std::vector<int64_t> off = pair_offsets(L, k0, k1, E);
    std::vector<double> acc(K * C);
    for (int64_t p = 0; p < P; ++p) {
      const int64_t o = (p * n * E + k0) * C;  // (p, k0)'s statistics
      T *mp = mean + o, *vp = var + o, *ip = inv + o;
      for (double& a : acc) a = 0;
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < K; ++k) {
          const T* zr = z + p * L.sp + q * L.sq + off[k];
          double* ak = acc.data() + k * C;
          for (int64_t c = 0; c < C; ++c) ak[c] += zr[c];
        }
      for (int64_t i = 0; i < K * C; ++i) mp[i] = static_cast<T>(acc[i] / Q), acc[i] = 0;
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < K; ++k) {
          T* zr = z + p * L.sp + q * L.sq + off[k];
          double* ak = acc.data() + k * C;
          const T* mk = mp + k * C;
          for (int64_t c = 0; c < C; ++c) {
            T d = zr[c] - mk[c];
            zr[c] = d;
            ak[c] += static_cast<double>(d) * d;
          }
        }
      for (int64_t i = 0; i < K * C; ++i) {
        vp[i] = static_cast<T>(acc[i] / Q);
        ip[i] = static_cast<T>(1.0 / std::sqrt(acc[i] / Q + eps));
      }
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < K; ++k) {
          T* zr = z + p * L.sp + q * L.sq + off[k];
          const T* ik = ip + k * C;
          for (int64_t c = 0; c < C; ++c) zr[c] *= ik[c];
        }
    }
  });
}

// out[p, q, e, c] (+)= sum_r w[r, e'] * x[p, q, r, e, c]; out: (P, Q, E, C) contiguous; the
// weight of (e, c) is w[r, (e*C + c) / Cw] (Cw = C, or E = 1 and Cw the true channels when the
// caller merged the edge and channel axes). x's se may be 0: a row shared by every edge.
template <typename T>
void mix_rows(T* out, const T* x, const int64_t* xs, const T* w, const int64_t* ws, int64_t P,
              int64_t Q, int64_t n, int64_t E, int64_t C, int64_t Cw, int accumulate) {
  const Layout L = layout(xs);
  std::vector<T> wk(n * E * C);  // the weight of every (r, e, c)
  for (int64_t r = 0; r < n; ++r)
    for (int64_t k = 0; k < E * C; ++k) wk[r * E * C + k] = w[r * ws[0] + k / Cw * ws[1]];
  fastadl::parallel_ranges(P * Q, P * Q * (n + 1) * E * C, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const int64_t p = m / Q, q = m % Q;
      for (int64_t e = 0; e < E; ++e) {
        T* o = out + (m * E + e) * C;
        if (!accumulate)
          for (int64_t c = 0; c < C; ++c) o[c] = 0;
        for (int64_t r = 0; r < n; ++r) {
          const T* xr = x + L.at(p, q, r, e);
          const T* wr = wk.data() + (r * E + e) * C;
          for (int64_t c = 0; c < C; ++c) o[c] += wr[c] * xr[c];
        }
      }
    }
  });
}

// The backward of a BatchNorm'd row (batch statistics) followed by a weight w[r, e]:
//   g' = g * [mask > 0]                   (mask: a ReLU's output, or none)
//   s  = sum_q g' xhat,  m = mean_q g'
//   gz = w inv (g' - m - xhat s / Q)      (w = 1 when w is null)
//   gsum[r, e] = sum_{p, c} s             (the mixing weight's gradient, when gsum is not null)
// inv: strides (sp, sr, se) over (P, n, E, C). As in mix_rows, w and gsum are indexed by
// (e*C + c) / Cw.
template <typename T>
void bn_backward(const T* g, const int64_t* gs, const T* mask, const int64_t* ms, const T* xh,
                 const int64_t* xs, const T* inv, const int64_t* is, const T* w,
                 const int64_t* ws, T* gz,
                 const int64_t* zs, T* gsum, int64_t P, int64_t Q, int64_t n, int64_t E,
                 int64_t C, int64_t Cw) {
  const Layout G = layout(gs), X = layout(xs), Z = layout(zs);
  const Layout M = mask ? layout(ms) : Layout{0, 0, 0, 0};
  const int64_t nw = E * C / Cw;  // weights per row
  // gsum's sums over (p, c) in double, as the statistics are; two threads never add into one
  // entry (below), so each entry's order is the thread-count-independent p, then c
  std::vector<double> gacc(gsum ? n * nw : 0, 0.0);
  // a gsum entry is one (r, e)'s alone when Cw divides C; otherwise stay on one thread
  const int64_t work = C % Cw == 0 ? P * Q * n * E * C * 2 : 0;
  fastadl::parallel_ranges(n * E, work, [&](int64_t k0, int64_t k1) {
    const int64_t K = k1 - k0;
    const std::vector<int64_t> og = pair_offsets(G, k0, k1, E), ox = pair_offsets(X, k0, k1, E),
                               oz = pair_offsets(Z, k0, k1, E), om = pair_offsets(M, k0, k1, E);
    std::vector<double> sg(K * C), sx(K * C);
    std::vector<T> a(K * C), b(K * C), mg(K * C);
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t i = 0; i < K * C; ++i) sg[i] = 0, sx[i] = 0;
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < K; ++k) {
          const T* gr = g + p * G.sp + q * G.sq + og[k];
          const T* xr = xh + p * X.sp + q * X.sq + ox[k];
          double *sgk = sg.data() + k * C, *sxk = sx.data() + k * C;
          if (mask) {
            const T* mr = mask + p * M.sp + q * M.sq + om[k];
            for (int64_t c = 0; c < C; ++c) {
              const T v = gr[c] * static_cast<T>(mr[c] > 0);  // branch-free: vectorises
              sgk[c] += v;
              sxk[c] += static_cast<double>(v) * xr[c];
            }
          } else {
            for (int64_t c = 0; c < C; ++c) {
              sgk[c] += gr[c];
              sxk[c] += static_cast<double>(gr[c]) * xr[c];
            }
          }
        }
      for (int64_t k = 0; k < K; ++k) {
        const int64_t r = (k0 + k) / E, e = (k0 + k) % E;
        const T* iv = inv + p * is[0] + r * is[1] + e * is[2];
        for (int64_t c = 0; c < C; ++c) {
          const int64_t i = k * C + c, j = (e * C + c) / Cw;
          a[i] = (w ? w[r * ws[0] + j * ws[1]] : T(1)) * iv[c];  // gz = a (g' - m) - b xhat
          b[i] = static_cast<T>(a[i] * (sx[i] / Q));
          mg[i] = static_cast<T>(sg[i] / Q);
          if (gsum) gacc[r * nw + j] += sx[i];
        }
      }
      for (int64_t q = 0; q < Q; ++q)
        for (int64_t k = 0; k < K; ++k) {
          const T* gr = g + p * G.sp + q * G.sq + og[k];
          const T* xr = xh + p * X.sp + q * X.sq + ox[k];
          T* zr = gz + p * Z.sp + q * Z.sq + oz[k];
          const T *ak = a.data() + k * C, *bk = b.data() + k * C, *mk = mg.data() + k * C;
          if (mask) {
            const T* mr = mask + p * M.sp + q * M.sq + om[k];
            for (int64_t c = 0; c < C; ++c) {
              const T v = gr[c] * static_cast<T>(mr[c] > 0);
              zr[c] = ak[c] * (v - mk[c]) - bk[c] * xr[c];
            }
          } else {
            for (int64_t c = 0; c < C; ++c) zr[c] = ak[c] * (gr[c] - mk[c]) - bk[c] * xr[c];
          }
        }
    }
  });
  for (int64_t i = 0; i < static_cast<int64_t>(gacc.size()); ++i) gsum[i] = static_cast<T>(gacc[i]);
}

// The pool/skip rows' mixing backward: for rows x (n, M, C) contiguous shared by the E edges
// and g (M, E, C) contiguous:  gx[r, m, c] = sum_e g[m, e, c] w[r, e],
// gw[r, e] = sum_{m, c} g[m, e, c] x[r, m, c]  (gw skipped when null).
template <typename T>
void mix_backward(const T* g, const T* x, const T* w, const int64_t* ws, T* gx, T* gw,
                  int64_t n, int64_t M, int64_t E, int64_t C) {
  std::vector<double> acc(n * E, 0.0);
  for (int64_t m = 0; m < M; ++m) {
    const T* gm = g + m * E * C;
    for (int64_t r = 0; r < n; ++r) {
      T* o = gx + (r * M + m) * C;
      const T* xr = x + (r * M + m) * C;
      for (int64_t c = 0; c < C; ++c) o[c] = 0;
      for (int64_t e = 0; e < E; ++e) {
        const T wr = w[r * ws[0] + e * ws[1]];
        const T* ge = gm + e * C;
        T dot = 0;
        for (int64_t c = 0; c < C; ++c) {
          o[c] += wr * ge[c];
          dot += ge[c] * xr[c];
        }
        acc[r * E + e] += dot;
      }
    }
  }
  if (gw)
    for (int64_t i = 0; i < n * E; ++i) gw[i] = static_cast<T>(acc[i]);
}

}  // namespace

extern "C" {

#define FASTADL_BN(T, S)                                                                     \
  void fastadl_bn_forward_##S(T* z, const int64_t* zs, T* mean, T* var, T* inv, int64_t P,  \
                              int64_t Q, int64_t n, int64_t E, int64_t C, double eps) {      \
    bn_forward<T>(z, zs, mean, var, inv, P, Q, n, E, C, eps);                               \
  }                                                                                          \
  void fastadl_mix_rows_##S(T* out, const T* x, const int64_t* xs, const T* w,             \
                            const int64_t* ws, int64_t P, int64_t Q, int64_t n, int64_t E,  \
                            int64_t C, int64_t Cw, int accumulate) {                         \
    mix_rows<T>(out, x, xs, w, ws, P, Q, n, E, C, Cw, accumulate);                           \
  }                                                                                          \
  void fastadl_bn_backward_##S(const T* g, const int64_t* gs, const T* mask,                \
                               const int64_t* ms, const T* xh, const int64_t* xs,           \
                               const T* inv, const int64_t* is, const T* w,                 \
                               const int64_t* ws, T* gz, const int64_t* zs, T* gsum,        \
                               int64_t P, int64_t Q, int64_t n, int64_t E, int64_t C,       \
                               int64_t Cw) {                                                 \
    bn_backward<T>(g, gs, mask, ms, xh, xs, inv, is, w, ws, gz, zs, gsum, P, Q, n, E, C, Cw);\
  }                                                                                          \
  void fastadl_mix_backward_##S(const T* g, const T* x, const T* w, const int64_t* ws, T* gx, \
                                T* gw, int64_t n, int64_t M, int64_t E, int64_t C) {         \
    mix_backward<T>(g, x, w, ws, gx, gw, n, M, E, C);                                        \
  }

FASTADL_BN(float, f32)
FASTADL_BN(double, f64)

}  // extern "C"
