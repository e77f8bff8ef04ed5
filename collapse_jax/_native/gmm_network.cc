// Native CPU kernel for whole replicates of the LWD GMM network (seed 000, Section 3.2, Algorithms 2 and 3).
//
// One call runs every step t = 0..T-1 of every replicate: record D(t), post each model's L points (component from
// Pi_i(t), x = mu_b + chol z, likelihood features), then every model draws k_t points uniformly WITHOUT replacement,
// in uniformly random order, from the internet before this step's posts and applies the Zivkovic-van der Heijden
// update point by point (Algorithm 2 with its pruning); finally D(T) is recorded. The portable JAX kernel in
// collapse_jax/gmm_network.py is the reference; both are checked against the NumPy reference in tests/.
//
// How it is fast:
// - Lanes. A (replicate, model) pair is a "chain" of k_t dependent updates per step. W chains share one vector
//   (AVX-512: 16 float32 lanes, AVX2: 8, other CPUs: 4); every chain draws the same k_t at step t, so lanes never
//   diverge. A group holds several vectors (about 96 chains), advanced round robin so their latencies overlap.
// - Sampling without replacement with no reset. Each chain keeps its own copy of the internet (B = 2: the points'
//   likelihood ratios; B > 2: point indices into the replicate's pool) and runs a partial Fisher-Yates shuffle on it:
//   draw j swaps position j with a uniform position in [j, N). Starting from ANY arrangement of the internet this
//   yields a uniformly random ordered sample without replacement, independent of the past, so the copy is never
//   reset: new posts are appended at positions N..N+nL-1 and step t shuffles the first N = |A(t)| positions.
// - A cheap exact generator: xoshiro128++ (32-bit lanes, Blackman & Vigna 2019) per chain and Lemire's exactly
//   uniform bounded integers (multiply-high with the rare rejection done lane by lane).
// - Every lane computes exactly what a one-lane (scalar) run computes: the same generator stream per chain and the
//   same IEEE operations (no FMA contraction, true divisions), so results do not depend on the vector width, on how
//   replicates are grouped or threaded, or on the CPU kind (AVX-512, AVX2, plain x86-64); the tests check that the
//   scalar engine gives bit-identical results.
//
// Streams: replicate r's four seed words (drawn in JAX from fold_in(key(seed), r)) seed one SplitMix64 stream for
// its posts and, per model i, one xoshiro128++ stream for its draws.
//
// Buffers (leading dims = replicates):
//   w0      (R, n, B)    Pi(0).
//   human   (R, H, S)    features of the m0 human points (H = max(m0, 1); S = 1 for B = 2: the ratio rho =
//                        N(u; mu_1)/N(u; mu_0) clamped to exp(+-clamp); S = B: log-likelihoods minus their max).
//   seeds   (R, 4)       uint32.
// Results: dnorm (R, T+1), alive (R, T+1, n) int8, collapsed (R, T+1) int8, weights (R, T+1 or 0, n, B),
//   distances (R, T+1 or 0, n, n) (the last two filled only when they have their full size).
// Attributes: points (T,) |A(t)|, draws (T,) k_t, alpha (T,), c (T,); geometry = mu (B, d), the Cholesky factor of
//   Sigma (d, d) and shift[c][b] = L^{-1} (mu_c - mu_b) (B, B, d), float64; eps, clamp, num_human,
//   points_per_step, dim, num_threads, engine (0 vector, 1 scalar).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#include <unistd.h>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

#if defined(__clang__)
#pragma clang fp contract(off)  // the same roundings in every lane width (see above)
#else
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

