// Native CPU kernels for the Sigma estimators (collapse_jax/spectral.py, collapse_jax/sigma_precision.py).
//
// 1. Batched Cholesky log-det, float64: L_eps(M) = 2 sum log diag chol(M + eps I) for a stack of (d, d) matrices,
//    one matrix per thread at a time (a blocked right-looking Cholesky whose trailing update is a register-blocked
//    AVX-512 or AVX2 kernel). Registered with jax.ffi as "collapse_jax_batched_logdet" (spectral.batched_logdet).
//    Why native: XLA:CPU's batched Cholesky calls LAPACK once per matrix through a multithreaded BLAS; on the shared
//    2-core machine that ran 2-29 ms per d = 384 matrix, depending on the load, against 0.4-0.6 ms here
//    (docs/benchmarks.md).
//
// 2. Block statistics for the precision sweep (cj_block_stats, called through ctypes): for each random block (rows
//    of a float32 population, in chain order) and each prefix size n_k: log det G_1(n_k) and the in-sample
//    mean(M_i^2), M_i = n x_i^T G_1^{-1} x_i, and the mean and variance of log(1 - h_i), h_i = M_i / n (the
//    leave-one-out log-det steps of the leverage-jackknife interval, spectral.jackknife_interval). The two O(n d^2)
//    products (Gram accumulation, and the Mahalanobis rows y_i = L^{-1} x_i with the explicit inverse factor) run
//    on Intel AMX tiles: every float32 operand is split
//    into bfloat16 hi + lo (x = hi + lo + r, |r| <= 2^-18 |x|) and the products hi*hi, hi*lo, lo*hi (and lo*lo where
//    it is systematic: the Gram's diagonal tiles) are accumulated in float32 and flushed to float64 every chunk of
//    rows. The first segment (n_1 ~ d rows, the worst-conditioned Gram) is accumulated in float64; Cholesky, inverse
//    and log-det are float64. The sweep feeds the population whitened by its own Gram (sigma_precision.whiten), so
//    no block is ill-conditioned beyond the Wishart's own spread. Measured against a float64 reference on whitened
//    rows (d = 8..384): |error of log det G_1| <= 6e-5, relative error of Var(M_i) <= 3.3e-4 (tests/test_spectral.py).
//    Also the leverage jackknife's second- and third-pass statistics (pair_and_row_stats: sampled row pairs, the
//    weighted Gram W^T diag(1/(1 - h)) W and the row sums, both products on the tiles) and, for prefixes of at most
//    1.5 d rows, where leverages near 1 magnify the bfloat16 split's error, the Gram rows and the whitening in
//    float64. Without AMX (other CPUs) the caller uses the NumPy engine instead; the tests run this kernel on
//    emulated tiles (CJ_AMX_EMULATE, below) where the CPU has none.
//
// Layout: row-major everywhere. Matrices are lower-triangular in their lower part; upper parts are scratch.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__AVX512F__)
#include <immintrin.h>
#elif defined(__AVX2__) && defined(__FMA__)
// AVX2-only CPUs (x86-64-v3: AMD Zen 1-3, Intel before Skylake-SP, and any build for that target): the dense
// kernels' register tile is 4 rows x 8 columns of float64 (8 of the 16 ymm registers accumulate; the AVX-512 tile
// is 8 x 16 in 16 of 32 zmm registers). Without it the trailing update of the Cholesky was plain loops: the batched
// log-det ran at ~6 GF/s a core on a Zen 3 EPYC, no faster than NumPy's slogdet (docs/benchmarks.md).
#define CJ_AVX2_TILE 1
#include <immintrin.h>
#endif

#if defined(CJ_AMX_EMULATE) && defined(__AVX512BF16__) && defined(__AVX512BW__) && defined(__linux__)
// Test build (collapse_jax._native.emulated_amx_library): the AMX kernel below, unchanged, with its tile
// instructions carried out in software, so that its tests run on any CPU with AVX-512 BF16 (AMX is only on Intel
// Sapphire Rapids and later). Semantics of the instructions used here (Intel SDM): palette 1, eight tiles of up to
// 16 rows x 64 bytes; TDPBF16PS adds to each float32 C[m][n] the products of the bfloat16 pairs A[m][2k, 2k + 1]
// and B[k][2n, 2n + 1] in that order (bfloat16 products are exact in float32; the hardware also flushes denormals,
// which never occur in these tests). Slow (scalar): small blocks only.
#define CJ_HAVE_AMX 1
#define CJ_AMX_EMULATED 1
#undef _tile_loadconfig
#undef _tile_release
#undef _tile_zero
#undef _tile_loadd
#undef _tile_stored
#undef _tile_dpbf16ps
namespace cj_amx_emulation {
struct Tile {
  int rows = 0, colsb = 0;
  alignas(64) unsigned char data[16 * 64];
};
thread_local Tile g_tiles[8];
inline void load_config(const void* config) {
  const unsigned char* c = static_cast<const unsigned char*>(config);
  for (int t = 0; t < 8; ++t) {
    g_tiles[t].colsb = c[16 + 2 * t] | (c[17 + 2 * t] << 8);
    g_tiles[t].rows = c[48 + t];
  }
}
inline void zero(int t) { std::memset(g_tiles[t].data, 0, sizeof(g_tiles[t].data)); }
inline void load(int t, const void* base, long stride) {
  for (int r = 0; r < g_tiles[t].rows; ++r)
    std::memcpy(g_tiles[t].data + r * 64, static_cast<const unsigned char*>(base) + r * stride, g_tiles[t].colsb);
}
inline void store(int t, void* base, long stride) {
  for (int r = 0; r < g_tiles[t].rows; ++r)
    std::memcpy(static_cast<unsigned char*>(base) + r * stride, g_tiles[t].data + r * 64, g_tiles[t].colsb);
}
inline float bf16(const unsigned char* p) {
  const uint32_t bits = static_cast<uint32_t>(p[0] | (p[1] << 8)) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}
inline void dpbf16ps(int tc, int ta, int tb) {
  Tile &c = g_tiles[tc], &a = g_tiles[ta], &b = g_tiles[tb];
  const int pairs = a.colsb / 4, cols = c.colsb / 4;
  for (int m = 0; m < c.rows; ++m) {
    for (int n = 0; n < cols; ++n) {
      float acc;
      std::memcpy(&acc, c.data + m * 64 + 4 * n, 4);
      for (int k = 0; k < pairs; ++k) {
        acc += bf16(a.data + m * 64 + 4 * k) * bf16(b.data + k * 64 + 4 * n);
        acc += bf16(a.data + m * 64 + 4 * k + 2) * bf16(b.data + k * 64 + 4 * n + 2);
      }
      std::memcpy(c.data + m * 64 + 4 * n, &acc, 4);
    }
  }
}
}  // namespace cj_amx_emulation
#define _tile_loadconfig(config) cj_amx_emulation::load_config(config)
#define _tile_release() ((void)0)
#define _tile_zero(t) cj_amx_emulation::zero(t)
#define _tile_loadd(t, base, stride) cj_amx_emulation::load(t, base, stride)
#define _tile_stored(t, base, stride) cj_amx_emulation::store(t, base, stride)
#define _tile_dpbf16ps(c, a, b) cj_amx_emulation::dpbf16ps(c, a, b)
#elif defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__) && defined(__AVX512BW__) && \
    defined(__linux__)
#define CJ_HAVE_AMX 1
#else
#define CJ_HAVE_AMX 0
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// ------------------------------------------------------------------------------------------------------------------
// Dense float64 kernels: acc(R x 16) = sum_p a[r][p] * b[p][0..15]
// ------------------------------------------------------------------------------------------------------------------

