// Native CPU kernel for the multinomial recursion (seed 003, Section 3 and Appendices A, D): whole runs, every
// generation of every replicate and every schedule of a grid, in one call.
//
// Same model as collapse_jax/multinomial.py's portable JAX path: at generation t the counts are an exact
// Multinomial(n_t, q_t) draw, q_t = alpha_t p + (1 - alpha_t) p_hat_{t-1}. Small samples (n_t <= 6 K) are drawn
// item by item (inverse cdf over the prefix sums of q_t with a guide table: O(K + n_t)); larger ones as a chain of
// conditional binomials (category k gets Binomial(remaining count, q_k / remaining mass)), except that categories
// expecting fewer than 10 items (when there are at least 3 of them) share the chain's last count, split among them
// by items (ChainSplit). Each binomial is exact: sequential-search inversion when the mean is below 10, BTRS
// (Hoermann 1993, transformed rejection with squeeze) otherwise, so such a generation costs O(K) whatever n_t. The
// filter regime first draws the kept size N_t ~ Binomial(n_t, kappa_t) conditioned on N_t > 0 (redraw until
// positive). The accumulate-subsample regime pools every generation's counts, as accumulate, and fits on n_t points
// of the pool drawn without replacement (multivariate_hypergeometric: one exact hypergeometric per category, after
// the generation's multinomial draws, from the same stream).
//
// Why native: the JAX path's vmapped rejection loops run until the slowest lane finishes and threefry is slow on a
// CPU; here each replicate runs its own loops on a SplitMix64 stream seeded from its JAX key.
//
// Two engines draw identical numbers (each replicate consumes its own stream the same way, and which path a
// generation takes depends only on n_t and K): "refill" (AVX-512 builds; each vector lane moves on to its next
// category as soon as its own draw is done, lanes handed out dynamically across threads) and "group" (any build;
// eight replicates advance category by category together). Small-sample generations run as scalar code in both.
//
// Buffers:
//   p      (K,)        true probabilities.
//   alpha  (G, T1)     real-data weight per generation (filter: the kept real weight alpha~_t).
//   n      (G, T1)     sample sizes (whole numbers, as floating point).
//   kappa  (G, T1)     filter keep probability (ignored by the other regimes).
//   seeds  (R, 2)      uint32 seed words per replicate; a replicate uses the same stream for every schedule g
//                      (common random numbers across the grid).
// Result:
//   loss   (G, R, T1)  ||p_hat_t - p||^2.
// Attributes: regime (0 replace, 1 accumulate, 2 filter, 3 accumulate-subsample), engine (0 auto, 1 group,
// 2 refill), num_threads.
//
// A second handler draws plain multinomial counts (one (n, q) row per lane) with the group engine's sampler: the
// exact sampler on its own, for users and for the goodness-of-fit tests.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <new>
#include <sys/mman.h>
#include <thread>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using Rng = SplitMix64;  // common.h

// log k! for k < kLogFactorialSize (built once with lgamma, ~20 ms for 2^20). Below that size BTRS evaluates its bound
// as log f(k) - log f(m) = log m! + log (n-m)! - log k! - log (n-k)! + (k - m) log(p/q) from the table; above it as
// log ratios plus Stirling tails (accurate for n up to 2^53). Rounding of the table's terms (~1e-11 at n = 1e5)
// moves the acceptance probability by that much, far below any Monte Carlo resolution.
// Which is faster depends on the CPU (docs/benchmarks.md). On the AVX-512 Xeon the table to 2^20 (8 MiB, past 10^6)
// ran the K = 50, n_t = 10^6 chain 1.5x faster per CPU second than 2^17 and Stirling tails beyond; on an AVX2-only
// AMD EPYC (512 KiB of L2 per core) the 8 MiB table's gathers missed the cache and 2^17 (1 MiB) ran K = 1000,
// n_t = 10^6 2.3x faster than 2^20. So AVX-512 builds keep 2^20, others 2^17 (the same draws in every check: the two
// bounds differ by ~1e-11, docs/recursions.md).
#if defined(__AVX512F__)
constexpr int64_t kLogFactorialSize = 1 << 20;
#else
constexpr int64_t kLogFactorialSize = 1 << 17;
#endif
// The table sits on 2 MiB pages where the kernel allows it (transparent huge pages, madvise): BTRS reads it at random
// places, and on 4 KiB pages the 8 MiB table alone needs the whole second-level TLB of a Sapphire Rapids core
// (K = 1000, n_t = 10^6 on one thread: 4-6 % faster, the same draws; docs/benchmarks.md).
struct LogFactorials {
  double* v = nullptr;
  LogFactorials() {
    const size_t bytes = kLogFactorialSize * sizeof(double);
    void* mem = nullptr;
    if (posix_memalign(&mem, size_t{1} << 21, bytes) != 0) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    madvise(mem, bytes, MADV_HUGEPAGE);
#endif
    v = static_cast<double*>(mem);
    for (int64_t k = 0; k < kLogFactorialSize; ++k) v[k] = std::lgamma(k + 1.0);
  }
  ~LogFactorials() { std::free(v); }
  LogFactorials(const LogFactorials&) = delete;
  LogFactorials& operator=(const LogFactorials&) = delete;
};
const LogFactorials kLogFact;


// ---- eight lanes at once (GCC/Clang vector extensions; AVX-512 when compiled for it) ---------------------------
// The vector math below is shared by every engine (and by the scalar inversion, through lane 0), so that a lane
// draws the same numbers whichever engine runs it.
// Eight-lane helpers: always inlined in AVX2 builds, which would otherwise pass their 64-byte arguments through
// memory; elsewhere left to the compiler.
#if defined(__AVX2__) && !defined(__AVX512F__)
#define VEC_INLINE inline __attribute__((always_inline))
#else
#define VEC_INLINE inline
#endif
constexpr int kWidth = 8;
typedef double vd __attribute__((vector_size(8 * kWidth)));
typedef int64_t vi __attribute__((vector_size(8 * kWidth)));
typedef uint64_t vu __attribute__((vector_size(8 * kWidth)));

// Lane-wise compares (all-ones / zero lanes), selects and "any lane set". GCC splits eight-wide arithmetic into two
// AVX2 registers by itself but compiles eight-wide compares and selects lane by lane (with branches) there, so
// AVX2-only builds spell them out on the two halves; the results are the same.
#if defined(__AVX2__) && !defined(__AVX512F__)
union Halves {  // a vd / vi as two AVX2 registers
  vd d;
  vi i;
  __m256d pd[2];
  __m256i si[2];
};
template <int OP>
VEC_INLINE vi vcmp(vd x, vd y) {
  Halves a, b, r;
  a.d = x;
  b.d = y;
  for (int h = 0; h < 2; ++h) r.pd[h] = _mm256_cmp_pd(a.pd[h], b.pd[h], OP);
  return r.i;
}
VEC_INLINE vi vge(vd x, vd y) { return vcmp<_CMP_GE_OQ>(x, y); }
VEC_INLINE vi vle(vd x, vd y) { return vcmp<_CMP_LE_OQ>(x, y); }
VEC_INLINE vi vgt(vd x, vd y) { return vcmp<_CMP_GT_OQ>(x, y); }
VEC_INLINE vi vlt(vd x, vd y) { return vcmp<_CMP_LT_OQ>(x, y); }
VEC_INLINE vi veq(vd x, vd y) { return vcmp<_CMP_EQ_OQ>(x, y); }
VEC_INLINE vd vsel(vi mask, vd yes, vd no) {
  Halves m, a, b, r;
  m.i = mask;
  a.d = yes;
  b.d = no;
  for (int h = 0; h < 2; ++h) r.pd[h] = _mm256_blendv_pd(b.pd[h], a.pd[h], m.pd[h]);
  return r.d;
}
VEC_INLINE bool any(vi mask) {
  Halves m;
  m.i = mask;
  const __m256i both = _mm256_or_si256(m.si[0], m.si[1]);
  return !_mm256_testz_si256(both, both);
}
#else
VEC_INLINE vi vge(vd x, vd y) { return x >= y; }
VEC_INLINE vi vle(vd x, vd y) { return x <= y; }
VEC_INLINE vi vgt(vd x, vd y) { return x > y; }
VEC_INLINE vi vlt(vd x, vd y) { return x < y; }
VEC_INLINE vi veq(vd x, vd y) { return x == y; }
VEC_INLINE vd vsel(vi mask, vd yes, vd no) { return mask ? yes : no; }
VEC_INLINE bool any(vi mask) {
  for (int i = 0; i < kWidth; ++i)
    if (mask[i]) return true;
  return false;
}
#endif
VEC_INLINE vi vsel(vi mask, vi yes, vi no) { return (vi)vsel(mask, (vd)yes, (vd)no); }
VEC_INLINE vu vsel(vi mask, vu yes, vu no) { return (vu)vsel(mask, (vd)yes, (vd)no); }

// The vector math below is written once for any lane count: Lanes<X> names a width's double, int64 and uint64
// vectors. Eight lanes everywhere; AVX2-only builds also have four (one register each, for their refill engine).
template <class X>
struct Lanes;
template <>
struct Lanes<vd> {
  typedef vd D;
  typedef vi I;
  typedef vu U;
  static constexpr int W = kWidth;
};
template <>
struct Lanes<vi> : Lanes<vd> {};
template <>
struct Lanes<vu> : Lanes<vd> {};
template <class X>
using DOf = typename Lanes<X>::D;
template <class X>
using IOf = typename Lanes<X>::I;
template <class X>
using UOf = typename Lanes<X>::U;

