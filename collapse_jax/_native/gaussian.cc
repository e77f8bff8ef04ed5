// Native CPU kernel for the Gaussian recursion (seed 003 App. C.2, seed 004): whole runs, every generation of every
// replicate and every schedule of a grid, in one call.
//
// Same model and the same exact laws as collapse_jax/gaussian.py's JAX path, simulated through sufficient
// statistics: the truth is N(0, 1) (gaussian.simulate maps results back to any mu, sigma); at generation t the real
// count is Binomial(n_t, alpha_t) (exact: inversion below mean 10, BTRS above); a group of N draws from N(m, v) has
// mean ~ N(m, v / N) and sum of squared deviations ~ v chi2_{N-1}, independent (chi2 exact: z^2 for one degree of
// freedom, else 2 Gamma(df / 2) by Marsaglia and Tsang's method); groups, and for accumulate all generations so far,
// are pooled exactly (Chan et al.'s update). The fit is the sample mean and the unbiased variance.
//
// Why native: the JAX path spends its time in Threefry (about 17 ns a word on a CPU under vmap) and in drawing both
// groups every generation; here each replicate runs its own loop on a SplitMix64 stream seeded from its JAX key and
// draws only the groups that are not empty: a replicate-generation of pure synthetic data costs two ziggurat normals,
// one uniform and a few arithmetic operations (docs/benchmarks.md).
//
// Buffers:
//   alpha  (G, T1)        real-data weight per generation (alpha_0 is ignored: generation 0 is real).
//   n      (G, T1)        sample sizes (whole numbers >= 2, as floating point).
//   seeds  (R, 2)         uint32 seed words per replicate; a replicate uses the same stream for every schedule g
//                         (common random numbers across the grid).
// Result:
//   out    (G, R, T1)     the loss (mu_hat)^2 + (sigma_hat - 1)^2, or with record = 1
//          (G, R, T1, 2)  the fit (mu_hat, sigma_hat^2).
// Attributes: regime (0 replace, 1 accumulate), record (0 loss, 1 fit), num_threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Ziggurat of Marsaglia and Tsang (2000) for the standard normal, 256 layers of equal area v beneath f(x) =
// exp(-x^2 / 2), the base layer's tail beyond r by their exponential method; layer i's right edge x_i = w[i] 2^52,
// k[i] the share of it under the next layer up (taken at once), f[i] = f(x_i). Built once at load.
struct Ziggurat {
  static constexpr double r = 3.6541528853610088, v = 4.92867323399e-3, m = 4503599627370496.0;  // 2^52
  uint64_t k[256];
  double w[256], f[256];
  Ziggurat() {
    double dn = r, tn = dn;
    const double q = v / std::exp(-0.5 * dn * dn);
    k[0] = (uint64_t)(dn / q * m);
    k[1] = 0;
    w[0] = q / m;
    w[255] = dn / m;
    f[0] = 1.0;
    f[255] = std::exp(-0.5 * dn * dn);
    for (int i = 254; i >= 1; --i) {
      dn = std::sqrt(-2.0 * std::log(v / dn + std::exp(-0.5 * dn * dn)));
      k[i + 1] = (uint64_t)(dn / tn * m);
      tn = dn;
      f[i] = std::exp(-0.5 * dn * dn);
      w[i] = dn / m;
    }
  }
};
const Ziggurat kZig;

// A replicate's stream (common.h) with standard normals by the ziggurat: one 64-bit word and a table lookup for 99 %
// of draws.
struct Stream : SplitMix64 {
  // The first word's draw inline (99 % of draws), the rest out of line. The sign is set on the bits: a select of
  // -1.0 or 1.0 on a random bit compiled to a branch that missed half the time (6.4 -> 2.4 ns a normal, the same
  // numbers; docs/benchmarks.md).
  inline double normal() {
    const uint64_t bits = next();
    const int i = (int)(bits & 0xff);
    const uint64_t u = bits >> 12;  // 52 bits; bit 8 the sign
    if (__builtin_expect(u < kZig.k[i], 1)) return with_sign((double)u * kZig.w[i], bits);
    return normal_rest(bits);
  }
  static inline double with_sign(double x, uint64_t bits) {  // -x where bit 8 of bits is set
    uint64_t b;
    std::memcpy(&b, &x, sizeof b);
    b ^= (bits & 0x100) << 55;
    std::memcpy(&x, &b, sizeof b);
    return x;
  }
  __attribute__((noinline)) double normal_rest(uint64_t bits) {
    for (;;) {
      const int i = (int)(bits & 0xff);
      const uint64_t u = bits >> 12;
      const double x = with_sign((double)u * kZig.w[i], bits);
      if (u < kZig.k[i]) return x;
      if (i == 0) {  // the tail beyond r
        double a, b;
        do {
          a = -std::log(open_uniform()) / Ziggurat::r;
          b = -std::log(open_uniform());
        } while (b + b < a * a);
        return with_sign(Ziggurat::r + a, bits);
      }
      if (kZig.f[i] + open_uniform() * (kZig.f[i - 1] - kZig.f[i]) < std::exp(-0.5 * x * x)) return x;
      bits = next();
    }
  }
};