namespace {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX2__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

// ---- vector types (GCC/Clang vector extensions), picked by traits so that templates on (T, W) work ---------------
template <typename T, int W>
struct Vec;
#define CJ_VECTOR_TYPES(W)                                                              \
  typedef uint32_t u32x##W __attribute__((vector_size(4 * W)));                         \
  typedef float f32x##W __attribute__((vector_size(4 * W)));                            \
  typedef double f64x##W __attribute__((vector_size(8 * W)));                           \
  template <>                                                                           \
  struct Vec<float, W> {                                                                \
    typedef f32x##W t;                                                                  \
    typedef u32x##W u;                                                                  \
  };                                                                                    \
  template <>                                                                           \
  struct Vec<double, W> {                                                               \
    typedef f64x##W t;                                                                  \
    typedef u32x##W u;                                                                  \
  };
CJ_VECTOR_TYPES(1)
CJ_VECTOR_TYPES(2)
CJ_VECTOR_TYPES(4)
CJ_VECTOR_TYPES(8)
CJ_VECTOR_TYPES(16)
#undef CJ_VECTOR_TYPES

// Whether any lane of a comparison mask is set.
template <typename M>
inline bool any(M mask) {
#if defined(__AVX512F__)
  if constexpr (sizeof(M) == 64) return _mm512_test_epi32_mask((__m512i)mask, (__m512i)mask) != 0;
#endif
#if defined(__AVX__)
  if constexpr (sizeof(M) == 32) return !_mm256_testz_si256((__m256i)mask, (__m256i)mask);
#endif
  uint64_t words[(sizeof(M) + 7) / 8] = {};
  std::memcpy(words, &mask, sizeof(M));
  uint64_t acc = 0;
  for (uint64_t w : words) acc |= w;
  return acc != 0;
}

// base[offsets[lane]] for every lane by W loads.
template <typename VS, typename S, typename VU>
inline VS load_each(const S* base, VU offsets) {
  constexpr int W = sizeof(VU) / 4;
  VS out;
  for (int lane = 0; lane < W; ++lane) out[lane] = base[offsets[lane]];
  return out;
}

// base[offsets[lane]] for every lane (hardware gathers with AVX2/AVX-512, a loop elsewhere).
template <typename VS, typename S, typename VU>
inline VS gather(const S* base, VU offsets) {
  constexpr int W = sizeof(VU) / 4;
#if defined(__AVX512F__)
  if constexpr (W == 16 && sizeof(S) == 4 && std::is_floating_point_v<S>)
    return (VS)_mm512_i32gather_ps((__m512i)offsets, base, 4);
  if constexpr (W == 16 && sizeof(S) == 4 && !std::is_floating_point_v<S>)
    return (VS)_mm512_i32gather_epi32((__m512i)offsets, base, 4);
  if constexpr (W == 8 && sizeof(S) == 8) return (VS)_mm512_i32gather_pd((__m256i)offsets, base, 8);
#endif
#if defined(__AVX2__)
  if constexpr (W == 8 && sizeof(S) == 4 && std::is_floating_point_v<S>)
    return (VS)_mm256_i32gather_ps(base, (__m256i)offsets, 4);
  if constexpr (W == 8 && sizeof(S) == 4 && !std::is_floating_point_v<S>)
    return (VS)_mm256_i32gather_epi32((const int*)base, (__m256i)offsets, 4);
  if constexpr (W == 4 && sizeof(S) == 8) return (VS)_mm256_i32gather_pd(base, (__m128i)offsets, 8);
#endif
  return load_each<VS>(base, offsets);
}

// AMD Zen without AVX-512 (Zen 3 measured), where two things differ from the Intel tuning: the vectors of a group
// run their draws one vector after another (Group::each_draw), and a B = 2 draw reads its chains' copies (likelihood
// ratios) with a loop of loads instead of the hardware gather, which, following the previous draw's scalar stores
// into the same copies, is slow there (Figure 4: 17 % less CPU time with loads). The B > 2 draws (point indices)
// and the likelihood gathers from the pool were measured slower as loads there (Figure 6: 1.5x the CPU time), so
// they keep the hardware gather, as do Intel CPUs and AVX-512 builds everywhere.
#if !defined(__AVX512F__) && (defined(__znver1__) || defined(__znver2__) || defined(__znver3__) || \
                              defined(__znver4__) || defined(__znver5__))
constexpr bool kZenAvx2 = true;
#else
constexpr bool kZenAvx2 = false;
#endif

// base[offsets[lane]] = values[lane] (offsets distinct; AVX-512 scatters, a loop elsewhere).
template <typename VS, typename S, typename VU>
inline void scatter(S* base, VU offsets, VS values) {
  constexpr int W = sizeof(VU) / 4;
#if defined(__AVX512F__)
  if constexpr (W == 16 && sizeof(S) == 4 && std::is_floating_point_v<S>)
    return _mm512_i32scatter_ps(base, (__m512i)offsets, (__m512)values, 4);
  if constexpr (W == 16 && sizeof(S) == 4 && !std::is_floating_point_v<S>)
    return _mm512_i32scatter_epi32(base, (__m512i)offsets, (__m512i)values, 4);
  if constexpr (W == 8 && sizeof(S) == 8) return _mm512_i32scatter_pd(base, (__m256i)offsets, (__m512d)values, 8);
#endif
  S vals[W];
  uint32_t offs[W];
  std::memcpy(vals, &values, sizeof(vals));
  std::memcpy(offs, &offsets, sizeof(offs));
  for (int lane = 0; lane < W; ++lane) base[offs[lane]] = vals[lane];
}

// hi:lo = x * range per lane (32 x 32 -> 64 bits; AVX2/AVX-512: even and odd lanes' 32-bit multiplies).
template <typename VU>
inline void mul_wide(VU x, uint32_t range, VU& hi, VU& lo) {
  constexpr int W = sizeof(VU) / 4;
#if defined(__AVX512F__)
  if constexpr (W == 16) {
    const __m512i r = _mm512_set1_epi64(range), xi = (__m512i)x;
    const __m512i even = _mm512_mul_epu32(xi, r), odd = _mm512_mul_epu32(_mm512_srli_epi64(xi, 32), r);
    hi = (VU)_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
    lo = (VU)_mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    return;
  }
#endif
#if defined(__AVX2__)
  if constexpr (W == 8) {
    const __m256i r = _mm256_set1_epi64x(range), xi = (__m256i)x;
    const __m256i even = _mm256_mul_epu32(xi, r), odd = _mm256_mul_epu32(_mm256_srli_epi64(xi, 32), r);
    hi = (VU)_mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    lo = (VU)_mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    return;
  }
#endif
  for (int lane = 0; lane < W; ++lane) {
    const uint64_t m = (uint64_t)x[lane] * range;
    hi[lane] = (uint32_t)(m >> 32);
    lo[lane] = (uint32_t)m;
  }
}

// ---- generators ----------------------------------------------------------------------------------------------

template <typename U>
inline U rotl32(U x, int k) { return (x << k) | (x >> (32 - k)); }