#if defined(__AVX2__) && !defined(__AVX512F__)
#define COLLAPSE_JAX_FOUR_LANES 1
typedef double vd4 __attribute__((vector_size(32)));
typedef int64_t vi4 __attribute__((vector_size(32)));
typedef uint64_t vu4 __attribute__((vector_size(32)));
template <>
struct Lanes<vd4> {
  typedef vd4 D;
  typedef vi4 I;
  typedef vu4 U;
  static constexpr int W = 4;
};
template <>
struct Lanes<vi4> : Lanes<vd4> {};
template <>
struct Lanes<vu4> : Lanes<vd4> {};
VEC_INLINE vi4 vgt(vd4 x, vd4 y) { return x > y; }
VEC_INLINE vi4 veq(vd4 x, vd4 y) { return x == y; }
VEC_INLINE vd4 vsel(vi4 mask, vd4 yes, vd4 no) {
  return (vd4)_mm256_blendv_pd((__m256d)no, (__m256d)yes, (__m256d)mask);
}
VEC_INLINE vi4 vsel(vi4 mask, vi4 yes, vi4 no) { return (vi4)vsel(mask, (vd4)yes, (vd4)no); }
VEC_INLINE bool any(vi4 mask) { return !_mm256_testz_si256((__m256i)mask, (__m256i)mask); }
VEC_INLINE vd4 vfloor(vd4 x) { return (vd4)_mm256_round_pd((__m256d)x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
VEC_INLINE vd4 vsqrt(vd4 x) { return (vd4)_mm256_sqrt_pd((__m256d)x); }
VEC_INLINE vd4 vrecip(vd4 x) { return 1.0 / x; }
#else
#define COLLAPSE_JAX_FOUR_LANES 0
#endif

template <class V>
VEC_INLINE V vabs(V x) {
  return (V)((IOf<V>)x & 0x7fffffffffffffffLL);
}
template <class V = vd>
VEC_INLINE V broadcast(double x) {
  return x + V{};
}

#if defined(__AVX512F__)
VEC_INLINE vd vfloor(vd x) { return (vd)_mm512_roundscale_pd((__m512d)x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
VEC_INLINE vd vsqrt(vd x) { return (vd)_mm512_sqrt_pd((__m512d)x); }
// 1/x: the 14-bit estimate and two Newton steps (within an ulp or two). Division is the sampler's bottleneck
// (one divider port, 16 cycles per 8-wide divide); this keeps it off that port.
VEC_INLINE vd vrecip(vd x) {
  vd r = (vd)_mm512_rcp14_pd((__m512d)x);
  r = r + r * (1.0 - x * r);
  return r + r * (1.0 - x * r);
}
#else
// Elementwise f as a loop over a plain array, which the compiler turns into vector instructions (floor, sqrt).
template <double (*F)(double)>
VEC_INLINE vd velementwise(vd x) {
  double a[kWidth];
  std::memcpy(a, &x, sizeof(a));
  for (int i = 0; i < kWidth; ++i) a[i] = F(a[i]);
  std::memcpy(&x, a, sizeof(a));
  return x;
}
inline double floor_(double x) { return std::floor(x); }
inline double sqrt_(double x) { return std::sqrt(x); }
VEC_INLINE vd vfloor(vd x) { return velementwise<floor_>(x); }
VEC_INLINE vd vsqrt(vd x) { return velementwise<sqrt_>(x); }
VEC_INLINE vd vrecip(vd x) { return 1.0 / x; }
#endif

// Exact conversions between whole doubles and 64-bit integers. AVX-512 has instructions for them; elsewhere the
// compiler would convert lane by lane, so they go through the 2^52 trick (exact in the ranges used here).
#if defined(__AVX512DQ__)
template <class I>
VEC_INLINE DOf<I> small_to_double(I x) {
  return __builtin_convertvector(x, DOf<I>);
}
template <class V>
VEC_INLINE IOf<V> whole_to_int(V x) {
  return __builtin_convertvector(x, IOf<V>);
}
template <class U>
VEC_INLINE DOf<U> u53_to_double(U x) {
  return __builtin_convertvector(x, DOf<U>);
}
#else
template <class I>
VEC_INLINE DOf<I> small_to_double(I x) {  // |x| < 2^51
  return (DOf<I>)(x + 0x4338000000000000LL) - 6755399441055744.0;
}
template <class V>
VEC_INLINE IOf<V> whole_to_int(V x) {  // whole |x| < 2^51
  return (IOf<V>)(x + 6755399441055744.0) - 0x4338000000000000LL;
}
template <class U>
VEC_INLINE DOf<U> u53_to_double(U x) {  // x < 2^53: two 26/27-bit halves, each exact, summed exactly
  typedef DOf<U> V;
  const V hi = (V)((x >> 26) | 0x4330000000000000ULL) - 4503599627370496.0;
  const V lo = (V)((x & 0x3ffffffULL) | 0x4330000000000000ULL) - 4503599627370496.0;
  return hi * 67108864.0 + lo;
}
#endif

// Unbiased exponent and mantissa in [1, 2) of positive finite normal doubles, from their bits.
template <class V>
VEC_INLINE IOf<V> exponent_bits(V x) {
  return (((IOf<V>)x >> 52) & 0x7ff) - 1023;
}
template <class V>
VEC_INLINE V mantissa_bits(V x) {
  return (V)(((IOf<V>)x & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);
}

// Natural log of positive finite normal doubles (fdlibm's e_log.c reduction and polynomial, about 1 ulp); 0 -> -inf.
template <class V>
VEC_INLINE V vlog(V x) {
  IOf<V> e = exponent_bits(x);
  V m = mantissa_bits(x);
  const IOf<V> big = vgt(m, broadcast<V>(1.4142135623730951));
  m = vsel(big, m * 0.5, m);
  e = vsel(big, e + 1, e);
  const V f = m - 1.0, s = f * vrecip(2.0 + f), z = s * s, w = z * z;
  const V t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const V t2 = z * (6.666666666666735130e-01 +
                     w * (2.857142874366239149e-01 + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  const V hfsq = 0.5 * f * f, dk = small_to_double(e);
  const V out = dk * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + t2 + t1) + dk * 1.90821492927058770002e-10)) - f);
  return vsel(vgt(x, broadcast<V>(0.0)), out, -__builtin_inf() + 0.0 * x);
}

// exp for x in [-708, 0] (fdlibm's e_exp.c reduction and rational approximation, about 1 ulp).
template <class V>
VEC_INLINE V vexp(V x) {
  const V kd = vfloor(x * 1.44269504088896338700e+00 + 0.5);
  const V hi = x - kd * 6.93147180369123816490e-01, lo = kd * 1.90821492927058770002e-10;
  const V r = hi - lo, t = r * r;
  const V c = r - t * (1.66666666666666019037e-01 +
                        t * (-2.77777777770155933842e-03 +
                             t * (6.61375632143793436117e-05 +
                                  t * (-1.65339022054652515390e-06 + t * 4.13813679705723846039e-08))));
  const V y = 1.0 - ((lo - (r * c) * vrecip(2.0 - c)) - hi);
  return (V)((UOf<V>)y + ((UOf<V>)whole_to_int(kd) << 52));
}

// log1p for x > -1: log(1 + x) corrected by x / ((1 + x) - 1) (a few ulp).
template <class V>
VEC_INLINE V vlog1p(V x) {
  const V u = 1.0 + x;
  return vsel(veq(u, broadcast<V>(1.0)), x, vlog(u) * (x * vrecip(u - 1.0)));
}

// Rng::next's output mix and Rng::uniform, lane by lane, for states already advanced.
template <class U>
VEC_INLINE DOf<U> vmix_uniform(U z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z = z ^ (z >> 31);
  return u53_to_double(z >> 11) * 0x1.0p-53;
}

// Rng::uniform for every lane in mask (the others' states do not move).
VEC_INLINE vd vuniform(vu& state, vi mask) {
  state = vsel(mask, state + 0x9E3779B97F4A7C15ULL, state);
  return vmix_uniform(state);
}

// ---- the two exact binomial samplers' arithmetic, for p <= 1/2 ----------------------------------------------------
// Inversion (n p < 10): u against the cdf, walked from k = 0 with f(0) = (1 - p)^n (exponent in (-14, 0)) and
// f(k + 1) = f(k) (n - k) / (k + 1) * p / (1 - p).
template <class V>
struct InversionStart {
  V f0, ratio;
};
template <class V>
VEC_INLINE InversionStart<V> inversion_start(V n, V p) {
  return {vexp(n * vlog1p(-p)), p * vrecip(1.0 - p)};
}
template <class V>
VEC_INLINE V inversion_next(V f, V n, V k, V ratio) {
  return f * ((n - k) * vrecip(k + 1.0) * ratio);
}

// BTRS (n p >= 10; Hoermann 1993): constants, then per proposal (u, v) the candidate
// k = floor((2 a / us + b) u + c) with us = 1/2 - |u - 1/2|; it is accepted at once when us >= 0.07 and v <= v_r,
// otherwise when log(v alpha / (a / us^2 + b)) <= log f(k) - log f(m). For n < kLogFactorialSize that bound is
// lead - log k! - log (n-k)! + (k - m) log r with lead = log m! + log (n-m)! from the table; above, log ratios plus
// Stirling tails (btrs_*_stirling).
template <class V>
struct BtrsConstants {
  V a, b, c, v_r, alpha, m, r, log_r;
};
template <class V, bool kLogR = true>
VEC_INLINE BtrsConstants<V> btrs_constants(V n, V p) {
  const V q = 1.0 - p, spq = vsqrt(n * p * q), b = 1.15 + 2.53 * spq, inv_b = vrecip(b), r = p * vrecip(q);
  return {-0.0873 + 0.0248 * b + 0.01 * p, b, n * p + 0.5, 0.92 - 4.2 * inv_b, (2.83 + 5.1 * inv_b) * spq,
          vfloor((n + 1.0) * p), r, kLogR ? vlog(r) : V{}};
}

// stirling_tail of whole k >= 0 in every lane (lanes outside a mask may hold anything: only 0..9 read the table).
template <class V>
VEC_INLINE V vstirling_tail(V k) {
  const V inv = vrecip(k + 1.0), inv2 = inv * inv;
  V out = (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 * inv2) * inv2) * inv;
  if (!any(vgt(broadcast<V>(9.5), k))) return out;  // no lane reads the table (the usual case: large counts)
  for (int i = 0; i < Lanes<V>::W; ++i)
    if (k[i] >= 0 && k[i] <= 9) out[i] = stirling_tail(k[i]);
  return out;
}
// With d = k - m, Stirling's series for the four factorials gives
//   log f(k) - log f(m) = -(m + 1/2) log1p(d / (m + 1)) + (n - m + 1/2) log1p(d / (n - k + 1))
//                         + d log(r (n - k + 1) / (k + 1)) + tail(m) + tail(n - m) - tail(k) - tail(n - k),
// each difference of logs a log1p of a small ratio, so the rounding is a few ulps of |d|-sized terms. (The grouping
// used before, (n + 1) log((n - m + 1) / (n - k + 1)) and friends, multiplied the rounding of logs of ratios near 1
// by n: 1e-4 nats at n = 1e12, 0.15 at 1e15, 1.2 at 2^53, which the float64 counts allow; an audit of the float32
// JAX form of it, 2026-12-04.) The lead is the part that depends on (n, p) alone.
template <class V>
VEC_INLINE V btrs_lead_stirling(const BtrsConstants<V>& c, V n) {
  return vstirling_tail(c.m) + vstirling_tail(n - c.m);
}
template <class V>
VEC_INLINE V btrs_bound_stirling(const BtrsConstants<V>& c, V lead, V n, V k) {
  const V d = k - c.m, rest = n - k + 1.0;
  return lead - (c.m + 0.5) * vlog1p(d * vrecip(c.m + 1.0)) + (n - c.m + 0.5) * vlog1p(d * vrecip(rest)) +
         d * vlog(c.r * rest * vrecip(k + 1.0)) - vstirling_tail(k) - vstirling_tail(n - k);
}
// Candidate k for uniforms u (already minus 1/2); also returns us and w = 1/us for btrs_log_v.
template <class V>
VEC_INLINE V btrs_candidate(const BtrsConstants<V>& c, V u, V& us, V& w) {
  us = 0.5 - vabs(u);
  w = vrecip(us);
  return vfloor((2.0 * c.a * w + c.b) * u + c.c);
}
template <class V>
VEC_INLINE V btrs_log_arg(const BtrsConstants<V>& c, V v, V w) {
  return v * c.alpha * vrecip(c.a * w * w + c.b);
}
template <class V>
VEC_INLINE V btrs_log_v(const BtrsConstants<V>& c, V v, V w) {
  return vlog(btrs_log_arg(c, v, w));
}
template <class V>
VEC_INLINE V btrs_bound(const BtrsConstants<V>& c, V lead, V log_fk, V k) {
  return lead - log_fk + (k - c.m) * c.log_r;
}

// Binomial(n, p) for p <= 1/2 and n p < 10 (the vector engines' inversion, one lane). If rounding leaves the
// uniform above the computed cdf's total, the draw is repeated (probability ~1e-15).
inline double binomial_inversion(Rng& rng, double n, double p) {
  const InversionStart<vd> s = inversion_start(broadcast(n), broadcast(p));
  const vd nv = broadcast(n);
  for (;;) {
    const double u = rng.uniform();
    vd f = s.f0, k = {};
    double cdf = s.f0[0];
    while (u > cdf && k[0] < n && f[0] > 0) {
      f = inversion_next(f, nv, k, s.ratio);
      k += 1.0;
      cdf += f[0];
    }
    if (u <= cdf || k[0] >= n) return k[0];
  }
}

// BTRS for the lanes in mask (each with p <= 1/2, n p >= 10), all at once: the group engine's sampler. Per proposal
// a lane draws u then v from its own stream, whatever the other lanes do.
VEC_INLINE vd binomial_btrs_vec(vu& state, vd n, vd p, vi mask) {
  const BtrsConstants<vd> c = btrs_constants(n, p);
  const vi big = mask & vge(n, broadcast((double)kLogFactorialSize));
  vd lead = {};
  for (int i = 0; i < kWidth; ++i)
    if (mask[i] && !big[i]) lead[i] = kLogFact.v[(int64_t)c.m[i]] + kLogFact.v[(int64_t)(n[i] - c.m[i])];
  if (any(big)) lead = vsel(big, btrs_lead_stirling(c, n), lead);
  vd out = {};
  vi todo = mask;
  while (any(todo)) {
    const vd u = vuniform(state, todo) - 0.5;
    const vd v = vuniform(state, todo);
    vd us, w;
    const vd k = btrs_candidate(c, u, us, w);
    const vi in_range = todo & vge(k, broadcast(0.0)) & vle(k, n);
    vi accept = in_range & vge(us, broadcast(0.07)) & vle(v, c.v_r);
    const vi slow = in_range & ~accept;
    if (any(slow)) {
      const vd lv = btrs_log_v(c, v, w);
      vd log_fk = {};
      for (int i = 0; i < kWidth; ++i)
        if (slow[i] && !big[i]) log_fk[i] = kLogFact.v[(int64_t)k[i]] + kLogFact.v[(int64_t)(n[i] - k[i])];
      vd bound = btrs_bound(c, lead, log_fk, k);
      if (any(slow & big)) bound = vsel(big, btrs_bound_stirling(c, lead, n, k), bound);
      accept |= slow & vle(lv, bound);
    }
    out = vsel(accept, k, out);
    todo &= ~accept;
  }
  return out;
}

// Binomial(n, p), one draw: the engines' samplers on one lane (the filter's kept sizes, degenerate categories, the
// group engine's small means).
inline double binomial(Rng& rng, double n, double p) {
  if (n <= 0 || p <= 0) return 0;
  if (p >= 1) return n;
  const bool flip = p > 0.5;
  const double pp = flip ? 1 - p : p;
  double x;
  if (n * pp < 10) {
    x = binomial_inversion(rng, n, pp);
  } else {
    vu state = {};
    state[0] = rng.s;
    vi lane0 = {};
    lane0[0] = -1;
    x = binomial_btrs_vec(state, broadcast(n), broadcast(pp), lane0)[0];
    rng.s = state[0];
  }
  return flip ? n - x : x;
}

// ---- per-generation bookkeeping, shared by the engines ----------------------------------------------------------
// Conditional probabilities r_k = q_k / (q_k + ... + q_{K-1}) of the sequential binomials, k < K - 1, coded so
// that no engine takes 1 - r_k: r_k itself where it is at most 1/2; minus its complement, -(q_{k+1} + ... +
// q_{K-1}) / (q_k + ... + q_{K-1}) in [-1/2, 0), where it is above (the entry then draws the rest's share and
// keeps the remainder); 1 where nothing remains after category k (it takes everything, without a draw); r_{K-1} =
// 0. (1 - r_k of a ratio near 1 kept only its absolute rounding, ~1e-16: a category after one holding all but
// 1e-15 of the mass drew with a conditional off by several per cent, a mean loss 1.02 x the exact risk at
// n_t = 2^53; an audit, 2026-12-04.) conditional_p decodes an entry. tail is scratch (K,).
inline void conditional_row(const double* q, int64_t K, double* tail, double* r) {
  double acc = 0;
  for (int64_t k = K - 1; k >= 0; --k) tail[k] = acc += q[k];
  for (int64_t k = 0; k < K - 1; ++k) {  // every branch computed, so that the loop runs as vectors
    const double ratio = std::min(1.0, std::max(0.0, q[k] / tail[k]));
    r[k] = tail[k + 1] <= 0 ? 1.0 : tail[k] > 0 ? ratio : 0.0;
  }
  for (int64_t k = 0; k < K - 1; ++k)  // the few entries above 1/2: their complement, exact in relative terms (a
    if (r[k] > 0.5 && tail[k + 1] > 0) {  // division only there; computed for every entry it cost 3-7 %)
      const double rest = std::min(0.5, tail[k + 1] / tail[k]);
      r[k] = rest > 0 ? -rest : 1.0;
    }
  r[K - 1] = 0;
}

// An entry r of conditional_row as (flip, p): the binomial's probability p <= 1/2 (0 for an entry that takes
// everything) and whether the entry's count is the rest of the remaining count minus a Binomial(., p) draw.
inline double conditional_p(double r, bool& flip) {
  flip = r < 0 || r > 0.5;
  return r < 0 ? -r : r > 0.5 ? 1 - r : r;
}

// Next generation's sampling distribution a p + (1 - a) counts / total.
inline void mixture_row(const double* p, const double* counts, double total, double a, int64_t K, double* q) {
  const double scale = (1 - a) / total;
  for (int64_t k = 0; k < K; ++k) q[k] = a * p[k] + scale * counts[k];
}

// ||counts / total - p||^2, summed in eight interleaved partial sums. p_hat = counts / total is a true division (the
// empirical frequency correctly rounded, as in the JAX path; a loss is exactly 0 when p_hat equals p).
inline double squared_error(const double* counts, double total, const double* p, int64_t K) {
  double part[kWidth] = {};
  int64_t k = 0;
  for (; k + kWidth <= K; k += kWidth)
    for (int j = 0; j < kWidth; ++j) {
      const double e = counts[k + j] / total - p[k + j];
      part[j] += e * e;
    }
  for (; k < K; ++k) {
    const double e = counts[k] / total - p[k];
    part[0] += e * e;
  }
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// ---- small samples: categorical draws ----------------------------------------------------------------------------
// The binomial chain costs K - 1 draws whatever n; with n small against K most categories get nothing. Then the n
// items are drawn one by one instead: inverse cdf over the prefix sums c_k = q_0 + ... + q_k, an item landing in the
// first k with c_k > u c_{K-1}, started from a guide table (Chen and Asau 1974) so a draw costs O(1) comparisons on
// average: O(K + n) per generation. Exact (up to rounding of the prefix sums: a probability below 1e-16 of the
// running sum can be lost); a category with q_k = 0 is never drawn. kCategoricalPerCategory: the path is taken when
// n <= kCategoricalPerCategory K (below the crossover measured on an AVX2-only AMD EPYC, about 12 K, and near the one
// estimated for AVX-512 Xeons, whose chain is twice as fast; docs/benchmarks.md); the choice depends only on (n, K),
// so every engine and build takes the same path for the same generation.
constexpr double kCategoricalPerCategory = 6.0;
inline bool use_categorical(double n, int64_t K) { return n <= kCategoricalPerCategory * (double)K; }

// Scratch of multinomial_categorical, grown as needed.
struct CategoricalScratch {
  std::vector<double> cum;
  std::vector<uint32_t> guide, entry, counts;  // (G + 2,), (K,), (2, K)
};

// Multinomial(n, q) counts into out (K,) by n categorical draws (q >= 0, not necessarily normalised; negative
// entries count as 0). Item: r = the stream's next 64 bits, u = its top 53 bits as a uniform on [0, 1) (rng.uniform),
// x = u c_{K-1} (redrawn if it rounds up to c_{K-1}); the category is the first k with c_k > x. The search starts
// from a guide table: guide[g] counts categories that lie before every x of bucket g, so the category depends only
// on x (the guide only says where to start) and is the same whichever guide. From there two branch-free steps, then
// a loop that rarely runs. Two guides, both built without branches (guide[entry of c_k] = k + 1, then a running
// maximum):
// - up to K items, K buckets of x: g = trunc(x K / c_{K-1}), and c_k enters at its own bucket + 1 (the same rounded
//   formula, monotone, so a category entered at or below g has c_k < x). Counts go straight into out.
// - beyond K items, G = 2^b >= K buckets of u, read with r's top b bits (= floor(u G) exactly), so the lookup does
//   not wait for the product x: bucket g's left edge is E_g = fl((g / G) c_{K-1}) <= x, and c_k enters at
//   g_k = b_k + 1 + [E_{b_k + 1} < c_k], b_k = floor(c_k G / c_{K-1}) in floating point (so E_{g_k} >= c_k in spite
//   of rounding). This guide costs a little more to build and makes each item about twice as fast (measured on an
//   AVX2-only AMD EPYC, docs/benchmarks.md). The counts go to two 32-bit rows in turn, so that consecutive items into
//   one category do not wait on each other.
inline void multinomial_categorical(Rng& rng, double n, const double* q, int64_t K, CategoricalScratch& s,
                                    double* out) {
  const int64_t items = (int64_t)n;
  const bool many = items > K && items <= int64_t(UINT32_MAX);
  const int bits = K > 2 ? 64 - __builtin_clzll((uint64_t)(K - 1)) : 1;  // G >= 2: the shift below stays under 64
  const int64_t G = many ? int64_t(1) << bits : K;
  s.cum.resize(K);
  s.guide.resize(G + 2);
  double* cum = s.cum.data();
  uint32_t* guide = s.guide.data();
  double acc = 0;
  for (int64_t k = 0; k < K; ++k) cum[k] = acc += std::max(q[k], 0.0);
  if (!(acc > 0)) {  // no mass anywhere: everything to category 0, as the binomial chain does
    std::fill(out, out + K, 0.0);
    out[0] = n;
    return;
  }
  const double total = acc, per = (double)G / total;
  std::fill(guide, guide + G + 2, 0u);
  Rng g{rng.s};
  auto uniform_x = [&](uint64_t& r) {
    double x;
    do {
      r = g.next();
      x = Rng::to_uniform(r) * total;
    } while (x >= total);  // rounding up to the total: redraw (probability ~1e-16)
    return x;
  };
  auto search = [&](int64_t k, double x) {
    k += cum[k] <= x;
    k += cum[k] <= x;
    while (cum[k] <= x) ++k;
    return k;
  };
  if (!many) {
    for (int64_t k = 0; k < K; ++k) guide[std::min<int64_t>(K, (int64_t)(cum[k] * per)) + 1] = (uint32_t)(k + 1);
    for (uint32_t b = 0, top = 0; b <= K; ++b) guide[b] = top = std::max(top, guide[b]);  // (top in a register)
    std::fill(out, out + K, 0.0);
    for (int64_t i = 0; i < items; ++i) {
      uint64_t r;
      const double x = uniform_x(r);
      out[search(guide[std::min<int64_t>(K, (int64_t)(x * per))], x)] += 1;
    }
  } else {
    s.entry.resize(K);
    s.counts.resize(2 * K);
    uint32_t* entry = s.entry.data();
    const double width = total * (1.0 / (double)G), last = (double)G;  // width: exact (a power of two)
    for (int64_t k = 0; k < K; ++k) {  // runs as vectors
      const double b = std::floor(cum[k] * per) + 1.0;
      entry[k] = (uint32_t)std::min(last, b + (b * width < cum[k] ? 1.0 : 0.0));
    }
    for (int64_t k = 0; k < K; ++k) guide[entry[k]] = (uint32_t)(k + 1);
    for (uint32_t b = 0, top = 0; b <= G; ++b) guide[b] = top = std::max(top, guide[b]);
    const int shift = 64 - bits;
    auto item = [&]() {
      uint64_t r;
      const double x = uniform_x(r);
      return search(guide[r >> shift], x);
    };
    uint32_t* c0 = s.counts.data();
    uint32_t* c1 = c0 + K;
    std::fill(c0, c0 + 2 * K, 0u);
    int64_t i = 0;
    for (; i + 2 <= items; i += 2) {
      ++c0[item()];
      ++c1[item()];
    }
    if (i < items) ++c0[item()];
    for (int64_t k = 0; k < K; ++k) out[k] = (double)(c0[k] + c1[k]);
  }
  rng.s = g.s;
}

// ---- chain generations: the small categories by items ---------------------------------------------------------
// In a chain generation a category whose expected count n q_k / sum(q) is below kSmallMean would take the inversion
// sampler, whose cost grows with its mean (one cdf step per unit, in vector passes of two), or for a mean just above
// it BTRS's setup. Such categories (q_k > 0) are lumped into one pseudo-category at the end of the chain, and its
// count m is then split among them by m categorical items (multinomial_categorical, a few ns per item). Exact:
// Multinomial(n, q) is the chain over the other categories with the small ones' total mass last, followed by
// Multinomial(m, their q / their total). Which categories are small depends only on (n, q), so every engine and
// build splits a generation the same way and consumes the stream in the same order (the chain's draws, then the
// items). A generation with fewer than kMinSmall small categories is the plain chain, draw for draw (categories with
// q_k = 0 stay in it: they take no draw). Measured on an AVX2-only AMD EPYC and an AVX-512 Xeon: docs/benchmarks.md.
constexpr double kSmallMean = 10.0;

// Fewer small categories than this are left in the chain: with one, the split would replace its inversion by the
// same draw plus two passes over K; with two, two inversions by one binomial, the items and the categorical set-up
// (measured at K = 50, n_t = 10^5 on an AVX-512 Xeon: about 20 % slower than the plain chain). Like the rest of the
// split it depends only on (n, q).
constexpr int64_t kMinSmall = 3;

// AVX-512 builds compress the chain entries and the small categories out eight at a time (and expand the counts
// back), in registers with masked stores and loads (compress straight to memory is microcoded and slow on some
// AVX-512 CPUs, e.g. AMD Zen 4); AVX2-only builds compress four at a time by permutations from a table (2-5 %
// faster than the scalar loop at K = 50 and 1000, n_t = 10^3-10^4, docs/benchmarks.md); others run the scalar loops
// below. All make the same split, so the draws are the same.
#if defined(__AVX512F__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
#define COLLAPSE_JAX_COMPRESS 1
#else
#define COLLAPSE_JAX_COMPRESS 0
#endif
// AVX2-only builds: the same four at a time, by permutations from a table (AVX2 has no compress instruction).
#if !COLLAPSE_JAX_COMPRESS && defined(__AVX2__)
#define COLLAPSE_JAX_COMPRESS4 1
// For each 4-bit lane mask: the set lanes first, in order. v64: as eight 32-bit indices (the doubles'
// halves, for _mm256_permutevar8x32_ps); v32: four (for _mm_permutevar_ps).
struct CompressTables {
  alignas(32) int32_t v64[16][8];
  alignas(16) int32_t v32[16][4];
  constexpr CompressTables() : v64(), v32() {
    for (int b = 0; b < 16; ++b) {
      int j = 0;
      for (int l = 0; l < 4; ++l)
        if (b >> l & 1) {
          v64[b][2 * j] = 2 * l;
          v64[b][2 * j + 1] = 2 * l + 1;
          v32[b][j++] = l;
        }
    }
  }
};
constexpr CompressTables kCompress{};
#else
#define COLLAPSE_JAX_COMPRESS4 0
#endif

// One generation's split: chain entries (the other categories in order, then the pseudo-category when there are
// small ones), and the small categories. Vectors hold K entries; grown as needed.
struct ChainSplit {
  std::vector<double> q;               // (entries,) the entries' masses (the last: the small ones' total), when any
  std::vector<double> small_q, small;  // (num_small,) the small categories' q, then their counts
  std::vector<int32_t> small_category;
#if COLLAPSE_JAX_COMPRESS
  std::vector<uint8_t> keep;  // (ceil(K / 8),) bit k % 8 of byte k / 8 set: category k is a chain entry
#else
  std::vector<int32_t> category;  // (entries,) category of each entry (the pseudo-category: -1)
#endif
  int64_t entries = 0, num_small = 0;

  // Splits q (K,) for a chain generation of n items; returns the chain entries' masses (q_in itself when fewer
  // than kMinSmall categories are small).
  const double* split(double n, const double* q_in, int64_t K) {
    // Sums in four interleaved parts (vectors, and no chain of dependent additions), in a fixed order.
    double part[4] = {};
    int64_t k = 0;
    for (; k + 4 <= K; k += 4)
      for (int j = 0; j < 4; ++j) part[j] += std::max(q_in[k + j], 0.0);
    for (; k < K; ++k) part[0] += std::max(q_in[k], 0.0);
    const double limit = kSmallMean * ((part[0] + part[1]) + (part[2] + part[3]));
    auto is_small = [&](double x) { return x > 0 && n * x < limit; };
    // The small ones' total mass (same order), then, when there are any, their number.
    double small_part[4] = {};
    for (k = 0; k + 4 <= K; k += 4)
      for (int j = 0; j < 4; ++j) small_part[j] += is_small(q_in[k + j]) ? q_in[k + j] : 0.0;
    for (; k < K; ++k) small_part[0] += is_small(q_in[k]) ? q_in[k] : 0.0;
    const double small_total = (small_part[0] + small_part[1]) + (small_part[2] + small_part[3]);
    entries = K;
    num_small = 0;
    if (!(small_total > 0)) return q_in;
    int64_t count = 0;
    for (k = 0; k < K; ++k) count += is_small(q_in[k]);
    if (count < kMinSmall) return q_in;
    q.resize(K);
    small_q.resize(K);
    small.resize(K);
    small_category.resize(K);
    int64_t e = 0, m = 0;
#if COLLAPSE_JAX_COMPRESS
    keep.resize((K + 7) / 8);
    const __m512d vn = _mm512_set1_pd(n), vlimit = _mm512_set1_pd(limit), zero = _mm512_setzero_pd();
    __m512i index = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    for (k = 0; k < K; k += 8) {  // is_small's two compares, eight lanes at a time
      const __mmask8 lanes = K - k >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (K - k)) - 1);
      const __m512d x = _mm512_maskz_loadu_pd(lanes, q_in + k);
      const __mmask8 positive = _mm512_cmp_pd_mask(x, zero, _CMP_GT_OQ);
      const __mmask8 small_k = _mm512_mask_cmp_pd_mask(positive, _mm512_mul_pd(vn, x), vlimit, _CMP_LT_OQ) & lanes;
      const __mmask8 keep_k = lanes & (__mmask8)~small_k;
      keep[k / 8] = keep_k;
      const int kept = __builtin_popcount(keep_k), smalls = __builtin_popcount(small_k);
      _mm512_mask_storeu_pd(q.data() + e, (__mmask8)((1u << kept) - 1), _mm512_maskz_compress_pd(keep_k, x));
      _mm512_mask_storeu_pd(small_q.data() + m, (__mmask8)((1u << smalls) - 1), _mm512_maskz_compress_pd(small_k, x));
      _mm256_mask_storeu_epi32(small_category.data() + m, (__mmask8)((1u << smalls) - 1),
                               _mm256_maskz_compress_epi32(small_k, _mm512_cvtepi64_epi32(index)));
      e += kept;
      m += smalls;
      index = _mm512_add_epi64(index, _mm512_set1_epi64(8));
    }
#else
    category.resize(K);
    k = 0;
#if COLLAPSE_JAX_COMPRESS4
    {  // is_small's two compares four lanes at a time, the lanes compressed by permutations
      const __m256d vn = _mm256_set1_pd(n), vlimit = _mm256_set1_pd(limit), zero = _mm256_setzero_pd();
      __m128i index = _mm_setr_epi32(0, 1, 2, 3);
      for (; k + 4 <= K; k += 4) {  // (each store writes four entries at e or m <= k: inside the K rows)
        const __m256d x = _mm256_loadu_pd(q_in + k);
        const int small_k = _mm256_movemask_pd(_mm256_and_pd(
            _mm256_cmp_pd(x, zero, _CMP_GT_OQ), _mm256_cmp_pd(_mm256_mul_pd(vn, x), vlimit, _CMP_LT_OQ)));
        const int keep_k = small_k ^ 15;
        const __m256 xs = _mm256_castpd_ps(x);
        _mm256_storeu_ps((float*)(q.data() + e),
                         _mm256_permutevar8x32_ps(xs, _mm256_load_si256((const __m256i*)kCompress.v64[keep_k])));
        _mm256_storeu_ps((float*)(small_q.data() + m),
                         _mm256_permutevar8x32_ps(xs, _mm256_load_si256((const __m256i*)kCompress.v64[small_k])));
        const __m128 is = _mm_castsi128_ps(index);
        _mm_storeu_ps((float*)(category.data() + e),
                      _mm_permutevar_ps(is, _mm_load_si128((const __m128i*)kCompress.v32[keep_k])));
        _mm_storeu_ps((float*)(small_category.data() + m),
                      _mm_permutevar_ps(is, _mm_load_si128((const __m128i*)kCompress.v32[small_k])));
        e += __builtin_popcount(keep_k);
        m += __builtin_popcount(small_k);
        index = _mm_add_epi32(index, _mm_set1_epi32(4));
      }
    }
#endif
    for (; k < K; ++k) {  // without branches (which category is small is unpredictable)
      const double x = q_in[k];
      const bool small_k = is_small(x);
      small_q[m] = q[e] = x;
      small_category[m] = category[e] = (int32_t)k;
      m += small_k;
      e += !small_k;
    }
    category[e] = -1;
#endif
    q[e++] = small_total;  // the pseudo-category
    entries = e;
    num_small = m;
    return q.data();
  }

  // Counts (K,) into out from the chain's entry counts d (entries,): each entry's count to its category, the
  // pseudo-category's split among the small ones by items from rng. Without small categories d is already out's
  // layout (entries = K, in order): copied.
  void finish(Rng& rng, const double* d, int64_t K, CategoricalScratch& scratch, double* out) {
    if (num_small == 0) {
      std::copy(d, d + K, out);
      return;
    }
    const double m = d[entries - 1];
#if COLLAPSE_JAX_COMPRESS
    for (int64_t k = 0, j = 0; k < K; k += 8) {  // the entries' counts expanded to their categories, 0 elsewhere
      const __mmask8 lanes = K - k >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (K - k)) - 1);
      const int kept = __builtin_popcount(keep[k / 8]);
      const __m512d v = _mm512_maskz_loadu_pd((__mmask8)((1u << kept) - 1), d + j);
      _mm512_mask_storeu_pd(out + k, lanes, _mm512_maskz_expand_pd(keep[k / 8], v));
      j += kept;
    }
#else
    std::fill(out, out + K, 0.0);
    for (int64_t j = 0; j + 1 < entries; ++j) out[category[j]] = d[j];
#endif
    static_assert(kMinSmall >= 2, "a single small category would take the rest without items");
    if (m > 0) {
      multinomial_categorical(rng, m, small_q.data(), num_small, scratch, small.data());
      for (int64_t i = 0; i < num_small; ++i) out[small_category[i]] = small[i];
    }
  }
};

