// CPU kernels for layer norm (alone and fused with a residual add), embedding and cross entropy.
// Each works on f32 and f64 directly; f16 and bf16 go through f32 stand-ins and are written back
// (F32Staging, cpu_loops.h). Row statistics accumulate in double. Every reduction that produces a
// parameter gradient runs in a fixed order (sequential over rows, parallel only across columns), so
// results are bitwise the same for any thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/backend/cpu/cpu_math.h"

namespace dtrain {

using namespace cpu_detail;

namespace {

// Columns handled by one task in the column-parallel reductions.
constexpr int64_t kColumnBlock = 64;

// Statistics tensors (mean, rstd) are f32 or f64 independently of the data dtype.
inline void store_stat(const Tensor& t, int64_t i, double v) {
  if (t.dtype() == DType::f64) {
    t.data<double>()[i] = v;
  } else {
    t.data<float>()[i] = static_cast<float>(v);
  }
}
inline double load_stat(const Tensor& t, int64_t i) {
  return t.dtype() == DType::f64 ? t.data<double>()[i] : static_cast<double>(t.data<float>()[i]);
}

// ---------------------------------------------------------------------------------------------
// Layer norm over the last dim of x [rows, cols]:
//   mean = sum_j x_j / D,  var = sum_j (x_j - mean)^2 / D,  rstd = 1 / sqrt(var + eps)
//   y_j = (x_j - mean) * rstd * w_j + b_j
// One row at a time; the sums accumulate in double, in simd lanes (a fixed order for a given ISA).
// The f32 rows are built per ISA (DTRAIN_CPU_CLONES).
template <class T>
[[gnu::always_inline]] inline void layer_norm_row(const T* xr, T* yr, const T* wp, const T* bp,
                                                  int64_t cols, double eps, double* stats) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < cols; ++j) s += static_cast<double>(xr[j]);
  const double mu = s / static_cast<double>(cols);
  double ss = 0.0;
#pragma omp simd reduction(+ : ss)
  for (int64_t j = 0; j < cols; ++j) {
    const double d = static_cast<double>(xr[j]) - mu;
    ss += d * d;
  }
  const double rs = 1.0 / std::sqrt(ss / static_cast<double>(cols) + eps);
  const T mu_t = static_cast<T>(mu), rs_t = static_cast<T>(rs);
  if (wp && bp) {
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - mu_t) * rs_t * wp[j] + bp[j];
  } else {
    for (int64_t j = 0; j < cols; ++j) {
      T h = (xr[j] - mu_t) * rs_t;
      if (wp) h *= wp[j];
      if (bp) h += bp[j];
      yr[j] = h;
    }
  }
  stats[0] = mu;
  stats[1] = rs;
}

// With xhat = (x - mean) * rstd and g = dy * w (g = dy without weight):
//   dx_j = rstd * (g_j - mean_k(g_k) - xhat_j * mean_k(g_k * xhat_k))
template <class T>
[[gnu::always_inline]] inline void layer_norm_dx_row(const T* xr, const T* gr, const T* wp, T* dxr,
                                                     int64_t cols, double mu, double rs) {
  const double inv_d = 1.0 / static_cast<double>(cols);
  double sum_g = 0.0, sum_gh = 0.0;
  if (wp) {
#pragma omp simd reduction(+ : sum_g, sum_gh)
    for (int64_t j = 0; j < cols; ++j) {
      const double g = static_cast<double>(gr[j]) * static_cast<double>(wp[j]);
      sum_g += g;
      sum_gh += g * (static_cast<double>(xr[j]) - mu) * rs;
    }
  } else {
#pragma omp simd reduction(+ : sum_g, sum_gh)
    for (int64_t j = 0; j < cols; ++j) {
      const double g = static_cast<double>(gr[j]);
      sum_g += g;
      sum_gh += g * (static_cast<double>(xr[j]) - mu) * rs;
    }
  }
  const double a = sum_g * inv_d, c = sum_gh * inv_d;
#pragma omp simd
  for (int64_t j = 0; j < cols; ++j) {
    const double g = static_cast<double>(gr[j]) * (wp ? static_cast<double>(wp[j]) : 1.0);
    const double h = (static_cast<double>(xr[j]) - mu) * rs;
    dxr[j] = static_cast<T>(rs * (g - a - h * c));
  }
}

