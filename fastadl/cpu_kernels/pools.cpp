// The 3x3 pools of a fan-out group (stride 1, padding 1) on channels-last maps, and their
// backward, each one pass for both pools: ATen's two pool calls and two backward calls cost
// 10-25 us each on the search's small maps whatever the work.
//   x, gx: (B, H, W, C); mx, av: the max and average pools (B, H, W, C), either may be null;
//   arg: the max's argmax tap (0..8, row-major in the 3x3 window) per element, int8.
// The average counts only the taps inside the map (count_include_pad=False); the max never
// picks padding (torch's max pool pads with -inf).
#include <cstdint>
#include <limits>

namespace {

template <typename T>
void pools_forward(const T* x, T* mx, int8_t* arg, T* av, int64_t B, int64_t H, int64_t W,
                   int64_t C) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) {
        const int64_t o = ((b * H + h) * W + w) * C;
        if (mx)
          for (int64_t c = 0; c < C; ++c) mx[o + c] = -std::numeric_limits<T>::infinity();
        if (av)
          for (int64_t c = 0; c < C; ++c) av[o + c] = 0;
        int n = 0;
        for (int dh = -1; dh <= 1; ++dh) {
          const int64_t hh = h + dh;
          if (hh < 0 || hh >= H) continue;
          for (int dw = -1; dw <= 1; ++dw) {
            const int64_t ww = w + dw;
            if (ww < 0 || ww >= W) continue;
            const T* xr = x + ((b * H + hh) * W + ww) * C;
            const int8_t tap = static_cast<int8_t>((dh + 1) * 3 + dw + 1);
            ++n;
            if (mx)
              for (int64_t c = 0; c < C; ++c) {
                // strictly greater: the first maximum in window order wins, as in ATen
                const bool more = xr[c] > mx[o + c] || xr[c] != xr[c];
                mx[o + c] = more ? xr[c] : mx[o + c];
                arg[o + c] = more ? tap : arg[o + c];
              }
            if (av)
              for (int64_t c = 0; c < C; ++c) av[o + c] += xr[c];
          }
        }
        if (av) {
          const T inv = T(1) / n;
          for (int64_t c = 0; c < C; ++c) av[o + c] *= inv;
        }
      }
}

// gx (+)= the pools' input gradients for upstream gradients gm (max) and ga (average).
template <typename T>
void pools_backward(const T* gm, const int8_t* arg, const T* ga, T* gx, int64_t B, int64_t H,
                    int64_t W, int64_t C, int accumulate) {
  if (!accumulate)
    for (int64_t i = 0; i < B * H * W * C; ++i) gx[i] = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) {
        const int64_t o = ((b * H + h) * W + w) * C;
        int n = 0;
        for (int dh = -1; dh <= 1; ++dh)
          for (int dw = -1; dw <= 1; ++dw)
            n += (h + dh >= 0 && h + dh < H && w + dw >= 0 && w + dw < W);
        const T inv = T(1) / n;
        for (int dh = -1; dh <= 1; ++dh) {
          const int64_t hh = h + dh;
          if (hh < 0 || hh >= H) continue;
          for (int dw = -1; dw <= 1; ++dw) {
            const int64_t ww = w + dw;
            if (ww < 0 || ww >= W) continue;
            T* gr = gx + ((b * H + hh) * W + ww) * C;
            const int8_t tap = static_cast<int8_t>((dh + 1) * 3 + dw + 1);
            if (gm)
              for (int64_t c = 0; c < C; ++c) gr[c] += arg[o + c] == tap ? gm[o + c] : T(0);
            if (ga)
              for (int64_t c = 0; c < C; ++c) gr[c] += ga[o + c] * inv;
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