// xoshiro128++ (Blackman & Vigna 2019) for one lane (U = uint32_t) or every lane of a vector (U = u32xW).
template <typename U>
inline U xoshiro_next(U& s0, U& s1, U& s2, U& s3) {
  const U result = rotl32<U>(s0 + s3, 7) + s0;
  const U t = s1 << 9;
  s2 ^= s0;
  s3 ^= s1;
  s1 ^= s2;
  s0 ^= s3;
  s2 ^= t;
  s3 = rotl32<U>(s3, 11);
  return result;
}

// Standard normals by the ziggurat method (Marsaglia & Tsang 2000, 128 layers, in Doornik's 2005 ZIGNOR form):
// exact (rejection in the wedges, Marsaglia's method in the tail); one 64-bit draw per try, its low 7 bits pick the
// layer and its top 53 bits the uniform. About 99% of draws take the first branch (a multiply and a compare).
struct Ziggurat {
  static constexpr int kLayers = 128;
  static constexpr double kR = 3.442619855899, kV = 9.91256303526217e-3;
  double x[kLayers + 1], ratio[kLayers];
  Ziggurat() {
    double f = std::exp(-0.5 * kR * kR);
    x[0] = kV / f;
    x[1] = kR;
    x[kLayers] = 0.0;
    for (int i = 2; i < kLayers; ++i) {
      x[i] = std::sqrt(-2.0 * std::log(kV / x[i - 1] + f));
      f = std::exp(-0.5 * x[i] * x[i]);
    }
    for (int i = 0; i < kLayers; ++i) ratio[i] = x[i + 1] / x[i];
  }
  double next(SplitMix64& rng) const {
    for (;;) {
      const uint64_t bits = rng.next();
      const int i = (int)(bits & (kLayers - 1));
      const double u = 2.0 * ((double)(bits >> 11) * 0x1.0p-53) - 1.0;  // [-1, 1)
      if (std::fabs(u) < ratio[i]) return u * x[i];
      if (i == 0) {  // the tail beyond kR
        double t, y;
        do {
          t = std::log(1.0 - rng.uniform()) / kR;
          y = std::log(1.0 - rng.uniform());
        } while (-2.0 * y < t * t);
        return u < 0.0 ? t - kR : kR - t;
      }
      const double z = u * x[i];
      const double f0 = std::exp(-0.5 * (x[i] * x[i] - z * z)), f1 = std::exp(-0.5 * (x[i + 1] * x[i + 1] - z * z));
      if (f1 + rng.uniform() * (f0 - f1) < 1.0) return z;
    }
  }
};
const Ziggurat kZiggurat;

// ---- the problem ---------------------------------------------------------------------------------------------
template <typename T>
struct Problem {
  int64_t R, n, B, d, L, T1, steps, m0, pool_size, human_rows, human_features;
  T eps;
  double clamp;
  const T* w0;
  const T* human;
  const uint32_t* seeds;
  const int32_t* points;
  const int32_t* draws;
  const T* alpha;
  const T* c;
  const double* mu;     // (B, d)
  const double* chol;   // (d, d) lower
  const double* shift;  // (B, B, d): shift[c][b] = L^{-1} (mu_c - mu_b)
  T* dnorm;
  int8_t* alive;
  int8_t* collapsed;
  T* weights;    // or null
  T* distances;  // or null
};

std::atomic<int64_t> g_progress{0};  // point updates done, read by collapse_jax_gmm_progress() for progress bars

// Records of one replicate at step t from its weights p (n, B).
template <typename T>
void record(const Problem<T>& pr, int64_t rep, int64_t t, const T* p) {
  const int64_t n = pr.n, B = pr.B, row = rep * pr.T1 + t;
  T total = T(0);
  T* dist = pr.distances ? pr.distances + row * n * n : nullptr;
  for (int64_t i = 0; i < n; ++i) {
    if (dist) dist[i * n + i] = T(0);
    for (int64_t j = i + 1; j < n; ++j) {
      T sq = T(0);
      for (int64_t b = 0; b < B; ++b) {
        const T diff = p[i * B + b] - p[j * B + b];
        sq += diff * diff;
      }
      const T dij = std::sqrt(sq);
      total += T(2) * (dij * dij);
      if (dist) dist[i * n + j] = dist[j * n + i] = dij;
    }
  }
  pr.dnorm[row] = std::sqrt(total);
  bool all_one = true, same_top = true;
  int64_t top0 = 0;
  for (int64_t i = 0; i < n; ++i) {
    int64_t count = 0, top = 0;
    for (int64_t b = 0; b < B; ++b) {
      count += p[i * B + b] > T(0);
      if (p[i * B + b] > p[i * B + top]) top = b;
    }
    pr.alive[row * n + i] = (int8_t)count;
    all_one &= count == 1;
    if (i == 0) top0 = top;
    same_top &= top == top0;
  }
  pr.collapsed[row] = (int8_t)(all_one && same_top);
  if (pr.weights) std::copy(p, p + n * B, pr.weights + row * n * B);
}