// Exact Multinomial(size_l, q_l) counts for a group of L <= kWidth independent lanes, by conditional binomials:
// entry k gets Binomial(remaining count, r_k), r the rows of conditional_row over lane l's entries[l] <= K chain
// entries (ChainSplit), the last taking what remains. Rows of ratio and out are (L, K); rng has kWidth entries;
// lanes with chain[l] false are left alone. The lanes advance together, entry by entry: lanes in BTRS's range go
// through binomial_btrs_vec together, the others (small means, degenerate) one by one. A lane's draws depend only on
// its own stream.
inline void multinomial_group(Rng* rng, const double* size, const double* ratio, int64_t K, const int64_t* entries,
                              int64_t L, const bool* chain, double* out) {
  static_assert(sizeof(Rng) == sizeof(uint64_t), "Rng must be one 64-bit state");
  double left[kWidth];
  int64_t most = 0;
  for (int64_t l = 0; l < L; ++l) {
    left[l] = size[l];
    if (chain[l]) most = std::max(most, entries[l]);
  }
  for (int64_t k = 0; k < most - 1; ++k) {
    vd n = {}, p = {};
    vi vec = {};
    bool flip[kWidth] = {};
    for (int64_t l = 0; l < L; ++l) {
      if (!chain[l] || k >= entries[l] - 1) continue;
      const double pp = conditional_p(ratio[l * K + k], flip[l]);
      if (pp > 0 && left[l] * pp >= 10) {
        n[l] = left[l];
        p[l] = pp;
        vec[l] = -1;
        continue;
      }
      const double drawn = binomial(rng[l], left[l], pp);
      const double x = flip[l] ? left[l] - drawn : drawn;
      out[l * K + k] = x;
      left[l] -= x;
    }
    if (!any(vec)) continue;
    vu state;
    std::memcpy(&state, rng, sizeof(state));
    const vd x = binomial_btrs_vec(state, n, p, vec);
    std::memcpy(rng, &state, sizeof(state));
    for (int64_t l = 0; l < L; ++l) {
      if (!vec[l]) continue;
      const double xl = flip[l] ? n[l] - x[l] : x[l];
      out[l * K + k] = xl;
      left[l] -= xl;
    }
  }
  for (int64_t l = 0; l < L; ++l)
    if (chain[l]) out[l * K + entries[l] - 1] = left[l];
}

