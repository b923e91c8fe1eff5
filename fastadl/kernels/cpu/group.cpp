// A fan-out group's whole forward (fastadl/ops/cell/fanout.py::fanout_forward, batch statistics) as
// one call: the pools, the pool rows' BatchNorm and mixing, both conv stages (depthwise runs,
// per-edge 1x1s, BatchNorm) and the final rows' mixing, by the other sources' kernels. In
// Python the same work is ~60 calls of 3-10 us dispatch each; here it is one.
//
// The argument is one int64 array (fastadl/ops/cell/cpu/groups.py builds it; pointers as
// integers), in the order the reads below take it. Layouts are fanout.py's: x (M, C) rows of
// a channels-last (P*N, C, H, W) state, M = P*Q; Ab (A, M, C); Z1 (M, J, E, C); Z2 (M, S, E, C);
// out (M, E, C); inv_pool (P, n_pool, 1, C); inv1 (P, J, E, C); inv2 (P, S, E, C).
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" {
#define FASTADL_DECL(T, S)                                                                    \
  void fastadl_dw_conv_ex_##S(const T*, const T*, const int64_t*, T*, int64_t, int64_t,     \
                              int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                              int64_t, int, int64_t, int64_t, int);                          \
  void fastadl_bn_forward_##S(T*, const int64_t*, T*, T*, T*, int64_t, int64_t, int64_t,    \
                              int64_t, int64_t, double);                                     \
  void fastadl_mix_rows_##S(T*, const T*, const int64_t*, const T*, const int64_t*, int64_t, \
                            int64_t, int64_t, int64_t, int64_t, int64_t, int);               \
  void fastadl_pointwise_##S(const T*, T*, const T*, const int64_t*, int64_t, int64_t,      \
                             int64_t, int64_t, int64_t, int);                                \
  void fastadl_pools_forward_##S(const T*, T*, int8_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  void fastadl_pools_backward_##S(const T*, const int8_t*, const T*, T*, int64_t, int64_t,  \
                                  int64_t, int64_t, int);                                    \
  void fastadl_bn_backward_##S(const T*, const int64_t*, const T*, const int64_t*, const T*, \
                               const int64_t*, const T*, const int64_t*, const T*,          \
                               const int64_t*, T*, const int64_t*, T*, int64_t, int64_t,    \
                               int64_t, int64_t, int64_t, int64_t);                          \
  void fastadl_mix_backward_##S(const T*, const T*, const T*, const int64_t*, T*, T*,       \
                                int64_t, int64_t, int64_t, int64_t);
FASTADL_DECL(float, f32)
FASTADL_DECL(double, f64)
}

namespace {

template <typename T>
struct K;  // the kernels for one dtype
#define FASTADL_K(T, S)                                                          \
  template <>                                                                    \
  struct K<T> {                                                                  \
    static constexpr auto dw = fastadl_dw_conv_ex_##S;                           \
    static constexpr auto bn = fastadl_bn_forward_##S;                           \
    static constexpr auto mix = fastadl_mix_rows_##S;                            \
    static constexpr auto pw = fastadl_pointwise_##S;                            \
    static constexpr auto pools = fastadl_pools_forward_##S;                     \
    static constexpr auto pools_bwd = fastadl_pools_backward_##S;                \
    static constexpr auto bn_bwd = fastadl_bn_backward_##S;                      \
    static constexpr auto mix_bwd = fastadl_mix_backward_##S;                    \
  };
FASTADL_K(float, f32)
FASTADL_K(double, f64)

struct Reader {  // the argument array, read in order
  const int64_t* a;
  int64_t next() { return *a++; }
  template <typename P>
  P* ptr() {
    return reinterpret_cast<P*>(next());
  }
};

struct Run {
  int64_t lo, hi, kh, kw, d;
  const void* w;
  int64_t ws[3];
};

// stats (Pc, rows, C) at row `row`: n rows of (P, n, E|1, C) statistics, each row repeated for
// every edge when Eb = 1, a single path's (P = 1) for every one of the Pc paths.
template <typename T>
void put_stats(T* buf, int64_t Pc, int64_t stride, int64_t row, const T* st, int64_t P,
               int64_t n, int64_t Eb, int64_t E, int64_t C) {
  for (int64_t pc = 0; pc < Pc; ++pc) {
    const int64_t p = P == 1 ? 0 : pc;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t e = 0; e < E; ++e)
        std::memcpy(buf + pc * stride + (row + r * E + e) * C,
                    st + ((p * n + r) * Eb + (Eb == 1 ? 0 : e)) * C, C * sizeof(T));
  }
}

