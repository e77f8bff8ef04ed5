// Float32 matrix product through a BLAS sgemm found at run time (jax.ffi target "collapse_jax_sgemm"), and the
// nanoGPT's fused causal self-attention (targets "collapse_jax_causal_attention" and "..._grad", below).
//
// c[i] = op(a[i]) @ op(b[i]) for every leading index i, op(x) = x or x^T (the attributes trans_a, trans_b), all
// row-major float32: a (..., m, k) or (..., k, m), b (..., k, n) or (..., n, k), c (..., m, n).
// Why: XLA:CPU runs a batched dot on one thread, so the nanoGPT's attention products (one 128 x 128 x 64 product
// per batch row and head at seed003) left the second core idle; here the matrices of the batch are shared out over
// XLA's pool (llm_bridge.nanogpt.attention_scores / attention_values; docs/nanogpt.md, speed). The BLAS is not
// linked: Python resolves the CBLAS sgemm and openblas_set_num_threads_local of the library NumPy loaded and hands
// their addresses to cj_gemm_set_sgemm (collapse_jax/_native); until then the handler returns an error rather than
// computing anything.
// Threads: XLA's intra-op pool. Each matrix of C is cut along its longer side into pieces of kPiece rows or columns
// (one piece for small matrices); the calling thread and helpers scheduled on the pool claim pieces, each one sgemm
// call made single-threaded in the BLAS (so the BLAS's own threads never compete with XLA's). The cut depends only
// on the shape, never on the thread count: OpenBLAS's rounding can depend on the cut (its Haswell / Zen kernels give
// a row block's products different last bits computed alone than inside the whole matrix; its SkylakeX kernels did
// not), so a fixed cut is what makes the result bitwise the same whatever the thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// CBLAS enums (cblas.h): row-major, no transpose, transpose.
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// cblas_sgemm with 64-bit integers (an ILP64 build such as scipy-openblas64) or 32-bit ones (LP64).
using Sgemm64 = void (*)(int, int, int, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                         int64_t, float, float*, int64_t);
using Sgemm32 = void (*)(int, int, int, int32_t, int32_t, int32_t, float, const float*, int32_t, const float*,
                         int32_t, float, float*, int32_t);

std::atomic<void*> g_sgemm{nullptr};
std::atomic<int> g_int_bits{64};
using SetThreadsLocal = int (*)(int);
std::atomic<void*> g_set_threads_local{nullptr};

