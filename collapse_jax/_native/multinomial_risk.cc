// Native CPU kernel for the multinomial recursion (seed 003, Section 3 and Appendices A, D): whole runs, every
// generation of every replicate and every schedule of a grid, in one call.
//
// Same model as collapse_jax/multinomial.py's portable JAX path: at generation t the counts are an exact
// Multinomial(n_t, q_t) draw, q_t = alpha_t p + (1 - alpha_t) p_hat_{t-1}, drawn as K - 1 conditional binomials
// (category k gets Binomial(remaining count, q_k / remaining mass)). Each binomial is exact: sequential-search
// inversion when the mean is below 10, BTRS (Hoermann 1993, transformed rejection with squeeze) otherwise, so a
// generation costs O(K) whatever n_t. The filter regime first draws the kept size N_t ~ Binomial(n_t, kappa_t)
// conditioned on N_t > 0 (redraw until positive).
//
// Why native: the JAX path's vmapped rejection loops run until the slowest lane finishes and threefry is slow on a
// CPU; here each replicate runs its own loops on a SplitMix64 stream seeded from its JAX key.
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
// Attributes: regime (0 replace, 1 accumulate, 2 filter), num_threads.
//
// A second handler draws plain multinomial counts (one (n, q) row per lane) with the same sampler: the exact
// sampler on its own, for users and for the goodness-of-fit tests.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Rng {
  uint64_t s;
  inline uint64_t next() {  // SplitMix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  inline double uniform() { return (double)(next() >> 11) * 0x1.0p-53; }  // [0, 1)
};

// log k! - [(k + 1/2) log(k + 1) - (k + 1) + log(2 pi)/2]: table for k <= 9, series beyond (as in multinomial.py).
inline double stirling_tail(double k) {
  static const double table[10] = {0.0810614667953272,  0.0413406959554092,  0.0276779256849983,
                                   0.02079067210376509, 0.0166446911898211,  0.0138761288230707,
                                   0.0118967099458917,  0.0104112652619720,  0.00925546218271273,
                                   0.00833056343336287};
  if (k <= 9) return table[(int)k];
  const double kp1 = k + 1, kp1sq = kp1 * kp1;
  return (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 / kp1sq) / kp1sq) / kp1;
}

// Binomial(n, p) for p <= 1/2 and n p < 10: walk the cdf from 0 (pmf by its ratio recursion). If rounding leaves
// the uniform above the computed cdf's total, the draw is repeated (probability ~1e-15).
inline double binomial_inversion(Rng& rng, double n, double p) {
  const double ratio = p / (1 - p);
  const double f0 = std::exp(n * std::log1p(-p));
  for (;;) {
    const double u = rng.uniform();
    double k = 0, f = f0, cdf = f0;
    while (u > cdf && k < n && f > 0) {
      f *= (n - k) / (k + 1) * ratio;
      k += 1;
      cdf += f;
    }
    if (u <= cdf || k >= n) return k;
  }
}

// log k! for k < kLogFactorialSize (1 MiB, built once with lgamma). Below that size BTRS evaluates its bound as
// log f(k) - log f(m) = log m! + log (n-m)! - log k! - log (n-k)! + (k - m) log(p/q) from the table; above it as
// log ratios plus Stirling tails (accurate for n up to 2^53). Rounding of the table's terms (~1e-11 at n = 1e5)
// moves the acceptance probability by that much, far below any Monte Carlo resolution.
constexpr int64_t kLogFactorialSize = 1 << 17;
struct LogFactorials {
  std::vector<double> v;
  LogFactorials() : v(kLogFactorialSize) {
    for (int64_t k = 0; k < kLogFactorialSize; ++k) v[k] = std::lgamma(k + 1.0);
  }
};
const LogFactorials kLogFact;