template <typename T>
void group_forward(const int64_t* args, double eps) {
  Reader rd{args};
  const int64_t P = rd.next(), PN = rd.next(), H = rd.next(), W = rd.next(), C = rd.next(),
                E = rd.next(), n_pool = rd.next(), max_row = rd.next(), avg_row = rd.next(),
                skip = rd.next(), J = rd.next(), S = rd.next(), n_runs1 = rd.next(),
                n_runs2 = rd.next();
  const int64_t M = PN * H * W, Q = M / P, A = n_pool + skip;
  const T* x = rd.ptr<const T>();
  T* out = rd.ptr<T>();
  T* Ab = rd.ptr<T>();
  int8_t* arg = rd.ptr<int8_t>();
  const T* wa = rd.ptr<const T>();
  const int64_t was[2] = {rd.next(), rd.next()};
  T* inv_pool = rd.ptr<T>();
  T* Z1 = rd.ptr<T>();
  T* inv1 = rd.ptr<T>();
  const T* pw1 = rd.ptr<const T>();
  const int64_t pw1s[4] = {rd.next(), rd.next(), rd.next(), rd.next()};
  T* Z2 = rd.ptr<T>();
  T* inv2 = rd.ptr<T>();
  const T* pw2 = rd.ptr<const T>();
  const int64_t pw2s[4] = {rd.next(), rd.next(), rd.next(), rd.next()};
  const T* wf = rd.ptr<const T>();
  const int64_t wfs[2] = {rd.next(), rd.next()};
  T* stats_mean = rd.ptr<T>();  // (Pc, rows, C) buffers at row 0 of this group, or null
  T* stats_var = rd.ptr<T>();
  const int64_t Pc = rd.next(), stats_stride = rd.next();
  std::vector<Run> runs(n_runs1 + n_runs2);
  for (Run& r : runs) {
    r.lo = rd.next(), r.hi = rd.next(), r.kh = rd.next(), r.kw = rd.next(), r.d = rd.next();
    r.w = rd.ptr<const void>();
    r.ws[0] = rd.next(), r.ws[1] = rd.next(), r.ws[2] = rd.next();
  }
  std::vector<T> mean, var;
  int64_t stat_row = 0;
  auto stats = [&](int64_t n, int64_t Eb) {  // the block just normalised, into the buffers
    if (stats_mean) {
      put_stats(stats_mean, Pc, stats_stride, stat_row, mean.data(), P, n, Eb, E, C);
      put_stats(stats_var, Pc, stats_stride, stat_row, var.data(), P, n, Eb, E, C);
    }
    stat_row += n * E;
  };
  bool written = false;
  if (A) {
    const int64_t rows = M * C;
    if (n_pool)
      K<T>::pools(x, max_row >= 0 ? Ab + max_row * rows : nullptr, arg,
                  avg_row >= 0 ? Ab + avg_row * rows : nullptr, PN, H, W, C);
    if (skip) std::memcpy(Ab + n_pool * rows, x, rows * sizeof(T));
    // the rows as (P, Q, a, e, C) views: e has stride 0 (each row is shared by the E edges)
    const int64_t rs[4] = {Q * C, C, rows, 0};
    if (n_pool) {
      mean.resize(P * n_pool * C), var.resize(P * n_pool * C);
      K<T>::bn(Ab, rs, mean.data(), var.data(), inv_pool, P, Q, n_pool, 1, C, eps);
      stats(n_pool, 1);
    }
    K<T>::mix(out, Ab, rs, wa, was, P, Q, A, E, C, C, 0);
    written = true;
  }
  if (J) {
    const int64_t EC = E * C;
    std::vector<T> D(M * J * EC);  // each stage's depthwise outputs (D1, then D2)
    auto stage = [&](const Run* rs, int64_t n_runs, const T* in, int64_t sx, bool shared,
                     int64_t R, const T* pw, const int64_t* pws, T* Z, T* inv) {
      for (int64_t i = 0; i < n_runs; ++i) {
        const Run& r = rs[i];
        const int64_t G = (r.hi - r.lo) * EC;
        K<T>::dw(shared ? in : in + r.lo * EC, static_cast<const T*>(r.w), r.ws,
                 D.data() + r.lo * EC, PN, H, W, shared ? C : G, G, r.kh, r.kw, r.d,
                 (r.kh - 1) / 2 * r.d, (r.kw - 1) / 2 * r.d, 0, sx, R * EC, 1);
      }
      K<T>::pw(D.data(), Z, pw, pws, M, R * EC, R, E, C, 0);
      const int64_t zs[4] = {Q * R * EC, R * EC, 0, 0};  // rows, edges, channels merged
      mean.resize(P * R * EC), var.resize(P * R * EC);
      K<T>::bn(Z, zs, mean.data(), var.data(), inv, P, Q, 1, 1, R * EC, eps);
      stats(R, E);
    };
    stage(runs.data(), n_runs1, x, C, true, J, pw1, pw1s, Z1, inv1);
    if (S) stage(runs.data() + n_runs1, n_runs2, Z1, J * EC, false, S, pw2, pw2s, Z2, inv2);
    const int64_t n1 = J - S;
    if (n1) {  // out[:, e] += sum_f wf[f, e] xhat_f[:, e], the single-stage kinds of Z1
      const int64_t zs[4] = {Q * J * EC, J * EC, EC, C};
      K<T>::mix(out, Z1 + S * EC, zs, wf, wfs, P, Q, n1, 1, EC, C, written);
      written = true;
    }
    if (S) {
      const int64_t zs[4] = {Q * S * EC, S * EC, EC, C};
      K<T>::mix(out, Z2, zs, wf + n1 * wfs[0], wfs, P, Q, S, 1, EC, C, written);
      written = true;
    }
  }
  if (!written) std::memset(out, 0, M * E * C * sizeof(T));
}