// One posted point from a model with weights p (B,): its likelihood features, in double. B = 2: the clamped ratio
// rho = N(x; mu_1)/N(x; mu_0) in out[0]; B > 2: log-likelihoods minus their maximum in out[0..B).
template <typename T>
void post_point(const Problem<T>& pr, const T* p, SplitMix64& rng, double* z, double* out) {
  const int64_t B = pr.B, d = pr.d;
  double sum = 0.0;
  int64_t last = 0;
  for (int64_t b = 0; b < B; ++b) {
    sum += (double)p[b];
    if (p[b] > T(0)) last = b;
  }
  const double u = rng.uniform();
  int64_t comp = last;
  double acc = 0.0;
  for (int64_t b = 0; b < last; ++b) {  // inverse CDF; components past the last positive weight are never chosen
    acc += (double)p[b] / sum;
    if (u < acc) {
      comp = b;
      break;
    }
  }
  for (int64_t k = 0; k < d; ++k) z[k] = kZiggurat.next(rng);
  // x = mu_comp + L z, so L^{-1}(x - mu_b) = z + shift[comp][b] and log N(x; mu_b) = -|z + shift|^2 / 2 + const.
  double llmax = -std::numeric_limits<double>::infinity();
  for (int64_t b = 0; b < B; ++b) {
    const double* s = pr.shift + (comp * B + b) * d;
    double q = 0.0;
    for (int64_t k = 0; k < d; ++k) q += (z[k] + s[k]) * (z[k] + s[k]);
    out[b] = -0.5 * q;
    llmax = std::max(llmax, out[b]);
  }
  if (B == 2) {
    out[0] = std::exp(std::min(pr.clamp, std::max(-pr.clamp, out[1] - out[0])));
  } else {
    for (int64_t b = 0; b < B; ++b) out[b] -= llmax;
  }
}

template <typename P>
P* aligned_array(std::unique_ptr<void, decltype(&std::free)>& holder, size_t count) {
  const size_t bytes = ((count * sizeof(P) + 63) / 64) * 64;
  if (count > (SIZE_MAX - 63) / sizeof(P)) throw std::bad_alloc();
  holder.reset(std::aligned_alloc(64, std::max<size_t>(bytes, 64)));
  if (!holder) throw std::bad_alloc();  // (a null scratch array was written to: a segfault at 100,000 models)
  return static_cast<P*>(holder.get());
}

// A group of G replicates (G n chains in V vectors of W lanes), run from t = 0 to T.
template <typename T, int W>
class Group {
 public:
  typedef typename Vec<T, W>::t vt;
  typedef typename Vec<T, W>::u vu;
  typedef decltype(vt{} <= vt{}) vm;

  Group(const Problem<T>& pr, int64_t G)
      : pr_(pr), G_(G), V_((G * pr.n + W - 1) / W), P_(pr.pool_size), S2_(pr.B == 2 ? 1 : pr.B),
        h_vals_(nullptr, &std::free), h_idx_(nullptr, &std::free), h_pool_(nullptr, &std::free), h_logpool_(nullptr, &std::free),
        h_p_(nullptr, &std::free), h_rng_(nullptr, &std::free), h_base_(nullptr, &std::free) {
    if (pr.B == 2) {
      vals_ = aligned_array<T>(h_vals_, (size_t)V_ * P_ * W);
    } else {
      idx_ = aligned_array<uint32_t>(h_idx_, (size_t)V_ * P_ * W);
      pool_ = aligned_array<T>(h_pool_, (size_t)G_ * P_ * S2_);
      logpool_ = aligned_array<T>(h_logpool_, (size_t)G_ * P_ * S2_);
      base_ = aligned_array<vu>(h_base_, (size_t)V_);
    }
    p_ = aligned_array<vt>(h_p_, (size_t)V_ * pr.B);
    rng_ = aligned_array<vu>(h_rng_, (size_t)V_ * 4);
    for (int lane = 0; lane < W; ++lane) iota_[lane] = (uint32_t)lane;
    z_.resize(pr.d);
    feat_.resize(pr.B);
    w_.resize(pr.n * pr.B);
    post_rng_.resize(G_);
  }

  // Run replicates first .. first + count - 1 (count <= G).
  void run(int64_t first, int64_t count) {
    init(first, count);
    for (int64_t t = 0; t < pr_.steps; ++t) {
      record_all(first, count, t);
      const int64_t N = pr_.points[t], k = pr_.draws[t];
      post_all(count, N);
      if (k > 0) {
        const T a = pr_.alpha[t], cc = pr_.c[t];
        if (pr_.B == 2)
          update_two(N, k, a, cc);
        else
          update_many(N, k, a, cc);
        g_progress.fetch_add(count * pr_.n * k, std::memory_order_relaxed);
      }
    }
    record_all(first, count, pr_.steps);
  }

 private:
  const Problem<T>& pr_;
  const int64_t G_, V_, P_, S2_;
  std::unique_ptr<void, decltype(&std::free)> h_vals_, h_idx_, h_pool_, h_logpool_, h_p_, h_rng_, h_base_;
  T* vals_ = nullptr;        // B = 2: [v][pos][lane] likelihood ratios
  uint32_t* idx_ = nullptr;  // B > 2: [v][pos][lane] point indices
  T* pool_ = nullptr;        // B > 2: [rep][pos][b] likelihoods relative to the point's best component
  T* logpool_ = nullptr;     // B > 2: [rep][pos][b] their logarithms (read only by the log-space fallback)
  vu* base_ = nullptr;       // B > 2: [v] offset of each lane's replicate pool
  vt* p_ = nullptr;          // [v][b] weights
  vu* rng_ = nullptr;        // [v][4] xoshiro128++ states
  vu iota_;  // 0, 1, ..., W - 1
  std::vector<double> z_, feat_;
  std::vector<T> w_;
  std::vector<SplitMix64> post_rng_;

  T& weight(int64_t chain, int64_t b) { return p_[(chain / W) * pr_.B + b][chain % W]; }