// h(y) = 3 (log1p(y) - y + y^2 / 2) - y^3, Marsaglia-Tsang's log acceptance over d at y = c x > -1; its series
// sum_{k >= 4} 3 (-1)^(k+1) y^k / k to k = 9 for |y| < 0.1, where the direct form cancels (d = 5e11 at n = 10^12).
inline double mt_exponent(double y) {
  if (std::fabs(y) < 0.1)
    return y * y * y * y * (-3.0 / 4 + y * (3.0 / 5 + y * (-1.0 / 2 + y * (3.0 / 7 + y * (-3.0 / 8 + y / 3.0)))));
  return 3.0 * (std::log1p(y) - y + 0.5 * y * y) - y * y * y;
}

// One exact chi2_df draw for a whole number df >= 0: 0, z^2 for df = 1, else 2 Gamma(df / 2) by Marsaglia and Tsang
// (2000), with their squeeze u < 1 - 0.0331 x^4 before the logarithm.
inline double chi_square(Stream& rng, double df) {
  if (df < 1.0) return 0.0;
  if (df < 2.0) {
    const double z = rng.normal();
    return z * z;
  }
  const double d = 0.5 * df - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = rng.normal();
    const double y = c * x;
    if (y <= -1.0) continue;
    const double u = rng.open_uniform();
    const double x2 = x * x;
    const double v = (1.0 + y) * (1.0 + y) * (1.0 + y);
    if (u < 1.0 - 0.0331 * x2 * x2 || std::log(u) < d * mt_exponent(y)) return 2.0 * d * v;
  }
}

// Sequential-search inversion of Binomial(n, p), p <= 1/2, from the uniform u: the first k at which u <= cdf(k), the
// walk also ending at k = n or where the pmf underflows to 0. The pmf by its ratio recursion from f(0) = q^n; the
// walk resumes from (k, f, cdf).
inline double inversion_walk(double n, double ratio, double u, double k, double f, double cdf) {
  while (u > cdf && k < n && f > 0.0) {
    f *= (n - k) / (k + 1.0) * ratio;
    k += 1.0;
    cdf += f;
  }
  return k;
}

// The cdf that inversion_walk forms for one (n, p), kept: the replicates of a schedule row draw Binomial(n_t, alpha_t)
// with the same n_t, alpha_t, and the walk's divisions were two thirds of a generation with fresh data. A draw then
// scans the kept numbers, which are the walk's very numbers (the same operations in the same order): the same draws.
struct InversionTable {
  static constexpr size_t kMax = 1024;  // entries kept; a walk beyond them goes on from the last (never seen)
  double n = -1.0, p = -1.0, ratio = 0.0, f_last = 0.0;
  bool ends = false;  // the walk ends at the last entry whatever u (k = n, the pmf 0, or cdf >= the largest u)
  std::vector<double> cdf;

  void build(double n_, double p_) {
    n = n_, p = p_, ratio = p / (1.0 - p);
    cdf.clear();
    double k = 0.0, f = std::exp(n * std::log1p(-p)), c = f;
    for (;;) {
      cdf.push_back(c);
      ends = !(k < n && f > 0.0) || c >= SplitMix64::kBelowOne;
      if (ends || cdf.size() == kMax) break;
      f *= (n - k) / (k + 1.0) * ratio;
      k += 1.0;
      c += f;
    }
    f_last = f;
  }
  double draw(double n_, double p_, double u) {
    if (n_ != n || p_ != p) build(n_, p_);
    size_t j = 0;  // the first cdf(k) >= u, from k = 0 up as the walk goes (a binary search missed more branches)
    while (j < cdf.size() && cdf[j] < u) ++j;
    if (j < cdf.size()) return (double)j;
    const double last = (double)(cdf.size() - 1);
    return ends ? last : inversion_walk(n, ratio, u, last, f_last, cdf.back());
  }
};

