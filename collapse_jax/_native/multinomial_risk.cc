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

// Binomial(n, p) for p <= 1/2 and n p >= 10: BTRS. The bound log f(k) - log f(m) is a sum of log ratios plus
// Stirling tails (accurate for n up to 2^53); it is evaluated only when the squeeze does not accept.
inline double binomial_btrs(Rng& rng, double n, double p) {
  const double q = 1 - p;
  const double spq = std::sqrt(n * p * q);
  const double b = 1.15 + 2.53 * spq;
  const double a = -0.0873 + 0.0248 * b + 0.01 * p;
  const double c = n * p + 0.5;
  const double v_r = 0.92 - 4.2 / b;
  bool have_bound = false;
  double alpha = 0, r = 0, m = 0, lead = 0;
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
      lead = (m + 0.5) * std::log((m + 1) / (r * (n - m + 1))) + stirling_tail(m) + stirling_tail(n - m);
      have_bound = true;
    }
    const double lv = std::log(v * alpha / (a / (us * us) + b));
    const double bound = lead + (n + 1) * std::log((n - m + 1) / (n - k + 1)) +
                         (k + 0.5) * std::log(r * (n - k + 1) / (k + 1)) - stirling_tail(k) -
                         stirling_tail(n - k);
    if (lv <= bound) return k;
  }
}

inline double binomial(Rng& rng, double n, double p) {
  if (n <= 0 || p <= 0) return 0;
  if (p >= 1) return n;
  const bool flip = p > 0.5;
  const double pp = flip ? 1 - p : p;
  const double x = n * pp < 10 ? binomial_inversion(rng, n, pp) : binomial_btrs(rng, n, pp);
  return flip ? n - x : x;
}

// Exact Multinomial(size_l, q_l) counts for a group of L independent lanes, by conditional binomials: category k
// gets Binomial(remaining count, q_k / tail_k), tail_k = q_k + ... + q_{K-1}. Rows of q, tail, out are (L, K).
// The lanes advance together, category by category: a lane's binomials form a dependent chain (each one's count
// depends on the previous one's), bound by latency; interleaving independent lanes lets the CPU overlap them.
inline void multinomial_group(Rng* rng, const double* size, const double* q, const double* tail, int64_t K,
                              int64_t L, double* out, double* left) {
  for (int64_t l = 0; l < L; ++l) left[l] = size[l];
  for (int64_t k = 0; k < K - 1; ++k) {
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
      const double x = binomial(rng[l], left[l], ratio);
      ol[k] = x;
      left[l] -= x;
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

constexpr int64_t kGroup = 8;  // lanes interleaved per group

// Lanes first..first+L-1 (lane = g R + r), whole runs; out rows are (L, T1).
template <typename T>
void run_group(const Problem& pr, int64_t first, int64_t L, T* out, std::vector<double>& work) {
  const int64_t K = pr.K, T1 = pr.T1;
  work.resize(4 * L * K + 3 * L);
  double* counts = work.data();
  double* q = counts + L * K;
  double* tail = q + L * K;
  double* fresh = tail + L * K;
  double* total = fresh + L * K;
  double* size = total + L;
  double* left = size + L;
  Rng rng[kGroup];
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
  multinomial_group(rng, size, q, tail, K, L, counts, left);
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
      multinomial_group(rng, size, q, tail, K, L, fresh, left);
      for (int64_t i = 0; i < L * K; ++i) counts[i] += fresh[i];
      for (int64_t l = 0; l < L; ++l) total[l] += size[l];
    } else {
      multinomial_group(rng, size, q, tail, K, L, counts, left);
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
    std::vector<double> row(3 * K);
    double left;
    for (int64_t r = begin; r < end; ++r) {
      double* qr = row.data();
      double* tail = qr + K;
      double* o = tail + K;
      double acc = 0;
      for (int64_t k = K - 1; k >= 0; --k) {
        qr[k] = (double)q_d[r * K + k];
        acc += qr[k];
        tail[k] = acc;
      }
      Rng rng{((uint64_t)s_d[2 * r] << 32) | (uint64_t)s_d[2 * r + 1]};
      const double size = (double)n_d[r];
      multinomial_group(&rng, &size, qr, tail, K, 1, o, &left);
      for (int64_t k = 0; k < K; ++k) out[r * K + k] = (T)o[k];
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