// Binomial(n, p) for p <= 1/2 and n p >= 10: BTRS; the bound is evaluated only when the squeeze does not accept.
// Per iteration it draws u then v; binomial_btrs_vec below consumes a lane's stream identically.
inline double binomial_btrs(Rng& rng, double n, double p) {
  const double q = 1 - p;
  const double spq = std::sqrt(n * p * q);
  const double b = 1.15 + 2.53 * spq;
  const double a = -0.0873 + 0.0248 * b + 0.01 * p;
  const double c = n * p + 0.5;
  const double v_r = 0.92 - 4.2 / b;
  const bool table = n < kLogFactorialSize;
  bool have_bound = false;
  double alpha = 0, r = 0, m = 0, lead = 0, log_r = 0;
  for (;;) {
    const double u = rng.uniform() - 0.5;
    const double v = rng.uniform();
    const double us = 0.5 - std::fabs(u);
    const double k = std::floor((2 * a / us + b) * u + c);
    if (k < 0 || k > n) continue;
    if (us >= 0.07 && v <= v_r) return k;
    if (!have_bound) {
      alpha = (2.83 + 5.1 / b) * spq;
      r = p / q;
      m = std::floor((n + 1) * p);
      if (table) {
        log_r = std::log(r);
        lead = kLogFact.v[(int64_t)m] + kLogFact.v[(int64_t)(n - m)];
      } else {
        lead = (m + 0.5) * std::log((m + 1) / (r * (n - m + 1))) + stirling_tail(m) + stirling_tail(n - m);
      }
      have_bound = true;
    }
    const double lv = std::log(v * alpha / (a / (us * us) + b));
    const double bound =
        table ? lead - kLogFact.v[(int64_t)k] - kLogFact.v[(int64_t)(n - k)] + (k - m) * log_r
              : lead + (n + 1) * std::log((n - m + 1) / (n - k + 1)) +
                    (k + 0.5) * std::log(r * (n - k + 1) / (k + 1)) - stirling_tail(k) - stirling_tail(n - k);
    if (lv <= bound) return k;
  }
}

// ---- eight lanes at once (GCC/Clang vector extensions; AVX-512 when compiled for it) ---------------------------
constexpr int kWidth = 8;
typedef double vd __attribute__((vector_size(8 * kWidth)));
typedef int64_t vi __attribute__((vector_size(8 * kWidth)));
typedef uint64_t vu __attribute__((vector_size(8 * kWidth)));

inline bool any(vi mask) {
  for (int i = 0; i < kWidth; ++i)
    if (mask[i]) return true;
  return false;
}

// Elementwise f as a loop over a plain array, which the compiler turns into one vector instruction (floor, sqrt).
template <double (*F)(double)>
inline vd velementwise(vd x) {
  double a[kWidth];
  std::memcpy(a, &x, sizeof(a));
  for (int i = 0; i < kWidth; ++i) a[i] = F(a[i]);
  std::memcpy(&x, a, sizeof(a));
  return x;
}

inline double floor_(double x) { return std::floor(x); }
inline double sqrt_(double x) { return std::sqrt(x); }
inline vd vfloor(vd x) { return velementwise<floor_>(x); }
inline vd vsqrt(vd x) { return velementwise<sqrt_>(x); }

// Natural log of positive finite normal doubles (fdlibm's e_log.c reduction and polynomial, < 1 ulp); 0 -> -inf.
inline vd vlog(vd x) {
  const vi bits = (vi)x;
  vi e = ((bits >> 52) & 0x7ff) - 1023;
  vd m = (vd)((bits & 0x000fffffffffffffLL) | 0x3ff0000000000000LL);  // [1, 2)
  const vi big = m > 1.4142135623730951;
  m = big ? m * 0.5 : m;
  e = big ? e + 1 : e;
  const vd f = m - 1.0, s = f / (2.0 + f), z = s * s, w = z * z;
  const vd t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
  const vd t2 = z * (6.666666666666735130e-01 +
                     w * (2.857142874366239149e-01 + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
  const vd hfsq = 0.5 * f * f, dk = __builtin_convertvector(e, vd);
  const vd out = dk * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + t2 + t1) + dk * 1.90821492927058770002e-10)) - f);
  return x > 0.0 ? out : -__builtin_inf() + 0.0 * x;
}

// Rng::uniform for every lane in mask (the others' states do not move).
inline vd vuniform(vu& state, vi mask) {
  state = (vu)mask ? state + 0x9E3779B97F4A7C15ULL : state;
  vu z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z = z ^ (z >> 31);
  return __builtin_convertvector(z >> 11, vd) * 0x1.0p-53;
}