  void init(int64_t first, int64_t count) {
    const int64_t n = pr_.n, B = pr_.B;
    for (int64_t ch = 0; ch < V_ * W; ++ch) {
      const int64_t rep = ch / n, i = ch % n, v = ch / W, lane = ch % W;
      const bool real = rep < count;
      uint64_t seed = 0x243F6A8885A308D3ULL;  // padding lanes: any fixed stream
      if (real) {
        const uint32_t* s = pr_.seeds + (first + rep) * 4;
        seed = ((uint64_t)s[0] << 32) | s[1];
      }
      SplitMix64 mix{seed ^ (0xD1B54A32D192ED03ULL * (uint64_t)(i + 1))};
      for (int q = 0; q < 4; ++q) {
        uint32_t word = (uint32_t)(mix.next() >> 32);
        rng_[v * 4 + q][lane] = word;
      }
      if ((rng_[v * 4][lane] | rng_[v * 4 + 1][lane] | rng_[v * 4 + 2][lane] | rng_[v * 4 + 3][lane]) == 0)
        rng_[v * 4][lane] = 1;  // xoshiro's one forbidden state
      for (int64_t b = 0; b < B; ++b)
        weight(ch, b) = real ? pr_.w0[((first + rep) * n + i) * B + b] : T(1) / T(B);
    }
    for (int64_t rep = 0; rep < count; ++rep) {
      const uint32_t* s = pr_.seeds + (first + rep) * 4;
      post_rng_[rep].s = ((uint64_t)s[2] << 32) | s[3];
    }
    if (B == 2) {
      std::fill(vals_, vals_ + V_ * P_ * W, T(1));
    } else {
      for (int64_t v = 0; v < V_; ++v)
        for (int64_t pos = 0; pos < P_; ++pos)
          for (int lane = 0; lane < W; ++lane) idx_[(v * P_ + pos) * W + lane] = (uint32_t)pos;
      std::fill(pool_, pool_ + G_ * P_ * S2_, T(0));
      std::fill(logpool_, logpool_ + G_ * P_ * S2_, T(0));
      for (int64_t v = 0; v < V_; ++v)
        for (int lane = 0; lane < W; ++lane) {
          const int64_t rep = (v * W + lane) / n;
          base_[v][lane] = (uint32_t)((rep < count ? rep : 0) * P_ * S2_);
        }
    }
    for (int64_t rep = 0; rep < count; ++rep) {
      const T* h = pr_.human + (first + rep) * pr_.human_rows * pr_.human_features;
      for (int64_t m = 0; m < pr_.m0; ++m) {
        for (int64_t b = 0; b < pr_.human_features; ++b) feat_[b] = (double)h[m * pr_.human_features + b];
        store_point(rep, m, feat_.data());
      }
    }
  }