// Scratch rows of multinomial_lanes, grown as needed.
struct LaneScratch {
  std::vector<double> ratio, tail, draws;
  CategoricalScratch categorical;
  ChainSplit split[kWidth];
};

// Exact Multinomial(size_l, q_l) counts for L <= kWidth lanes (rows of q and out are (L, K)): small samples by
// categorical draws, the others by multinomial_group's conditional binomials.
inline void multinomial_lanes(Rng* rng, const double* size, const double* q, int64_t K, int64_t L, double* out,
                              LaneScratch& scratch) {
  scratch.ratio.resize(L * K);
  scratch.tail.resize(K);
  scratch.draws.resize(L * K);
  bool chain[kWidth] = {};
  int64_t entries[kWidth] = {};
  bool any_chain = false;
  for (int64_t l = 0; l < L; ++l) {
    chain[l] = !use_categorical(size[l], K);
    any_chain |= chain[l];
    if (chain[l]) {
      ChainSplit& split = scratch.split[l];
      const double* masses = split.split(size[l], q + l * K, K);
      entries[l] = split.entries;
      conditional_row(masses, split.entries, scratch.tail.data(), scratch.ratio.data() + l * K);
    } else {
      multinomial_categorical(rng[l], size[l], q + l * K, K, scratch.categorical, out + l * K);
    }
  }
  if (!any_chain) return;
  multinomial_group(rng, size, scratch.ratio.data(), K, entries, L, chain, scratch.draws.data());
  for (int64_t l = 0; l < L; ++l)
    if (chain[l]) scratch.split[l].finish(rng[l], scratch.draws.data() + l * K, K, scratch.categorical, out + l * K);
}

