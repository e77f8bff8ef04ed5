// Native CPU kernel for one step of the LWD GMM network (seed 000, Algorithm 3 lines 6-7 with Algorithm 2).
//
// For every replicate ("lane") and every model i: draw k points uniformly WITHOUT replacement, in uniformly random
// order, from the first N points of the lane's internet (partial Fisher-Yates on a scratch permutation, with
// Lemire's exact bounded integers), and apply the Zivkovic-van der Heijden weight update point by point.
//
// XLA:CPU has no native scatter (it expands one into a loop costing ~1 us per element), so the swap that exact
// sampling without replacement needs cannot be written fast in XLA on a CPU; this kernel does the same
// computation as the portable JAX path in collapse_jax/gmm_network.py and is checked against it and against the
// NumPy reference in tests/.
//
// Buffers (leading dims = lanes):
//   pool  (..., Nmax, S)  S = 1 when B == 2: rho = N(u; mu_1) / N(u; mu_0), clamped; else S = B: log-likelihoods.
//   p     (..., n, B)     weights before the step.
//   seeds (..., n, 2)     uint32 seed words per model (drawn in JAX from the replicate's key).
//   counts(..., 2)        int32 [N, k].
//   coefs (..., 3)        [alpha, c, eps].
// Result:
//   p_out (..., n, B).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct SplitMix64 {
  uint64_t s;
  inline uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Exactly uniform integer in [0, range) (Lemire 2019, with rejection).
  inline uint32_t bounded(uint32_t range) {
    uint64_t m = (uint64_t)(uint32_t)next() * (uint64_t)range;
    uint32_t low = (uint32_t)m;
    if (low < range) {
      uint32_t threshold = (uint32_t)(-range) % range;
      while (low < threshold) {
        m = (uint64_t)(uint32_t)next() * (uint64_t)range;
        low = (uint32_t)m;
      }
    }
    return (uint32_t)(m >> 32);
  }
};

template <typename T>
inline void prune(T* p, int B, T eps) {
  // Algorithm 2, lines 6-13: a non-positive weight is dropped and the others renormalised, component by component.
  for (int b = 0; b < B; ++b) {
    T pb = p[b];
    if (pb <= T(0)) {
      T scale = T(1) + eps - pb;
      for (int q = 0; q < B; ++q)
        if (q != b) p[q] /= scale;
      p[b] = T(0);
    }
  }
}

template <typename T>
void update_lane(const T* pool, const T* p_in, const uint32_t* seeds, const int32_t* counts, const T* coefs,
                 T* p_out, int64_t n, int64_t B, int64_t S, std::vector<uint32_t>& perm, std::vector<T>& work) {
  const int64_t N = counts[0];
  const int64_t k = counts[1];
  const T alpha = coefs[0], c = coefs[1], eps = coefs[2];
  const T keep = T(1) - alpha;
  const T gain = alpha / (T(1) - T(B) * c);
  if ((int64_t)perm.size() < N) perm.resize(N);
  work.resize(2 * B);
  for (int64_t i = 0; i < n; ++i) {
    T* p = p_out + i * B;
    for (int64_t b = 0; b < B; ++b) p[b] = p_in[i * B + b];
    if (k <= 0 || N <= 0) continue;
    SplitMix64 rng{((uint64_t)seeds[2 * i] << 32) | (uint64_t)seeds[2 * i + 1]};
    for (int64_t m = 0; m < N; ++m) perm[m] = (uint32_t)m;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t r = j + (int64_t)rng.bounded((uint32_t)(N - j));
      const uint32_t idx = perm[r];
      perm[r] = perm[j];
      perm[j] = idx;
      const T* u = pool + (int64_t)idx * S;
      if (B == 2) {
        const T o0 = p[0] / (p[0] + p[1] * u[0]);
        p[0] = keep * p[0] + gain * (o0 - c);
        p[1] = keep * p[1] + gain * ((T(1) - o0) - c);
        if (p[0] <= T(0) || p[1] <= T(0)) prune(p, 2, eps);
      } else {
        T* z = work.data();
        T zmax = -std::numeric_limits<T>::infinity();
        for (int64_t b = 0; b < B; ++b) {
          z[b] = p[b] > T(0) ? std::log(p[b]) + u[b] : -std::numeric_limits<T>::infinity();
          zmax = std::max(zmax, z[b]);
        }
        T total = T(0);
        for (int64_t b = 0; b < B; ++b) {
          z[b] = std::exp(z[b] - zmax);
          total += z[b];
        }
        bool any_nonpos = false;
        for (int64_t b = 0; b < B; ++b) {
          p[b] = keep * p[b] + gain * (z[b] / total - c);
          any_nonpos |= p[b] <= T(0);
        }
        if (any_nonpos) prune(p, (int)B, eps);
      }
    }
  }
}