// Exact Binomial(n, p) for whole n >= 0, p in [0, 1]: n - Binomial(n, 1 - p) for p > 1/2; sequential-search
// inversion below mean 10 (through `table` where given); else BTRS (Hoermann 1993) with the bound log f(k) - log f(m)
// in multinomial.py's btrs_log_ratio form (every difference of logs a log1p of a small ratio: accurate for n up to
// 2^53).
double binomial(Stream& rng, double n, double p, InversionTable* table = nullptr) {
  if (n <= 0.0 || p <= 0.0) return 0.0;
  if (p >= 1.0) return n;
  if (p > 0.5) return n - binomial(rng, n, 1.0 - p, table);
  const double q = 1.0 - p;
  if (n * p < 10.0) {
    const double u = rng.open_uniform();
    if (table != nullptr) return table->draw(n, p, u);
    const double f = std::exp(n * std::log1p(-p));
    return inversion_walk(n, p / q, u, 0.0, f, f);
  }
  const double spq = std::sqrt(n * p * q);
  const double b = 1.15 + 2.53 * spq, a = -0.0873 + 0.0248 * b + 0.01 * p, c = n * p + 0.5;
  const double v_r = 0.92 - 4.2 / b, alpha = (2.83 + 5.1 / b) * spq, r = p / q;
  const double m = std::floor((n + 1.0) * p), tail_m = stirling_tail(m) + stirling_tail(n - m);
  for (;;) {
    const double u = rng.open_uniform() - 0.5, v = rng.open_uniform();
    const double us = 0.5 - std::fabs(u);
    const double k = std::floor((2.0 * a / us + b) * u + c);
    if (k < 0.0 || k > n) continue;
    if (us >= 0.07 && v <= v_r) return k;
    const double d = k - m;
    const double bound = -(m + 0.5) * std::log1p(d / (m + 1.0)) + (n - m + 0.5) * std::log1p(d / (n - k + 1.0)) +
                         d * std::log(r * (n - k + 1.0) / (k + 1.0)) + tail_m - stirling_tail(k) -
                         stirling_tail(n - k);
    if (std::log(v * alpha / (a / (us * us) + b)) <= bound) return k;
  }
}

// Sufficient statistics of a group of draws: size N, mean, sum of squared deviations.
struct Group {
  double size = 0.0, mean = 0.0, ss = 0.0;
};

// `size` draws from N(mean, var): mean ~ N(mean, var / size), ss ~ var chi2_{size - 1}; nothing drawn when empty.
inline Group draw_group(Stream& rng, double size, double mean, double var) {
  if (size <= 0.0) return Group{};
  const double m = mean + std::sqrt(var / size) * rng.normal();
  return Group{size, m, var * chi_square(rng, size - 1.0)};
}

inline Group pool(const Group& a, const Group& b) {  // Chan et al.'s update
  const double n = a.size + b.size;
  if (n <= 0.0) return Group{};
  const double delta = b.mean - a.mean;
  return Group{n, a.mean + delta * b.size / n, a.ss + b.ss + delta * delta * a.size * b.size / n};
}

template <typename T>
inline void record(const Group& g, int64_t what, T* out) {
  const double var = g.ss / (g.size - 1.0);
  if (what == 1) {
    out[0] = (T)g.mean;
    out[1] = (T)var;
  } else {
    const double s = std::sqrt(var) - 1.0;
    out[0] = (T)(g.mean * g.mean + s * s);
  }
}

// kBlock replicates under one schedule, generation by generation: each generation's draws are independent across the
// block, so the core overlaps their dependency chains (normal -> chi-square -> fit -> next generation); one replicate
// at a time ran them one after another. Replicate l's records go to out + l * stride, T1 of them (each one number,
// or two for the fit).
constexpr int kBlock = 8;

template <typename T>
void run_block(Stream* rng, int64_t lanes, const double* alpha, const double* n, int64_t T1, int64_t regime,
               int64_t what, T* out, int64_t stride, std::vector<InversionTable>& tables) {
  const int64_t width = what == 1 ? 2 : 1;
  Group data[kBlock];
  for (int64_t l = 0; l < lanes; ++l) {
    data[l] = draw_group(rng[l], n[0], 0.0, 1.0);
    record(data[l], what, out + l * stride);
  }
  for (int64_t t = 1; t < T1; ++t) {
    for (int64_t l = 0; l < lanes; ++l) {
      const double mean = data[l].mean, var = data[l].ss / (data[l].size - 1.0);
      const double n_real = binomial(rng[l], n[t], alpha[t], &tables[t % tables.size()]);
      const Group real = draw_group(rng[l], n_real, 0.0, 1.0);
      const Group fresh = pool(real, draw_group(rng[l], n[t] - n_real, mean, var));
      data[l] = regime == 1 ? pool(data[l], fresh) : fresh;
      record(data[l], what, out + l * stride + t * width);
    }
  }
}

