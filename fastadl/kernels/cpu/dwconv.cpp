// Depthwise 'same' convolutions on small channels-last maps, stride 1, for the search's cells.
//
// oneDNN spends 40-100 us on every depthwise call on the 2x2 - 16x16 maps of a search whatever
// the arithmetic; these loops cost what their arithmetic costs. Layouts (row-major):
//   x, out, g: (B, H, W, G) channels-last; w: (G, kh, kw) as torch's (G, 1, kh, kw) weight.
// Taps at offset (i*d - ph, j*d - pw); taps that fall off the map read zeros (are skipped).
//
// How they are fast (docs/PERFORMANCE.md, "C++ depthwise kernels"): the innermost loops run
// over the contiguous channels in vectors (GCC vector extensions, lowered to whatever the
// target has: no intrinsics, so it builds anywhere), and every loop keeps several independent
// register accumulators (a tile of P output pixels x NV channel vectors), so the FMA chains
// interleave instead of waiting on each other's latency and a loaded weight vector serves P
// pixels. A channel count that is not a multiple of the vector width is covered by one last
// vector that overlaps the one before it (it recomputes a few channels and stores the same
// values), so every channel count of at least one vector is vectorised; narrower ones fall
// back to half or quarter vectors and, below that, to scalars, by the same code.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "parallel.h"

