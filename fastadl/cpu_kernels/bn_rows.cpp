// The elementwise and BatchNorm work of a fan-out group (fastadl/ops/fanout.py) in single
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

namespace {

struct Layout {  // element offset of (p, q, r, e, 0)
  int64_t sp, sq, sr, se;
  int64_t at(int64_t p, int64_t q, int64_t r, int64_t e) const {
    return p * sp + q * sq + r * sr + e * se;
  }
};

Layout layout(const int64_t* s) { return Layout{s[0], s[1], s[2], s[3]}; }

// z <- (z - mean) / sqrt(var + eps) in place over q, batch statistics (biased variance);
// mean, var, inv: (P, n, E, C) contiguous.
template <typename T>
void bn_forward(T* z, const int64_t* zs, T* mean, T* var, T* inv, int64_t P, int64_t Q,
                int64_t n, int64_t E, int64_t C, double eps) {
  const Layout L = layout(zs);
  std::vector<double> acc(C);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t r = 0; r < n; ++r)
      for (int64_t e = 0; e < E; ++e) {
        const int64_t o = ((p * n + r) * E + e) * C;
        for (int64_t c = 0; c < C; ++c) acc[c] = 0;
        for (int64_t q = 0; q < Q; ++q) {
          const T* zr = z + L.at(p, q, r, e);
          for (int64_t c = 0; c < C; ++c) acc[c] += zr[c];
        }
        for (int64_t c = 0; c < C; ++c) mean[o + c] = static_cast<T>(acc[c] / Q), acc[c] = 0;
        for (int64_t q = 0; q < Q; ++q) {
          T* zr = z + L.at(p, q, r, e);
          for (int64_t c = 0; c < C; ++c) {
            T d = zr[c] - mean[o + c];
            zr[c] = d;
            acc[c] += static_cast<double>(d) * d;
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          var[o + c] = static_cast<T>(acc[c] / Q);
          inv[o + c] = static_cast<T>(1.0 / std::sqrt(acc[c] / Q + eps));
        }
        for (int64_t q = 0; q < Q; ++q) {
          T* zr = z + L.at(p, q, r, e);
          for (int64_t c = 0; c < C; ++c) zr[c] *= inv[o + c];
        }
      }
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
  for (int64_t p = 0; p < P; ++p)
    for (int64_t q = 0; q < Q; ++q)
      for (int64_t e = 0; e < E; ++e) {
        T* o = out + ((p * Q + q) * E + e) * C;
        if (!accumulate)
          for (int64_t c = 0; c < C; ++c) o[c] = 0;
        for (int64_t r = 0; r < n; ++r) {
          const T* xr = x + L.at(p, q, r, e);
          const T* wr = wk.data() + (r * E + e) * C;
          for (int64_t c = 0; c < C; ++c) o[c] += wr[c] * xr[c];
        }
      }
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
  std::vector<double> sg(C), sx(C);
  std::vector<T> a(C), b(C);
  const int64_t nw = E * C / Cw;  // weights per row
  if (gsum)
    for (int64_t i = 0; i < n * nw; ++i) gsum[i] = 0;
  for (int64_t p = 0; p < P; ++p)
    for (int64_t r = 0; r < n; ++r)
      for (int64_t e = 0; e < E; ++e) {
        for (int64_t c = 0; c < C; ++c) sg[c] = 0, sx[c] = 0;
        for (int64_t q = 0; q < Q; ++q) {
          const T* gr = g + G.at(p, q, r, e);
          const T* xr = xh + X.at(p, q, r, e);
          if (mask) {
            const T* mr = mask + M.at(p, q, r, e);
            for (int64_t c = 0; c < C; ++c) {
              const T v = gr[c] * static_cast<T>(mr[c] > 0);  // branch-free: vectorises
              sg[c] += v;
              sx[c] += static_cast<double>(v) * xr[c];
            }
          } else {
            for (int64_t c = 0; c < C; ++c) {
              sg[c] += gr[c];
              sx[c] += static_cast<double>(gr[c]) * xr[c];
            }
          }
        }
        const T* iv = inv + p * is[0] + r * is[1] + e * is[2];
        for (int64_t c = 0; c < C; ++c) {
          const int64_t k = (e * C + c) / Cw;
          a[c] = (w ? w[r * ws[0] + k * ws[1]] : T(1)) * iv[c];  // gz = a (g' - m) - b xhat
          b[c] = static_cast<T>(a[c] * (sx[c] / Q));
          sg[c] /= Q;
          if (gsum) gsum[r * nw + k] += static_cast<T>(sx[c]);
        }
        for (int64_t q = 0; q < Q; ++q) {
          const T* gr = g + G.at(p, q, r, e);
          const T* xr = xh + X.at(p, q, r, e);
          T* zr = gz + Z.at(p, q, r, e);
          if (mask) {
            const T* mr = mask + M.at(p, q, r, e);
            for (int64_t c = 0; c < C; ++c) {
              const T v = gr[c] * static_cast<T>(mr[c] > 0);  // branch-free: vectorises
              zr[c] = a[c] * (v - static_cast<T>(sg[c])) - b[c] * xr[c];
            }
          } else {
            for (int64_t c = 0; c < C; ++c)
              zr[c] = a[c] * (gr[c] - static_cast<T>(sg[c])) - b[c] * xr[c];
          }
        }
      }
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