// One product C = op(A) op(B) + beta C, row-major, C (m, n) with leading dimension ldc.
void Gemm(void* fn, bool wide, int ta, int tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
          const float* b, int64_t ldb, float* c, int64_t ldc, float beta = 0.0f) {
  if (wide) {
    reinterpret_cast<Sgemm64>(fn)(kRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  } else {
    reinterpret_cast<Sgemm32>(fn)(kRowMajor, ta, tb, static_cast<int32_t>(m), static_cast<int32_t>(n),
                                  static_cast<int32_t>(k), 1.0f, a, static_cast<int32_t>(lda), b,
                                  static_cast<int32_t>(ldb), beta, c, static_cast<int32_t>(ldc));
  }
}

// The products of one call, cut into `chunks` pieces per matrix along the longer side of C; the pieces are claimed
// by the calling thread and the helpers it scheduled on XLA's thread pool, so a busy pool only means fewer helpers.
struct Work {
  void* fn;
  bool wide, trans_a, trans_b, split_rows;
  int64_t batch, m, n, k, chunks, piece;
  const float* a;
  const float* b;
  float* c;
  std::atomic<int64_t> next{0}, done{0};

  int64_t total() const { return batch * chunks; }

  // Claims and runs pieces until none is left.
  void Run() {
    auto set_local = reinterpret_cast<SetThreadsLocal>(g_set_threads_local.load());
    const int before = set_local(1);  // this thread's BLAS calls single-threaded: XLA's pool does the threading
    const int ta = trans_a ? kTrans : kNoTrans, tb = trans_b ? kTrans : kNoTrans;
    const int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
    for (int64_t job = next.fetch_add(1); job < total(); job = next.fetch_add(1)) {
      const int64_t i = job / chunks, lo = (job % chunks) * piece;
      const float* pa = a + i * m * k;
      const float* pb = b + i * k * n;
      float* pc = c + i * m * n;
      if (split_rows) {
        const int64_t rows = std::min(piece, m - lo);
        if (rows > 0) Gemm(fn, wide, ta, tb, rows, n, k, pa + (trans_a ? lo : lo * k), lda, pb, ldb, pc + lo * n, n);
      } else {
        const int64_t cols = std::min(piece, n - lo);
        if (cols > 0) Gemm(fn, wide, ta, tb, m, cols, k, pa, lda, pb + (trans_b ? lo * k : lo), ldb, pc + lo, n);
      }
      done.fetch_add(1, std::memory_order_release);
    }
    set_local(before);
  }
};

ffi::Error SgemmImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                     ffi::ResultBuffer<ffi::F32> c, bool trans_a, bool trans_b) {
  void* fn = g_sgemm.load();
  if (fn == nullptr || g_set_threads_local.load() == nullptr)
    return ffi::Error::Internal("collapse_jax_sgemm: no BLAS sgemm was set");
  const auto da = a.dimensions(), db = b.dimensions(), dc = c->dimensions();
  const size_t rank = dc.size();
  if (rank < 2 || da.size() != rank || db.size() != rank)
    return ffi::Error::InvalidArgument("collapse_jax_sgemm: a, b and c need the same rank >= 2");
  const int64_t m = dc[rank - 2], n = dc[rank - 1];
  const int64_t k = trans_a ? da[rank - 2] : da[rank - 1];
  if ((trans_a ? da[rank - 1] : da[rank - 2]) != m || (trans_b ? db[rank - 1] : db[rank - 2]) != k ||
      (trans_b ? db[rank - 2] : db[rank - 1]) != n)
    return ffi::Error::InvalidArgument("collapse_jax_sgemm: shapes do not match op(a) (m, k) @ op(b) (k, n)");
  int64_t batch = 1;
  for (size_t i = 0; i + 2 < rank; ++i) {
    if (da[i] != dc[i] || db[i] != dc[i])
      return ffi::Error::InvalidArgument("collapse_jax_sgemm: leading dimensions differ");
    batch *= dc[i];
  }
  if (batch == 0 || m == 0 || n == 0) return ffi::Error::Success();
  auto work = std::make_shared<Work>();
  work->fn = fn;
  work->wide = g_int_bits.load() == 64;
  work->trans_a = trans_a;
  work->trans_b = trans_b;
  work->split_rows = m >= n;
  work->batch = batch;
  work->m = m;
  work->n = n;
  work->k = k;
  const int64_t side = work->split_rows ? m : n, threads = std::max<int64_t>(1, pool.num_threads());
  // Pieces of kPiece rows / columns (a multiple of 16, the kernels' tile; each piece packs the whole of the other
  // operand, so not much smaller), whatever the pool's size.
  constexpr int64_t kPiece = 128;
  work->piece = kPiece;
  work->chunks = (side + kPiece - 1) / kPiece;
  work->a = a.typed_data();
  work->b = b.typed_data();
  work->c = c->typed_data();
  const int64_t helpers = std::min<int64_t>(threads, work->total()) - 1;
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([work] { work->Run(); });
  work->Run();
  while (work->done.load(std::memory_order_acquire) < work->total()) std::this_thread::yield();
  return ffi::Error::Success();
}


// ---- Fused causal self-attention (llm_bridge.nanogpt.causal_attention) ------------------------------------------
// Why: the attention as separate ops (two batched products, scale, mask, softmax, and their gradients) cost about
// 80 ms of a 595 ms seed003 train step on two cores (against the same step without attention), though its products
// are 6 % of the step's flops: every op passes over the (batch, heads, T, T) scores in memory, and half of each
// product is the masked upper triangle.
// Here one (batch row, head) pair is one work item on XLA's pool, done by one thread while its matrices sit in
// cache: row blocks of `block` queries [r0, r1) meet only keys [0, r1), so the products skip the blocks above the
// diagonal (5/8 of the work at T = 128, block 32), and the softmax runs row by row on the block just computed.
// Layouts: qkv (..., T, 3 H D) as the qkv projection writes it (q, k, v side by side, heads inside each), the output
// y (..., T, H D) as the output projection reads it, so no transposes; probs (..., H, T, T) the softmax weights
// (zero above the diagonal), kept for the gradient. Every item is single-threaded and cut the same way whatever the
// pool's size, so the results are bitwise the same for any thread count.