template <ffi::DataType DT>
ffi::Error GaussianRiskImpl(ffi::Buffer<DT> alpha, ffi::Buffer<DT> n, ffi::Buffer<ffi::U32> seeds,
                            ffi::ResultBuffer<DT> out, int64_t regime, int64_t what, int64_t num_threads) {
  using T = ffi::NativeType<DT>;
  auto ad = alpha.dimensions();
  auto sd = seeds.dimensions();
  if (ad.size() != 2 || sd.size() != 2 || sd[1] != 2 || n.element_count() != alpha.element_count())
    return ffi::Error::InvalidArgument("gaussian_risk: expected alpha and n (G, T1), seeds (R, 2)");
  if (regime < 0 || regime > 1) return ffi::Error::InvalidArgument("gaussian_risk: regime must be 0 or 1");
  if (what < 0 || what > 1) return ffi::Error::InvalidArgument("gaussian_risk: record must be 0 or 1");
  const int64_t G = ad[0], T1 = ad[1], R = sd[0], width = what == 1 ? 2 : 1;
  if (T1 < 1) return ffi::Error::InvalidArgument("gaussian_risk: need T1 >= 1");
  if (out->element_count() != G * R * T1 * width)
    return ffi::Error::InvalidArgument("gaussian_risk: the result has the wrong size");
  // Inputs in double whatever T: sizes beyond 2^24 stay exact and the arithmetic is float64.
  std::vector<double> al(alpha.typed_data(), alpha.typed_data() + G * T1);
  std::vector<double> nd(n.typed_data(), n.typed_data() + G * T1);
  // Checked here too, for callers under jit or vmap (gaussian.batched_native checks concrete inputs first): a NaN
  // alpha made the binomial's rejection loop run forever, beyond the reach of Ctrl-C (a user trial, 2026-12-06).
  for (int64_t i = 0; i < G * T1; ++i) {
    if (!(al[i] >= 0.0 && al[i] <= 1.0))
      return ffi::Error::InvalidArgument("gaussian_risk: every alpha must lie in [0, 1]");
    if (!(nd[i] >= 2.0 && nd[i] <= 9007199254740992.0 && nd[i] == std::floor(nd[i])))
      return ffi::Error::InvalidArgument("gaussian_risk: every n must be a whole number in [2, 2^53]");
  }
  const uint32_t* s = seeds.typed_data();
  T* o = out->typed_data();
  const int64_t blocks_per_row = (R + kBlock - 1) / kBlock;  // a block never straddles two schedules
  parallel_for(G * blocks_per_row, num_threads, [&](int64_t begin, int64_t end) {
    std::vector<InversionTable> tables((size_t)std::min<int64_t>(T1, 4096));  // one per generation (t mod 4096)
    for (int64_t b = begin; b < end; ++b) {
      const int64_t g = b / blocks_per_row, r0 = (b % blocks_per_row) * kBlock;
      const int64_t lanes = std::min<int64_t>(kBlock, R - r0);
      Stream rng[kBlock];
      for (int64_t l = 0; l < lanes; ++l)
        rng[l].s = ((uint64_t)s[2 * (r0 + l)] << 32) | (uint64_t)s[2 * (r0 + l) + 1];
      run_block<T>(rng, lanes, al.data() + g * T1, nd.data() + g * T1, T1, regime, what,
                   o + (g * R + r0) * T1 * width, T1 * width, tables);
    }
  });
  return ffi::Error::Success();
}

}  // namespace

#define DEFINE_GAUSSIAN_HANDLER(NAME, DT)                          \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, GaussianRiskImpl<DT>,        \
                                ffi::Ffi::Bind()                   \
                                    .Arg<ffi::Buffer<DT>>()        \
                                    .Arg<ffi::Buffer<DT>>()        \
                                    .Arg<ffi::Buffer<ffi::U32>>()  \
                                    .Ret<ffi::Buffer<DT>>()        \
                                    .Attr<int64_t>("regime")       \
                                    .Attr<int64_t>("record")       \
                                    .Attr<int64_t>("num_threads"));

DEFINE_GAUSSIAN_HANDLER(GaussianRiskF32, ffi::F32)
DEFINE_GAUSSIAN_HANDLER(GaussianRiskF64, ffi::F64)

// For tests: `count` draws into out from the stream seeded with `seed`: kind 0 standard normals, 1 chi2_a, 2
// Binomial(a, b), each by the sampler the kernel uses; 3 Binomial(a, b) through an InversionTable (the same draws
// as kind 2).
extern "C" void collapse_jax_gaussian_draws(int kind, double a, double b, int64_t count, uint64_t seed, double* out) {
  Stream rng;
  rng.s = seed;
  InversionTable table;
  for (int64_t i = 0; i < count; ++i)
    out[i] = kind == 0   ? rng.normal()
             : kind == 1 ? chi_square(rng, a)
                         : binomial(rng, a, b, kind == 3 ? &table : nullptr);
}