// ---- accumulate-subsample: multivariate hypergeometric draws -----------------------------------------------------
// log a! - log b! for whole a, b >= 0: from the table below kLogFactorialSize, else Stirling's form written as log
// ratios, (b + 1/2) log1p((a - b)/(b + 1)) + (a - b)(log(a + 1) - 1) + tail(a) - tail(b), so that for a near b (as
// in HRUA's bound below) the error stays near 1e-10 whatever their size (up to 2^53).
inline double log_factorial_diff(double a, double b) {
  if (a < kLogFactorialSize && b < kLogFactorialSize) return kLogFact.v[(int64_t)a] - kLogFact.v[(int64_t)b];
  return (b + 0.5) * std::log1p((a - b) / (b + 1.0)) + (a - b) * (std::log(a + 1.0) - 1.0) + stirling_tail(a) -
         stirling_tail(b);
}

// Hypergeometric(draws; good, total): how many of `draws` items taken uniformly without replacement from `total`,
// `good` of them marked, are marked (whole doubles, 0 <= draws, good <= total). By symmetry the sampler draws
// s = min(draws, total - draws) items and counts the rarer kind (g = min(good, total - good)); the answer follows
// from that count. Fewer than 10 items: one by one (item i is of the counted kind with probability left / pool).
// Otherwise HRUA (Stadlober 1989, ratio of uniforms around the mode M, as NumPy's generator): proposal
// W = mean + 1/2 + (2 sqrt(2/e) sd' + 3 - 2 sqrt(3/e)) (Y - 1/2) / X, Z = floor(W) accepted when
// 2 log X <= log f(Z) - log f(M) (with the usual squeezes), f the pmf, whose log ratio is four log_factorial_diff
// terms. Proposals beyond mean + 16 sd are rejected (the pmf there is below 1e-50).
inline double hypergeometric(Rng& rng, double draws, double good, double total) {
  if (draws <= 0 || good <= 0) return 0;
  if (draws >= total) return good;
  if (good >= total) return draws;
  const double bad = total - good, g = std::min(good, bad), b = std::max(good, bad);
  const double s = std::min(draws, total - draws);
  double z;
  if (s < 10) {
    double left = g, pool = total;
    z = 0;
    for (double i = 0; i < s && left > 0; ++i, --pool) {
      const bool hit = rng.uniform() * pool < left;
      z += hit;
      left -= hit;
    }
  } else {
    const double share = g / total, mean = s * share + 0.5;
    const double sd = std::sqrt((total - s) * s * share * (1 - share) / (total - 1) + 0.5);
    const double width = 1.7155277699214135 * sd + 0.8989161620588988;  // 2 sqrt(2/e), 3 - 2 sqrt(3/e)
    const double mode = std::floor((s + 1) * (g + 1) / (total + 2));
    const double upper = std::min(std::min(s, g) + 1, std::floor(mean + 16 * sd));
    for (;;) {
      const double x = rng.uniform(), y = rng.uniform();
      const double w = mean + width * (y - 0.5) / x;
      if (!(w >= 0 && w < upper)) continue;  // (x = 0 gives an infinity or NaN: rejected)
      z = std::floor(w);
      const double t = log_factorial_diff(mode, z) + log_factorial_diff(g - mode, g - z) +
                       log_factorial_diff(s - mode, s - z) + log_factorial_diff(b - s + mode, b - s + z);
      if (x * (4 - x) - 3 <= t) break;
      if (x * (x - t) >= 1) continue;
      if (2 * std::log(x) <= t) break;
    }
  }
  if (good > bad) z = s - z;  // counted the unmarked items
  if (draws > total - draws) z = good - z;  // drew the items left behind
  return z;
}

// Multivariate hypergeometric counts: m items without replacement from a pool of pool[k] items of category k (whole
// doubles, m <= sum(pool)), into out (K,): category k gets Hypergeometric(items left; pool[k], pool left).
inline void multivariate_hypergeometric(Rng& rng, double m, const double* pool, int64_t K, double* out) {
  double total = 0;
  for (int64_t k = 0; k < K; ++k) total += pool[k];
  for (int64_t k = 0; k < K; ++k) {
    const double x = m > 0 ? hypergeometric(rng, m, pool[k], total) : 0.0;
    out[k] = x;
    m -= x;
    total -= pool[k];
  }
}

struct Problem {
  const double* p;  // (K,) in double
  const double* alpha;
  const double* n;
  const double* kappa;
  const uint32_t* seeds;
  int64_t K, G, R, T1, regime;
};

constexpr int64_t kGroup = kWidth;  // lanes per group

// Lanes first..first+L-1 (lane = g R + r), whole runs; out rows are (L, T1).
template <typename T>
void run_group(const Problem& pr, int64_t first, int64_t L, T* out, std::vector<double>& work,
               LaneScratch& scratch) {
  const int64_t K = pr.K, T1 = pr.T1;
  const bool subsample = pr.regime == 3;
  work.resize(4 * L * K + 2 * L);
  double* counts = work.data();  // generation t's counts, or the pool of generations 0..t (accumulate regimes)
  double* q = counts + L * K;
  double* fresh = q + L * K;
  double* fit = fresh + L * K;  // accumulate-subsample: the n_t points of the pool the fit sees
  double* total = fit + L * K;
  double* size = total + L;
  Rng rng[kGroup] = {};
  const double *alpha[kGroup], *n[kGroup], *kappa[kGroup];
  for (int64_t l = 0; l < L; ++l) {
    const int64_t g = (first + l) / pr.R, r = (first + l) % pr.R;
    alpha[l] = pr.alpha + g * T1;
    n[l] = pr.n + g * T1;
    kappa[l] = pr.kappa + g * T1;
    rng[l].s = ((uint64_t)pr.seeds[2 * r] << 32) | (uint64_t)pr.seeds[2 * r + 1];
  }
  // The fit of lane l after generation t: its counts over their total (accumulate-subsample from t = 1: the
  // subsample, n_t points).
  auto fitted = [&](int64_t l, int64_t t, double& of) {
    if (subsample && t > 0) {
      of = n[l][t];
      return (const double*)(fit + l * K);
    }
    of = total[l];
    return (const double*)(counts + l * K);
  };
  auto record = [&](int64_t t) {
    for (int64_t l = 0; l < L; ++l) {
      double of;
      const double* c = fitted(l, t, of);
      out[l * T1 + t] = (T)squared_error(c, of, pr.p, K);
    }
  };
  for (int64_t l = 0; l < L; ++l) {
    std::copy(pr.p, pr.p + K, q + l * K);
    size[l] = total[l] = n[l][0];
  }
  multinomial_lanes(rng, size, q, K, L, counts, scratch);
  record(0);
  for (int64_t t = 1; t < T1; ++t) {
    for (int64_t l = 0; l < L; ++l) {
      size[l] = n[l][t];
      if (pr.regime == 2) {  // kept size N_t ~ Binomial(n_t, kappa_t) | N_t > 0
        double kept;
        do kept = binomial(rng[l], size[l], kappa[l][t]);
        while (kept <= 0);
        size[l] = kept;
      }
      double of;
      const double* c = fitted(l, t - 1, of);
      mixture_row(pr.p, c, of, alpha[l][t], K, q + l * K);
    }
    if (pr.regime == 1 || subsample) {
      multinomial_lanes(rng, size, q, K, L, fresh, scratch);
      for (int64_t i = 0; i < L * K; ++i) counts[i] += fresh[i];
      for (int64_t l = 0; l < L; ++l) total[l] += size[l];
      if (subsample)  // after the lane's chain draws and items, from its own stream (as the refill engine)
        for (int64_t l = 0; l < L; ++l) multivariate_hypergeometric(rng[l], size[l], counts + l * K, K, fit + l * K);
    } else {
      multinomial_lanes(rng, size, q, K, L, counts, scratch);
      for (int64_t l = 0; l < L; ++l) total[l] = size[l];
    }
    record(t);
  }
}


#if (defined(__AVX512F__) && defined(__AVX512DQ__)) || COLLAPSE_JAX_FOUR_LANES
#define COLLAPSE_JAX_REFILL 1
// ---- the refill engine -------------------------------------------------------------------------------------------
// run_group advances its eight lanes category by category, so every vector waits for its group's slowest lane
// (about half of each vector sat idle). Here each vector lane ("slot") runs its own replicate and moves on as soon as
// its own binomial is drawn. A slot is in one of two vector modes: BTRS (one proposal per pass) or inversion
// (kInversionSteps cdf steps per pass). After a draw it moves to its next category in vector form; the end of a
// generation, the next replicate and probabilities 0 or 1 go through scalar code (about once per generation). A
// slot consumes its lane's stream exactly as run_group does (same draws, same order, same arithmetic), so the two
// engines give the same losses; a test checks it bit for bit.
//
// Written once over an architecture A: its vectors (A::V, A::I, A::U of A::W lanes), lane masks (A::Mask, with
// &, |, ~ and a truth value) and the few operations beyond plain vector arithmetic (masked compares, selects,
// gathers, scatters). AVX-512 builds run eight lanes with k-register masks (Avx512Lanes); AVX2-only builds four
// lanes per register, masks as vectors and the scatter as plain stores (Avx2Lanes). (An earlier AVX2 port that kept
// eight lanes as two four-wide halves ran no faster than the group engine: its state did not fit in sixteen
// registers.)

// log x within 2.6e-7 for x > 0 (0 -> -inf): exponent and mantissa m in [1, 2), log m by a degree-7 polynomial
// (Chebyshev interpolant of log1p on [0, 1], coefficients fitted and checked in float64 on 4e6 points).
constexpr double kRoughLogError = 1e-6;
template <class A>
VEC_INLINE typename A::V vlog_rough(typename A::V x) {
  const typename A::V e = A::exponent(x);
  const typename A::V f = A::mantissa(x) - 1.0;
  const typename A::V poly =
      2.5546730203496182e-07 +
      f * (0.99996708094384434 +
           f * (-0.49928504912226557 +
                f * (0.32722571497202635 +
                     f * (-0.22316586411450423 +
                          f * (0.13083342797678199 + f * (-0.05243753706207599 + f * 0.01000928961639147))))));
  return e * 6.93147180559945309417e-01 + poly;
}