constexpr int kLanes = 16;  // independent accumulators: vectorised reductions with the same order everywhere

// exp(x) for x <= 0: n = round(x / ln 2), Cephes' expf polynomial on the remainder, scaled by 2^n (about 1 ulp).
// Below -87.3 it returns ~1.2e-38 instead of a smaller denormal, harmless for a softmax weight.
inline float ExpNonPositive(float x) {
  x = std::max(x, -87.3f);
  const float t = x * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: x / ln 2 rounded into the low bits
  const float n = t - 12582912.0f;
  int32_t ti;
  std::memcpy(&ti, &t, sizeof ti);
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (ti - 0x4B400000 + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

float LaneMax(const float* x, int64_t n) {
  float lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = -INFINITY;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] = lanes[l] < x[j + l] ? x[j + l] : lanes[l];
  for (; j < n; ++j) lanes[0] = lanes[0] < x[j] ? x[j] : lanes[0];
  float m = lanes[0];
  for (int l = 1; l < kLanes; ++l) m = m < lanes[l] ? lanes[l] : m;
  return m;
}

float LaneSum(const float* x, int64_t n) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += x[j + l];
  for (; j < n; ++j) lanes[j % kLanes] += x[j];
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  return s;
}

float LaneDot(const float* x, const float* y, int64_t n) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += x[j + l] * y[j + l];
  for (; j < n; ++j) lanes[j % kLanes] += x[j] * y[j];
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += lanes[l];
  return s;
}

// Row t of a block's scores s[0, n): s[0..t] scaled, then their softmax; s(t, n) zero (keys after the query).
void CausalSoftmaxRow(float* s, int64_t t, int64_t n, float scale) {
  const int64_t len = t + 1;
  for (int64_t j = 0; j < len; ++j) s[j] *= scale;
  const float m = LaneMax(s, len);
  for (int64_t j = 0; j < len; ++j) s[j] = ExpNonPositive(s[j] - m);
  const float sum = LaneSum(s, len);
  for (int64_t j = 0; j < len; ++j) s[j] = s[j] / sum;
  std::fill(s + len, s + n, 0.0f);
}