#if defined(CJ_AVX2_TILE)
// out[r][0..8) = sum_{p<k} a[r*lda + p] * b[p*ldb + 0..8), for r < R (R <= 4): the AVX2 register tile.
template <int R>
inline void tile_x8(const double* a, int64_t lda, const double* b, int64_t ldb, int64_t k, double* out,
                    int64_t ldo) {
  __m256d acc0[R], acc1[R];
  for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_pd();
  for (int64_t p = 0; p < k; ++p) {
    const __m256d b0 = _mm256_loadu_pd(b + p * ldb);
    const __m256d b1 = _mm256_loadu_pd(b + p * ldb + 4);
    for (int r = 0; r < R; ++r) {
      const __m256d av = _mm256_broadcast_sd(a + r * lda + p);
      acc0[r] = _mm256_fmadd_pd(av, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_pd(av, b1, acc1[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_pd(out + r * ldo, acc0[r]);
    _mm256_storeu_pd(out + r * ldo + 4, acc1[r]);
  }
}
#endif

// out[r][0..w) = sum_{p<k} a[r*lda + p] * b[p*ldb + 0..w), for r < R (R <= 8), w <= 16.
template <int R>
inline void panel_kernel(const double* a, int64_t lda, const double* b, int64_t ldb, int64_t k, double* out,
                         int64_t ldo, int64_t w) {
#if defined(__AVX512F__)
  if (w == 16) {
    __m512d acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm512_setzero_pd();
    for (int64_t p = 0; p < k; ++p) {
      const __m512d b0 = _mm512_loadu_pd(b + p * ldb);
      const __m512d b1 = _mm512_loadu_pd(b + p * ldb + 8);
      for (int r = 0; r < R; ++r) {
        const __m512d av = _mm512_set1_pd(a[r * lda + p]);
        acc0[r] = _mm512_fmadd_pd(av, b0, acc0[r]);
        acc1[r] = _mm512_fmadd_pd(av, b1, acc1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_pd(out + r * ldo, acc0[r]);
      _mm512_storeu_pd(out + r * ldo + 8, acc1[r]);
    }
    return;
  }
#elif defined(CJ_AVX2_TILE)
  if (w == 16 || w == 8) {  // the blocks' full and half widths; other edges take the loops below
    constexpr int kRows = R < 4 ? R : 4;
    static_assert(R % kRows == 0, "panel_kernel: R must be 1, 2, 4 or 8");
    for (int r0 = 0; r0 < R; r0 += kRows)
      for (int64_t c0 = 0; c0 < w; c0 += 8)
        tile_x8<kRows>(a + r0 * lda, lda, b + c0, ldb, k, out + r0 * ldo + c0, ldo);
    return;
  }
#endif
  for (int r = 0; r < R; ++r) {
    double acc[16] = {0};
    for (int64_t p = 0; p < k; ++p) {
      const double av = a[r * lda + p];
      for (int64_t c = 0; c < w; ++c) acc[c] += av * b[p * ldb + c];
    }
    for (int64_t c = 0; c < w; ++c) out[r * ldo + c] = acc[c];
  }
}

#if defined(__AVX512F__)
// c[r][0..len[r]) -= sum_p a[r*lda + p] * b[p*ldb + 0..16) for r < 8 (len[r] <= 16; masked stores).
inline void sub_kernel_8x16(double* c, int64_t ldc, const double* a, int64_t lda, const double* b, int64_t ldb,
                            int64_t k, const int64_t* len) {
  __m512d acc0[8], acc1[8];
  for (int r = 0; r < 8; ++r) acc0[r] = acc1[r] = _mm512_setzero_pd();
  for (int64_t p = 0; p < k; ++p) {
    const __m512d b0 = _mm512_loadu_pd(b + p * ldb);
    const __m512d b1 = _mm512_loadu_pd(b + p * ldb + 8);
    for (int r = 0; r < 8; ++r) {
      const __m512d av = _mm512_set1_pd(a[r * lda + p]);
      acc0[r] = _mm512_fmadd_pd(av, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_pd(av, b1, acc1[r]);
    }
  }
  for (int r = 0; r < 8; ++r) {
    const int64_t n = len[r] < 0 ? 0 : (len[r] > 16 ? 16 : len[r]);
    const __mmask8 m0 = static_cast<__mmask8>(n >= 8 ? 0xFF : (1u << n) - 1u);
    const __mmask8 m1 = static_cast<__mmask8>(n >= 16 ? 0xFF : (n <= 8 ? 0u : (1u << (n - 8)) - 1u));
    double* row = c + r * ldc;
    _mm512_mask_storeu_pd(row, m0, _mm512_sub_pd(_mm512_maskz_loadu_pd(m0, row), acc0[r]));
    _mm512_mask_storeu_pd(row + 8, m1, _mm512_sub_pd(_mm512_maskz_loadu_pd(m1, row + 8), acc1[r]));
  }
}
#endif

// C[i][j] -= sum_p A[i][p] * B[p][j] for rows i in [i0, i1) and columns j in [j0, min(j1, i + 1)) (lower part),
// with A rows given by (a, lda) and B = packed (k x ldb).
inline void update_lower(double* c, int64_t ldc, const double* a, int64_t lda, const double* b, int64_t ldb,
                         int64_t k, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  double tmp[8 * 16];
  for (int64_t i = i0; i < i1; i += 8) {
    const int64_t rows = std::min<int64_t>(8, i1 - i);
    const int64_t jmax = std::min(j1, i + rows);  // last row of this group reaches column i + rows - 1
    for (int64_t j = j0; j < jmax; j += 16) {
      const int64_t w = std::min<int64_t>(16, jmax - j);
#if defined(__AVX512F__)
      if (rows == 8 && w == 16) {
        int64_t len[8];
        for (int r = 0; r < 8; ++r) len[r] = std::min<int64_t>(16, i + r + 1 - j);
        sub_kernel_8x16(c + i * ldc + j, ldc, a + i * lda, lda, b + j, ldb, k, len);
        continue;
      }
#endif
      if (rows == 8) {
        panel_kernel<8>(a + i * lda, lda, b + j, ldb, k, tmp, 16, w);
      } else {
        for (int64_t r = 0; r < rows; ++r) panel_kernel<1>(a + (i + r) * lda, lda, b + j, ldb, k, tmp + r * 16, 16, w);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t cend = std::min(j + w, i + r + 1);
        for (int64_t cc = j; cc < cend; ++cc) c[(i + r) * ldc + cc] -= tmp[r * 16 + (cc - j)];
      }
    }
  }
}

// out[i][j] = sum_{p in [lo, hi)} a[i*lda + p] * b[p*ldb + j] for i < n, j < m, where (lo, hi) = range(j0, w) for
// the column block [j0, j0 + w) (w <= 16): the triangular factors' zeros are skipped. Register-blocked (8 x 16);
// used for the float64 products of small prefixes (exact_rows), which as one row at a time ran at a few GFLOP/s.
template <typename Range>
void gemm_rows(const double* a, int64_t lda, const double* b, int64_t ldb, int64_t n, int64_t m, double* out,
               int64_t ldo, Range range) {
  double tmp[8 * 16];
  for (int64_t i = 0; i < n; i += 8) {
    const int64_t rows = std::min<int64_t>(8, n - i);
    for (int64_t j = 0; j < m; j += 16) {
      const int64_t w = std::min<int64_t>(16, m - j);
      const auto [lo, hi] = range(j, w);
      if (rows == 8) {
        panel_kernel<8>(a + i * lda + lo, lda, b + lo * ldb + j, ldb, hi - lo, tmp, 16, w);
      } else {
        for (int64_t r = 0; r < rows; ++r)
          panel_kernel<1>(a + (i + r) * lda + lo, lda, b + lo * ldb + j, ldb, hi - lo, tmp + r * 16, 16, w);
      }
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < w; ++c) out[(i + r) * ldo + j + c] = tmp[r * 16 + c];
    }
  }
}

constexpr int64_t kNb = 32;  // Cholesky / inverse block size (16-64 measured; 32 fastest for the Cholesky)

// In-place lower Cholesky of the leading d x d of a (row-major, leading dim lda); work >= kNb * d doubles.
// Returns false if a pivot is not positive (not positive definite, or NaN).
bool cholesky_lower(double* a, int64_t d, int64_t lda, double* work) {
  double inv11[kNb * kNb];
  for (int64_t k0 = 0; k0 < d; k0 += kNb) {
    const int64_t kb = std::min(kNb, d - k0);
    // 1. diagonal block, unblocked
    for (int64_t j = k0; j < k0 + kb; ++j) {
      double s = a[j * lda + j];
      for (int64_t p = k0; p < j; ++p) s -= a[j * lda + p] * a[j * lda + p];
      if (!(s > 0.0)) return false;
      const double ljj = std::sqrt(s);
      a[j * lda + j] = ljj;
      const double inv = 1.0 / ljj;
      for (int64_t i = j + 1; i < k0 + kb; ++i) {
        double t = a[i * lda + j];
        for (int64_t p = k0; p < j; ++p) t -= a[i * lda + p] * a[j * lda + p];
        a[i * lda + j] = t * inv;
      }
    }
    const int64_t rest = d - k0 - kb;
    if (rest == 0) break;
    // 2. inv11 = L11^{-1} (kb x kb lower), stored transposed: inv11T[p][j] = inv(L11)[j][p] (upper)
    for (int64_t j = 0; j < kb; ++j)
      for (int64_t p = 0; p < kb; ++p) inv11[p * kNb + j] = 0.0;
    for (int64_t j = 0; j < kb; ++j) {  // column j of inv(L11): solve L11 x = e_j
      double x[kNb];
      for (int64_t i = 0; i < kb; ++i) {
        double t = (i == j) ? 1.0 : 0.0;
        for (int64_t p = j; p < i; ++p) t -= a[(k0 + i) * lda + k0 + p] * x[p];
        x[i] = (i < j) ? 0.0 : t / a[(k0 + i) * lda + k0 + i];
      }
      for (int64_t i = 0; i < kb; ++i) inv11[j * kNb + i] = x[i];  // inv11T[j][i] = inv(L11)[i][j]
    }
    // 3. panel: L21 = A21 inv(L11)^T; row i: out[j] = sum_p A21[i][p] * inv11T[p][j]
    {
      double tmp[8 * 16];
      for (int64_t i = k0 + kb; i < d; i += 8) {
        const int64_t rows = std::min<int64_t>(8, d - i);
        double res[8 * kNb];
        for (int64_t j = 0; j < kb; j += 16) {
          const int64_t w = std::min<int64_t>(16, kb - j);
          if (rows == 8) {
            panel_kernel<8>(a + i * lda + k0, lda, inv11 + j, kNb, kb, tmp, 16, w);
          } else {
            for (int64_t r = 0; r < rows; ++r)
              panel_kernel<1>(a + (i + r) * lda + k0, lda, inv11 + j, kNb, kb, tmp + r * 16, 16, w);
          }
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < w; ++c) res[r * kNb + j + c] = tmp[r * 16 + c];
        }
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < kb; ++c) a[(i + r) * lda + k0 + c] = res[r * kNb + c];
      }
    }
    // 4. trailing update A22 -= L21 L21^T (lower part): pack P[p][j] = L21[j][p]
    const int64_t t0 = k0 + kb;
    for (int64_t p = 0; p < kb; ++p)
      for (int64_t j = t0; j < d; ++j) work[p * d + j] = a[j * lda + k0 + p];
    update_lower(a, lda, a + k0, lda, work, d, kb, t0, d, t0, d);
  }
  return true;
}

double logdet_from_chol(const double* l, int64_t d, int64_t lda) {
  double s = 0.0;
  for (int64_t i = 0; i < d; ++i) s += std::log(l[i * lda + i]);
  return 2.0 * s;
}

// inv = L^{-1} (lower, d x d, leading dim ldi) from lower L (leading dim lda). Upper part of inv set to 0.
// work >= kNb * d doubles.
void invert_lower(const double* l, int64_t d, int64_t lda, double* inv, int64_t ldi, double* t) {
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j) inv[i * ldi + j] = 0.0;
  double tmp[8 * 16];
  double ib[kNb * kNb];
  for (int64_t i0 = 0; i0 < d; i0 += kNb) {
    const int64_t nb = std::min(kNb, d - i0);
    // ib = inv(L_II) (nb x nb lower)
    for (int64_t j = 0; j < nb; ++j) {
      for (int64_t i = 0; i < nb; ++i) {
        if (i < j) { ib[i * kNb + j] = 0.0; continue; }
        double s = (i == j) ? 1.0 : 0.0;
        for (int64_t p = j; p < i; ++p) s -= l[(i0 + i) * lda + i0 + p] * ib[p * kNb + j];
        ib[i * kNb + j] = s / l[(i0 + i) * lda + i0 + i];
      }
    }
    // T = L[I, 0:i0] * inv[0:i0, 0:i0] (inv lower: column group c needs p >= c only)
    for (int64_t c = 0; c < i0; c += 16) {
      const int64_t w = std::min<int64_t>(16, i0 - c);
      const int64_t kk = i0 - c;
      for (int64_t r0 = 0; r0 < nb; r0 += 8) {
        const int64_t rows = std::min<int64_t>(8, nb - r0);
        if (rows == 8) {
          panel_kernel<8>(l + (i0 + r0) * lda + c, lda, inv + c * ldi + c, ldi, kk, tmp, 16, w);
        } else {
          for (int64_t r = 0; r < rows; ++r)
            panel_kernel<1>(l + (i0 + r0 + r) * lda + c, lda, inv + c * ldi + c, ldi, kk, tmp + r * 16, 16, w);
        }
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t q = 0; q < w; ++q) t[(r0 + r) * d + c + q] = tmp[r * 16 + q];
      }
    }
    // inv[I, 0:i0] = -ib * T ; inv[I, I] = ib
    for (int64_t r = 0; r < nb; ++r) {
      double* row = inv + (i0 + r) * ldi;
      for (int64_t q = 0; q <= r; ++q) {
        const double f = -ib[r * kNb + q];
        const double* trow = t + q * d;
        for (int64_t c = 0; c < i0; ++c) row[c] += f * trow[c];
      }
      for (int64_t q = 0; q <= r; ++q) row[i0 + q] = ib[r * kNb + q];
    }
  }
}

int64_t default_threads(int64_t requested) {
  if (requested > 0) return requested;
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int64_t>(hc) : 1;
}

template <typename F>
void parallel_for(int64_t count, int64_t threads, F&& body) {
  threads = std::max<int64_t>(1, std::min(threads, count));
  if (threads == 1) {
    body(0, 0, count);
    return;
  }
  std::vector<std::thread> pool;
  std::atomic<int64_t> next{0};
  for (int64_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (;;) {
        const int64_t i = next.fetch_add(1);
        if (i >= count) break;
        body(t, i, i + 1);
      }
    });
  }
  for (auto& th : pool) th.join();
}

}  // namespace

