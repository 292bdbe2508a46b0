// CPU GEMM through OpenBLAS: C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for every batch b.
// f32/f64 call sgemm/dgemm directly with the transposes as flags (no copies).
// bf16 multiplies with f32 accumulation into an f32 result that is then rounded to bf16: through
// OpenBLAS's sbgemm where the library provides it (it is declared in cblas.h, but builds without
// BUILD_BFLOAT16, such as Debian's, do not export it, so it is looked up at run time), otherwise by
// widening the operands to f32 for sgemm, which gives the same products: a bf16 x bf16 product is
// exact in f32. f16 has no BLAS routine and always takes the widening path. The epilogues (bias,
// bias_grad) are composed from this GEMM, copy and reduce.
#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/gemm_epilogue.h"

namespace dtrain {

namespace {

CBLAS_TRANSPOSE trans_flag(bool t) { return t ? CblasTrans : CblasNoTrans; }

blasint blas_int(int64_t v, const char* what) {
  DTRAIN_CHECK(v >= 0 && v <= std::numeric_limits<blasint>::max(), "cpu gemm: ", what, " = ", v,
               " does not fit OpenBLAS's integer type; split the product into smaller pieces");
  return static_cast<blasint>(v);
}

using SbgemmFn = void (*)(CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, blasint, blasint, blasint,
                          float, const bfloat16*, blasint, const bfloat16*, blasint, float, float*,
                          blasint);

SbgemmFn find_sbgemm() {
  static const SbgemmFn fn = reinterpret_cast<SbgemmFn>(dlsym(RTLD_DEFAULT, "cblas_sbgemm"));
  return fn;
}

inline float widen(Half h) { return half_to_float(h); }
inline float widen(BFloat16 h) { return bf16_to_float(h); }
template <class H>
inline H narrow_to(float f) {
  if constexpr (std::is_same_v<H, Half>) {
    return float_to_half(f);
  } else {
    return float_to_bf16(f);
  }
}

// Copies a stored rows x cols matrix with row stride ld into a dense f32 buffer (row stride cols).
template <class H>
void widen_matrix(const H* src, int64_t rows, int64_t cols, int64_t ld, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = widen(src[r * ld + c]);
  }
}

template <class H>
void round_matrix(const float* src, int64_t rows, int64_t cols, H* dst, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) dst[r * ld + c] = narrow_to<H>(src[r * cols + c]);
  }
}

// f16/bf16: per batch, op(A) and op(B) are widened to f32 as stored (the transposes stay flags),
// multiplied by sgemm (or bf16 inputs by sbgemm), and the f32 result is rounded into C.
template <class H>
void half_gemm(const GemmArgs& g, const H* pa, const H* pb, H* pc) {
  const blasint m = blas_int(g.m, "m"), n = blas_int(g.n, "n"), k = blas_int(g.k, "k");
  const CBLAS_TRANSPOSE ta = trans_flag(g.trans_a), tb = trans_flag(g.trans_b);
  const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  SbgemmFn sbgemm = std::is_same_v<H, BFloat16> ? find_sbgemm() : nullptr;
  std::vector<float> fa, fb, fc(static_cast<size_t>(g.m * g.n));
  if (!sbgemm) {
    fa.resize(static_cast<size_t>(a_rows * a_cols));
    fb.resize(static_cast<size_t>(b_rows * b_cols));
  }
  for (int64_t i = 0; i < g.batch; ++i) {
    H* ci = pc + i * g.stride_c;
    if (g.beta != 0.0) widen_matrix(ci, g.m, g.n, g.ldc, fc.data());
    if (sbgemm) {
      sbgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(g.alpha),
             reinterpret_cast<const bfloat16*>(pa + i * g.stride_a), blas_int(g.lda, "lda"),
             reinterpret_cast<const bfloat16*>(pb + i * g.stride_b), blas_int(g.ldb, "ldb"),
             static_cast<float>(g.beta), fc.data(), n);
    } else {
      // A batch stride of 0 reuses the operand: widen it only once.
      if (i == 0 || g.stride_a != 0) {
        widen_matrix(pa + i * g.stride_a, a_rows, a_cols, g.lda, fa.data());
      }
      if (i == 0 || g.stride_b != 0) {
        widen_matrix(pb + i * g.stride_b, b_rows, b_cols, g.ldb, fb.data());
      }
      cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(g.alpha), fa.data(),
                  blas_int(std::max<int64_t>(1, a_cols), "lda"), fb.data(),
                  blas_int(std::max<int64_t>(1, b_cols), "ldb"), static_cast<float>(g.beta),
                  fc.data(), n);
    }
    round_matrix(fc.data(), g.m, g.n, ci, g.ldc);
  }
}