// Register-blocked products for the attention's small matrices (k <= T, n = head_dim or a block's keys; an item's
// operands sit in L1/L2). With OpenBLAS's sgemm for the same products the kernel took 10.6-10.9 ms per seed003 layer
// (forward + gradient, two threads, AMX Xeon), with these 9.1-9.3 ms; and they need no BLAS.
#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kW = 16, kTileRows = 4, kTileVecs = 4;
inline Vec VLoad(const float* p) { return _mm512_loadu_ps(p); }
inline void VStore(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec VSet(float x) { return _mm512_set1_ps(x); }
inline Vec VZero() { return _mm512_setzero_ps(); }
inline Vec VFma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
constexpr int kW = 8, kTileRows = 4, kTileVecs = 2;
inline Vec VLoad(const float* p) { return _mm256_loadu_ps(p); }
inline void VStore(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec VSet(float x) { return _mm256_set1_ps(x); }
inline Vec VZero() { return _mm256_setzero_ps(); }
inline Vec VFma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
#else  // any other CPU: plain floats (the compiler may still vectorise)
using Vec = float;
constexpr int kW = 1, kTileRows = 4, kTileVecs = 4;
inline Vec VLoad(const float* p) { return *p; }
inline void VStore(float* p, Vec v) { *p = v; }
inline Vec VSet(float x) { return x; }
inline Vec VZero() { return 0.0f; }
inline Vec VFma(Vec a, Vec b, Vec c) { return a * b + c; }
#endif

// C (R x NV kW, ldc) = [C +] sum_l A(r, l) B(l, :), A(r, l) = a[r ars + l acs], B row-major with leading dim ldb.
template <int R, int NV>
inline void Tile(int64_t k, const float* a, int64_t ars, int64_t acs, const float* b, int64_t ldb, float* c,
                 int64_t ldc, bool add) {
  Vec s[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) s[r][v] = add ? VLoad(c + r * ldc + v * kW) : VZero();
  for (int64_t l = 0; l < k; ++l) {
    Vec bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = VLoad(b + l * ldb + v * kW);
    for (int r = 0; r < R; ++r) {
      const Vec x = VSet(a[r * ars + l * acs]);
      for (int v = 0; v < NV; ++v) s[r][v] = VFma(x, bv[v], s[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) VStore(c + r * ldc + v * kW, s[r][v]);
}

template <int NV>
void TileRows(int64_t m, int64_t k, const float* a, int64_t ars, int64_t acs, const float* b, int64_t ldb, float* c,
              int64_t ldc, bool add) {
  int64_t r = 0;
  for (; r + kTileRows <= m; r += kTileRows)
    Tile<kTileRows, NV>(k, a + r * ars, ars, acs, b, ldb, c + r * ldc, ldc, add);
  for (; r < m; ++r) Tile<1, NV>(k, a + r * ars, ars, acs, b, ldb, c + r * ldc, ldc, add);
}

// C (m x n) = [C +] A B, A(r, l) = a[r ars + l acs] (m x k), B (k x n) row-major: column tiles of kTileVecs
// vectors, then single vectors, then single columns; the same order of operations whatever the thread.
void SmallGemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t ars, int64_t acs, const float* b,
               int64_t ldb, float* c, int64_t ldc, bool add) {
  int64_t c0 = 0;
  for (; c0 + kTileVecs * kW <= n; c0 += kTileVecs * kW)
    TileRows<kTileVecs>(m, k, a, ars, acs, b + c0, ldb, c + c0, ldc, add);
  if (kTileVecs > 2 && c0 + 2 * kW <= n) {
    TileRows<2>(m, k, a, ars, acs, b + c0, ldb, c + c0, ldc, add);
    c0 += 2 * kW;
  }
  for (; c0 + kW <= n; c0 += kW) TileRows<1>(m, k, a, ars, acs, b + c0, ldb, c + c0, ldc, add);
  for (; c0 < n; ++c0)
    for (int64_t r = 0; r < m; ++r) {
      float s = add ? c[r * ldc + c0] : 0.0f;
      for (int64_t l = 0; l < k; ++l) s += a[r * ars + l * acs] * b[l * ldb + c0];
      c[r * ldc + c0] = s;
    }
}

// rows x cols block of a (leading dim lda) into out (cols x rows, row-major).
void Transpose(int64_t rows, int64_t cols, const float* a, int64_t lda, float* out) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) out[j * rows + i] = a[i * lda + j];
}

struct Attention {
  int64_t items, t, heads, hd, dim, ld, block;  // ld = 3 dim, the row stride of qkv
  float scale;

  // The item's (batch row, head) offsets into qkv (and dqkv) and into y (and its gradient).
  int64_t QkvOffset(int64_t item) const { return (item / heads) * t * ld + (item % heads) * hd; }
  int64_t RowOffset(int64_t item) const { return (item / heads) * t * dim + (item % heads) * hd; }
  // Floats of scratch per thread: k or v transposed (hd x t), a block of dP / dS (block x t), and probs (t x t)
  // where the caller does not keep them.
  int64_t ScratchFloats() const { return hd * t + block * t + t * t; }

  // Forward of one item: probs (t, t) row-major, written whole (zeros above the diagonal); null: scratch.
  void Forward(int64_t item, const float* qkv, float* y, float* probs, float* scratch) const {
    const float* q = qkv + QkvOffset(item);
    const float* k = q + dim;
    const float* v = q + 2 * dim;
    float* out = y + RowOffset(item);
    float* kt = scratch;
    if (probs == nullptr) probs = scratch + hd * t + block * t;
    Transpose(t, hd, k, ld, kt);
    for (int64_t r0 = 0; r0 < t; r0 += block) {
      const int64_t r1 = std::min(t, r0 + block), m = r1 - r0;
      float* s = probs + r0 * t;
      SmallGemm(m, r1, hd, q + r0 * ld, ld, 1, kt, t, s, t, false);                // S = q k^T, keys [0, r1)
      for (int64_t i = 0; i < m; ++i) {
        CausalSoftmaxRow(s + i * t, r0 + i, r1, scale);
        std::fill(s + i * t + r1, s + (i + 1) * t, 0.0f);
      }
      SmallGemm(m, hd, r1, s, t, 1, v, ld, out + r0 * dim, dim, false);             // y = P v
    }
  }

  // Gradient of one item: dq, dk, dv into dqkv (same layout as qkv).
  void Backward(int64_t item, const float* qkv, const float* y, const float* probs, const float* gy, float* dqkv,
                float* scratch) const {
    const int64_t off = QkvOffset(item), row = RowOffset(item);
    const float* q = qkv + off;
    const float* k = q + dim;
    const float* v = q + 2 * dim;
    const float* p = probs + item * t * t;
    float* dq = dqkv + off;
    float* dk = dq + dim;
    float* dv = dq + 2 * dim;
    float* vt = scratch;
    float* ds = scratch + hd * t;
    Transpose(t, hd, v, ld, vt);
    // The last block first: its keys [0, t) cover every row of dk and dv, which it writes; the blocks above add
    // to their rows [0, r1).
    for (int64_t r0 = (t - 1) / block * block; r0 >= 0; r0 -= block) {
      const int64_t r1 = std::min(t, r0 + block), m = r1 - r0;
      const bool add = r1 != t;
      const float* pb = p + r0 * t;
      const float* go = gy + row + r0 * dim;
      SmallGemm(r1, hd, m, pb, 1, t, go, dim, dv, ld, add);                          // dv[0, r1) += P^T dy
      SmallGemm(m, r1, hd, go, dim, 1, vt, t, ds, t, false);                         // dP = dy v^T
      for (int64_t i = 0; i < m; ++i) {
        // softmax's gradient: dS = P (dP - sum_j P dP) with sum_j P_tj dP_tj = dy_t . y_t; times the scale
        const float di = LaneDot(go + i * dim, y + row + (r0 + i) * dim, hd);
        float* d = ds + i * t;
        const float* pr = pb + i * t;
        for (int64_t j = 0; j < r1; ++j) d[j] = pr[j] * (d[j] - di) * scale;
      }
      SmallGemm(m, hd, r1, ds, t, 1, k, ld, dq + r0 * ld, ld, false);               // dq = dS k
      SmallGemm(r1, hd, m, ds, 1, t, q + r0 * ld, ld, dk, ld, add);                  // dk[0, r1) += dS^T q
    }
  }
};

// Runs body(item, thread scratch) for every item on the calling thread and helpers on XLA's pool; returns when
// every item is done.
template <typename Body>
void ForItems(ffi::ThreadPool& pool, int64_t items, int64_t scratch_floats, Body body) {
  struct State {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto state = std::make_shared<State>();
  auto run = [state, items, scratch_floats, body] {
    std::unique_ptr<float[]> scratch(new float[scratch_floats]);
    for (int64_t i = state->next.fetch_add(1); i < items; i = state->next.fetch_add(1)) {
      body(i, scratch.get());
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = std::min<int64_t>(std::max<int64_t>(1, pool.num_threads()), items) - 1;
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([run] { run(); });
  run();
  while (state->done.load(std::memory_order_acquire) < items) std::this_thread::yield();
}

// The shape checks shared by both handlers: qkv (..., t, 3 dim); fills `at` (everything but the BLAS).
ffi::Error AttentionShape(ffi::Span<const int64_t> d, int64_t heads, int64_t block, Attention& at) {
  if (d.size() < 2) return ffi::Error::InvalidArgument("causal_attention: qkv needs rank >= 2");
  const int64_t three_dim = d[d.size() - 1];
  if (heads < 1 || three_dim % (3 * heads) != 0)
    return ffi::Error::InvalidArgument("causal_attention: qkv's last axis must be 3 * num_heads * head_dim");
  if (block < 1) return ffi::Error::InvalidArgument("causal_attention: block must be >= 1");
  int64_t batch = 1;
  for (size_t i = 0; i + 2 < d.size(); ++i) batch *= d[i];
  at.t = d[d.size() - 2];
  at.heads = heads;
  at.dim = three_dim / 3;
  at.hd = at.dim / heads;
  at.ld = three_dim;
  at.items = batch * heads;
  at.block = block;
  at.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(at.hd)));
  return ffi::Error::Success();
}

int64_t Elements(ffi::Span<const int64_t> d) {
  int64_t n = 1;
  for (int64_t x : d) n *= x;
  return n;
}

ffi::Error CausalAttentionImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> qkv, ffi::ResultBuffer<ffi::F32> y,
                               ffi::ResultBuffer<ffi::F32> probs, int64_t num_heads, int64_t block) {
  Attention at{};
  if (auto e = AttentionShape(qkv.dimensions(), num_heads, block, at); e.failure()) return e;
  if (Elements(y->dimensions()) != Elements(qkv.dimensions()) / 3)
    return ffi::Error::InvalidArgument("causal_attention: y must be (..., T, H D)");
  const int64_t np = Elements(probs->dimensions());
  const bool keep = np != 0;
  if (keep && np != at.items * at.t * at.t)
    return ffi::Error::InvalidArgument("causal_attention: probs must be (..., H, T, T) or empty");
  if (at.items == 0 || at.t == 0) return ffi::Error::Success();
  const float* x = qkv.typed_data();
  float* out = y->typed_data();
  float* pr = probs->typed_data();
  const Attention a = at;
  ForItems(pool, at.items, at.ScratchFloats(), [a, x, out, pr, keep](int64_t i, float* scratch) {
    a.Forward(i, x, out, keep ? pr + i * a.t * a.t : nullptr, scratch);
  });
  return ffi::Error::Success();
}

ffi::Error CausalAttentionGradImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> qkv, ffi::Buffer<ffi::F32> y,
                                   ffi::Buffer<ffi::F32> probs, ffi::Buffer<ffi::F32> gy,
                                   ffi::ResultBuffer<ffi::F32> dqkv, int64_t num_heads, int64_t block) {
  Attention at{};
  if (auto e = AttentionShape(qkv.dimensions(), num_heads, block, at); e.failure()) return e;
  const int64_t n = Elements(qkv.dimensions());
  if (Elements(y.dimensions()) != n / 3 || Elements(gy.dimensions()) != n / 3 || Elements(dqkv->dimensions()) != n ||
      Elements(probs.dimensions()) != at.items * at.t * at.t)
    return ffi::Error::InvalidArgument("causal_attention_grad: shapes do not match qkv (..., T, 3 H D)");
  if (at.items == 0 || at.t == 0) return ffi::Error::Success();
  const float *x = qkv.typed_data(), *yy = y.typed_data(), *pr = probs.typed_data(), *g = gy.typed_data();
  float* dx = dqkv->typed_data();
  const Attention a = at;
  ForItems(pool, at.items, at.ScratchFloats(), [a, x, yy, pr, g, dx](int64_t i, float* scratch) {
    a.Backward(i, x, yy, pr, g, dx, scratch);
  });
  return ffi::Error::Success();
}

}  // namespace

extern "C" {

// Sets the CBLAS sgemm (its address) that the handler calls, int_bits 64 for an ILP64 BLAS, 32 otherwise, and the
// BLAS's openblas_set_num_threads_local.
// 1 where the fused attention's products run on AVX2 / AVX-512 vectors; 0 where they are plain float loops (about
// 8x slower, slower than the unfused attention: llm_bridge.nanogpt then does not pick the kernel by default).
int cj_attention_vectorised() { return kW > 1 ? 1 : 0; }

void cj_gemm_set_sgemm(void* fn, int int_bits, void* set_threads_local) {
  g_int_bits.store(int_bits);
  g_set_threads_local.store(set_threads_local);
  g_sgemm.store(fn);
}


}  // extern "C"

XLA_FFI_DEFINE_HANDLER_SYMBOL(Sgemm, SgemmImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("trans_a")
                                  .Attr<bool>("trans_b"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(CausalAttention, CausalAttentionImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("num_heads")
                                  .Attr<int64_t>("block"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(CausalAttentionGrad, CausalAttentionGradImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("num_heads")
                                  .Attr<int64_t>("block"));
