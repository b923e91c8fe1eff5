// The 3x3 pools of a fan-out group (stride 1, padding 1) on channels-last maps, and their
// backward, each one pass for both pools: ATen's two pool calls and two backward calls cost
// 10-25 us each on the search's small maps whatever the work.
//   x, gx: (B, H, W, C); mx, av: the max and average pools (B, H, W, C), either may be null;
//   arg: the max's argmax tap (0..8, row-major in the 3x3 window) per element, int8.
// The average counts only the taps inside the map (count_include_pad=False); the max never
// picks padding (torch's max pool pads with -inf).
#include <cstdint>
#include <limits>
#include <vector>

namespace {

// Rows of a channels-last map are contiguous (W*C values), so a tap (dh, dw) of every pixel of
// an output row is one shifted, contiguous range of an input row: the loops run over w*C.

inline int64_t lo_w(int dw) { return dw < 0 ? 1 : 0; }  // first output w a tap dw reaches
inline int64_t hi_w(int dw, int64_t W) { return dw > 0 ? W - 1 : W; }

template <typename T>
void pools_forward(const T* x, T* mx, int8_t* arg, T* av, int64_t B, int64_t H, int64_t W,
                   int64_t C) {
  const int64_t RC = W * C;
  std::vector<T> inv(RC);  // 1 / (taps inside the map) per (w, c), for the current row
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t o = (b * H + h) * RC;
      const int nh = 1 + (h > 0) + (h < H - 1);
      for (int64_t w = 0; w < W; ++w) {
        const T r = T(1) / (nh * (1 + (w > 0) + (w < W - 1)));
        for (int64_t c = 0; c < C; ++c) inv[w * C + c] = r;
      }
      if (mx)
        for (int64_t k = 0; k < RC; ++k) mx[o + k] = -std::numeric_limits<T>::infinity();
      if (av)
        for (int64_t k = 0; k < RC; ++k) av[o + k] = 0;
      for (int dh = -1; dh <= 1; ++dh) {
        const int64_t hh = h + dh;
        if (hh < 0 || hh >= H) continue;
        const T* xr = x + (b * H + hh) * RC;
        for (int dw = -1; dw <= 1; ++dw) {
          const int8_t tap = static_cast<int8_t>((dh + 1) * 3 + dw + 1);
          const int64_t k0 = lo_w(dw) * C, k1 = hi_w(dw, W) * C, sh = dw * C;
          if (mx) {
            T* m = mx + o;
            int8_t* ar = arg + o;
            for (int64_t k = k0; k < k1; ++k) {
              // strictly greater (or NaN): the first maximum in window order wins, as in ATen
              const T v = xr[k + sh];
              const bool more = v > m[k] || v != v;
              m[k] = more ? v : m[k];
              ar[k] = more ? tap : ar[k];
            }
          }
          if (av) {
            T* a = av + o;
            for (int64_t k = k0; k < k1; ++k) a[k] += xr[k + sh];
          }
        }
      }
      if (av)
        for (int64_t k = 0; k < RC; ++k) av[o + k] *= inv[k];
    }
}

// gx (+)= the pools' input gradients for upstream gradients gm (max) and ga (average).
template <typename T>
void pools_backward(const T* gm, const int8_t* arg, const T* ga, T* gx, int64_t B, int64_t H,
                    int64_t W, int64_t C, int accumulate) {
  const int64_t RC = W * C;
  if (!accumulate)
    for (int64_t i = 0; i < B * H * RC; ++i) gx[i] = 0;
  std::vector<T> gs(RC);  // the average's gradient of the current row, divided by its taps
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t o = (b * H + h) * RC;
      const int nh = 1 + (h > 0) + (h < H - 1);
      if (ga)
        for (int64_t w = 0; w < W; ++w) {
          const T r = T(1) / (nh * (1 + (w > 0) + (w < W - 1)));
          for (int64_t c = 0; c < C; ++c) gs[w * C + c] = ga[o + w * C + c] * r;
        }
      for (int dh = -1; dh <= 1; ++dh) {
        const int64_t hh = h + dh;
        if (hh < 0 || hh >= H) continue;
        T* gr = gx + (b * H + hh) * RC;
        for (int dw = -1; dw <= 1; ++dw) {
          const int8_t tap = static_cast<int8_t>((dh + 1) * 3 + dw + 1);
          const int64_t k0 = lo_w(dw) * C, k1 = hi_w(dw, W) * C, sh = dw * C;
          if (gm) {
            const T* g = gm + o;
            const int8_t* ar = arg + o;
            for (int64_t k = k0; k < k1; ++k) gr[k + sh] += g[k] * static_cast<T>(ar[k] == tap);
          }
          if (ga)
            for (int64_t k = k0; k < k1; ++k) gr[k + sh] += gs[k];
        }
      }
    }
}

}  // namespace

extern "C" {

#define FASTADL_POOLS(T, S)                                                                  \
  void fastadl_pools_forward_##S(const T* x, T* mx, int8_t* arg, T* av, int64_t B,          \
                                 int64_t H, int64_t W, int64_t C) {                          \
    pools_forward<T>(x, mx, arg, av, B, H, W, C);                                            \
  }                                                                                          \
  void fastadl_pools_backward_##S(const T* gm, const int8_t* arg, const T* ga, T* gx,       \
                                  int64_t B, int64_t H, int64_t W, int64_t C,                \
                                  int accumulate) {                                          \
    pools_backward<T>(gm, arg, ga, gx, B, H, W, C, accumulate);                              \
  }

FASTADL_POOLS(float, f32)
FASTADL_POOLS(double, f64)

}  // extern "C"