// BTRS's bound for modes m below kSeriesMaxMode, n - m + 1 above kSeriesMinRest and n below kSeriesMaxCount (the
// refill engine's "series" slots): log m! - log k! from the table (m and k are small there, so those entries stay
// in the caches), and the other side, log (n - m)! - log (n - k)!, without the table. With M = n - m,
// N = n - k = M + d, d = m - k, delta = d / (M + 1), Stirling's formula gives exactly
//   log M! - log N! = -d log(M + 1) - (N + 1/2) log1p(delta) + d - (tail(N) - tail(M)),
// so the bound is log m! - log k! + (k - m) (log(r (M + 1)) - 1) - (N + 1/2) log1p(delta) - (tail(N) - tail(M)).
// For |delta| <= kSeriesMaxDelta = 1/50, log1p(delta) by its series to delta^5 is within |d| 6e-10 after the factor
// N + 1/2, and tail(N) - tail(M) (about -d / (12 (M + 1)^2)) is below |d| 5e-9 for M >= 2^12, so it is left out.
// The rough part, log(r (M + 1)) by vlog_rough (within 2.6e-7), moves the bound by at most |k - m| 2.6e-7. With the
// rough log of the test's left side (2.6e-7) and the rounding of the bound the engines had computed (about 2e-8 from
// the table; the Stirling bound a few ulps of |k - m|-sized terms), everything lies inside the refill engine's
// margin 1e-6 (1 + |k - m|), outside which its decision is that bound's: the same draws. (n < 2^28 dates from a
// Stirling bound whose rounding grew like 4e-16 n.)
constexpr double kSeriesMaxMode = 1 << 16, kSeriesMinRest = 1 << 12, kSeriesMaxCount = 1 << 28,
                 kSeriesMaxDelta = 0.02;