  // Append a point (features in double) at position pos of replicate rep's internet.
  void store_point(int64_t rep, int64_t pos, const double* f) {
    const int64_t n = pr_.n, B = pr_.B;
    if (B == 2) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t ch = rep * n + i;
        vals_[((ch / W) * P_ + pos) * W + ch % W] = (T)f[0];
      }
    } else {
      T* row = pool_ + (rep * P_ + pos) * S2_;
      T* logrow = logpool_ + (rep * P_ + pos) * S2_;
      for (int64_t b = 0; b < B; ++b) {
        row[b] = (T)std::exp(f[b]);
        logrow[b] = (T)f[b];
      }
    }
  }

  void gather_weights(int64_t rep) {
    for (int64_t i = 0; i < pr_.n; ++i)
      for (int64_t b = 0; b < pr_.B; ++b) w_[i * pr_.B + b] = weight(rep * pr_.n + i, b);
  }

  void record_all(int64_t first, int64_t count, int64_t t) {
    for (int64_t rep = 0; rep < count; ++rep) {
      gather_weights(rep);
      record(pr_, first + rep, t, w_.data());
    }
  }

  void post_all(int64_t count, int64_t N) {
    const int64_t n = pr_.n, L = pr_.L;
    for (int64_t rep = 0; rep < count; ++rep) {
      gather_weights(rep);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t s = 0; s < L; ++s) {
          post_point(pr_, w_.data() + i * pr_.B, post_rng_[rep], z_.data(), feat_.data());
          const int64_t pos = N + i * L + s;
          store_point(rep, pos, feat_.data());
        }
    }
  }

  // Uniform positions j + [0, N - j) for the W chains of vector v (Lemire: multiply-high, reject lo < 2^32 mod range).
  inline vu positions(int64_t v, uint32_t j, uint32_t range) {
    vu& s0 = rng_[v * 4];
    vu& s1 = rng_[v * 4 + 1];
    vu& s2 = rng_[v * 4 + 2];
    vu& s3 = rng_[v * 4 + 3];
    const vu x = xoshiro_next<vu>(s0, s1, s2, s3);
    vu hi, lo;
    mul_wide(x, range, hi, lo);
    if (__builtin_expect(any(lo < range), 0)) {
      const uint32_t threshold = (uint32_t)(-range) % range;
      for (int lane = 0; lane < W; ++lane) {
        uint32_t low = lo[lane];
        uint64_t mm = (uint64_t)hi[lane] << 32 | low;
        while (low < threshold) {
          uint32_t a = s0[lane], b = s1[lane], c = s2[lane], d = s3[lane];
          mm = (uint64_t)xoshiro_next(a, b, c, d) * range;
          s0[lane] = a, s1[lane] = b, s2[lane] = c, s3[lane] = d;
          low = (uint32_t)mm;
        }
        hi[lane] = (uint32_t)(mm >> 32);
      }
    }
    return hi + j;
  }

  // fn(v, j, N - j) for every vector v of the group and draw j < k of this step. A vector's draws must run in order
  // of j; vectors are independent, so the order across them never changes a number. On AMD Zen builds without
  // AVX-512 (kZenAvx2) each vector runs all its draws in turn: Figure 4 (10,000 replicates, 2 cores) 4.4 s
  // against 5.0 s for draw j of every vector in turn, Figure 6 (2,000) 12.1 against 13.6 CPU-s (Zen 3, 2026-12-01).
  // Elsewhere the round robin over vectors stays (tuned on a Xeon; this order not measured there).
  template <typename F>
  inline void each_draw(int64_t N, int64_t k, F&& fn) {
    if constexpr (kZenAvx2) {
      for (int64_t v = 0; v < V_; ++v)
        for (int64_t j = 0; j < k; ++j) fn(v, j, (uint32_t)(N - j));
    } else {
      for (int64_t j = 0; j < k; ++j)
        for (int64_t v = 0; v < V_; ++v) fn(v, j, (uint32_t)(N - j));
    }
  }

  // Draw j of vector v's chains: swap position j of each chain's copy of the internet with a uniform position in
  // [j, N) (range = N - j) and return the element now at j.
  template <typename VS, typename S>
  inline VS draw(S* copies, int64_t v, int64_t j, uint32_t range) {
    const vu at = positions(v, (uint32_t)j, range) * (uint32_t)W + iota_;
    S* a = copies + v * P_ * W;
    const VS drawn = kZenAvx2 && std::is_floating_point_v<S> ? load_each<VS>(a, at) : gather<VS>(a, at);
    VS* aj = reinterpret_cast<VS*>(a + j * W);
    const VS old = *aj;
    *aj = drawn;
    scatter(a, at, old);
    return drawn;
  }

  // B = 2: o_0 = p_0 / (p_0 + p_1 rho), the update, and Algorithm 2's pruning. One division per lane and draw: a
  // chain that has already dropped a component (weight exactly 0) owns every point with its other component
  // (o = 0 or 1), so it needs no ownership division, only the pruning one (its dropped weight -gain c <= 0 is
  // pruned again at every draw); a chain that drops a component at this draw (rare) takes a second division.
  void update_two(int64_t N, int64_t k, T alpha, T c) {
    const T keep = T(1) - alpha, gain = alpha / (T(1) - T(2) * c), one_eps = T(1) + pr_.eps;
    each_draw(N, k, [&](int64_t v, int64_t j, uint32_t range) {
      const vt g = draw<vt>(vals_, v, j, range);
      vt& p0 = p_[v * 2];
      vt& p1 = p_[v * 2 + 1];
      const vm z0 = p0 == T(0), z1 = p1 == T(0), dead = z0 | z1;
      // dropped chains: o_0 = 0 (z0) or 1 (z1); the dropped weight's update is <= 0 and is pruned again
      const vt od = z0 ? vt{} : T(1) + vt{};
      const vt q0d = keep * p0 + gain * (od - c), q1d = keep * p1 + gain * ((T(1) - od) - c);
      const vt num = dead ? (z0 ? q1d : q0d) : p0;
      const vt den = dead ? one_eps - (z0 ? q0d : q1d) : p0 + p1 * g;
      const vt ratio = num / den;
      vt q0 = keep * p0 + gain * (ratio - c);
      vt q1 = keep * p1 + gain * ((T(1) - ratio) - c);
      const vm m0 = (q0 <= T(0)) & ~dead, m1 = (q1 <= T(0)) & ~dead;
      if (__builtin_expect(any(m0 | m1), 0)) {  // a component dropped at this draw: prune in sequence
        q1 = m0 ? q1 / (one_eps - q0) : q1;
        q0 = m0 ? vt{} : q0;
        const vm m1b = (q1 <= T(0)) & ~dead;
        q0 = m1b ? q0 / (one_eps - q1) : q0;
        q1 = m1b ? vt{} : q1;
      }
      p0 = dead ? (z0 ? vt{} : ratio) : q0;
      p1 = dead ? (z1 ? vt{} : ratio) : q1;
    });
  }

  // B > 2: o_b = p_b lik_b / sum_l p_l lik_l (log-space softmax where that sum is too small to trust), the update,
  // and the pruning: dropping components b1 < b2 < ... in turn divides the others by prod (1 + eps - p_b / S_prev),
  // accumulated as S <- S (1 + eps) - p_b, then one multiplication by 1 / S.
  void update_many(int64_t N, int64_t k, T alpha, T c) {
    const int64_t B = pr_.B;
    const T keep = T(1) - alpha, gain = alpha / (T(1) - T(B) * c), one_eps = T(1) + pr_.eps;
    const T tiny = std::numeric_limits<T>::min() * T(1 << 20);
    std::vector<vt> o(B);
    each_draw(N, k, [&](int64_t v, int64_t j, uint32_t range) {
      const vu g = draw<vu>(idx_, v, j, range);
      const vu row = base_[v] + g * (uint32_t)S2_;
      vt* p = p_ + v * B;
      vt total{};
      for (int64_t b = 0; b < B; ++b) {
        o[b] = p[b] * gather<vt>(pool_, row + (uint32_t)b);
        total += o[b];
      }
      const vt inv = T(1) / total;
      for (int64_t b = 0; b < B; ++b) o[b] *= inv;
      const vm small = total < tiny;
      if (__builtin_expect(any(small), 0)) {
        for (int lane = 0; lane < W; ++lane)
          if (small[lane]) log_space_ownership(p, logpool_ + row[lane], lane, o.data());
      }
      vt scale = T(1) + vt{};
      for (int64_t b = 0; b < B; ++b) {
        const vt q = keep * p[b] + gain * (o[b] - c);
        const vm drop = q <= T(0);
        scale = drop ? scale * one_eps - q : scale;
        p[b] = drop ? vt{} : q;
      }
      if (any(scale != T(1))) {
        const vt factor = T(1) / scale;
        for (int64_t b = 0; b < B; ++b) p[b] *= factor;
      }
    });
  }

  // Ownership of one lane in log space: softmax over alive b of log p_b + ll_b.
  void log_space_ownership(const vt* p, const T* ll, int lane, vt* o) {
    const int64_t B = pr_.B;
    T zmax = -std::numeric_limits<T>::infinity();
    for (int64_t b = 0; b < B; ++b)
      if (p[b][lane] > T(0)) zmax = std::max(zmax, std::log(p[b][lane]) + ll[b]);
    T total = T(0);
    for (int64_t b = 0; b < B; ++b) {
      const T e = p[b][lane] > T(0) ? std::exp(std::log(p[b][lane]) + ll[b] - zmax) : T(0);
      o[b][lane] = e;
      total += e;
    }
    for (int64_t b = 0; b < B; ++b) o[b][lane] /= total;
  }
};