// ------------------------------------------------------------------------------------------------------------------
// Batched log-det (jax.ffi)
// ------------------------------------------------------------------------------------------------------------------

static ffi::Error BatchedLogdetImpl(ffi::Buffer<ffi::F64> grams, ffi::ResultBuffer<ffi::F64> out, double eps,
                                    int64_t num_threads) {
  const auto dims = grams.dimensions();
  if (dims.size() < 2 || dims[dims.size() - 1] != dims[dims.size() - 2])
    return ffi::Error::InvalidArgument("batched_logdet: expected (..., d, d)");
  const int64_t d = dims[dims.size() - 1];
  const int64_t count = d == 0 ? 0 : static_cast<int64_t>(grams.element_count()) / (d * d);
  const double* src = grams.typed_data();
  double* dst = out->typed_data();
  const int64_t threads = std::max<int64_t>(1, std::min(default_threads(num_threads), count));
  std::vector<std::vector<double>> mats(threads), works(threads);
  parallel_for(count, threads, [&](int64_t t, int64_t b0, int64_t b1) {
    auto& m = mats[t];
    auto& w = works[t];
    if (m.empty()) {
      m.resize(static_cast<size_t>(d * d));
      w.resize(static_cast<size_t>(kNb * d));
    }
    for (int64_t b = b0; b < b1; ++b) {
      const double* g = src + b * d * d;
      for (int64_t i = 0; i < d; ++i) {
        for (int64_t j = 0; j <= i; ++j) m[i * d + j] = g[i * d + j];
        m[i * d + i] += eps;
      }
      dst[b] = cholesky_lower(m.data(), d, d, w.data()) ? logdet_from_chol(m.data(), d, d)
                                                          : std::numeric_limits<double>::quiet_NaN();
    }
  });
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(BatchedLogdet, BatchedLogdetImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>()
                                  .Attr<double>("eps")
                                  .Attr<int64_t>("num_threads"));

// ------------------------------------------------------------------------------------------------------------------
// AMX block statistics
// ------------------------------------------------------------------------------------------------------------------

#if CJ_HAVE_AMX
namespace {

constexpr int kPairOffsets = 4;  // sampled pairs (i, i + k mod n), k = 1..4: spectral.PAIR_OFFSETS
constexpr int64_t kChunk = 256;  // rows per Gram chunk (multiple of 32): packed operands stay in L2

struct TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {0};
  uint16_t colsb[16] = {0};
  uint8_t rows[16] = {0};
};

void load_tile_config() {
  TileConfig c;
  for (int t = 0; t < 8; ++t) {
    c.rows[t] = 16;
    c.colsb[t] = 64;
  }
  _tile_loadconfig(&c);
}

inline uint16_t bf16_bits_rne(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}


// 16 x 16 transpose of 32-bit words: out[c * ldo + r] = in[r * ldi + c].
inline void transpose16x16_u32(const uint32_t* in, int64_t ldi, uint32_t* out, int64_t ldo) {
  __m512i r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(in + i * ldi);
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  // r[4i + q], 128-bit lane L: rows 4i..4i+3 of input column 4L + q; the lane shuffles gather the four lanes.
  for (int i = 0; i < 2; ++i) {
    for (int q = 0; q < 4; ++q) {
      const __m512i a = r[8 * i + q], b = r[8 * i + 4 + q];
      t[8 * i + q] = _mm512_shuffle_i32x4(a, b, 0x88);      // lanes 0,2 of a, 0,2 of b
      t[8 * i + 4 + q] = _mm512_shuffle_i32x4(a, b, 0xDD);  // lanes 1,3 of a, 1,3 of b
    }
  }
  for (int q = 0; q < 8; ++q) {
    const __m512i a = t[q], b = t[8 + q];
    r[q] = _mm512_shuffle_i32x4(a, b, 0x88);
    r[8 + q] = _mm512_shuffle_i32x4(a, b, 0xDD);
  }
  // after the two lane shuffles r[k] holds input column k
  for (int k = 0; k < 16; ++k) _mm512_storeu_si512(out + k * ldo, r[k]);
}

// Operands are stored tile by tile: every AMX tile (16 rows x 64 bytes) is one contiguous, 64-byte aligned 1 KB
// block, so a tile load reads 16 consecutive cache lines (row-major operands with a 768 or 1536 byte stride, or
// unaligned rows, ran 2.5-3x slower). The block's rows are gathered once, split, with streaming stores; reading
// them from the population at every use instead (random 1.5 KB rows) made the Mahalanobis pass ~1.7x slower.
//   rows  xh, xl : tile (row/16, feature/32): 16 rows x 32 bf16                        (Mahalanobis A operand)
//   Gram  vh, vl : tile (pair/16, feature/16): 16 row pairs x 16 features              (B operand, VNNI pairs of rows)
//         th, tl : tile (feature/16, pair/16), the transpose of the above              (A operand: samples contiguous)
//   inv   ivh, ivl : tile (feature/32, j/16): 16 feature pairs x 16 columns             (B operand, VNNI pairs)
// Arrays of 4 MiB or more (a d = 384 block's rows, whitened rows, weighted rows: 30-60 MB each at n = 100 d) are
// 2 MiB-aligned and asked for transparent huge pages: the passes over them stream through memory, and with 4 KiB pages
// the hardware prefetcher stops at every page (a 1.5 KB row in three); a few per cent of a d = 384 block's time
// (2026-12-04: 0.173 -> 0.163 CPU-s in one run).
constexpr size_t kHugeBytes = size_t{4} << 20, kHugeAlign = size_t{2} << 20;
template <typename T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <typename U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kHugeBytes) return static_cast<T*>(::operator new(bytes, std::align_val_t(64)));
    void* p = ::operator new(bytes, std::align_val_t(kHugeAlign));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, bytes, MADV_HUGEPAGE);  // advice only: without THP (or with it off) the pages stay small
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) {
    ::operator delete(p, std::align_val_t(n * sizeof(T) < kHugeBytes ? 64 : kHugeAlign));
  }
  template <typename U>
  bool operator==(const Aligned64<U>&) const { return true; }
  template <typename U>
  bool operator!=(const Aligned64<U>&) const { return false; }
};
template <typename T>
using avec = std::vector<T, Aligned64<T>>;

