// CPU softmax and log-softmax over the last dim of [rows, cols], with their backward passes.
//   softmax:     y_j = exp(x_j - m) / s,        m = max_j x_j, s = sum_j exp(x_j - m)
//   log_softmax: y_j = x_j - m - log(s)
// Subtracting the row max keeps every exponent <= 0, so nothing overflows. Backward, with dy given:
//   softmax:     dx_j = y_j (dy_j - sum_i dy_i y_i)
//   log_softmax: dx_j = dy_j - exp(y_j) sum_i dy_i
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"

namespace dtrain {

namespace {

// Element operations below which threads cost more than they save.
constexpr int64_t kGrain = 16384;

// Rows split into one static chunk per thread (rows are independent, so any split gives the same
// bits).
template <class F>
void parallel_rows(int64_t rows, int64_t cols, F&& f) {
  int max_threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  int threads = static_cast<int>(std::min<int64_t>({max_threads, rows * cols / kGrain, rows}));
  if (threads <= 1) {
    for (int64_t r = 0; r < rows; ++r) f(r);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) f(r);
}

template <class T>
void softmax_row(const T* x, T* y, int64_t n, bool log) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
  // A row of only -inf (fully masked) gives NaN, as in PyTorch.
  double s = 0.0;
  if (log) {
    for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<double>(x[j] - m));
    const T shift = m + static_cast<T>(std::log(s));
    for (int64_t j = 0; j < n; ++j) y[j] = x[j] - shift;
  } else {
    for (int64_t j = 0; j < n; ++j) {
      T e = std::exp(x[j] - m);
      y[j] = e;
      s += static_cast<double>(e);
    }
    const T inv = static_cast<T>(1.0 / s);
    for (int64_t j = 0; j < n; ++j) y[j] *= inv;
  }
}

template <class T>
void softmax_backward_row(const T* y, const T* dy, T* dx, int64_t n, bool log) {
  double s = 0.0;
  if (log) {
    for (int64_t j = 0; j < n; ++j) s += static_cast<double>(dy[j]);
    const T st = static_cast<T>(s);
    for (int64_t j = 0; j < n; ++j) dx[j] = dy[j] - std::exp(y[j]) * st;
  } else {
    for (int64_t j = 0; j < n; ++j) s += static_cast<double>(dy[j]) * static_cast<double>(y[j]);
    const T st = static_cast<T>(s);
    for (int64_t j = 0; j < n; ++j) dx[j] = y[j] * (dy[j] - st);
  }
}

int64_t last_dim(const Tensor& t) { return t.dim() == 0 ? 1 : t.shape().back(); }

void check_pair(const char* op, const Tensor& a, const Tensor& b) {
  DTRAIN_CHECK(a.shape() == b.shape(), "cpu ", op, ": shapes ", shape_str(a.shape()), " and ",
               shape_str(b.shape()), " differ");
  DTRAIN_CHECK(a.dtype() == b.dtype(), "cpu ", op, ": dtypes ", dtype_name(a.dtype()), " and ",
               dtype_name(b.dtype()), " differ");
  DTRAIN_CHECK(a.is_contiguous() && b.is_contiguous(), "cpu ", op,
               ": tensors must be contiguous (call .contiguous() first)");
}

}  // namespace

void CpuBackend::softmax(const Tensor& x, const Tensor& out, bool log) {
  check_pair(log ? "log_softmax" : "softmax", x, out);
  const int64_t cols = last_dim(x);
  if (x.numel() == 0 || cols == 0) return;
  const int64_t rows = x.numel() / cols;
  if (is_half(x.dtype())) {
    cpu_detail::F32Staging f32;
    softmax(f32.in(x), f32.out(out), log);
    return f32.write_back();
  }
  auto run = [&](auto* xp, auto* yp) {
    parallel_rows(rows, cols,
                  [&](int64_t r) { softmax_row(xp + r * cols, yp + r * cols, cols, log); });
  };
  switch (x.dtype()) {
    case DType::f32:
      return run(x.data<float>(), out.data<float>());
    case DType::f64:
      return run(x.data<double>(), out.data<double>());
    default:
      throw Error(detail::concat("cpu softmax: dtype ", dtype_name(x.dtype()),
                                 " is not supported; use a floating dtype"));
  }
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  check_pair(op, y, dy);
  check_pair(op, y, dx);
  const int64_t cols = last_dim(y);
  if (y.numel() == 0 || cols == 0) return;
  const int64_t rows = y.numel() / cols;
  if (is_half(y.dtype())) {
    cpu_detail::F32Staging f32;
    softmax_backward(f32.in(y), f32.in(dy), f32.out(dx), log);
    return f32.write_back();
  }
  auto run = [&](auto* yp, auto* dyp, auto* dxp) {
    parallel_rows(rows, cols, [&](int64_t r) {
      softmax_backward_row(yp + r * cols, dyp + r * cols, dxp + r * cols, cols, log);
    });
  };
  switch (y.dtype()) {
    case DType::f32:
      return run(y.data<float>(), dy.data<float>(), dx.data<float>());
    case DType::f64:
      return run(y.data<double>(), dy.data<double>(), dx.data<double>());
    default:
      throw Error(detail::concat("cpu ", op, ": dtype ", dtype_name(y.dtype()),
                                 " is not supported; use a floating dtype"));
  }
}

}  // namespace dtrain
