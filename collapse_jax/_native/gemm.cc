// Float32 matrix product through a BLAS sgemm found at run time (jax.ffi target "collapse_jax_sgemm").
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
#include <cstdint>
#include <memory>
#include <thread>

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

// One product C = op(A) op(B), row-major, C (m, n) with leading dimension ldc.
void Gemm(void* fn, bool wide, int ta, int tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
          const float* b, int64_t ldb, float* c, int64_t ldc) {
  if (wide) {
    reinterpret_cast<Sgemm64>(fn)(kRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  } else {
    reinterpret_cast<Sgemm32>(fn)(kRowMajor, ta, tb, static_cast<int32_t>(m), static_cast<int32_t>(n),
                                  static_cast<int32_t>(k), 1.0f, a, static_cast<int32_t>(lda), b,
                                  static_cast<int32_t>(ldb), 0.0f, c, static_cast<int32_t>(ldc));
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

}  // namespace

extern "C" {

// Sets the CBLAS sgemm (its address) that the handler calls, int_bits 64 for an ILP64 BLAS, 32 otherwise, and the
// BLAS's openblas_set_num_threads_local.
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