// The core's L2 cache in bytes, as the C library reports it (2 MiB where it does not).
int64_t l2_cache_bytes() {
  static const int64_t bytes = [] {
    long size = 0;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    size = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return size > 0 ? (int64_t)size : (int64_t)(2 << 20);
  }();
  return bytes;
}

// Returns false when a thread's scratch could not be allocated (the records are then incomplete).
template <typename T, int W>
bool run_all(const Problem<T>& pr, int64_t num_threads) {
  // Chains per group: 96 with a 2 MiB L2 (enough independent vectors to overlap latencies; tuned on a Xeon with
  // 2 MiB), in proportion with a smaller L2 (AMD Zen 3, 512 KiB: 24 chains, which took 16-18 % less CPU time there
  // than 96 for Figures 4 and 6); the group's copies of the internet within ~1.5 MB (capping them at 3/4 of the
  // smaller L2 instead left Figure 6 three replicates a group, 9 chains in 16 lanes: 1.3x the CPU time); a multiple
  // of W chains when the number of models allows. How replicates are grouped never changes the results.
  const int64_t l2 = l2_cache_bytes(), full = 2 << 20;
  const int64_t chains = std::max<int64_t>(W, 96 * std::min(l2, full) / full);
  const int64_t per_rep = pr.pool_size * (pr.B == 2 ? pr.n * (int64_t)sizeof(T)
                                                      : pr.n * 4 + pr.B * (int64_t)sizeof(T));
  int64_t G = std::max<int64_t>(1, (chains + pr.n - 1) / pr.n);
  G = std::min<int64_t>(G, std::max<int64_t>(1, (3 << 19) / std::max<int64_t>(per_rep, 1)));
  G = std::max<int64_t>(G, (W + pr.n - 1) / pr.n);
  G = std::min<int64_t>(G, pr.R);
  const int64_t groups = (pr.R + G - 1) / G;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  auto work = [&]() {
    try {
      Group<T, W> group(pr, G);
      for (int64_t g; !failed.load(std::memory_order_relaxed) && (g = next.fetch_add(1)) < groups;) {
        const int64_t first = g * G;
        group.run(first, std::min(G, pr.R - first));
      }
    } catch (const std::bad_alloc&) {  // the scratch does not fit: every thread stops, the call reports it
      failed.store(true);
    }
  };
  const int64_t threads = std::max<int64_t>(1, std::min(num_threads, groups));
  if (threads == 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < threads; ++t) pool.emplace_back(work);
    for (auto& th : pool) th.join();
  }
  return !failed.load();
}