struct BlockWorkspace {
  int64_t d = 0, dp = 0;
  avec<uint16_t> xh, xl;            // the block's rows, split, tile (row/16, feature/32): 16 rows x 32 bf16
  avec<uint32_t> vh, vl, th, tl;    // Gram chunk (kChunk rows)
  avec<float> ctile;                // (32, 32) tile store
  avec<double> g, chol, inv, work;  // (dp, dp) float64
  avec<uint32_t> ivh, ivl;
  avec<double> x1, x1t;             // first segment (n_1 rows), float64: (n_1, d) and (d, n_1)
  std::vector<int64_t> order;
  // Second- and third-pass statistics (pairs, row sums): whitened rows y_i = L^{-1} x_i (chain order, n_max x dp),
  // 32 weighted rows sqrt(a_r) y_r split like xh / xl (32 x dp, tile layout), their Gram, per-row results (hrow by
  // padded row, zrow by chain position), chain position -> padded row.
  avec<float> yrows;
  avec<uint16_t> gh, gl;
  avec<double> g2, hrow, zrow;
  avec<double> pair_ring;           // the sampled pairs' rows in float64 (kPairOffsets + 1 rows of dp)
  avec<double> ex_x, ex_y, ex_t, ex_b;  // small prefixes' float64 products: (n, d), (n, d), (d, n), (d, d); n <= 1.5 d
  std::vector<int64_t> chain_pad, pad_chain;  // chain position -> padded row; padded row -> chain position or -1
  std::vector<std::pair<int64_t, int64_t>> sorted;

  void resize(int64_t d_, int64_t padded_rows, int64_t n1, int64_t n_max) {
    d = d_;
    dp = (d_ + 31) / 32 * 32;
    xh.resize(static_cast<size_t>(padded_rows * dp));
    xl.resize(xh.size());
    vh.assign(static_cast<size_t>(kChunk / 2 * dp), 0);
    vl.assign(vh.size(), 0);
    th.resize(vh.size());
    tl.resize(vh.size());
    ctile.resize(32 * 32);
    g.resize(static_cast<size_t>(dp * dp));
    chol.resize(g.size());
    inv.assign(g.size(), 0.0);  // invert_lower writes the leading d x d; the padding stays zero
    work.resize(static_cast<size_t>(kNb * dp));
    ivh.assign(static_cast<size_t>(dp / 2 * dp), 0);
    ivl.assign(ivh.size(), 0);
    x1.resize(static_cast<size_t>(n1 * d_));
    x1t.resize(x1.size());
    order.resize(static_cast<size_t>(n_max));
    yrows.resize(static_cast<size_t>(padded_rows * dp));
    gh.resize(static_cast<size_t>(32 * dp));
    gl.resize(gh.size());
    g2.resize(g.size());
    hrow.resize(static_cast<size_t>(padded_rows));
    zrow.resize(hrow.size());
    pair_ring.resize(static_cast<size_t>((kPairOffsets + 1) * dp));
    const int64_t n_exact = 3 * d_ / 2 + 1;  // the largest prefix with exact_rows
    ex_x.resize(static_cast<size_t>(n_exact * d_));
    ex_y.resize(ex_x.size());
    ex_t.resize(ex_x.size());
    ex_b.resize(static_cast<size_t>(d_ * d_));
    chain_pad.resize(static_cast<size_t>(n_max));
    pad_chain.resize(static_cast<size_t>(padded_rows));
    sorted.resize(static_cast<size_t>(n_max));
  }
  size_t row_at(int64_t r, int64_t f) const {  // first element of row r, features [f, f + 32)
    return static_cast<size_t>(((r / 16) * (dp / 32) + f / 32) * 512 + (r % 16) * 32);
  }
};

// Workspaces outlive a call (the sweep makes one call per batch of blocks): a fresh 60 MB workspace per thread and
// call cost ~20 CPU-seconds of page faults over the full sweep.
std::mutex g_pool_mutex;
std::vector<std::unique_ptr<BlockWorkspace>> g_pool;

std::unique_ptr<BlockWorkspace> take_workspace(int64_t d, int64_t padded_rows, int64_t n1, int64_t n_max) {
  std::unique_ptr<BlockWorkspace> w;
  {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    if (!g_pool.empty()) {
      w = std::move(g_pool.back());
      g_pool.pop_back();
    }
  }
  if (!w) w = std::make_unique<BlockWorkspace>();
  if (w->d != d || w->xh.size() != static_cast<size_t>(padded_rows * ((d + 31) / 32 * 32)) ||
      w->x1.size() != static_cast<size_t>(n1 * d) || w->order.size() != static_cast<size_t>(n_max))
    w->resize(d, padded_rows, n1, n_max);
  return w;
}

void give_back_workspace(std::unique_ptr<BlockWorkspace> w) {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  g_pool.push_back(std::move(w));
}

// Split 32 features of a row (zero beyond d, or a zero row for src == nullptr) into hi/lo bf16 vectors.
inline void split32(const float* src, int64_t f, int64_t d, __m512i* hi, __m512i* lo) {
  __m512 v0, v1;
  if (src != nullptr && f + 32 <= d) {
    v0 = _mm512_loadu_ps(src + f);
    v1 = _mm512_loadu_ps(src + f + 16);
  } else {
    const int64_t n = src == nullptr ? 0 : std::max<int64_t>(0, std::min<int64_t>(32, d - f));
    const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u);
    const __mmask16 m1 = static_cast<__mmask16>(n >= 32 ? 0xFFFF : (n <= 16 ? 0u : (1u << (n - 16)) - 1u));
    v0 = _mm512_maskz_loadu_ps(m0, src == nullptr ? nullptr : src + f);
    v1 = _mm512_maskz_loadu_ps(m1, src == nullptr ? nullptr : src + f + 16);
  }
  const __m512bh h = _mm512_cvtne2ps_pbh(v1, v0);
  const __m512i hb = (__m512i)h;
  const __m512 h0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hb)), 16));
  const __m512 h1 =
      _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hb, 1)), 16));
  *hi = hb;
  *lo = (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(v1, h1), _mm512_sub_ps(v0, h0));
}

