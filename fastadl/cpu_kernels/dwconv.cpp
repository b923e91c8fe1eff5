// Depthwise 'same' convolutions on small channels-last maps, stride 1, for the search's cells.
//
// oneDNN spends 40-100 us on every depthwise call on the 2x2 - 16x16 maps of a search whatever
// the arithmetic; these loops cost what their arithmetic costs. Layouts (row-major):
//   x, out, g: (B, H, W, G) channels-last; w: (G, kh, kw) as torch's (G, 1, kh, kw) weight.
// Taps at offset (i*d - ph, j*d - pw); taps that fall off the map read zeros (are skipped).
// The innermost loop runs over the G contiguous channels, so it vectorises.
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

namespace {

// The weight w[c, i, j] at w + c*s[0] + i*s[1] + j*s[2] (a slice of a bigger kernel is fine)
// as (kh, kw, G), tap-major, optionally flipped in both axes.
template <typename T>
std::vector<T> taps_major(const T* w, const int64_t* s, int64_t G, int64_t kh, int64_t kw,
                          bool flip) {
  std::vector<T> t(static_cast<size_t>(kh * kw * G));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j) {
        int64_t si = flip ? kh - 1 - i : i, sj = flip ? kw - 1 - j : j;
        t[(i * kw + j) * G + g] = w[g * s[0] + si * s[1] + sj * s[2]];
      }
  return t;
}

// out[b,h,w,c] = sum_{i,j} x[b, h+i*d-ph, w+j*d-pw, c % Cx] * w[c, i, j]
// x has Cx channels; out has G = R*Cx channels (the input repeated R times along channels).
// Each output pixel's channels go in blocks of one 64-byte vector, held in a register across
// the taps (GCC vector extension: lowered to whatever the target has); the last partial block
// accumulates in memory.
template <typename T>
struct Vec {
  static constexpr int N = 64 / sizeof(T);
  typedef T type __attribute__((vector_size(64)));
};

template <typename T>
inline typename Vec<T>::type load(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
void conv(const T* x, const T* w, const int64_t* ws, T* out, int64_t B, int64_t H, int64_t W, int64_t Cx,
          int64_t G, int64_t kh, int64_t kw, int64_t d, int64_t ph, int64_t pw, bool flip) {
  using V = typename Vec<T>::type;
  constexpr int N = Vec<T>::N;
  std::vector<T> wt = taps_major(w, ws, G, kh, kw, flip);
  const int64_t R = G / Cx, full = Cx / N * N;
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * H * W * Cx;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t i0 = std::max<int64_t>(0, (ph - h + d - 1) / d);
      const int64_t i1 = std::min<int64_t>(kh, (H - 1 - h + ph) / d + 1);
      for (int64_t v = 0; v < W; ++v) {
        const int64_t j0 = std::max<int64_t>(0, (pw - v + d - 1) / d);
        const int64_t j1 = std::min<int64_t>(kw, (W - 1 - v + pw) / d + 1);
        T* o = out + ((b * H + h) * W + v) * G;
        for (int64_t r = 0; r < R; ++r) {
          const T* wr = wt.data() + r * Cx;
          T* orr = o + r * Cx;
          for (int64_t c0 = 0; c0 < full; c0 += N) {
            V acc = {};
            for (int64_t i = i0; i < i1; ++i) {
              const T* xrow = xb + ((h + i * d - ph) * W + v - pw) * Cx + c0;
              const T* wrow = wr + i * kw * G + c0;
              for (int64_t j = j0; j < j1; ++j)
                acc += load(xrow + j * d * Cx) * load(wrow + j * G);
            }
            std::memcpy(orr + c0, &acc, sizeof(V));
          }
          if (full < Cx) {
            for (int64_t c = full; c < Cx; ++c) orr[c] = 0;
            for (int64_t i = i0; i < i1; ++i)
              for (int64_t j = j0; j < j1; ++j) {
                const T* xr = xb + ((h + i * d - ph) * W + v + j * d - pw) * Cx;
                const T* wrr = wr + (i * kw + j) * G;
                for (int64_t c = full; c < Cx; ++c) orr[c] += xr[c] * wrr[c];
              }
          }
        }
      }
    }
  }
}

// gw[c, i, j] = sum_{b,h,w} x[b, h+i*d-ph, w+j*d-pw, c % Cx] * g[b, h, w, c]
template <typename T>
void wgrad(const T* g, const T* x, T* gw, int64_t B, int64_t H, int64_t W, int64_t Cx,
           int64_t G, int64_t kh, int64_t kw, int64_t d, int64_t ph, int64_t pw) {
  std::vector<T> acc(static_cast<size_t>(kh * kw * G), T(0));
  const int64_t R = G / Cx;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t v = 0; v < W; ++v) {
        const T* gr = g + ((b * H + h) * W + v) * G;
        for (int64_t i = 0; i < kh; ++i) {
          int64_t hh = h + i * d - ph;
          if (hh < 0 || hh >= H) continue;
          for (int64_t j = 0; j < kw; ++j) {
            int64_t ww = v + j * d - pw;
            if (ww < 0 || ww >= W) continue;
            const T* xr = x + ((b * H + hh) * W + ww) * Cx;
            T* a = acc.data() + (i * kw + j) * G;
            for (int64_t r = 0; r < R; ++r) {
              T* ar = a + r * Cx;
              const T* grr = gr + r * Cx;
              for (int64_t c = 0; c < Cx; ++c) ar[c] += xr[c] * grr[c];
            }
          }
        }
      }
  for (int64_t c = 0; c < G; ++c)
    for (int64_t t = 0; t < kh * kw; ++t) gw[c * kh * kw + t] = acc[t * G + c];
}

}  // namespace

extern "C" {

#define FASTADL_DW(T, S)                                                                     \
  void fastadl_dw_conv_##S(const T* x, const T* w, const int64_t* ws, T* out, int64_t B,   \
                           int64_t H, int64_t W, int64_t Cx, int64_t G, int64_t kh,         \
                           int64_t kw, int64_t d, int64_t ph, int64_t pw, int flip) {       \
    conv<T>(x, w, ws, out, B, H, W, Cx, G, kh, kw, d, ph, pw, flip != 0);                    \
  }                                                                                          \
  void fastadl_dw_wgrad_##S(const T* g, const T* x, T* gw, int64_t B, int64_t H, int64_t W, \
                            int64_t Cx, int64_t G, int64_t kh, int64_t kw, int64_t d,       \
                            int64_t ph, int64_t pw) {                                        \
    wgrad<T>(g, x, gw, B, H, W, Cx, G, kh, kw, d, ph, pw);                                   \
  }

FASTADL_DW(float, f32)
FASTADL_DW(double, f64)

}  // extern "C"