template <ffi::DataType DT>
ffi::Error GmmUpdateImpl(ffi::Buffer<DT> pool, ffi::Buffer<DT> p, ffi::Buffer<ffi::U32> seeds,
                         ffi::Buffer<ffi::S32> counts, ffi::Buffer<DT> coefs, ffi::ResultBuffer<DT> p_out,
                         int64_t num_threads) {
  using T = ffi::NativeType<DT>;
  auto pd = p.dimensions();
  auto qd = pool.dimensions();
  if (pd.size() < 2 || qd.size() < 2) return ffi::Error::InvalidArgument("gmm_update: bad ranks");
  const int64_t n = pd[pd.size() - 2], B = pd[pd.size() - 1];
  const int64_t Nmax = qd[qd.size() - 2], S = qd[qd.size() - 1];
  const int64_t lanes = n * B == 0 ? 0 : (int64_t)p.element_count() / (n * B);
  if ((int64_t)pool.element_count() != lanes * Nmax * S || (int64_t)seeds.element_count() != lanes * n * 2 ||
      (int64_t)counts.element_count() != lanes * 2 || (int64_t)coefs.element_count() != lanes * 3)
    return ffi::Error::InvalidArgument("gmm_update: operand shapes disagree on the number of lanes");
  if (S != (B == 2 ? 1 : B)) return ffi::Error::InvalidArgument("gmm_update: pool feature size must be 1 (B=2) or B");
  const T* pool_d = pool.typed_data();
  const T* p_d = p.typed_data();
  const uint32_t* s_d = seeds.typed_data();
  const int32_t* c_d = counts.typed_data();
  const T* k_d = coefs.typed_data();
  T* o_d = p_out->typed_data();
  for (int64_t l = 0; l < lanes; ++l)
    if (c_d[2 * l] > Nmax || c_d[2 * l + 1] > c_d[2 * l] || c_d[2 * l] < 0)
      return ffi::Error::InvalidArgument("gmm_update: need 0 <= k <= N <= Nmax");
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> perm;
    std::vector<T> scratch;
    for (int64_t l = begin; l < end; ++l)
      update_lane<T>(pool_d + l * Nmax * S, p_d + l * n * B, s_d + l * n * 2, c_d + l * 2, k_d + l * 3,
                     o_d + l * n * B, n, B, S, perm, scratch);
  };
  int64_t threads = std::max<int64_t>(1, std::min<int64_t>(num_threads, lanes));
  if (threads == 1) {
    work(0, lanes);
  } else {
    std::vector<std::thread> pool_threads;
    const int64_t chunk = (lanes + threads - 1) / threads;
    for (int64_t t = 0; t < threads; ++t) {
      int64_t b = t * chunk, e = std::min(lanes, b + chunk);
      if (b < e) pool_threads.emplace_back(work, b, e);
    }
    for (auto& th : pool_threads) th.join();
  }
  return ffi::Error::Success();
}

}  // namespace

#define DEFINE_HANDLER(NAME, DT)                                     \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, GmmUpdateImpl<DT>,            \
                                ffi::Ffi::Bind()                    \
                                    .Arg<ffi::Buffer<DT>>()         \
                                    .Arg<ffi::Buffer<DT>>()         \
                                    .Arg<ffi::Buffer<ffi::U32>>()   \
                                    .Arg<ffi::Buffer<ffi::S32>>()   \
                                    .Arg<ffi::Buffer<DT>>()         \
                                    .Ret<ffi::Buffer<DT>>()         \
                                    .Attr<int64_t>("num_threads"));

DEFINE_HANDLER(GmmUpdateF32, ffi::F32)
DEFINE_HANDLER(GmmUpdateF64, ffi::F64)