template <class V>
VEC_INLINE V series_bound(V lead_minus_log_k, V k_minus_m, V log_c, V rest, V delta) {
  const V d2 = delta * delta;  // (Estrin's scheme: a short dependency chain)
  const V log1p_delta =
      delta * ((1.0 - 0.5 * delta) + d2 * ((1.0 / 3 - 0.25 * delta) + d2 * (1.0 / 5)));
  return lead_minus_log_k + k_minus_m * log_c - (rest + 0.5) * log1p_delta;
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
// Eight lanes, masks in k registers (measured on a Sapphire Rapids core: 1 bank 1.05, 2 banks 1.23, 4 banks 1.27 M
// replicate-generations/s; 2 inversion steps per pass 1.09 vs 1 step 0.98).
struct Avx512Lanes {
  typedef vd V;
  typedef vi I;
  typedef vu U;
  typedef __mmask8 Mask;
  static constexpr int W = 8, kBanks = 4, kInversionSteps = 2;
  static VEC_INLINE uint8_t bits(Mask m) { return m; }
  static VEC_INLINE Mask from_bits(uint8_t b) { return b; }
  template <int OP>
  static VEC_INLINE Mask cmp(Mask m, V x, V y) {
    return _mm512_mask_cmp_pd_mask(m, (__m512d)x, (__m512d)y, OP);
  }
  static VEC_INLINE V select(Mask m, V yes, V no) { return (V)_mm512_mask_mov_pd((__m512d)no, m, (__m512d)yes); }
  // table[index] in the lanes of m (index whole doubles / int64), 0 elsewhere.
  static VEC_INLINE V gather(Mask m, V index, const double* table) {
    return (V)_mm512_mask_i64gather_pd(_mm512_setzero_pd(), m, _mm512_cvttpd_epi64((__m512d)index), table, 8);
  }
  static VEC_INLINE V gather(Mask m, I index, const double* table) {
    return (V)_mm512_mask_i64gather_pd(_mm512_setzero_pd(), m, (__m512i)index, table, 8);
  }
  // x at table[index] in the lanes of m (Avx2Lanes::store may write the other lanes too).
  static VEC_INLINE void store(Mask m, I index, V x, double* table) {
    _mm512_mask_i64scatter_pd(table, m, (__m512i)index, (__m512d)x, 8);
  }
  static VEC_INLINE I add(Mask m, I x, int64_t y) {
    return (I)_mm512_mask_add_epi64((__m512i)x, m, (__m512i)x, _mm512_set1_epi64(y));
  }
  // Unbiased exponent and mantissa in [1, 2) of positive x (getexp(0) = -inf).
  static VEC_INLINE V exponent(V x) { return (V)_mm512_getexp_pd((__m512d)x); }
  static VEC_INLINE V mantissa(V x) { return (V)_mm512_getmant_pd((__m512d)x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src); }
};
typedef Avx512Lanes RefillLanes;
#else
// Four lanes, one AVX2 register per vector; a mask is a vector of all-ones / zero lanes.
struct Mask4 {
  vi4 m;
  Mask4(int = 0) : m(vi4{}) {}  // no lanes (only 0 converts)
  explicit Mask4(vi4 x) : m(x) {}
  VEC_INLINE Mask4 operator&(Mask4 o) const { return Mask4(m & o.m); }
  VEC_INLINE Mask4 operator|(Mask4 o) const { return Mask4(m | o.m); }
  VEC_INLINE Mask4 operator~() const { return Mask4(~m); }
  VEC_INLINE Mask4& operator|=(Mask4 o) { return *this = *this | o; }
  VEC_INLINE Mask4& operator&=(Mask4 o) { return *this = *this & o; }
  VEC_INLINE explicit operator bool() const { return any(m); }
};
struct Avx2Lanes {
  typedef vd4 V;
  typedef vi4 I;
  typedef vu4 U;
  typedef Mask4 Mask;
  static constexpr int W = 4, kBanks = 2, kInversionSteps = 2;
  static VEC_INLINE uint8_t bits(Mask m) { return (uint8_t)_mm256_movemask_pd((__m256d)m.m); }
  static VEC_INLINE Mask from_bits(uint8_t b) {
    const vi4 lane = {1, 2, 4, 8};
    return Mask((vi4)((lane & (int64_t)b) != 0));
  }
  template <int OP>
  static VEC_INLINE Mask cmp(Mask m, V x, V y) {
    return Mask((I)_mm256_and_pd((__m256d)m.m, _mm256_cmp_pd((__m256d)x, (__m256d)y, OP)));
  }
  static VEC_INLINE V select(Mask m, V yes, V no) { return vsel(m.m, yes, no); }
  static VEC_INLINE V gather(Mask m, I index, const double* table) {
    return (V)_mm256_mask_i64gather_pd(_mm256_setzero_pd(), table, (__m256i)index, (__m256d)m.m, 8);
  }
  static VEC_INLINE V gather(Mask m, V index, const double* table) {
    return gather(m, whole_to_int(vsel(m.m, index, V{})), table);
  }
  // x at table[index] in the lanes of m, and in the other lanes too (four plain stores: a loop over m's lanes
  // mispredicted its exits, since which lanes are set is unpredictable), so every lane's index must point at an
  // entry whose value is dead.
  static VEC_INLINE void store(Mask, I index, V x, double* table) {
    for (int l = 0; l < W; ++l) table[index[l]] = x[l];
  }
  static VEC_INLINE I add(Mask m, I x, int64_t y) { return x + (y & m.m); }
  static VEC_INLINE V exponent(V x) {  // 0 -> -inf, as getexp
    return vsel(veq(x, V{}), broadcast<V>(-__builtin_inf()), small_to_double(exponent_bits(x)));
  }
  static VEC_INLINE V mantissa(V x) { return mantissa_bits(x); }
};
typedef Avx2Lanes RefillLanes;
#endif

// Whole runs of the lanes handed out by next (lane = g R + r, up to end), into out rows (lane, T1) of the full
// output; threads share next, so none idles while another has lanes left. A pass is one long dependency chain
// (draw, accept, the next category's constants); kBanks banks of eight slots go through each phase in turn, so
// that their chains overlap (measured on a Sapphire Rapids core: 1 bank 1.05, 2 banks 1.23, 4 banks 1.27 M
// replicate-generations/s for AVX-512's eight lanes; AVX2's four lanes: Avx2Lanes).
template <typename T, class A, bool kSeries>
class RefillRun {
 public:
  typedef typename A::V vd;
  typedef typename A::I vi;
  typedef typename A::U vu;
  typedef typename A::Mask Mask;
  static constexpr int kWidth = A::W;
  static constexpr int kBanks = A::kBanks;
  static constexpr int kInversionSteps = A::kInversionSteps;
  static constexpr int kSlots = kBanks * kWidth;

  RefillRun(const Problem& pr, std::atomic<int64_t>& next, int64_t end, T* out)
      : pr_(pr), K_(pr.K), Kp_((pr.K + 7) & ~int64_t(7)), next_(next), end_(end), out_(out),
        rows_(5 * kSlots * Kp_), tail_(pr.K), expand_(pr.K) {}

  void run() {
    Bank banks[kBanks];
    for (int s = 0; s < kSlots; ++s) {
      Rng rng{0};
      if (begin_generation(s, rng, take_lane(s, rng))) advance(s, rng);
    }
    for (int i = 0; i < kBanks; ++i) banks[i].load(*this, i);
    for (;;) {  // the banks' phases interleave, so their dependency chains overlap
      bool busy = false;
      for (int i = 0; i < kBanks; ++i) {
        Bank& b = banks[i];
        b.accept = 0;
        if (b.bt | b.iv) {
          busy = true;
          b.draw();
        }
      }
      if (!busy) break;
      for (int i = 0; i < kBanks; ++i) banks[i].move(*this, i);
      for (int i = 0; i < kBanks; ++i) banks[i].restart();
    }
  }

 private:
  template <int OP>
  static VEC_INLINE Mask cmp(Mask m, vd x, vd y) {
    return A::template cmp<OP>(m, x, y);
  }
#define CMP(mask, x, op, y) cmp<op>((mask), (x), (y))
  // vuniform for the slots in a mask.
  static VEC_INLINE vd uniform(vu& st, Mask mask) {
    st = (vu)A::add(mask, (vi)st, (int64_t)0x9E3779B97F4A7C15ULL);
    return vmix_uniform(st);
  }

  // A bank's slots' vector state.
  struct Bank {
    vu st;
    vi kc, base;
    vd n, p;
    Mask flip = 0, bt = 0, iv = 0, fresh = 0;
    BtrsConstants<vd> c;    // BTRS slots: constants,
    vd lead;             // the bound's lead term,
    Mask big = 0;        // and which slots have n >= kLogFactorialSize (Stirling bound);
    Mask by_series = 0;  // slots whose bound's n - k side is a series (series_bound), with
    vd inv_m1, log_c;    // 1 / (n - m + 1) and log(r (n - m + 1)) - 1 (rough log)
    vd ui, ki, f, cdf, f0, ratio;  // inversion slots: binomial_inversion's u, k, f, cdf, f0 and ratio
    vd x;                          // this pass's draws
    Mask accept = 0, new_bt = 0, new_iv = 0;

    void load(RefillRun& run, int bank) {
      const int o = bank * kWidth;
      for (int l = 0; l < kWidth; ++l) run.base_[o + l] = (o + l) * run.Kp_;
      std::memcpy(&base, run.base_ + o, sizeof(base));
      reload(run, bank);
      c = BtrsConstants<vd>{};
      lead = inv_m1 = log_c = vd{};
      ui = ki = f = cdf = f0 = ratio = vd{};
      start_btrs(bt);
      start_inversion(iv);
    }
    void spill(RefillRun& run, int bank) {
      const int o = bank * kWidth;
      std::memcpy(run.st_ + o, &st, sizeof(st));
      std::memcpy(run.kc_ + o, &kc, sizeof(kc));
      std::memcpy(run.n_ + o, &n, sizeof(n));
      std::memcpy(run.p_ + o, &p, sizeof(p));
      run.flip_[bank] = A::bits(flip);
      run.bt_[bank] = A::bits(bt);
      run.iv_[bank] = A::bits(iv);
    }
    void reload(RefillRun& run, int bank) {
      const int o = bank * kWidth;
      std::memcpy(&st, run.st_ + o, sizeof(st));
      std::memcpy(&kc, run.kc_ + o, sizeof(kc));
      std::memcpy(&n, run.n_ + o, sizeof(n));
      std::memcpy(&p, run.p_ + o, sizeof(p));
      flip = A::from_bits(run.flip_[bank]);
      bt = A::from_bits(run.bt_[bank]);
      iv = A::from_bits(run.iv_[bank]);
    }
    VEC_INLINE void start_btrs(Mask mask) {
      const double* lf = kLogFact.v;
      const BtrsConstants<vd> s = btrs_constants<vd, false>(n, p);
      c.a = A::select(mask, s.a, c.a);
      c.b = A::select(mask, s.b, c.b);
      c.c = A::select(mask, s.c, c.c);
      c.v_r = A::select(mask, s.v_r, c.v_r);
      c.alpha = A::select(mask, s.alpha, c.alpha);
      c.m = A::select(mask, s.m, c.m);
      c.r = A::select(mask, s.r, c.r);
      c.log_r = A::select(mask, vlog_rough<A>(s.r), c.log_r);
      const vd nm1 = n - s.m + 1.0;
      const Mask series =
          kSeries ? CMP(CMP(CMP(mask, s.m, _CMP_LT_OQ, broadcast<vd>(kSeriesMaxMode)), nm1, _CMP_GT_OQ,
                            broadcast<vd>(kSeriesMinRest)), n, _CMP_LT_OQ, broadcast<vd>(kSeriesMaxCount))
                  : Mask(0);
      const Mask large = CMP(mask & ~series, n, _CMP_GE_OQ, broadcast<vd>((double)kLogFactorialSize));
      const Mask table = mask & ~large & ~series;
      big = (big & ~mask) | large;
      if (kSeries) by_series = (by_series & ~mask) | series;
      // (series slots: log m! alone, the masked second gather adds 0)
      lead = A::select(table | series, A::gather(table | series, s.m, lf) + A::gather(table, n - s.m, lf), lead);
      if (kSeries && series) {
        inv_m1 = A::select(series, vrecip(nm1), inv_m1);
        log_c = A::select(series, vlog_rough<A>(s.r * nm1) - 1.0, log_c);
      }
      if (large) lead = A::select(large, btrs_lead_stirling(s, n), lead);
    }
    // The bound as the group engine computes it (table or Stirling, exact log(p/q)), for the slots in mask: the rare
    // slots whose fast bound cannot decide.
    VEC_INLINE vd exact_bound(Mask mask, vd k) const {
      const double* lf = kLogFact.v;
      const Mask large = CMP(mask, n, _CMP_GE_OQ, broadcast<vd>((double)kLogFactorialSize)), table = mask & ~large;
      BtrsConstants<vd> exact = c;
      exact.log_r = vlog(c.r);
      vd out = btrs_bound(exact, A::gather(table, c.m, lf) + A::gather(table, n - c.m, lf),
                          A::gather(table, k, lf) + A::gather(table, n - k, lf), k);
      if (large) out = A::select(large, btrs_bound_stirling(c, btrs_lead_stirling(c, n), n, k), out);
      return out;
    }
    VEC_INLINE void start_inversion(Mask mask) {
      const InversionStart<vd> s = inversion_start(n, p);
      f0 = A::select(mask, s.f0, f0);
      ratio = A::select(mask, s.ratio, ratio);
      ki = A::select(mask, vd{}, ki);
      f = A::select(mask, s.f0, f);
      cdf = A::select(mask, s.f0, cdf);
      fresh |= mask;
    }

    // One pass: a BTRS proposal or an inversion step in every busy slot; false once the bank is idle.
    // Draw: a BTRS proposal or kInversionSteps inversion steps in every busy slot; drawn: the slots done, x theirs.
    inline void draw() {
      const double* lf = kLogFact.v;
      const vd zero = {};
      // One stream call serves BTRS's u and a fresh inversion u (the two masks are disjoint).
      const vd u0 = uniform(st, bt | fresh);
      const vd v = uniform(st, bt);
      ui = A::select(fresh, u0, ui);
      fresh = 0;
      vd us, w;
      x = btrs_candidate(c, u0 - 0.5, us, w);
      const Mask in_range = CMP(CMP(bt, x, _CMP_GE_OQ, zero), x, _CMP_LE_OQ, n);
      accept = CMP(CMP(in_range, us, _CMP_GE_OQ, broadcast<vd>(0.07)), v, _CMP_LE_OQ, c.v_r);
      {  // (no branch on whether any slot is slow: some of four is, three passes in four, unpredictably)
        const Mask slow = in_range & ~accept;
        // The exact test log(y) <= bound, decided by a rough log where it is at least kRoughLogError away.
        // Series slots (series_bound): log m! from the table as lead, log (n - m)! - log (n - k)! by a series in
        // delta = (m - k) / (n - m + 1) where |delta| <= kSeriesMaxDelta and k is in the table; the rest exactly.
        const Mask series = kSeries ? slow & by_series : Mask(0);
        Mask undecided = 0;
        vd delta = {};
        if (kSeries && series) {
          delta = (c.m - x) * inv_m1;
          undecided = series & (CMP(series, vabs(delta), _CMP_GT_OQ, broadcast<vd>(kSeriesMaxDelta)) |
                                CMP(series, x, _CMP_GE_OQ, broadcast<vd>((double)kLogFactorialSize)));
        }
        const Mask table = kSeries ? slow & ~big & ~by_series : slow & ~big;
        const vd log_k = A::gather(kSeries ? (table | series) & ~undecided : table, x, lf);
        vd bound = btrs_bound(c, lead, log_k + A::gather(table, n - x, lf), x);
        if (const Mask large = slow & big) bound = A::select(large, btrs_bound_stirling(c, lead, n, x), bound);
        if (kSeries && series)
          bound = A::select(series, series_bound(lead - log_k, x - c.m, log_c, n - x, delta), bound);
        const vd y = btrs_log_arg(c, v, w), rough = vlog_rough<A>(y);
        const vd margin = kRoughLogError + kRoughLogError * vabs(x - c.m);
        accept |= CMP(kSeries ? slow & ~undecided : slow, rough, _CMP_LE_OQ, bound - margin);
        if (const Mask close = CMP(slow & ~accept, rough, _CMP_LE_OQ, bound + margin) | undecided)
          accept |= CMP(close, vlog(y), _CMP_LE_OQ, exact_bound(close, x));
      }
      if (iv) {  // kInversionSteps steps of the cdf walk, each after its test
        Mask walking = iv;
        for (int step = 0; step < kInversionSteps && walking; ++step) {
          const Mask go = CMP(
              CMP(CMP(walking, ui, _CMP_GT_OQ, cdf), ki, _CMP_LT_OQ, n), f, _CMP_GT_OQ, zero);
          const Mask stop = walking & ~go;
          const Mask took = CMP(stop, ui, _CMP_LE_OQ, cdf) | CMP(stop, ki, _CMP_GE_OQ, n);
          if (const Mask again = stop & ~took) {  // rounding left u above the cdf's total: redraw (~1e-15)
            ki = A::select(again, zero, ki);
            f = A::select(again, f0, f);
            cdf = A::select(again, f0, cdf);
            fresh |= again;
          }
          x = A::select(took, ki, x);
          accept |= took;
          f = A::select(go, inversion_next(f, n, ki, ratio), f);
          ki = A::select(go, ki + 1.0, ki);
          cdf = A::select(go, cdf + f, cdf);
          walking = go;
        }
      }
    }

    // Drawn slots: record the count, move to the next category and read its conditional probability; scalar code
    // takes the slots at the end of a generation (and p in {0, 1}).
    inline void move(RefillRun& run, int bank) {
      if (!accept) return;
      const vd zero = {};
      x = A::select(flip, n - x, x);
      const vi at = base + kc;
      // (lanes not done write a value that is dead: their current entry, drawn later; idle slots, their own row)
      A::store(accept, at, x, run.rows_.data() + kSlots * run.Kp_);
      n = A::select(accept, n - x, n);
      kc = A::add(accept, kc, 1);
      const vd r = A::gather(accept, at + 1, run.rows_.data() + 2 * kSlots * run.Kp_);  // (conditional_row's code)
      const Mask coded = CMP(accept, r, _CMP_LT_OQ, zero);
      const Mask flipped = coded | CMP(accept, r, _CMP_GT_OQ, broadcast<vd>(0.5));
      p = A::select(accept, A::select(coded, zero - r, A::select(flipped, 1.0 - r, r)), p);
      flip = (flip & ~accept) | flipped;
      const Mask open = CMP(CMP(accept, p, _CMP_GT_OQ, zero), n, _CMP_GT_OQ, zero);
      const vd mean = n * p;
      const Mask to_bt = CMP(open, mean, _CMP_GE_OQ, broadcast<vd>(10.0));
      const Mask to_iv = CMP(open, mean, _CMP_LT_OQ, broadcast<vd>(10.0));
      bt = (bt & ~accept) | to_bt;
      iv = (iv & ~accept) | to_iv;
      new_bt = to_bt;
      new_iv = to_iv;
      if (const Mask other = accept & ~(to_bt | to_iv)) {  // end of generation, p in {0, 1}: scalar
        spill(run, bank);
        const uint8_t other_bits = A::bits(other);
        for (int l = 0; l < kWidth; ++l) {
          if (!(other_bits >> l & 1)) continue;
          Rng rng{run.st_[bank * kWidth + l]};
          run.advance(bank * kWidth + l, rng);
        }
        reload(run, bank);
        new_bt |= other & bt;
        new_iv |= other & iv;
      }
    }

    // Constants for the slots that moved.
    inline void restart() {
      if (new_bt) start_btrs(new_bt);
      if (new_iv) start_inversion(new_iv);
      new_bt = new_iv = 0;
    }
  };

  double* counts(int s) { return rows_.data() + s * Kp_; }
  double* draw(int s) { return rows_.data() + (kSlots + s) * Kp_; }
  double* ratio(int s) { return rows_.data() + (2 * kSlots + s) * Kp_; }
  double* q(int s) { return rows_.data() + (3 * kSlots + s) * Kp_; }
  double* fit(int s) { return rows_.data() + (4 * kSlots + s) * Kp_; }  // accumulate-subsample's subsample

  // Chain entries of a generation of `size` items from q(s) (ChainSplit) and their conditional probabilities, as
  // multinomial_lanes computes them (1 where all remaining mass sits in an entry: the binomial takes everything
  // without a draw). (The last entry's r = 0 is in neither vector mode, so the scalar path ends the generation.)
  void ratios(int s, double size) {
    ChainSplit& split = split_[s];
    const double* masses = split.split(size, q(s), K_);
    conditional_row(masses, split.entries, tail_.data(), ratio(s));
  }

  // Slot s starts the range's next lane at generation 0 (q(s) = p); returns n_0, or -1 (slot idle) when the range
  // is done.
  double take_lane(int s, Rng& rng) {
    const int64_t lane = next_.fetch_add(1, std::memory_order_relaxed);
    if (lane >= end_) return -1;
    lane_[s] = lane;
    const int64_t g = lane / pr_.R, r = lane % pr_.R;
    alpha_[s] = pr_.alpha + g * pr_.T1;
    size_[s] = pr_.n + g * pr_.T1;
    kappa_[s] = pr_.kappa + g * pr_.T1;
    rng.s = ((uint64_t)pr_.seeds[2 * r] << 32) | (uint64_t)pr_.seeds[2 * r + 1];
    t_[s] = 0;
    std::copy(pr_.p, pr_.p + K_, q(s));
    return size_[s][0];
  }

  // Generation t_[s] of slot s draws `size` items from q(s). A large sample is set up for the binomial chain
  // (true); a small one is drawn here by categorical draws and finished, and so on through the next generations and
  // lanes; false once the range is done (size -1: already done).
  bool begin_generation(int s, Rng& rng, double size) {
    for (; size >= 0; size = end_generation(s, rng)) {
      drawn_[s] = size;
      if (!use_categorical(size, K_)) {
        ratios(s, size);
        n_[s] = size;
        kc_[s] = 0;
        return true;
      }
      split_[s].num_small = 0;  // (draw(s) is the whole row: nothing to finish)
      multinomial_categorical(rng, size, q(s), K_, categorical_, draw(s));
    }
    return false;
  }

  // Generation t_[s] is drawn (draw(s); a chain's entries, whose small categories get their items here): update the
  // counts, record the loss, put the next generation's sampling distribution in q(s) (or take the next lane);
  // returns that generation's size (-1: no lane left).
  double end_generation(int s, Rng& rng) {
    const int64_t t = t_[s], K = K_;
    double* cnt = counts(s);
    const double* d = draw(s);
    if (split_[s].num_small) {
      split_[s].finish(rng, d, K, categorical_, expand_.data());
      d = expand_.data();
    }
    if (t == 0 || (pr_.regime != 1 && pr_.regime != 3)) {
      std::copy(d, d + K, cnt);
      total_[s] = drawn_[s];
    } else {
      for (int64_t k = 0; k < K; ++k) cnt[k] += d[k];
      total_[s] += drawn_[s];
    }
    const double* fitted = cnt;  // the fit: counts over their total, or (accumulate-subsample) n_t of the pool
    double of = total_[s];
    if (pr_.regime == 3 && t > 0) {
      multivariate_hypergeometric(rng, drawn_[s], cnt, K, fit(s));
      fitted = fit(s);
      of = drawn_[s];
    }
    out_[lane_[s] * pr_.T1 + t] = (T)squared_error(fitted, of, pr_.p, K);
    if (t + 1 == pr_.T1) return take_lane(s, rng);
    t_[s] = t + 1;
    double size = size_[s][t + 1];
    if (pr_.regime == 2) {  // kept size N_t ~ Binomial(n_t, kappa_t) | N_t > 0
      double kept;
      do kept = binomial(rng, size, kappa_[s][t + 1]);
      while (kept <= 0);
      size = kept;
    }
    mixture_row(pr_.p, fitted, of, alpha_[s][t + 1], K, q(s));
    return size;
  }

  // Scalar draws for slot s (from category kc_[s] with n_[s] left) until it reaches a category for one of the
  // vector modes (n_, p_, flip_, bt_/iv_ set) or its range of lanes is done (the slot goes idle).
  void advance(int s, Rng& rng) {
    const int bank = s / kWidth;
    const uint8_t bit = (uint8_t)(1u << (s % kWidth));
    bt_[bank] &= (uint8_t)~bit;
    iv_[bank] &= (uint8_t)~bit;
    double left = n_[s];
    int64_t k = kc_[s];
    double* d = draw(s);
    for (;;) {
      if (k == split_[s].entries - 1) {
        d[k] = left;
        if (!begin_generation(s, rng, end_generation(s, rng))) break;
        left = n_[s];
        k = 0;
        continue;
      }
      bool f;
      const double pp = conditional_p(ratio(s)[k], f);
      if (pp > 0 && left > 0) {
        n_[s] = left;
        p_[s] = pp;
        kc_[s] = k;
        flip_[bank] = f ? (flip_[bank] | bit) : (flip_[bank] & (uint8_t)~bit);
        if (left * pp < 10)
          iv_[bank] |= bit;
        else
          bt_[bank] |= bit;
        break;
      }
      const double drawn = binomial(rng, left, pp);
      const double x = f ? left - drawn : drawn;
      d[k] = x;
      left -= x;
      ++k;
    }
    st_[s] = rng.s;
  }

  const Problem& pr_;
  const int64_t K_, Kp_;
  std::atomic<int64_t>& next_;
  const int64_t end_;
  T* out_;
  std::vector<double> rows_;  // counts, draw, ratio, q rows: (4, kSlots, Kp)
  std::vector<double> tail_;             // conditional_row's scratch
  std::vector<double> expand_;           // a split generation's counts (K,)
  ChainSplit split_[kSlots];             // each slot's chain split (num_small 0 in a categorical generation)
  CategoricalScratch categorical_;       // multinomial_categorical's
  alignas(64) uint64_t st_[kSlots] = {};
  alignas(64) int64_t kc_[kSlots] = {};
  alignas(64) int64_t base_[kSlots] = {};
  alignas(64) double n_[kSlots] = {};
  alignas(64) double p_[kSlots] = {};
  uint8_t flip_[kBanks] = {}, bt_[kBanks] = {}, iv_[kBanks] = {};  // lane bits of each bank's masks
  int64_t lane_[kSlots] = {}, t_[kSlots] = {};
  double total_[kSlots] = {}, drawn_[kSlots] = {};
  const double *alpha_[kSlots] = {}, *size_[kSlots] = {}, *kappa_[kSlots] = {};
};
#else
#define COLLAPSE_JAX_REFILL 0
#endif

#if COLLAPSE_JAX_REFILL
// Which refill variant runs a problem; both draw the same numbers. The series bound (series_bound) pays where the
// table's log (n - k)! entries would come from memory while log k! stays in the first caches: counts from 2^19 (a
// 4 MiB span of the table) with modes n_t / K up to 2^12, and counts beyond the table (where the other variant uses
// Stirling's bound, two exact logs per test) with modes up to 2^16. Measured on one thread of an AVX-512 Xeon
// (docs/benchmarks.md): K = 1000, n_t = 10^6 about +10 %, 10^7 +33-43 %; forced on every problem it lost 12-22 %
// (K = 50 at n_t = 10^4-10^6, K = 1000 at 10^5): its log k! gathers wait on the second-level cache anyway, and near
// a chain's end |delta| often leaves the series' range.
inline bool refill_series(const Problem& pr) {
  const double most = *std::max_element(pr.n, pr.n + pr.G * pr.T1), K = (double)pr.K;
  return (most >= (1 << 19) && most <= 4096.0 * K) || (most >= (double)kLogFactorialSize && most <= 65536.0 * K);
}
#define COLLAPSE_JAX_REFILL_DISPATCH 1
template <typename T>
void refill_run(const Problem& pr, std::atomic<int64_t>& next, int64_t end, T* out) {
  if (refill_series(pr))
    RefillRun<T, RefillLanes, true>(pr, next, end, out).run();
  else
    RefillRun<T, RefillLanes, false>(pr, next, end, out).run();
}
#endif

template <ffi::DataType DT>
ffi::Error MultinomialRiskImpl(ffi::Buffer<DT> p, ffi::Buffer<DT> alpha, ffi::Buffer<DT> n, ffi::Buffer<DT> kappa,
                               ffi::Buffer<ffi::U32> seeds, ffi::ResultBuffer<DT> loss, int64_t regime,
                               int64_t engine, int64_t num_threads) {
  using T = ffi::NativeType<DT>;
  auto ad = alpha.dimensions();
  auto sd = seeds.dimensions();
  if (p.dimensions().size() != 1 || ad.size() != 2 || sd.size() != 2 || sd[1] != 2)
    return ffi::Error::InvalidArgument("multinomial_risk: expected p (K,), schedules (G, T1), seeds (R, 2)");
  if (n.element_count() != alpha.element_count() || kappa.element_count() != alpha.element_count())
    return ffi::Error::InvalidArgument("multinomial_risk: schedules disagree in shape");
  if (regime < 0 || regime > 3)
    return ffi::Error::InvalidArgument("multinomial_risk: regime must be 0, 1, 2 or 3");
  if (engine < 0 || engine > 2 || (engine == 2 && !COLLAPSE_JAX_REFILL))
    return ffi::Error::InvalidArgument("multinomial_risk: engine must be 0 (auto), 1 (group) or 2 (refill, AVX-512 "
                                       "or AVX2 builds)");
  const int64_t K = p.dimensions()[0], G = ad[0], T1 = ad[1], R = sd[0];
  if (K < 1 || T1 < 1) return ffi::Error::InvalidArgument("multinomial_risk: need K >= 1 and T1 >= 1");
  // Inputs in double whatever T: counts beyond 2^24 stay exact and the sampler's arithmetic is float64.
  std::vector<double> pd(p.typed_data(), p.typed_data() + K);
  std::vector<double> al(alpha.typed_data(), alpha.typed_data() + G * T1);
  std::vector<double> nd(n.typed_data(), n.typed_data() + G * T1);
  std::vector<double> kd(kappa.typed_data(), kappa.typed_data() + G * T1);
  const Problem pr{pd.data(), al.data(), nd.data(), kd.data(), seeds.typed_data(), K, G, R, T1, regime};
  T* out = loss->typed_data();
  const int64_t lanes = G * R;
#if COLLAPSE_JAX_REFILL
  if (engine != 1) {
    std::atomic<int64_t> next{0};
    parallel_for(std::min(num_threads, lanes), num_threads,
                 [&](int64_t, int64_t) { refill_run<T>(pr, next, lanes, out); });
    return ffi::Error::Success();
  }
#endif
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<double> work;
    LaneScratch scratch;
    for (int64_t l = begin; l < end; l += kGroup)
      run_group<T>(pr, l, std::min(kGroup, end - l), out + l * T1, work, scratch);
  };
  parallel_for(lanes, num_threads, work);
  return ffi::Error::Success();
}