inline void prefetch_row(const float* src, int64_t d) {
  if (src == nullptr) return;
  const char* p = reinterpret_cast<const char*>(src);
  for (int64_t off = 0; off < d * 4; off += 64) _mm_prefetch(p + off, _MM_HINT_T1);
}

// The 2 x 2 register block shared by the Gram and Mahalanobis kernels: accumulators are tiles 0-3, the two A tiles
// are 4-5 (loaded by the caller), the two B tiles 6-7.
inline void zero_accumulators() {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

inline void multiply_2x2(const void* b0, const void* b1) {  // tiles 0-3 += (tiles 4, 5) x (b0, b1)
  _tile_loadd(6, b0, 64);
  _tile_loadd(7, b1, 64);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

inline void store_accumulators(float* ct) {  // the 32 x 32 float32 block, row-major
  _tile_stored(0, ct, 128);
  _tile_stored(1, ct + 16, 128);
  _tile_stored(2, ct + 16 * 32, 128);
  _tile_stored(3, ct + 16 * 32 + 16, 128);
}

// The Gram chunk's operands from 32 split rows (xh, xl: the group's first row, tile layout as BlockWorkspace::row_at),
// group kt of a chunk of nkt groups: VNNI pairs of rows, v tile (t/16, f/16), row t%16, column f%16 =
// (x[2t][f], x[2t+1][f]) as (lo16, hi16), and their transpose, t tile (f/16, t/16).
void pack_gram_group(BlockWorkspace& w, const uint16_t* xh, const uint16_t* xl, int64_t kt, int64_t nkt) {
  const int64_t dp = w.dp, nft = dp / 16;
  const __m512i idx0 = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6,
                                        37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i idx1 = _mm512_set_epi16(63, 31, 62, 30, 61, 29, 60, 28, 59, 27, 58, 26, 57, 25, 56, 24, 55, 23, 54,
                                        22, 53, 21, 52, 20, 51, 19, 50, 18, 49, 17, 48, 16);
  for (int64_t t = 0; t < 16; ++t) {
    for (int64_t f = 0; f < dp; f += 32) {
      const size_t ra = w.row_at(2 * t, f), rb = w.row_at(2 * t + 1, f);
      const size_t at = static_cast<size_t>((kt * nft + f / 16) * 256 + t * 16);
      const __m512i ah = _mm512_load_si512(xh + ra), bh = _mm512_load_si512(xh + rb);
      const __m512i al = _mm512_load_si512(xl + ra), bl = _mm512_load_si512(xl + rb);
      _mm512_store_si512(w.vh.data() + at, _mm512_permutex2var_epi16(ah, idx0, bh));
      _mm512_store_si512(w.vh.data() + at + 256, _mm512_permutex2var_epi16(ah, idx1, bh));
      _mm512_store_si512(w.vl.data() + at, _mm512_permutex2var_epi16(al, idx0, bl));
      _mm512_store_si512(w.vl.data() + at + 256, _mm512_permutex2var_epi16(al, idx1, bl));
    }
  }
  for (int64_t ft = 0; ft < nft; ++ft) {
    transpose16x16_u32(w.vh.data() + (kt * nft + ft) * 256, 16, w.th.data() + (ft * nkt + kt) * 256, 16);
    transpose16x16_u32(w.vl.data() + (kt * nft + ft) * 256, 16, w.tl.data() + (ft * nkt + kt) * 256, 16);
  }
}

// g (lower 32 x 32 super-tiles) += X^T X over the nkt packed groups of the chunk (pack_gram_group).
void gram_chunk_products(BlockWorkspace& w, double* g, int64_t nkt) {
  const int64_t dp = w.dp, nft = dp / 16;
  const uint32_t* aops[2] = {w.th.data(), w.tl.data()};
  const uint32_t* bops[2] = {w.vh.data(), w.vl.data()};
  float* ct = w.ctile.data();
  for (int64_t si = 0; si < dp; si += 32) {
    for (int64_t sj = 0; sj <= si; sj += 32) {
      zero_accumulators();
      for (int64_t kt = 0; kt < nkt; ++kt) {
        for (int pa = 0; pa < 2; ++pa) {
          _tile_loadd(4, aops[pa] + ((si / 16) * nkt + kt) * 256, 64);
          _tile_loadd(5, aops[pa] + ((si / 16 + 1) * nkt + kt) * 256, 64);
          // lo*lo is kept on the diagonal super-tiles only: there it is a systematic positive term of relative
          // size ~2^-18 on G_ii (a bias of ~d * 1e-6 in log det); off the diagonal it is random and negligible.
          const int nb = (pa == 1 && si != sj) ? 1 : 2;
          for (int pb = 0; pb < nb; ++pb) {
            multiply_2x2(bops[pb] + (kt * nft + sj / 16) * 256, bops[pb] + (kt * nft + sj / 16 + 1) * 256);
          }
        }
      }
      store_accumulators(ct);
      for (int64_t r = 0; r < 32; ++r) {
        double* grow = g + (si + r) * dp + sj;
        const float* crow = ct + r * 32;
        for (int64_t c = 0; c < 32; ++c) grow[c] += crow[c];
      }
    }
  }
}

// g (lower 32 x 32 super-tiles) += X^T X over padded chain rows [r0, r0 + nrows) (nrows % 32 == 0, r0 % 32 == 0).
void gram_chunk(BlockWorkspace& w, const uint16_t* xh, const uint16_t* xl, double* g, int64_t r0, int64_t nrows) {
  const int64_t nkt = nrows / 32;
  for (int64_t kt = 0; kt < nkt; ++kt) {
    const size_t at = w.row_at(r0 + 32 * kt, 0);
    pack_gram_group(w, xh + at, xl + at, kt, nkt);
  }
  gram_chunk_products(w, g, nkt);
}

// Row q of w.gh / w.gl (tile layout, 32 rows): sqrt(a) y split into bfloat16 hi + lo, a = 1 / (1 - h), for the
// whitened row y (float32, dp features; nullptr: a zero padding row) and its leverage h.
void weighted_split(BlockWorkspace& w, const float* y, double h, int q) {
  const __m512 scale = _mm512_set1_ps(static_cast<float>(h == 0.0 ? 0.0 : std::sqrt(1.0 / (1.0 - h))));
  alignas(64) float v[32];
  for (int64_t f = 0; f < w.dp; f += 32) {
    __m512i hi, lo;
    if (y != nullptr) {
      _mm512_store_ps(v, _mm512_mul_ps(_mm512_loadu_ps(y + f), scale));
      _mm512_store_ps(v + 16, _mm512_mul_ps(_mm512_loadu_ps(y + f + 16), scale));
      split32(v, 0, 32, &hi, &lo);
    } else {
      hi = lo = _mm512_setzero_si512();
    }
    const size_t at = w.row_at(q, f);
    _mm512_store_si512(w.gh.data() + at, hi);
    _mm512_store_si512(w.gl.data() + at, lo);
  }
}

// For the padded chain rows [0, nrows) (nrows % 32 == 0) of the split rows (ah, al): row_sq[r] = ||inv x_r||^2 in
// float64 (a zero padding row gives 0); if y_out is given, the rows y_r = inv x_r themselves (float32, stride dp; in
// chain order: row r goes to y_out[w.pad_chain[r]], padding rows nowhere, so that the sampled pairs read them
// sequentially); and if g2 is given too (it needs y_out), the weighted Gram W^T diag(a) W, a_r = 1 / (1 - row_sq[r]),
// added into g2 (lower super-tiles): each group of 32 rows is weighted and split into w.gh / w.gl (weighted_split) while it is still in
// cache, and each chunk of kChunk rows goes through the tiles as soon as its last group is split (the same chunks and
// sums as gram_chunk over all the split rows afterwards, which stored and re-read them: 2 x 29 MB at n = 100 d).
void mahalanobis_rows(BlockWorkspace& w, const uint16_t* ah, const uint16_t* al, int64_t nrows, double* row_sq,
                      float* y_out, double* g2) {
  const int64_t dp = w.dp, nfb = dp / 32, njt = dp / 16;
  const uint16_t* aops[2] = {ah, al};
  const uint32_t* bops[2] = {w.ivh.data(), w.ivl.data()};
  float* ct = w.ctile.data();
  alignas(64) float sums[32 * 16];
  float* dst[32];
  for (int64_t r0 = 0; r0 < nrows; r0 += 32) {
    const int64_t rt = r0 / 16;
    for (int r = 0; r < 32; ++r)
      dst[r] = y_out != nullptr && w.pad_chain[r0 + r] >= 0 ? y_out + w.pad_chain[r0 + r] * dp : nullptr;
    for (int i = 0; i < 32 * 16; i += 16) _mm512_store_ps(sums + i, _mm512_setzero_ps());
    for (int64_t j = 0; j < dp; j += 32) {
      zero_accumulators();
      const int64_t fbend = j / 32 + 1;  // inv is lower triangular: inv[j][f] = 0 for f > j
      for (int64_t fb = 0; fb < fbend; ++fb) {
        for (int pa = 0; pa < 2; ++pa) {
          _tile_loadd(4, aops[pa] + (rt * nfb + fb) * 512, 64);
          _tile_loadd(5, aops[pa] + ((rt + 1) * nfb + fb) * 512, 64);
          for (int pb = 0; pb < 2 - pa; ++pb) {  // lo*lo (relative size 2^-18, random sign) is skipped
            multiply_2x2(bops[pb] + (fb * njt + j / 16) * 256, bops[pb] + (fb * njt + j / 16 + 1) * 256);
          }
        }
      }
      store_accumulators(ct);
      for (int r = 0; r < 32; ++r) {
        const __m512 a = _mm512_loadu_ps(ct + r * 32), b = _mm512_loadu_ps(ct + r * 32 + 16);
        _mm512_store_ps(sums + r * 16, _mm512_fmadd_ps(a, a, _mm512_fmadd_ps(b, b, _mm512_load_ps(sums + r * 16))));
        if (dst[r] != nullptr) {
          _mm512_storeu_ps(dst[r] + j, a);
          _mm512_storeu_ps(dst[r] + j + 16, b);
        }
      }
    }
    for (int r = 0; r < 32; ++r) row_sq[r0 + r] = _mm512_reduce_add_ps(_mm512_load_ps(sums + r * 16));
    if (g2 != nullptr) {
      for (int r = 0; r < 32; ++r) weighted_split(w, dst[r], row_sq[r0 + r], r);
      const int64_t c0 = r0 / kChunk * kChunk, nkt = std::min(kChunk, nrows - c0) / 32, kt = (r0 - c0) / 32;
      pack_gram_group(w, w.gh.data(), w.gl.data(), kt, nkt);
      if (kt == nkt - 1) gram_chunk_products(w, g2, nkt);
    }
  }
}

// The row sums' quadratic forms: zrow[i] = ||inv v_i||^2 for the chain positions i < n, v_i = sqrt(a_i) y_i split
// from the stored whitened rows (w.yrows, read in order; split 32 at a time into w.gh / w.gl exactly as
// mahalanobis_rows split them for the weighted Gram), inv the factor in w.ivh / w.ivl.
void weighted_row_norms(BlockWorkspace& w, int64_t n, double* zrow) {
  alignas(64) double out[32];
  for (int64_t i0 = 0; i0 < n; i0 += 32) {
    for (int q = 0; q < 32; ++q) {
      const int64_t i = i0 + q;
      weighted_split(w, i < n ? w.yrows.data() + i * w.dp : nullptr, i < n ? w.hrow[w.chain_pad[i]] : 0.0, q);
    }
    mahalanobis_rows(w, w.gh.data(), w.gl.data(), 32, out, nullptr, nullptr);
    for (int64_t q = 0; q < 32 && i0 + q < n; ++q) zrow[i0 + q] = out[q];
  }
}

// Split inv (lower, dp x dp float64) into bf16 hi/lo B tiles: tile (f/32, j/16), row (f/2)%16, column j%16
// holds (inv[j][f], inv[j][f+1]). Built per tile from 16 rows of inv (one 16 x 16 transpose of bf16 pairs); only the
// tiles the Mahalanobis loop reads (f/32 <= (j/16)/2) are written.
void pack_inverse(BlockWorkspace& w) {
  const int64_t dp = w.dp, njt = dp / 16;
  alignas(64) uint32_t mh[16 * 16], ml[16 * 16];
  for (int64_t jt = 0; jt < njt; ++jt) {
    for (int64_t fb = 0; fb <= jt / 2; ++fb) {
      for (int c = 0; c < 16; ++c) {
        const double* src = w.inv.data() + (jt * 16 + c) * dp + fb * 32;
        const __m512 lo16 = _mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_loadu_pd(src)));
        const __m512 v0 = _mm512_insertf32x8(lo16, _mm512_cvtpd_ps(_mm512_loadu_pd(src + 8)), 1);
        const __m512 v1 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_loadu_pd(src + 16))),
                                             _mm512_cvtpd_ps(_mm512_loadu_pd(src + 24)), 1);
        const __m512bh h = _mm512_cvtne2ps_pbh(v1, v0);  // 32 bf16: features fb*32 + 0..31 in order
        const __m512i hi = (__m512i)h;
        const __m512 h0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hi)), 16));
        const __m512 h1 =
            _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hi, 1)), 16));
        const __m512bh l = _mm512_cvtne2ps_pbh(_mm512_sub_ps(v1, h1), _mm512_sub_ps(v0, h0));
        _mm512_store_si512(mh + c * 16, hi);
        _mm512_store_si512(ml + c * 16, (__m512i)l);
      }
      // mh[c][t] = pair (f = 2t, 2t+1) of row j = jt*16 + c; the tile wants [t][c]
      const size_t at = static_cast<size_t>((fb * njt + jt) * 256);
      transpose16x16_u32(mh, 16, w.ivh.data() + at, 16);
      transpose16x16_u32(ml, 16, w.ivl.data() + at, 16);
    }
  }
}