// binomial_btrs for the lanes in mask (each with p <= 1/2, n p >= 10, n < kLogFactorialSize), all at once: a lane
// draws exactly what binomial_btrs would draw from its stream (up to vlog's last bit), whatever the other lanes do.
inline vd binomial_btrs_vec(vu& state, vd n, vd p, vi mask) {
  const vd q = 1.0 - p;
  const vd spq = vsqrt(n * p * q);
  const vd b = 1.15 + 2.53 * spq;
  const vd a = -0.0873 + 0.0248 * b + 0.01 * p;
  const vd c = n * p + 0.5;
  const vd v_r = 0.92 - 4.2 / b;
  const vd alpha = (2.83 + 5.1 / b) * spq;
  const vd m = vfloor((n + 1.0) * p);
  const vd log_r = vlog(p / q);
  vd lead = {};
  for (int i = 0; i < kWidth; ++i)
    if (mask[i]) lead[i] = kLogFact.v[(int64_t)m[i]] + kLogFact.v[(int64_t)(n[i] - m[i])];
  vd out = {};
  vi todo = mask;
  while (any(todo)) {
    const vd u = vuniform(state, todo) - 0.5;
    const vd v = vuniform(state, todo);
    const vd us = 0.5 - (u < 0.0 ? -u : u);
    const vd k = vfloor((2.0 * a / us + b) * u + c);
    const vi in_range = todo & (k >= 0.0) & (k <= n);
    vi accept = in_range & (us >= 0.07) & (v <= v_r);
    const vi slow = in_range & ~accept;
    if (any(slow)) {
      const vd lv = vlog(v * alpha / (a / (us * us) + b));
      vd log_fk = {};
      for (int i = 0; i < kWidth; ++i)
        if (slow[i]) log_fk[i] = kLogFact.v[(int64_t)k[i]] + kLogFact.v[(int64_t)(n[i] - k[i])];
      accept |= slow & (lv <= lead - log_fk + (k - m) * log_r);
    }
    out = accept ? k : out;
    todo &= ~accept;
  }
  return out;
}

inline double binomial(Rng& rng, double n, double p) {
  if (n <= 0 || p <= 0) return 0;
  if (p >= 1) return n;
  const bool flip = p > 0.5;
  const double pp = flip ? 1 - p : p;
  const double x = n * pp < 10 ? binomial_inversion(rng, n, pp) : binomial_btrs(rng, n, pp);
  return flip ? n - x : x;
}

// Exact Multinomial(size_l, q_l) counts for a group of L <= kWidth independent lanes, by conditional binomials:
// category k gets Binomial(remaining count, q_k / tail_k), tail_k = q_k + ... + q_{K-1}. Rows of q, tail, out are
// (L, K); rng has kWidth entries. The lanes advance together, category by category: lanes in BTRS's range go
// through binomial_btrs_vec together, the others (small means, n >= 2^17, degenerate) one by one. A lane's draws
// depend only on its own stream.
inline void multinomial_group(Rng* rng, const double* size, const double* q, const double* tail, int64_t K,
                              int64_t L, double* out) {
  static_assert(sizeof(Rng) == sizeof(uint64_t), "Rng must be one 64-bit state");
  double left[kWidth];
  for (int64_t l = 0; l < L; ++l) left[l] = size[l];
  for (int64_t k = 0; k < K - 1; ++k) {
    vd n = {}, p = {};
    vi vec = {};
    bool flip[kWidth] = {};
    for (int64_t l = 0; l < L; ++l) {
      const double* ql = q + l * K;
      const double* tl = tail + l * K;
      double* ol = out + l * K;
      if (left[l] <= 0 || tl[k + 1] <= 0) {  // nothing left, or all remaining mass sits in category k
        ol[k] = left[l];
        left[l] = 0;
        continue;
      }
      const double ratio = tl[k] > 0 ? std::min(1.0, std::max(0.0, ql[k] / tl[k])) : 0.0;
      flip[l] = ratio > 0.5;
      const double pp = flip[l] ? 1 - ratio : ratio;
      if (pp > 0 && left[l] * pp >= 10 && left[l] < kLogFactorialSize) {
        n[l] = left[l];
        p[l] = pp;
        vec[l] = -1;
        continue;
      }
      const double x = binomial(rng[l], left[l], ratio);
      ol[k] = x;
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
  for (int64_t l = 0; l < L; ++l) out[l * K + K - 1] = left[l];
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
void run_group(const Problem& pr, int64_t first, int64_t L, T* out, std::vector<double>& work) {
  const int64_t K = pr.K, T1 = pr.T1;
  work.resize(4 * L * K + 2 * L);
  double* counts = work.data();
  double* q = counts + L * K;
  double* tail = q + L * K;
  double* fresh = tail + L * K;
  double* total = fresh + L * K;
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
  auto tails = [&](double* rows) {  // tail rows (L, K) of the probability rows in q
    for (int64_t l = 0; l < L; ++l) {
      double acc = 0;
      for (int64_t k = K - 1; k >= 0; --k) {
        acc += rows[l * K + k];
        tail[l * K + k] = acc;
      }
    }
  };
  auto record = [&](int64_t t) {
    for (int64_t l = 0; l < L; ++l) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double e = counts[l * K + k] / total[l] - pr.p[k];
        s += e * e;
      }
      out[l * T1 + t] = (T)s;
    }
  };
  for (int64_t l = 0; l < L; ++l) {
    std::copy(pr.p, pr.p + K, q + l * K);
    size[l] = total[l] = n[l][0];
  }
  tails(q);
  multinomial_group(rng, size, q, tail, K, L, counts);
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
      const double a = alpha[l][t];
      for (int64_t k = 0; k < K; ++k) q[l * K + k] = a * pr.p[k] + (1 - a) * counts[l * K + k] / total[l];
    }
    tails(q);
    if (pr.regime == 1) {
      multinomial_group(rng, size, q, tail, K, L, fresh);
      for (int64_t i = 0; i < L * K; ++i) counts[i] += fresh[i];
      for (int64_t l = 0; l < L; ++l) total[l] += size[l];
    } else {
      multinomial_group(rng, size, q, tail, K, L, counts);
      for (int64_t l = 0; l < L; ++l) total[l] = size[l];
    }
    record(t);
  }
}