// Exact Multinomial(n_r, q_r) counts, one row per lane: n (R,), q (R, K), seeds (R, 2) -> counts (R, K).
template <ffi::DataType DT>
ffi::Error MultinomialCountsImpl(ffi::Buffer<DT> n, ffi::Buffer<DT> q, ffi::Buffer<ffi::U32> seeds,
                                 ffi::ResultBuffer<DT> counts, int64_t num_threads) {
  using T = ffi::NativeType<DT>;
  auto qd = q.dimensions();
  if (qd.size() != 2 || n.element_count() != qd[0] || seeds.element_count() != 2 * qd[0])
    return ffi::Error::InvalidArgument("multinomial_counts: expected n (R,), q (R, K), seeds (R, 2)");
  const int64_t R = qd[0], K = qd[1];
  const T* n_d = n.typed_data();
  const T* q_d = q.typed_data();
  const uint32_t* s_d = seeds.typed_data();
  T* out = counts->typed_data();
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<double> rows(2 * kWidth * K);
    double* qr = rows.data();
    double* o = qr + kWidth * K;
    LaneScratch scratch;
    for (int64_t r0 = begin; r0 < end; r0 += kWidth) {
      const int64_t L = std::min<int64_t>(kWidth, end - r0);
      Rng rng[kWidth] = {};
      double size[kWidth];
      for (int64_t l = 0; l < L; ++l) {
        const int64_t r = r0 + l;
        for (int64_t k = 0; k < K; ++k) qr[l * K + k] = (double)q_d[r * K + k];
        rng[l].s = ((uint64_t)s_d[2 * r] << 32) | (uint64_t)s_d[2 * r + 1];
        size[l] = (double)n_d[r];
      }
      multinomial_lanes(rng, size, qr, K, L, o, scratch);
      for (int64_t i = 0; i < L * K; ++i) out[r0 * K + i] = (T)o[i];
    }
  };
  parallel_for(R, num_threads, work);
  return ffi::Error::Success();
}

}  // namespace

#define DEFINE_HANDLER(NAME, DT)                                  \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, MultinomialRiskImpl<DT>,   \
                                ffi::Ffi::Bind()                 \
                                    .Arg<ffi::Buffer<DT>>()      \
                                    .Arg<ffi::Buffer<DT>>()      \
                                    .Arg<ffi::Buffer<DT>>()      \
                                    .Arg<ffi::Buffer<DT>>()      \
                                    .Arg<ffi::Buffer<ffi::U32>>() \
                                    .Ret<ffi::Buffer<DT>>()      \
                                    .Attr<int64_t>("regime")     \
                                    .Attr<int64_t>("engine")     \
                                    .Attr<int64_t>("num_threads"));

DEFINE_HANDLER(MultinomialRiskF32, ffi::F32)
DEFINE_HANDLER(MultinomialRiskF64, ffi::F64)

#define DEFINE_COUNTS_HANDLER(NAME, DT)                            \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, MultinomialCountsImpl<DT>,  \
                                ffi::Ffi::Bind()                  \
                                    .Arg<ffi::Buffer<DT>>()       \
                                    .Arg<ffi::Buffer<DT>>()       \
                                    .Arg<ffi::Buffer<ffi::U32>>() \
                                    .Ret<ffi::Buffer<DT>>()       \
                                    .Attr<int64_t>("num_threads"));

DEFINE_COUNTS_HANDLER(MultinomialCountsF32, ffi::F32)
DEFINE_COUNTS_HANDLER(MultinomialCountsF64, ffi::F64)

// For tests: `size` multivariate hypergeometric draws of m items from pool (K,), into out (size, K); draw i from
// the stream seeded with the i-th output of the stream seeded with `seed` (so that nearby seeds do not share draws).
extern "C" void collapse_jax_multivariate_hypergeometric(const double* pool, int64_t K, double m, int64_t seed,
                                                         int64_t size, double* out) {
  Rng seeds{(uint64_t)seed};
  for (int64_t i = 0; i < size; ++i) {
    Rng rng{seeds.next()};
    multivariate_hypergeometric(rng, m, pool, K, out + i * K);
  }
}

// Whether this build has the refill engine (AVX-512 or AVX2), for collapse_jax._native.multinomial_engines.
extern "C" int collapse_jax_multinomial_has_refill() { return COLLAPSE_JAX_REFILL; }