// Small prefixes (n <= 1.5 d, exact_rows): leverages near 1 amplify the bfloat16 x 3 products' error (~4e-6
// relative) a thousandfold (d = 8, n = 10: mean log(1 - h_i) 0.5 % off, the row-sum covariance -0.22 against an
// exact -0.04), so these sizes add their rows to the Gram in float64 and whiten in float64 from the float32 rows:
// y_r = inv x_r rounded to float32 (as the numpy engine keeps W), h_r = ||y_r||^2 in float64 from those rows;
// n d^2 / 2 multiply-adds, a few percent of a block's tile work.
bool exact_rows(int64_t n, int64_t d) { return 2 * n <= 3 * d; }

void mahalanobis_rows_f64(BlockWorkspace& w, const float* pop, const int64_t* chain_rows, int64_t n, int64_t padded) {
  const int64_t d = w.d, dp = w.dp;
  std::fill(w.hrow.begin(), w.hrow.begin() + padded, 0.0);
  std::fill(w.yrows.begin(), w.yrows.begin() + n * dp, 0.0f);  // (chain order; features d .. dp stay 0)
  double* x = w.ex_x.data();   // (n, d): the rows in chain order
  double* bt = w.ex_b.data();  // (d, d): inv^T, upper triangular
  double* y = w.ex_y.data();   // (n, d): y_i = inv x_i
  for (int64_t i = 0; i < n; ++i) {
    const float* src = pop + chain_rows[i] * d;
    for (int64_t f = 0; f < d; ++f) x[i * d + f] = src[f];
  }
  for (int64_t p = 0; p < d; ++p)
    for (int64_t j = 0; j < d; ++j) bt[p * d + j] = j >= p ? w.inv[j * dp + p] : 0.0;
  gemm_rows(x, d, bt, d, n, d, y, d, [d](int64_t j0, int64_t wd) {
    return std::pair<int64_t, int64_t>(0, std::min(d, j0 + wd));
  });
  for (int64_t i = 0; i < n; ++i) {
    const int64_t p = w.chain_pad[i];
    double h = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      const float yj = static_cast<float>(y[i * d + j]);
      w.yrows[i * dp + j] = yj;
      h += static_cast<double>(yj) * yj;  // from the stored rows, as the pairs' y_i.y_j: x_ij stays <= 1 (h_i ~ 1)
    }
    w.hrow[p] = h;
  }
}