DTRAIN_CPU_CLONES void layer_norm_row_f32(const float* xr, float* yr, const float* wp,
                                          const float* bp, int64_t cols, double eps,
                                          double* stats) {
  layer_norm_row(xr, yr, wp, bp, cols, eps, stats);
}
DTRAIN_CPU_CLONES void layer_norm_dx_row_f32(const float* xr, const float* gr, const float* wp,
                                             float* dxr, int64_t cols, double mu, double rs) {
  layer_norm_dx_row(xr, gr, wp, dxr, cols, mu, rs);
}
// f32 goes to the per-ISA builds, f64 to the plain rows.
template <class T>
void layer_norm_row_any(const T* xr, T* yr, const T* wp, const T* bp, int64_t cols, double eps,
                        double* stats) {
  if constexpr (std::is_same_v<T, float>) {
    layer_norm_row_f32(xr, yr, wp, bp, cols, eps, stats);
  } else {
    layer_norm_row(xr, yr, wp, bp, cols, eps, stats);
  }
}
template <class T>
void layer_norm_dx_row_any(const T* xr, const T* gr, const T* wp, T* dxr, int64_t cols, double mu,
                           double rs) {
  if constexpr (std::is_same_v<T, float>) {
    layer_norm_dx_row_f32(xr, gr, wp, dxr, cols, mu, rs);
  } else {
    layer_norm_dx_row(xr, gr, wp, dxr, cols, mu, rs);
  }
}

template <class T>
void layer_norm_kernel(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                       const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  const int64_t cols = x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  const T* xp = x.data<T>();
  const T* wp = weight.defined() ? weight.data<T>() : nullptr;
  const T* bp = bias.defined() ? bias.data<T>() : nullptr;
  T* yp = out.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    double stats[2];
    layer_norm_row_any(xp + r * cols, yp + r * cols, wp, bp, cols, eps, stats);
    if (mean.defined()) store_stat(mean, r, stats[0]);
    if (rstd.defined()) store_stat(rstd, r, stats[1]);
  }
}

//   dw_j = sum_rows dy_j * xhat_j,   db_j = sum_rows dy_j
template <class T>
void layer_norm_backward_kernel(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                                const Tensor& dweight, const Tensor& dbias) {
  const int64_t cols = x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  const T* xp = x.data<T>();
  const T* gp = dy.data<T>();
  const T* wp = weight.defined() ? weight.data<T>() : nullptr;
  const bool parallel = rows * cols > kParallelGrain;
  if (dx.defined()) {
    T* dxp = dx.data<T>();
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < rows; ++r) {
      layer_norm_dx_row_any(xp + r * cols, gp + r * cols, wp, dxp + r * cols, cols,
                            load_stat(mean, r), load_stat(rstd, r));
    }
  }
  if (dweight.defined() || dbias.defined()) {
    T* dwp = dweight.defined() ? dweight.data<T>() : nullptr;
    T* dbp = dbias.defined() ? dbias.data<T>() : nullptr;
    const int64_t blocks = (cols + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t j0 = blk * kColumnBlock, j1 = std::min(cols, j0 + kColumnBlock);
      double acc_w[kColumnBlock] = {}, acc_b[kColumnBlock] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const double mu = load_stat(mean, r), rs = load_stat(rstd, r);
        const T* xr = xp + r * cols;
        const T* gr = gp + r * cols;
        for (int64_t j = j0; j < j1; ++j) {
          const double g = static_cast<double>(gr[j]);
          acc_w[j - j0] += g * (static_cast<double>(xr[j]) - mu) * rs;
          acc_b[j - j0] += g;
        }
      }
      for (int64_t j = j0; j < j1; ++j) {
        if (dwp) dwp[j] = static_cast<T>(acc_w[j - j0]);
        if (dbp) dbp[j] = static_cast<T>(acc_b[j - j0]);
      }
    }
  }
}

// Fused residual add and layer norm, row by row: h = x + residual (rounded to T), then the row of
// h is normalised while it is still in cache. The same arithmetic as add then layer_norm.
template <class T>
void add_layer_norm_kernel(const Tensor& x, const Tensor& residual, const Tensor& weight,
                           const Tensor& bias, double eps, const Tensor& h, const Tensor& out,
                           const Tensor& mean, const Tensor& rstd) {
  const int64_t cols = x.size(-1);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  const T* xp = x.data<T>();
  const T* rp = residual.data<T>();
  const T* wp = weight.defined() ? weight.data<T>() : nullptr;
  const T* bp = bias.defined() ? bias.data<T>() : nullptr;
  T* hp = h.data<T>();
  T* yp = out.data<T>();
#pragma omp parallel for schedule(static) if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = xp + r * cols;
    const T* rr = rp + r * cols;
    T* hr = hp + r * cols;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) hr[j] = xr[j] + rr[j];
    double stats[2];
    layer_norm_row_any(hr, yp + r * cols, wp, bp, cols, eps, stats);
    if (mean.defined()) store_stat(mean, r, stats[0]);
    if (rstd.defined()) store_stat(rstd, r, stats[1]);
  }
}