// k = 0 is an empty sum: C = beta * C, and exactly 0 when beta is 0 whatever C held.
template <class T>
void scale_output(const GemmArgs& g, T* c) {
  for (int64_t i = 0; i < g.batch; ++i) {
    for (int64_t r = 0; r < g.m; ++r) {
      T* row = c + i * g.stride_c + r * g.ldc;
      for (int64_t col = 0; col < g.n; ++col) {
        if (g.beta == 0.0) {
          row[col] = T{};
        } else if constexpr (std::is_floating_point_v<T>) {
          row[col] = static_cast<T>(g.beta * row[col]);
        } else {
          row[col] = narrow_to<T>(static_cast<float>(g.beta) * widen(row[col]));
        }
      }
    }
  }
}

void check_args(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) {
  DTRAIN_CHECK(a.dtype() == b.dtype() && a.dtype() == c.dtype(), "cpu gemm: dtypes ",
               dtype_name(a.dtype()), ", ", dtype_name(b.dtype()), " and ", dtype_name(c.dtype()),
               " must be equal; convert the operands with .to(dtype)");
  DTRAIN_CHECK(g.m >= 0 && g.n >= 0 && g.k >= 0 && g.batch >= 0, "cpu gemm: negative size m=", g.m,
               " n=", g.n, " k=", g.k, " batch=", g.batch);
  // BLAS requires each leading dimension to be at least the stored row length (and >= 1).
  int64_t a_cols = g.trans_a ? g.m : g.k;
  int64_t b_cols = g.trans_b ? g.k : g.n;
  DTRAIN_CHECK(g.lda >= std::max<int64_t>(1, a_cols) && g.ldb >= std::max<int64_t>(1, b_cols) &&
                   g.ldc >= std::max<int64_t>(1, g.n),
               "cpu gemm: leading dimensions lda=", g.lda, " ldb=", g.ldb, " ldc=", g.ldc,
               " are too small for m=", g.m, " n=", g.n, " k=", g.k);
}

template <class F>
void dispatch_gemm(DType t, F&& f) {
  switch (t) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    case DType::f16:
      return f(Half{});
    case DType::bf16:
      return f(BFloat16{});
    default:
      throw Error(detail::concat("cpu gemm: dtype ", dtype_name(t),
                                 " is not supported; use f32, f64, f16 or bf16"));
  }
}

}  // namespace

void CpuBackend::gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) {
  check_args(g, a, b, c);
  if (g.epilogue != GemmEpilogue::none) {
    check_gemm_epilogue("cpu", g, c);
    return compose_gemm_epilogue(*this, g, a, b, c);
  }
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  dispatch_gemm(c.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* pc = c.data<T>();
    if (g.k == 0) return scale_output(g, pc);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      const blasint n = blas_int(g.n, "n"), k = blas_int(g.k, "k");
      const blasint lda = blas_int(g.lda, "lda"), ldb = blas_int(g.ldb, "ldb");
      const blasint ldc = blas_int(g.ldc, "ldc");
      blas_int(g.m, "m");
      const CBLAS_TRANSPOSE ta = trans_flag(g.trans_a), tb = trans_flag(g.trans_b);
      // One thread pool: OpenBLAS runs single-threaded inside OpenMP's threads, each taking whole
      // matrices of the batch or a block of C's rows (rows of op(A)). Two pools (OpenMP for our loops,
      // OpenBLAS's pthreads for GEMM) spin against each other on a few cores.
      const int threads = omp_get_max_threads();
      const double flops = 2.0 * static_cast<double>(g.m) * g.n * g.k * g.batch;
      const int64_t row_blocks = (threads > 1 && g.batch < threads && flops > 2e5)
                                     ? std::min<int64_t>(threads, (g.m + 7) / 8)
                                     : 1;
      const int64_t rows_per_block = (g.m + row_blocks - 1) / row_blocks;
      const int64_t items = g.batch * row_blocks;
#pragma omp parallel for schedule(static) if (threads > 1 && items > 1 && flops > 2e5)
      for (int64_t item = 0; item < items; ++item) {
        const int64_t i = item / row_blocks, r0 = (item % row_blocks) * rows_per_block;
        const int64_t rows = std::min(rows_per_block, g.m - r0);
        if (rows <= 0) continue;
        // Row r of op(A) starts at A + r*lda when A is stored as is, at A + r when it is transposed.
        const T* a_rows = pa + i * g.stride_a + (g.trans_a ? r0 : r0 * g.lda);
        T* c_rows = pc + i * g.stride_c + r0 * g.ldc;
        const blasint m = static_cast<blasint>(rows);
        if constexpr (std::is_same_v<T, float>) {
          cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(g.alpha), a_rows, lda,
                      pb + i * g.stride_b, ldb, static_cast<float>(g.beta), c_rows, ldc);
        } else {
          cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, g.alpha, a_rows, lda, pb + i * g.stride_b,
                      ldb, g.beta, c_rows, ldc);
        }
      }
    } else {
      half_gemm<T>(g, pa, pb, pc);
    }
  });
}

}  // namespace dtrain