// The leave-two-out (pair) and row-sum statistics of one prefix of n rows (docs/sigma.md, second and third passes;
// as sigma_precision.numpy_prefix_block_stats): the leverages h_r = hrow[r] by padded row and the whitened rows
// y_i = yrows[i] of the chain positions i < n are given, chain_pad[i] is the padded row of the block's i-th row.
// Pairs (i, i + k mod n), k = 1..4, in chain order: x_ij = (y_i.y_j)^2 / ((1 - h_i)(1 - h_j)),
// delta_ij = log(1 - x_ij). The weighted Gram W^T diag(a) W (a = 1/(1 - h)), formed on the tiles by
// mahalanobis_rows from the split rows sqrt(a_r) y_r (in g2; small prefixes here, in float64); its squared Frobenius
// norm gives the all-pairs sum; row sums
// r_i = v_i^T (W^T diag(a) W) v_i - a_i^2 h_i^2 (v_i = sqrt(a_i) y_i) as ||U^T v_i||^2 on the tiles
// (weighted_row_norms),
// U U^T = W^T diag(a) W with U upper triangular (the Cholesky factor of the reversed matrix, reversed), so that U^T is
// lower triangular like the inverse factor. Outputs: pair variance and mean, row-sum variance, covariance with
// log(1 - h_i), kurtosis of log(1 - h_i); the row-sum ones NaN if the weighted Gram is not positive definite
// (n ~ d + 1, leverages ~1).
void pair_and_row_stats(BlockWorkspace& w, int64_t n, double* pair_var, double* pair_mean,
                        double* row_var, double* row_cov, double* kurtosis) {
  const int64_t d = w.d, dp = w.dp;
  const double* h = w.hrow.data();
  const float* y = w.yrows.data();
  const int64_t* cp = w.chain_pad.data();
  // leave-one-out moments and kurtosis of log(1 - h_i)
  double lsum = 0.0;
  for (int64_t i = 0; i < n; ++i) lsum += std::log1p(-h[cp[i]]);
  const double lmean = lsum / n;
  double m2 = 0.0, m4 = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double c = std::log1p(-h[cp[i]]) - lmean, c2 = c * c;
    m2 += c2;
    m4 += c2 * c2;
  }
  *kurtosis = (m4 / n) / ((m2 / n) * (m2 / n));
  // sampled pairs, walked in chain order: the rows of chain positions i .. i + 4 (mod n) are kept in float64 in a
  // ring (slot (i + k) % 5 holds position (i + k) % n), so each row is read once, in order, and converted once.
  // (Walking k outer, i inner over rows in padded order read every row eight times from random places: at n = 100 d,
  // 59 MB of rows, that loop was a fifth of the block's time.)
  double dsum = 0.0, dsq = 0.0, xsum = 0.0;
  constexpr int kRing = kPairOffsets + 1;
  double* ring = w.pair_ring.data();
  auto fill_slot = [&](int64_t pos, int slot) {
    const float* src = y + pos * dp;
    double* dst = ring + slot * dp;
    for (int64_t f = 0; f < dp; f += 8) _mm512_store_pd(dst + f, _mm512_cvtps_pd(_mm256_loadu_ps(src + f)));
  };
  for (int k = 0; k < kPairOffsets; ++k) fill_slot(k % n, k);
  for (int64_t i = 0; i < n; ++i) {
    {  // the rows stream from memory (59 MB at n = 100 d); the prefetcher alone stalls at page ends: -30 % time here
      const char* ahead = reinterpret_cast<const char*>(y + ((i + kPairOffsets + 16) % n) * dp);
      for (int64_t off = 0; off < dp * 4; off += 64) _mm_prefetch(ahead + off, _MM_HINT_T0);
    }
    fill_slot((i + kPairOffsets) % n, static_cast<int>((i + kPairOffsets) % kRing));
    const int64_t pi = cp[i];
    const double* yi = ring + (i % kRing) * dp;
    // the four dot products side by side, each in its own float64 accumulator: the same sums as one pair at a time,
    // where one chain of dependent adds per pair kept the FMA units a quarter busy
    __m512d acc[kPairOffsets];
    const double* yj[kPairOffsets];
    for (int k = 0; k < kPairOffsets; ++k) {
      acc[k] = _mm512_setzero_pd();
      yj[k] = ring + ((i + k + 1) % kRing) * dp;
    }
    for (int64_t f = 0; f < dp; f += 8) {
      const __m512d a = _mm512_load_pd(yi + f);
      for (int k = 0; k < kPairOffsets; ++k) acc[k] = _mm512_fmadd_pd(a, _mm512_load_pd(yj[k] + f), acc[k]);
    }
    for (int k = 1; k <= kPairOffsets; ++k) {
      const int64_t pj = cp[(i + k) % n];
      // float64 sums of the float32 rows' products: x_ij is ill-conditioned where 1 - h is small
      const double hij = _mm512_reduce_add_pd(acc[k - 1]);
      const double x = hij * hij / ((1.0 - h[pi]) * (1.0 - h[pj])), delta = std::log1p(-x);
      dsum += delta;
      dsq += delta * delta;
      xsum += delta + x;
    }
  }
  const double pairs = static_cast<double>(kPairOffsets) * n, dmean = dsum / pairs;
  *pair_var = dsq / pairs - dmean * dmean;
  // the weighted Gram W^T diag(a) W (lower, g2): float64 from the stored rows for small prefixes, else formed on the
  // tiles by mahalanobis_rows already
  const bool exact = exact_rows(n, d);
  if (exact) {
    std::fill(w.g2.begin(), w.g2.end(), 0.0);  // g2 -= (-A^T) Y, A^T[f][i] = a_i y_i[f], one register-blocked product
    double* yt = w.ex_t.data();  // (d, n)
    double* ys = w.ex_x.data();  // (n, d): x is not needed after mahalanobis_rows_f64
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = cp[i];
      const double a = 1.0 / (1.0 - h[p]);
      for (int64_t f = 0; f < d; ++f) {
        ys[i * d + f] = y[i * dp + f];
        yt[f * n + i] = -a * y[i * dp + f];
      }
    }
    update_lower(w.g2.data(), dp, yt, n, ys, d, n, 0, d, 0, d);
  }
  double frob = 0.0, diag = 0.0;  // all pairs: sum_{i != j} x_ij = ||W^T diag(a) W||_F^2 - sum_i a_i^2 h_i^2
  for (int64_t i = 0; i < d; ++i) {
    for (int64_t j = 0; j < i; ++j) frob += 2.0 * w.g2[i * dp + j] * w.g2[i * dp + j];
    frob += w.g2[i * dp + i] * w.g2[i * dp + i];
  }
  for (int64_t i = 0; i < n; ++i) {
    const double ah = h[cp[i]] / (1.0 - h[cp[i]]);
    diag += ah * ah;
  }
  *pair_mean = -(frob - diag) / (n * (n - 1.0)) + xsum / pairs;
  // row sums v_i^T (W^T diag(a) W) v_i: small prefixes as ||C^T v_i||^2 with the Cholesky factor C in float64; else
  // the reversed matrix's factor gives U (upper, U U^T = W^T diag(a) W) and U^T (lower, like the inverse factor)
  // goes through the tiles
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j <= i; ++j)
      w.chol[i * d + j] = exact ? w.g2[i * dp + j] : w.g2[(d - 1 - j) * dp + (d - 1 - i)];
  if (!cholesky_lower(w.chol.data(), d, d, w.work.data())) {
    *row_var = *row_cov = std::numeric_limits<double>::quiet_NaN();
    return;
  }
  if (exact) {  // z_i = C^T v_i: Z = V C, C lower (its upper part zeroed), one register-blocked product
    double* c = w.chol.data();
    for (int64_t f = 0; f < d; ++f)
      for (int64_t j = f + 1; j < d; ++j) c[f * d + j] = 0.0;
    double* vs = w.ex_x.data();  // (n, d)
    double* z = w.ex_y.data();   // (n, d)
    for (int64_t i = 0; i < n; ++i) {
      const double sa = std::sqrt(1.0 / (1.0 - h[cp[i]]));
      for (int64_t f = 0; f < d; ++f) vs[i * d + f] = sa * y[i * dp + f];
    }
    gemm_rows(vs, d, c, d, n, d, z, d, [d](int64_t j0, int64_t) { return std::pair<int64_t, int64_t>(j0, d); });
    for (int64_t i = 0; i < n; ++i) {
      double z2 = 0.0;
      for (int64_t j = 0; j < d; ++j) z2 += z[i * d + j] * z[i * d + j];
      w.zrow[i] = z2;
    }
  } else {
    std::fill(w.inv.begin(), w.inv.end(), 0.0);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j <= i; ++j) w.inv[i * dp + j] = w.chol[(d - 1 - j) * d + (d - 1 - i)];
    pack_inverse(w);
    weighted_row_norms(w, n, w.zrow.data());
  }
  double rsum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double ah = h[cp[i]] / (1.0 - h[cp[i]]);
    rsum += w.zrow[i] - ah * ah;
  }
  const double rmean = rsum / n;
  double rvar = 0.0, rcov = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double ah = h[cp[i]] / (1.0 - h[cp[i]]), r = w.zrow[i] - ah * ah - rmean;
    rvar += r * r;
    rcov += (std::log1p(-h[cp[i]]) - lmean) * r;
  }
  *row_var = rvar / n;
  *row_cov = rcov / n;
}

}  // namespace
#endif  // CJ_HAVE_AMX