// ---------------------------------------------------------------------------------------------
// Embedding gradient: dweight[idx[i], :] += grad[i, :]. Threads split the embedding dim, and each
// walks all indices in order, so repeated indices are summed in the same order every time.
template <class T>
void embedding_backward_kernel(const Tensor& grad, const Tensor& indices, int64_t padding_idx,
                               const Tensor& dweight) {
  const int64_t n = indices.numel();
  const int64_t vocab = dweight.size(0);
  const int64_t dim = dweight.numel() / std::max<int64_t>(vocab, 1);
  const int64_t* ip = indices.data<int64_t>();
  const T* gp = grad.data<T>();
  T* dwp = dweight.data<T>();
  const int64_t blocks = (dim + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for schedule(static) if (n * dim > kParallelGrain)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t j0 = blk * kColumnBlock, j1 = std::min(dim, j0 + kColumnBlock);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = ip[i];
      // The op rejects out-of-range indices; skipping them here keeps a bad call from writing
      // outside the buffer.
      if (row == padding_idx || row < 0 || row >= vocab) continue;
      const T* gr = gp + i * dim;
      T* dr = dwp + row * dim;
      for (int64_t j = j0; j < j1; ++j) dr[j] += gr[j];
    }
  }
}

// exp(v) evaluated in T: for f32 logits the float exp is several times cheaper and exact enough for
// an f32 result (the sums still accumulate in double).
template <class T>
inline double exp_in(double v) {
  return static_cast<double>(std::exp(static_cast<T>(v)));
}

// ---------------------------------------------------------------------------------------------
// Cross entropy of one row with label smoothing s over C classes, lse = log sum_j exp(x_j):
//   loss = sum_j q_j (lse - x_j) with q = (1 - s) onehot(t) + s / C
//        = (1 - s) (lse - x_t) + s (lse - mean_j x_j)
template <class T>
void cross_entropy_kernel(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                          double label_smoothing, const Tensor& losses) {
  const int64_t classes = logits.size(-1);
  const int64_t rows = targets.numel();
  const T* xp = logits.data<T>();
  const int64_t* tp = targets.data<int64_t>();
  T* lp = losses.data<T>();
  const double s = label_smoothing;
#pragma omp parallel for schedule(static) if (rows * classes > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = tp[r];
    if (t == ignore_index || t < 0 || t >= classes) {
      lp[r] = T(0);
      continue;
    }
    const T* xr = xp + r * classes;
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < classes; ++j) m = std::max(m, static_cast<double>(xr[j]));
    double se = 0.0, sx = 0.0;
    for (int64_t j = 0; j < classes; ++j) {
      se += exp_in<T>(static_cast<double>(xr[j]) - m);
      sx += static_cast<double>(xr[j]);
    }
    const double lse = m + std::log(se);
    double loss = (1.0 - s) * (lse - static_cast<double>(xr[t]));
    if (s != 0.0) loss += s * (lse - sx / static_cast<double>(classes));
    lp[r] = static_cast<T>(loss);
  }
}

// dloss/dx_j = g * (softmax_j - q_j), q as above.
template <class T>
void cross_entropy_backward_kernel(const Tensor& logits, const Tensor& targets,
                                   int64_t ignore_index, double label_smoothing,
                                   const Tensor& grad_losses, const Tensor& dlogits) {
  const int64_t classes = logits.size(-1);
  const int64_t rows = targets.numel();
  const T* xp = logits.data<T>();
  const int64_t* tp = targets.data<int64_t>();
  const T* gp = grad_losses.data<T>();
  T* dp = dlogits.data<T>();
  const double s = label_smoothing;
  const double uniform = s / static_cast<double>(classes);
#pragma omp parallel for schedule(static) if (rows * classes > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = tp[r];
    T* dr = dp + r * classes;
    if (t == ignore_index || t < 0 || t >= classes) {
      std::fill(dr, dr + classes, T(0));
      continue;
    }
    const T* xr = xp + r * classes;
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < classes; ++j) m = std::max(m, static_cast<double>(xr[j]));
    // exp(x_j - m) is parked in dr, then normalised in place.
    double se = 0.0;
    for (int64_t j = 0; j < classes; ++j) {
      const double e = exp_in<T>(static_cast<double>(xr[j]) - m);
      dr[j] = static_cast<T>(e);
      se += e;
    }
    const double g = static_cast<double>(gp[r]);
    const double inv_se = 1.0 / se;
    for (int64_t j = 0; j < classes; ++j) {
      double d = static_cast<double>(dr[j]) * inv_se - uniform;
      if (j == t) d -= 1.0 - s;
      dr[j] = static_cast<T>(g * d);
    }
  }
}

}  // namespace

void CpuBackend::layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                            const Tensor& out, const Tensor& mean, const Tensor& rstd) {
  if (is_half(x.dtype())) {
    F32Staging f32;
    layer_norm(f32.in(x), f32.in(weight), f32.in(bias), eps, f32.out(out), mean, rstd);
    return f32.write_back();
  }
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_kernel<T>(x, weight, bias, eps, out, mean, rstd);
  });
}