// The gradients of group_forward (fanout.py::fanout_backward with batch statistics, where the
// chain to x or to the conv weights is needed): gx (M, C) (when need_x), the mixing weights'
// ga (A, E) and gf (J, E) (when need_w), and at each stage's pointwise and depthwise outputs
// gz1, gd1 (M, J, E, C), gz2, gd2 (M, S, E, C) for the cell's weight gradients.
template <typename T>
void group_backward(const int64_t* args) {
  Reader rd{args};
  const int64_t P = rd.next(), PN = rd.next(), H = rd.next(), W = rd.next(), C = rd.next(),
                E = rd.next(), n_pool = rd.next(), max_row = rd.next(), avg_row = rd.next(),
                skip = rd.next(), J = rd.next(), S = rd.next(), n_runs1 = rd.next(),
                n_runs2 = rd.next(), need_x = rd.next(), need_w = rd.next();
  const int64_t M = PN * H * W, Q = M / P, A = n_pool + skip, EC = E * C;
  const T* g = rd.ptr<const T>();  // (M, E, C)
  const T* x = rd.ptr<const T>();
  const T* Ab = rd.ptr<const T>();
  const int8_t* arg = rd.ptr<const int8_t>();
  const T* wa = rd.ptr<const T>();
  const int64_t was[2] = {rd.next(), rd.next()};
  const T* inv_pool = rd.ptr<const T>();
  const T* Z1 = rd.ptr<const T>();
  const T* inv1 = rd.ptr<const T>();
  const T* pw1 = rd.ptr<const T>();
  const int64_t pw1s[4] = {rd.next(), rd.next(), rd.next(), rd.next()};
  const T* Z2 = rd.ptr<const T>();
  const T* inv2 = rd.ptr<const T>();
  const T* pw2 = rd.ptr<const T>();
  const int64_t pw2s[4] = {rd.next(), rd.next(), rd.next(), rd.next()};
  const T* wf = rd.ptr<const T>();
  const int64_t wfs[2] = {rd.next(), rd.next()};
  T* gx = rd.ptr<T>();
  T* ga = rd.ptr<T>();
  T* gf = rd.ptr<T>();
  T* gz1 = rd.ptr<T>();
  T* gd1 = rd.ptr<T>();
  T* gz2 = rd.ptr<T>();
  T* gd2 = rd.ptr<T>();
  std::vector<Run> runs(n_runs1 + n_runs2);
  for (Run& r : runs) {
    r.lo = rd.next(), r.hi = rd.next(), r.kh = rd.next(), r.kw = rd.next(), r.d = rd.next();
    r.w = rd.ptr<const void>();
    r.ws[0] = rd.next(), r.ws[1] = rd.next(), r.ws[2] = rd.next();
  }
  bool gx_written = false;
  if (A && (need_x || need_w)) {
    const int64_t rows = M * C;
    std::vector<T> gA(A * rows);
    K<T>::mix_bwd(g, Ab, wa, was, gA.data(), need_w ? ga : nullptr, A, M, E, C);
    if (need_x) {
      if (skip) std::memcpy(gx, gA.data() + n_pool * rows, rows * sizeof(T)), gx_written = true;
      if (n_pool) {
        const int64_t rs[4] = {Q * C, C, rows, 0};
        const int64_t is[4] = {n_pool * C, C, C, 0};
        K<T>::bn_bwd(gA.data(), rs, nullptr, nullptr, Ab, rs, inv_pool, is, nullptr, nullptr,
                     gA.data(), rs, nullptr, P, Q, n_pool, 1, C, C);
        K<T>::pools_bwd(max_row >= 0 ? gA.data() + max_row * rows : nullptr, arg,
                        avg_row >= 0 ? gA.data() + avg_row * rows : nullptr, gx, PN, H, W, C,
                        gx_written);
        gx_written = true;
      }
    }
  }
  if (J) {
    const int64_t n1 = J - S;
    const int64_t gs[4] = {Q * EC, EC, 0, C};  // g as every final row's upstream gradient
    const int64_t z1s[4] = {Q * J * EC, J * EC, EC, C}, i1s[4] = {J * EC, EC, C, 0};
    if (n1)  // dL/dz of the single-stage finals: wf ι (g - mean g - x̂ mean(g x̂))
      K<T>::bn_bwd(g, gs, nullptr, nullptr, Z1 + S * EC, z1s, inv1 + S * EC, i1s, wf, wfs,
                   gz1 + S * EC, z1s, need_w ? gf : nullptr, P, Q, n1, 1, EC, C);
    if (S) {
      const int64_t z2s[4] = {Q * S * EC, S * EC, EC, C}, i2s[4] = {S * EC, EC, C, 0};
      K<T>::bn_bwd(g, gs, nullptr, nullptr, Z2, z2s, inv2, i2s, wf + n1 * wfs[0], wfs, gz2, z2s,
                   need_w ? gf + n1 * E : nullptr, P, Q, S, 1, EC, C);
      K<T>::pw(gz2, gd2, pw2, pw2s, M, S * EC, S, E, C, 1);
      std::vector<T> gy(M * S * EC);  // at the second convs' input ReLU(x̂)
      for (int64_t i = n_runs1; i < n_runs1 + n_runs2; ++i) {
        const Run& r = runs[i];
        const int64_t G = (r.hi - r.lo) * EC;
        K<T>::dw(gd2 + r.lo * EC, static_cast<const T*>(r.w), r.ws, gy.data() + r.lo * EC, PN, H,
                 W, G, G, r.kh, r.kw, r.d, (r.kh - 1) / 2 * r.d, (r.kw - 1) / 2 * r.d, 1,
                 S * EC, S * EC, 0);
      }
      // the sep first stages' BN with its ReLU: passes where x̂ > 0
      K<T>::bn_bwd(gy.data(), z2s, Z1, z1s, Z1, z1s, inv1, i1s, nullptr, nullptr, gz1, z1s,
                   nullptr, P, Q, S, 1, EC, C);
    }
    K<T>::pw(gz1, gd1, pw1, pw1s, M, J * EC, J, E, C, 1);
    if (need_x) {  // every kind and edge read ReLU(x): their input gradients summed
      std::vector<T> gr(M * J * EC);
      for (int64_t i = 0; i < n_runs1; ++i) {
        const Run& r = runs[i];
        const int64_t G = (r.hi - r.lo) * EC;
        K<T>::dw(gd1 + r.lo * EC, static_cast<const T*>(r.w), r.ws, gr.data() + r.lo * EC, PN, H,
                 W, G, G, r.kh, r.kw, r.d, (r.kh - 1) / 2 * r.d, (r.kw - 1) / 2 * r.d, 1,
                 J * EC, J * EC, 0);
      }
      std::vector<T> sum(C);
      for (int64_t m = 0; m < M; ++m) {
        const T* row = gr.data() + m * J * EC;
        for (int64_t c = 0; c < C; ++c) sum[c] = row[c];
        for (int64_t k = 1; k < J * E; ++k)
          for (int64_t c = 0; c < C; ++c) sum[c] += row[k * C + c];
        T* o = gx + m * C;
        const T* xr = x + m * C;
        for (int64_t c = 0; c < C; ++c) {
          const T v = xr[c] > T(0) ? sum[c] : T(0);
          o[c] = gx_written ? o[c] + v : v;
        }
      }
      gx_written = true;
    }
  }
  if (need_x && !gx_written) std::memset(gx, 0, M * C * sizeof(T));
}

}  // namespace

extern "C" {
void fastadl_group_backward_f32(const int64_t* args) { group_backward<float>(args); }
void fastadl_group_backward_f64(const int64_t* args) { group_backward<double>(args); }
void fastadl_group_forward_f32(const int64_t* args, double eps) {
  group_forward<float>(args, eps);
}
void fastadl_group_forward_f64(const int64_t* args, double eps) {
  group_forward<double>(args, eps);
}
}  // extern "C"