extern "C" {

// Frees the block-statistics workspaces kept between calls.
void cj_release_workspaces() {
#if CJ_HAVE_AMX
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  g_pool.clear();
#endif
}

// 1 if this build has the AMX kernel and the OS grants the tile state to this process.
int cj_amx_available() {
#if defined(CJ_AMX_EMULATED)
  return 1;
#elif CJ_HAVE_AMX
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  static const int ok = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0 ? 1 : 0;
  return ok;
#else
  return 0;
#endif
}

// Block statistics (see the file comment). pop: (num_points, d) float32; idx: (num_blocks, n_max) row indices in
// chain order; ns: (num_sizes,) increasing prefix sizes, ns[last] <= n_max, ns[0] > d. Outputs (num_blocks,
// num_sizes): logdet (log det G_1), m2 (in-sample mean(M_i^2), computed as d^2 + Var(M_i), which equals it
// because mean(M_i) = d exactly; this cancels a common relative error in the M_i), loo_mean and loo_var (mean and
// variance over the rows of log(1 - h_i), h_i = M_i / n); if pair_var is not null, also pair_var, pair_mean,
// row_var, row_cov and kurtosis (pair_and_row_stats). Returns 0 on success, 1 if AMX is unavailable, 2 + block if a
// block Gram was not positive definite.
int64_t cj_block_stats(const float* pop, int64_t num_points, int64_t d, const int64_t* idx, int64_t num_blocks,
                       int64_t n_max, const int64_t* ns, int64_t num_sizes, double* logdet, double* m2,
                       double* loo_mean, double* loo_var, double* pair_var, double* pair_mean, double* row_var,
                       double* row_cov, double* kurtosis, int64_t num_threads) {
#if CJ_HAVE_AMX
  if (!cj_amx_available()) return 1;
  // padded chain layout: segment s = rows [ns[s-1], ns[s]) padded to a multiple of 32
  std::vector<int64_t> seg_start(num_sizes + 1, 0), pad_start(num_sizes + 1, 0);
  for (int64_t s = 0; s < num_sizes; ++s) {
    seg_start[s + 1] = ns[s];
    pad_start[s + 1] = pad_start[s] + (ns[s] - seg_start[s] + 31) / 32 * 32;
  }
  const int64_t rows = pad_start[num_sizes];
  const int64_t threads = std::max<int64_t>(1, std::min(default_threads(num_threads), num_blocks));
  std::atomic<int64_t> next{0}, failed{0};
  auto worker = [&] {
    std::unique_ptr<BlockWorkspace> held = take_workspace(d, rows, ns[0], n_max);
    BlockWorkspace& w = *held;
    load_tile_config();
    const int64_t dp = w.dp, n1 = ns[0];
    for (;;) {
      const int64_t b = next.fetch_add(1);
      if (b >= num_blocks) break;
      const int64_t* bi = idx + b * n_max;
      // Gather and split. The statistics depend only on the set of rows in each prefix, so each segment's rows are
      // read in increasing index order (memory locality). Padding rows are zero.
      for (int64_t s = 0; s < num_sizes; ++s) {
        const int64_t len = seg_start[s + 1] - seg_start[s];
        for (int64_t o = 0; o < len; ++o) w.sorted[o] = {bi[seg_start[s] + o], o};
        std::sort(w.sorted.begin(), w.sorted.begin() + len);
        for (int64_t r = 0; r < len; ++r) {
          w.order[r] = w.sorted[r].first;
          w.chain_pad[seg_start[s] + w.sorted[r].second] = pad_start[s] + r;
          w.pad_chain[pad_start[s] + r] = seg_start[s] + w.sorted[r].second;
        }
        for (int64_t r = pad_start[s] + len; r < pad_start[s + 1]; ++r) w.pad_chain[r] = -1;
        for (int64_t r = 0; r < pad_start[s + 1] - pad_start[s]; ++r) {
          const float* src = r < len ? pop + w.order[r] * d : nullptr;
          if (r + 8 < len) prefetch_row(pop + w.order[r + 8] * d, d);
          for (int64_t f = 0; f < dp; f += 32) {
            __m512i h, l;
            split32(src, f, d, &h, &l);
            const size_t at = w.row_at(pad_start[s] + r, f);
            _mm512_stream_si512(reinterpret_cast<__m512i*>(w.xh.data() + at), h);
            _mm512_stream_si512(reinterpret_cast<__m512i*>(w.xl.data() + at), l);
          }
          if (s == 0 && src != nullptr) {
            for (int64_t f = 0; f < d; ++f) {
              w.x1[r * d + f] = src[f];
              w.x1t[f * n1 + r] = src[f];
            }
          }
        }
      }
      _mm_sfence();
      // The first segment (n_1 ~ d rows) is the worst-conditioned Gram: it is accumulated exactly in float64
      // (with bf16x2 operands log det G_1(d + 1) was off by ~1e-2; in float64 by ~1e-6).
      std::fill(w.g.begin(), w.g.end(), 0.0);
      update_lower(w.g.data(), dp, w.x1t.data(), n1, w.x1.data(), d, n1, 0, d, 0, d);  // g = -X1^T X1 (lower)
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j <= i; ++j) w.g[i * dp + j] = -w.g[i * dp + j];
      for (int64_t s = 0; s < num_sizes; ++s) {
        const int64_t n = ns[s];
        if (s > 0 && exact_rows(n, d)) {  // small prefixes: the Gram's new rows in float64 too (exact_rows)
          const int64_t len = seg_start[s + 1] - seg_start[s];
          double* xs = w.ex_x.data();  // (len, d)
          double* xt = w.ex_t.data();  // (d, len), negated: g -= (-X^T) X
          for (int64_t i = 0; i < len; ++i)
            for (int64_t f = 0; f < d; ++f) {
              const double v = pop[bi[seg_start[s] + i] * d + f];
              xs[i * d + f] = v;
              xt[f * len + i] = -v;
            }
          update_lower(w.g.data(), dp, xt, len, xs, d, len, 0, d, 0, d);
        } else {
          for (int64_t r0 = pad_start[s]; s > 0 && r0 < pad_start[s + 1]; r0 += kChunk)
            gram_chunk(w, w.xh.data(), w.xl.data(), w.g.data(), r0, std::min(kChunk, pad_start[s + 1] - r0));
        }
        double* ld_out = logdet + b * num_sizes + s;
        double* m2_out = m2 + b * num_sizes + s;
        double* lm_out = loo_mean + b * num_sizes + s;
        double* lv_out = loo_var + b * num_sizes + s;
        for (int64_t i = 0; i < d; ++i)
          for (int64_t j = 0; j <= i; ++j) w.chol[i * d + j] = w.g[i * dp + j];
        const size_t at = static_cast<size_t>(b * num_sizes + s);
        const bool extra = pair_var != nullptr;
        if (!cholesky_lower(w.chol.data(), d, d, w.work.data())) {
          int64_t expected = 0;
          failed.compare_exchange_strong(expected, 2 + b);
          *ld_out = *m2_out = *lm_out = *lv_out = std::numeric_limits<double>::quiet_NaN();
          if (extra)
            pair_var[at] = pair_mean[at] = row_var[at] = row_cov[at] = kurtosis[at] =
                std::numeric_limits<double>::quiet_NaN();
          continue;
        }
        *ld_out = logdet_from_chol(w.chol.data(), d, d);
        invert_lower(w.chol.data(), d, d, w.inv.data(), dp, w.work.data());
        pack_inverse(w);
        double s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0;  // sums of M_r, M_r^2, log(1 - h_r), log(1 - h_r)^2
        if (exact_rows(n, d))
          mahalanobis_rows_f64(w, pop, bi, n, pad_start[s + 1]);
        else {
          if (extra) std::fill(w.g2.begin(), w.g2.end(), 0.0);  // the weighted Gram, formed on the way
          mahalanobis_rows(w, w.xh.data(), w.xl.data(), pad_start[s + 1], w.hrow.data(),
                           extra ? w.yrows.data() : nullptr, extra ? w.g2.data() : nullptr);
        }
        for (int64_t r = 0; r < pad_start[s + 1]; ++r) {  // padding rows are zero and add 0 to every sum
          const double h = w.hrow[r], mr = static_cast<double>(n) * h, l = std::log1p(-h);
          s1 += mr;
          s2 += mr * mr;
          s3 += l;
          s4 += l * l;
        }
        const double mean = s1 / n, lmean = s3 / n;
        *m2_out = static_cast<double>(d) * d + (s2 / n - mean * mean);
        *lm_out = lmean;
        *lv_out = s4 / n - lmean * lmean;
        if (extra)
          pair_and_row_stats(w, n, pair_var + at, pair_mean + at, row_var + at, row_cov + at, kurtosis + at);
      }
    }
    _tile_release();
    give_back_workspace(std::move(held));
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  return failed.load();
#else
  (void)pop; (void)num_points; (void)d; (void)idx; (void)num_blocks; (void)n_max; (void)ns; (void)num_sizes;
  (void)logdet; (void)m2; (void)loo_mean; (void)loo_var; (void)pair_var; (void)pair_mean; (void)row_var;
  (void)row_cov; (void)kurtosis; (void)num_threads;
  return 1;
#endif
}

}  // extern "C"