void CpuBackend::layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                     const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                                     const Tensor& dweight, const Tensor& dbias) {
  if (is_half(x.dtype()) || is_half(dy.dtype())) {
    F32Staging f32;
    layer_norm_backward(f32.in(dy), f32.in(x), f32.in(weight), mean, rstd, f32.out(dx),
                        f32.out(dweight), f32.out(dbias));
    return f32.write_back();
  }
  dispatch_float(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_backward_kernel<T>(dy, x, weight, mean, rstd, dx, dweight, dbias);
  });
}

void CpuBackend::add_layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                const Tensor& bias, double eps, const Tensor& h, const Tensor& out,
                                const Tensor& mean, const Tensor& rstd) {
  if (is_half(x.dtype())) {
    // h is rounded to its 16-bit dtype before the statistics are taken, as add then layer_norm.
    binary(BinaryOp::add, x, residual, h);
    return layer_norm(h, weight, bias, eps, out, mean, rstd);
  }
  check_same_dtype("add_layer_norm", x, residual);
  check_same_numel("add_layer_norm", x, residual);
  dispatch_float(x.dtype(), "add_layer_norm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    add_layer_norm_kernel<T>(x, residual, weight, bias, eps, h, out, mean, rstd);
  });
}

// dx = dh + layer_norm_backward(dy): the reference composes the two (f16/bf16 in f32 stand-ins, so
// dx is rounded once).
void CpuBackend::add_layer_norm_backward(const Tensor& dy, const Tensor& dh, const Tensor& h,
                                         const Tensor& weight, const Tensor& mean,
                                         const Tensor& rstd, const Tensor& dx,
                                         const Tensor& dweight, const Tensor& dbias) {
  if (is_half(h.dtype()) || is_half(dy.dtype())) {
    F32Staging f32;
    add_layer_norm_backward(f32.in(dy), f32.in(dh), f32.in(h), f32.in(weight), mean, rstd,
                            f32.out(dx), f32.out(dweight), f32.out(dbias));
    return f32.write_back();
  }
  layer_norm_backward(dy, h, weight, mean, rstd, dx, dweight, dbias);
  if (dx.defined() && dh.defined()) binary(BinaryOp::add, dx, dh, dx);
}

void CpuBackend::embedding(const Tensor& weight, const Tensor& indices, const Tensor& out) {
  // A row gather is a byte copy, so one kernel serves every dtype.
  const int64_t n = indices.numel();
  const int64_t vocab = weight.size(0);
  const int64_t dim = weight.numel() / std::max<int64_t>(vocab, 1);
  const size_t row_bytes = static_cast<size_t>(dim) * dtype_size(weight.dtype());
  const int64_t* ip = indices.data<int64_t>();
  const char* wp = static_cast<const char*>(weight.raw_data());
  char* op = static_cast<char*>(out.raw_data());
#pragma omp parallel for schedule(static) if (n * dim > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = ip[i];
    char* dst = op + static_cast<size_t>(i) * row_bytes;
    if (row < 0 || row >= vocab) {
      std::memset(dst, 0, row_bytes);  // unreachable through the op, which checks the range
    } else {
      std::memcpy(dst, wp + static_cast<size_t>(row) * row_bytes, row_bytes);
    }
  }
}

void CpuBackend::embedding_backward(const Tensor& grad, const Tensor& indices, int64_t padding_idx,
                                    const Tensor& dweight) {
  if (is_half(dweight.dtype()) || is_half(grad.dtype())) {
    F32Staging f32;  // dweight accumulates: its stand-in starts with its values
    embedding_backward(f32.in(grad), indices, padding_idx, f32.inout(dweight));
    return f32.write_back();
  }
  dispatch_float(dweight.dtype(), "embedding_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    embedding_backward_kernel<T>(grad, indices, padding_idx, dweight);
  });
}

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                               double label_smoothing, const Tensor& losses) {
  if (is_half(logits.dtype())) {
    F32Staging f32;
    cross_entropy(f32.in(logits), targets, ignore_index, label_smoothing, f32.out(losses));
    return f32.write_back();
  }
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_kernel<T>(logits, targets, ignore_index, label_smoothing, losses);
  });
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                        int64_t ignore_index, double label_smoothing,
                                        const Tensor& grad_losses, const Tensor& dlogits) {
  if (is_half(logits.dtype()) || is_half(grad_losses.dtype())) {
    F32Staging f32;
    cross_entropy_backward(f32.in(logits), targets, ignore_index, label_smoothing,
                           f32.in(grad_losses), f32.out(dlogits));
    return f32.write_back();
  }
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_backward_kernel<T>(logits, targets, ignore_index, label_smoothing, grad_losses,
                                     dlogits);
  });
}

}  // namespace dtrain