// work(begin, end) over [0, count) split into contiguous ranges, one per thread.
template <typename F>
void parallel_for(int64_t count, int64_t num_threads, F&& work) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(num_threads, count));
  if (threads == 1) {
    work(int64_t(0), count);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t chunk = (count + threads - 1) / threads;
  for (int64_t t = 0; t < threads; ++t) {
    const int64_t b = t * chunk, e = std::min(count, b + chunk);
    if (b < e) pool.emplace_back(work, b, e);
  }
  for (auto& th : pool) th.join();
}

template <ffi::DataType DT>
ffi::Error MultinomialRiskImpl(ffi::Buffer<DT> p, ffi::Buffer<DT> alpha, ffi::Buffer<DT> n, ffi::Buffer<DT> kappa,
                               ffi::Buffer<ffi::U32> seeds, ffi::ResultBuffer<DT> loss, int64_t regime,
                               int64_t num_threads) {
  using T = ffi::NativeType<DT>;
  auto ad = alpha.dimensions();
  auto sd = seeds.dimensions();
  if (p.dimensions().size() != 1 || ad.size() != 2 || sd.size() != 2 || sd[1] != 2)
    return ffi::Error::InvalidArgument("multinomial_risk: expected p (K,), schedules (G, T1), seeds (R, 2)");
  if (n.element_count() != alpha.element_count() || kappa.element_count() != alpha.element_count())
    return ffi::Error::InvalidArgument("multinomial_risk: schedules disagree in shape");
  if (regime < 0 || regime > 2) return ffi::Error::InvalidArgument("multinomial_risk: regime must be 0, 1 or 2");
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
  auto work = [&](int64_t begin, int64_t end) {
    std::vector<double> scratch;
    for (int64_t l = begin; l < end; l += kGroup)
      run_group<T>(pr, l, std::min(kGroup, end - l), out + l * T1, scratch);
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
    std::vector<double> rows(3 * kWidth * K);
    double* qr = rows.data();
    double* tail = qr + kWidth * K;
    double* o = tail + kWidth * K;
    for (int64_t r0 = begin; r0 < end; r0 += kWidth) {
      const int64_t L = std::min<int64_t>(kWidth, end - r0);
      Rng rng[kWidth] = {};
      double size[kWidth];
      for (int64_t l = 0; l < L; ++l) {
        const int64_t r = r0 + l;
        double acc = 0;
        for (int64_t k = K - 1; k >= 0; --k) {
          qr[l * K + k] = (double)q_d[r * K + k];
          acc += qr[l * K + k];
          tail[l * K + k] = acc;
        }
        rng[l].s = ((uint64_t)s_d[2 * r] << 32) | (uint64_t)s_d[2 * r + 1];
        size[l] = (double)n_d[r];
      }
      multinomial_group(rng, size, qr, tail, K, L, o);
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