namespace {

// The weight w[c, i, j] at w + c*s[0] + i*s[1] + j*s[2] (a slice of a bigger kernel is fine)
// as (kh, kw, G), tap-major, optionally flipped in both axes.
template <typename T>
std::vector<T> taps_major(const T* w, const int64_t* s, int64_t G, int64_t kh, int64_t kw,
                          bool flip) {
  std::vector<T> t(static_cast<size_t>(kh * kw * G));
  for (int64_t i = 0; i < kh; ++i)  // contiguous writes, strided reads: faster this way round
    for (int64_t j = 0; j < kw; ++j) {
      const T* src = w + (flip ? kh - 1 - i : i) * s[1] + (flip ? kw - 1 - j : j) * s[2];
      T* dst = t.data() + (i * kw + j) * G;
      for (int64_t g = 0; g < G; ++g) dst[g] = src[g * s[0]];
    }
  return t;
}

template <typename T, int Bytes>
struct VecOf {
  typedef T type __attribute__((vector_size(Bytes)));
};
template <typename T>
struct VecOf<T, sizeof(T)> {  // one lane: the scalar itself
  typedef T type;
};

template <typename V>
inline V load(const void* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V>
inline void store(void* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

constexpr int NV_MAX = 4;  // channel vectors per tile

// The channel offsets of the vectors of L lanes that cover channels [0, C) (C >= L): 0, L, 2L,
// ... and, if L does not divide C, C - L last.
inline int64_t vector_offsets(int64_t C, int64_t L, std::vector<int64_t>& off) {
  off.clear();
  for (int64_t c = 0; c + L <= C; c += L) off.push_back(c);
  if (C % L) off.push_back(C - L);
  return static_cast<int64_t>(off.size());
}

struct Geometry {
  int64_t B, H, W, Cx, G, kh, kw, d, ph, pw;
  int64_t sx = 0, so = 0;  // elements per pixel of x and of out (0: Cx and G, dense)
  bool relu = false;       // read ReLU(x) (the group kernels' convs of a ReLU'd state)
  int64_t xs() const { return sx ? sx : Cx; }
  int64_t os() const { return so ? so : G; }
};

// A tile of NV channel vectors of x, copied into (B, H, W + 2*pw, NV*L) with pw zero columns
// on each side: the kernels' column taps then need no bounds checks (the zero columns give
// the zero products the padding would), only their row taps do, once per row. The copy costs
// one load and store per vector against the K*K multiply-adds it feeds.
template <typename V, int NV, typename T>
const T* padded_tile(const T* x, const int64_t* c, const Geometry& q, std::vector<T>& buf) {
  constexpr int64_t L = sizeof(V) / sizeof(T);
  const int64_t Wp = q.W + 2 * q.pw;
  buf.resize(static_cast<size_t>(q.B * q.H * Wp * NV * L));
  T* p = buf.data();
  for (int64_t row = 0; row < q.B * q.H; ++row) {
    const int64_t sx = q.xs();
    const T* xr = x + row * q.W * sx;
    std::fill(p, p + q.pw * NV * L, T(0));
    p += q.pw * NV * L;
    const V zero = {};
    for (int64_t v = 0; v < q.W; ++v, p += NV * L)
      for (int n = 0; n < NV; ++n) {
        V xv = load<V>(xr + v * sx + c[n]);
        if (q.relu) xv = xv > zero ? xv : zero;
        store(p + n * L, xv);
      }
    std::fill(p, p + q.pw * NV * L, T(0));
    p += q.pw * NV * L;
  }
  return buf.data();
}

// Taps rows [i0, i1) of the K rows whose input row h + i*d - ph is on the map.
inline void row_taps(int64_t h, int64_t K, const Geometry& q, int64_t& i0, int64_t& i1) {
  i0 = std::max<int64_t>(0, (q.ph - h + q.d - 1) / q.d);
  i1 = std::min<int64_t>(K, (q.H - 1 - h + q.ph) / q.d + 1);
}

// ---- forward / flipped conv -------------------------------------------------------------------
// out[b,h,w,c] = sum_{i,j} x[b, h+i*d-ph, w+j*d-pw, c % Cx] * w[c, i, j]
// x has Cx channels; out has G = R*Cx channels (the input repeated R times along channels).

// P consecutive output pixels x NV vectors. xp: the padded tile at the first pixel's tap
// (0, 0) (row i0 applied by the caller's pointer arithmetic below), wt: tap-major weights at
// this repeat's channels, o: the first pixel's output.
template <typename V, int P, int NV, typename T>
inline void conv_tile(const T* xp, const T* wt, T* o, const int64_t* c, const Geometry& q,
                      int64_t i0, int64_t i1) {
  constexpr int64_t L = sizeof(V) / sizeof(T), S = NV * L;  // S: a pixel in the tile
  const int64_t Wp = q.W + 2 * q.pw;
  V acc[P][NV] = {};
  for (int64_t i = i0; i < i1; ++i) {
    const T* xi = xp + i * q.d * Wp * S;
    const T* wi = wt + i * q.kw * q.G;
    for (int64_t j = 0; j < q.kw; ++j) {
      const T* xj = xi + j * q.d * S;
      V wv[NV];
      for (int n = 0; n < NV; ++n) wv[n] = load<V>(wi + j * q.G + c[n]);
      for (int p = 0; p < P; ++p)
        for (int n = 0; n < NV; ++n) acc[p][n] += load<V>(xj + p * S + n * L) * wv[n];
    }
  }
  for (int p = 0; p < P; ++p)
    for (int n = 0; n < NV; ++n) store(o + p * q.os() + c[n], acc[p][n]);
}

// All outputs of one tile of NV vectors (every repeat, image, row), pixels 8 (one vector only),
// 4, 2, 1 at a time.
template <typename V, int NV, typename T>
void conv_group(const T* x, const T* wt, T* out, const int64_t* c, const Geometry& q,
                std::vector<T>& buf) {
  constexpr int64_t S = NV * sizeof(V) / sizeof(T);
  const int64_t Wp = q.W + 2 * q.pw;
  const T* tile = padded_tile<V, NV>(x, c, q, buf);
  for (int64_t b = 0; b < q.B; ++b)
    for (int64_t h = 0; h < q.H; ++h) {
      int64_t i0, i1;
      row_taps(h, q.kh, q, i0, i1);
      const T* xp = tile + ((b * q.H + h - q.ph) * Wp) * S;  // row of tap 0 (maybe off the map)
      for (int64_t r = 0; r < q.G / q.Cx; ++r) {
        const int64_t so = q.os();
        T* o = out + (b * q.H + h) * q.W * so + r * q.Cx;
        const T* wr = wt + r * q.Cx;
        int64_t v = 0;
        if (NV == 1)  // 8 independent chains either way
          for (; v + 8 <= q.W; v += 8) conv_tile<V, 8, NV>(xp + v * S, wr, o + v * so, c, q, i0, i1);
        for (; v + 4 <= q.W; v += 4) conv_tile<V, 4, NV>(xp + v * S, wr, o + v * so, c, q, i0, i1);
        for (; v + 2 <= q.W; v += 2) conv_tile<V, 2, NV>(xp + v * S, wr, o + v * so, c, q, i0, i1);
        for (; v < q.W; ++v) conv_tile<V, 1, NV>(xp + v * S, wr, o + v * so, c, q, i0, i1);
      }
    }
}

template <typename V, typename T>
void conv_lanes(const T* x, const T* wt, T* out, const Geometry& q) {
  std::vector<int64_t> off;
  std::vector<T> buf;
  const int64_t nvec = vector_offsets(q.Cx, sizeof(V) / sizeof(T), off);
  int64_t n = 0;
  for (; n + 2 <= nvec; n += 2) conv_group<V, 2>(x, wt, out, off.data() + n, q, buf);
  if (n < nvec) conv_group<V, 1>(x, wt, out, off.data() + n, q, buf);
}

// The widest vector (64, 32, 16 bytes, or a scalar) that fits in Cx channels.
template <typename T, typename F>
void by_width(int64_t Cx, F&& f) {
  if (Cx * int64_t(sizeof(T)) >= 64)
    f(typename VecOf<T, 64>::type{});
  else if (Cx * int64_t(sizeof(T)) >= 32)
    f(typename VecOf<T, 32>::type{});
  else if (Cx * int64_t(sizeof(T)) >= 16)
    f(typename VecOf<T, 16>::type{});
  else
    f(T{});
}

template <typename T>
void conv(const T* x, const T* w, const int64_t* ws, T* out, const Geometry& q, bool flip) {
  std::vector<T> wt = taps_major(w, ws, q.G, q.kh, q.kw, flip);
  by_width<T>(q.Cx, [&](auto v) { conv_lanes<decltype(v)>(x, wt.data(), out, q); });
}

// ---- weight gradient ----------------------------------------------------------------------------
// gw[c, i, j] = sum_{b,h,w} x[b, h+i*d-ph, w+j*d-pw, c % Cx] * g[b, h, w, c]
// For K x K kernels, K <= 5: per tile of NV channel vectors all K*K*NV sums stay in registers
// over blocks of kSumBlock pixels (each loaded g vector serves all the taps; x is the padded
// tile, so the column taps need no checks); each block's sums are added into double totals,
// which go to gw once, transposed on the way. Other kernels (not used by the search; kept
// general): one tap at a time over the pixels where it is on the map, blocked the same way.
//
// Why blocks: a float sum of n products accumulated one after another errs by up to
// (n - 1)·u·sum|terms| (u = 2^-24; about sqrt(n)·u·sum|terms| for random rounding), and n is
// B·H·W, thousands of pixels on a search's finer maps: ATen's and oneDNN's sums, split between
// more partial sums, came out 3-8x closer to float64 (issue 23). Float sums over blocks of at
// most b pixels, added into double, err by at most about (b - 1)·u + (n/b)·2^-53 relative to
// sum|terms| (plus the final rounding to float), below b·u for any n up to b·2^29: the fast
// float FMA chains in registers stay, and the error no longer grows with the map, the batch or
// the number of paths. (It never depended on the vector width: each lane is one channel's
// sum; the width only decides how many channels a register holds.)
constexpr int64_t kSumBlock = 64;

// The double vector of V's lanes (a double for a scalar V), and V widened to it.
template <typename V, typename T>
using Wide = typename VecOf<double, sizeof(V) / sizeof(T) * sizeof(double)>::type;

template <typename D, typename V>
inline D widen(const V& v) {
  if constexpr (std::is_arithmetic_v<V>)
    return static_cast<D>(v);
  else
    return __builtin_convertvector(v, D);
}

// gw[(c[n] + l) * kk + t] = s[t][n][l] for the channels from own[n] on: a tile's sums written
// transposed. An overlapping last vector leaves the channels it shares with the vector before
// it to that one (the same sums), so no two tiles write one weight: tiles run on any thread.
template <typename V, int NV, typename T, typename D>
inline void store_taps(T* gw, const int64_t* c, const int64_t* own, const D* s, int64_t kk,
                       int64_t t) {
  constexpr int L = sizeof(V) / sizeof(T);
  for (int n = 0; n < NV; ++n) {
    double lanes[L];
    store(lanes, s[n]);
    for (int64_t l = std::max<int64_t>(0, own[n] - c[n]); l < L; ++l)
      gw[(c[n] + l) * kk + t] = static_cast<T>(lanes[l]);
  }
}

template <typename V, int K, int NV, typename T>
void wgrad_tile(const T* x, const T* g, T* gw, const int64_t* c, const int64_t* own,
                const Geometry& q, std::vector<T>& buf) {
  constexpr int64_t L = sizeof(V) / sizeof(T), S = NV * L;
  const int64_t Wp = q.W + 2 * q.pw;
  using D = Wide<V, T>;
  const T* tile = padded_tile<V, NV>(x, c, q, buf);
  V s[K * K][NV] = {};  // this block's sums (registers)
  D tot[K * K][NV] = {};
  const auto flush = [&] {
    for (int t = 0; t < K * K; ++t)
      for (int n = 0; n < NV; ++n) tot[t][n] += widen<D>(s[t][n]), s[t][n] = V{};
  };
  int64_t pending = 0;  // pixels in s
  for (int64_t b = 0; b < q.B; ++b)
    for (int64_t h = 0; h < q.H; ++h) {
      int64_t i0, i1;
      row_taps(h, K, q, i0, i1);
      const T* x0 = tile + ((b * q.H + h - q.ph) * Wp) * S;
      const T* gr = g + (b * q.H + h) * q.W * q.G;
      for (int64_t v0 = 0; v0 < q.W;) {  // the row in pieces that end at block boundaries
        const int64_t v1 = std::min(q.W, v0 + kSumBlock - pending);
        for (int64_t v = v0; v < v1; ++v) {
          V gv[NV];
          for (int n = 0; n < NV; ++n) gv[n] = load<V>(gr + v * q.G + c[n]);
          // fully unrolled, so that every s[t] is a register (a loop GCC keeps indexes memory)
#pragma GCC unroll 5
          for (int i = 0; i < K; ++i) {
            if (i < i0 || i >= i1) continue;
            const T* xi = x0 + (i * q.d * Wp + v) * S;
#pragma GCC unroll 5
            for (int j = 0; j < K; ++j)
              for (int n = 0; n < NV; ++n)
                s[i * K + j][n] += load<V>(xi + j * q.d * S + n * L) * gv[n];
          }
        }
        pending += v1 - v0, v0 = v1;
        if (pending == kSumBlock) flush(), pending = 0;
      }
    }
  flush();
  for (int t = 0; t < K * K; ++t) store_taps<V, NV>(gw, c, own, tot[t], K * K, t);
}

template <typename V, typename T>
void wgrad_any(const T* x, const T* g, T* gw, const int64_t* c, const int64_t* own,
               const Geometry& q) {
  for (int64_t i = 0; i < q.kh; ++i)
    for (int64_t j = 0; j < q.kw; ++j) {
      const int64_t oh = i * q.d - q.ph, ow = j * q.d - q.pw;
      const int64_t h0 = std::max<int64_t>(0, -oh), h1 = std::min(q.H, q.H - oh);
      const int64_t v0 = std::max<int64_t>(0, -ow), v1 = std::min(q.W, q.W - ow);
      V s = {};
      Wide<V, T> tot = {};
      int64_t pending = 0;  // pixels in s (blocks of kSumBlock, as in wgrad_tile)
      for (int64_t b = 0; b < q.B; ++b)
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t v = v0; v < v1; ++v) {
            s += load<V>(x + (((b * q.H + h + oh) * q.W + v + ow) * q.Cx) + c[0]) *
                 load<V>(g + ((b * q.H + h) * q.W + v) * q.G + c[0]);
            if (++pending == kSumBlock) tot += widen<Wide<V, T>>(s), s = V{}, pending = 0;
          }
      tot += widen<Wide<V, T>>(s);
      store_taps<V, 1>(gw, c, own, &tot, q.kh * q.kw, i * q.kw + j);
    }
}

// The tiles (repeat r, first vector n, vectors per tile nv) in the order one thread runs
// them; each writes its own weights (store_taps), so they are split between threads.
struct WgradTile {
  int64_t r, n, nv;
};

template <typename V, typename T>
void wgrad_lanes(const T* g, const T* x, T* gw, const Geometry& q) {
  constexpr int64_t L = sizeof(V) / sizeof(T);
  std::vector<int64_t> off;
  const int64_t nvec = vector_offsets(q.Cx, L, off);
  std::vector<int64_t> own(nvec);  // the first channel vector n writes
  for (int64_t n = 0; n < nvec; ++n) own[n] = n ? off[n - 1] + L : 0;
  const int64_t K = q.kh == q.kw && q.kh % 2 && q.kh <= 5 ? q.kh : 0;
  const int64_t per = K == 3 ? 2 : K == 1 ? 4 : 1;  // vectors per full tile
  std::vector<WgradTile> tiles;
  for (int64_t r = 0; r < q.G / q.Cx; ++r)
    for (int64_t n = 0; n < nvec;) {
      const int64_t nv = n + per <= nvec ? per : 1;
      tiles.push_back({r, n, nv});
      n += nv;
    }
  const int64_t work = q.B * q.H * q.W * q.G * q.kh * q.kw;
  fastadl::parallel_ranges(static_cast<int64_t>(tiles.size()), work, [&](int64_t i0, int64_t i1) {
    std::vector<T> buf;
    for (int64_t i = i0; i < i1; ++i) {
      const WgradTile& t = tiles[i];
      const T* gr = g + t.r * q.Cx;
      T* gwr = gw + t.r * q.Cx * q.kh * q.kw;
      const int64_t *c = off.data() + t.n, *o = own.data() + t.n;
      if (K == 5)  // 25 x 1 accumulators
        wgrad_tile<V, 5, 1>(x, gr, gwr, c, o, q, buf);
      else if (K == 3 && t.nv == 2)  // 9 x 2
        wgrad_tile<V, 3, 2>(x, gr, gwr, c, o, q, buf);
      else if (K == 3)
        wgrad_tile<V, 3, 1>(x, gr, gwr, c, o, q, buf);
      else if (K == 1 && t.nv == 4)
        wgrad_tile<V, 1, 4>(x, gr, gwr, c, o, q, buf);
      else if (K == 1)
        wgrad_tile<V, 1, 1>(x, gr, gwr, c, o, q, buf);
      else
        wgrad_any<V>(x, gr, gwr, c, o, q);
    }
  });
}

template <typename T>
void wgrad(const T* g, const T* x, T* gw, const Geometry& q) {
  by_width<T>(q.Cx, [&](auto v) { wgrad_lanes<decltype(v)>(g, x, gw, q); });
}

}  // namespace

extern "C" {

#define FASTADL_DW(T, S)                                                                     \
  void fastadl_dw_conv_##S(const T* x, const T* w, const int64_t* ws, T* out, int64_t B,   \
                           int64_t H, int64_t W, int64_t Cx, int64_t G, int64_t kh,         \
                           int64_t kw, int64_t d, int64_t ph, int64_t pw, int flip) {       \
    conv<T>(x, w, ws, out, Geometry{B, H, W, Cx, G, kh, kw, d, ph, pw}, flip != 0);           \
  }                                                                                          \
  /* the same with x and out pixel strides sx, so (rows of bigger tensors) and ReLU(x) */    \
  void fastadl_dw_conv_ex_##S(const T* x, const T* w, const int64_t* ws, T* out, int64_t B, \
                              int64_t H, int64_t W, int64_t Cx, int64_t G, int64_t kh,      \
                              int64_t kw, int64_t d, int64_t ph, int64_t pw, int flip,      \
                              int64_t sx, int64_t so, int relu) {                           \
    Geometry q{B, H, W, Cx, G, kh, kw, d, ph, pw};                                           \
    q.sx = sx, q.so = so, q.relu = relu != 0;                                                \
    conv<T>(x, w, ws, out, q, flip != 0);                                                    \
  }                                                                                          \
  void fastadl_dw_wgrad_##S(const T* g, const T* x, T* gw, int64_t B, int64_t H, int64_t W, \
                            int64_t Cx, int64_t G, int64_t kh, int64_t kw, int64_t d,       \
                            int64_t ph, int64_t pw) {                                        \
    wgrad<T>(g, x, gw, Geometry{B, H, W, Cx, G, kh, kw, d, ph, pw});                         \
  }

FASTADL_DW(float, f32)
FASTADL_DW(double, f64)

}  // extern "C"