template <ffi::DataType DT>
ffi::Error GmmNetworkImpl(ffi::Buffer<DT> w0, ffi::Buffer<DT> human, ffi::Buffer<ffi::U32> seeds,
                          ffi::ResultBuffer<DT> dnorm, ffi::ResultBuffer<ffi::S8> alive,
                          ffi::ResultBuffer<ffi::S8> collapsed, ffi::ResultBuffer<DT> weights,
                          ffi::ResultBuffer<DT> distances, ffi::Span<const int32_t> points,
                          ffi::Span<const int32_t> draws, ffi::Span<const double> alpha, ffi::Span<const double> c,
                          ffi::Span<const double> geometry, double eps, double clamp, int64_t num_human,
                          int64_t points_per_step, int64_t dim, int64_t num_threads, int64_t engine) {
  using T = ffi::NativeType<DT>;
  auto wd = w0.dimensions();
  auto hd = human.dimensions();
  if (wd.size() < 2 || hd.size() < 2) return ffi::Error::InvalidArgument("gmm_network: bad ranks");
  Problem<T> pr;
  pr.n = wd[wd.size() - 2];
  pr.B = wd[wd.size() - 1];
  pr.d = dim;
  pr.L = points_per_step;
  pr.human_rows = hd[hd.size() - 2];
  pr.human_features = hd[hd.size() - 1];
  pr.steps = (int64_t)points.size();
  pr.T1 = pr.steps + 1;
  pr.m0 = num_human;
  const int64_t B = pr.B;
  if (pr.n < 1 || B < 1 || pr.d < 1 || pr.L < 1) return ffi::Error::InvalidArgument("gmm_network: need n, B, d, L >= 1");
  pr.R = (int64_t)w0.element_count() / (pr.n * B);
  if ((int64_t)geometry.size() != B * pr.d + pr.d * pr.d + B * B * pr.d)
    return ffi::Error::InvalidArgument("gmm_network: geometry must hold mu, chol and shift");
  if ((int64_t)draws.size() != pr.steps || (int64_t)alpha.size() != pr.steps || (int64_t)c.size() != pr.steps)
    return ffi::Error::InvalidArgument("gmm_network: schedules must all have T entries");
  if ((int64_t)seeds.element_count() != pr.R * 4 ||
      (int64_t)human.element_count() != pr.R * pr.human_rows * pr.human_features ||
      pr.human_features != (B == 2 ? 1 : B) || pr.human_rows < std::max<int64_t>(pr.m0, 1) ||
      (int64_t)dnorm->element_count() != pr.R * pr.T1 || (int64_t)alive->element_count() != pr.R * pr.T1 * pr.n ||
      (int64_t)collapsed->element_count() != pr.R * pr.T1)
    return ffi::Error::InvalidArgument("gmm_network: operand shapes disagree on the number of replicates");
  pr.pool_size = std::max<int64_t>(pr.m0 + pr.n * pr.L * pr.steps, 1);  // |A(T)|
  for (int64_t t = 0; t < pr.steps; ++t)
    if (draws[t] < 0 || draws[t] > points[t] || points[t] < 0 || points[t] + pr.n * pr.L > pr.pool_size)
      return ffi::Error::InvalidArgument("gmm_network: need 0 <= k_t <= |A(t)| and |A(t)| + n L <= |A(T)|");
  if (pr.pool_size * B * 16 >= ((int64_t)1 << 31))
    return ffi::Error::InvalidArgument("gmm_network: internet too large for 32-bit offsets");
  std::vector<T> alpha_t(alpha.begin(), alpha.end()), c_t(c.begin(), c.end());
  pr.eps = (T)eps;
  pr.clamp = clamp;
  pr.w0 = w0.typed_data();
  pr.human = human.typed_data();
  pr.seeds = seeds.typed_data();
  pr.points = points.begin();
  pr.draws = draws.begin();
  pr.alpha = alpha_t.data();
  pr.c = c_t.data();
  const double* g = geometry.begin();
  pr.mu = g;
  pr.chol = g + B * pr.d;
  pr.shift = g + B * pr.d + pr.d * pr.d;
  pr.dnorm = dnorm->typed_data();
  pr.alive = alive->typed_data();
  pr.collapsed = collapsed->typed_data();
  pr.weights = (int64_t)weights->element_count() == pr.R * pr.T1 * pr.n * B ? weights->typed_data() : nullptr;
  pr.distances =
      (int64_t)distances->element_count() == pr.R * pr.T1 * pr.n * pr.n ? distances->typed_data() : nullptr;
  if (pr.R == 0) return ffi::Error::Success();
  constexpr int kLanes = kVectorBytes / (int)sizeof(T);
  const bool ok = engine == 1 ? run_all<T, 1>(pr, num_threads) : run_all<T, kLanes>(pr, num_threads);
  if (!ok)
    return ffi::Error(ffi::ErrorCode::kResourceExhausted,
                      "gmm_network: out of memory for a worker thread's copy of the internet (num_models x |A(T)|)");
  return ffi::Error::Success();
}

}  // namespace

#if !defined(__clang__)
#pragma GCC pop_options
#endif

extern "C" int64_t collapse_jax_gmm_progress() { return g_progress.load(std::memory_order_relaxed); }
extern "C" int collapse_jax_gmm_lanes(int double_precision) {
  return double_precision ? kVectorBytes / 8 : kVectorBytes / 4;
}

#define DEFINE_HANDLER(NAME, DT)                                        \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, GmmNetworkImpl<DT>,              \
                                ffi::Ffi::Bind()                       \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<DT>>()            \
                                    .Arg<ffi::Buffer<ffi::U32>>()      \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<ffi::S8>>()       \
                                    .Ret<ffi::Buffer<ffi::S8>>()       \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Ret<ffi::Buffer<DT>>()            \
                                    .Attr<ffi::Span<const int32_t>>("points") \
                                    .Attr<ffi::Span<const int32_t>>("draws") \
                                    .Attr<ffi::Span<const double>>("alpha") \
                                    .Attr<ffi::Span<const double>>("c") \
                                    .Attr<ffi::Span<const double>>("geometry") \
                                    .Attr<double>("eps")               \
                                    .Attr<double>("clamp")             \
                                    .Attr<int64_t>("num_human")        \
                                    .Attr<int64_t>("points_per_step")  \
                                    .Attr<int64_t>("dim")              \
                                    .Attr<int64_t>("num_threads")      \
                                    .Attr<int64_t>("engine"));

DEFINE_HANDLER(GmmNetworkF32, ffi::F32)
DEFINE_HANDLER(GmmNetworkF64, ffi::F64)
