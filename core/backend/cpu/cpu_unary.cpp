// CPU unary elementwise kernels and their derivatives: one forward, unary_<name>, and one backward,
// unary_backward_<name> (out = g * f'(x)), per row of core/backend/unary_ops.def, over contiguous
// f32/f64 spans. The dispatch over UnaryOp is generated from that table, so a row without both
// functions here does not compile. f16/bf16 and strided outputs are staged through f32
// (F32Staging).
//
//   gelu_erf(x) = x Phi(x), Phi the standard normal CDF, Phi(x) = (1 + erf(x / sqrt 2)) / 2;
//     d = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi)
//   gelu_tanh(x) = x/2 (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3);
//     d = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
//   silu(x) = x s, s = sigmoid(x);  d = s (1 + x (1 - s))
//   the others as their names say (unary_ops.def lists them).
#include <cmath>
#include <type_traits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/backend/cpu/cpu_math.h"

namespace dtrain {

using namespace cpu_detail;

namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440;     // 1 / sqrt(2)
constexpr double kSqrt2Pi = 0.79788456080286535588;     // sqrt(2 / pi)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1 / sqrt(2 pi)
constexpr double kGeluCubic = 0.044715;

// GELU (erf form) over a contiguous span. f32 uses the polynomial erf and exp of cpu_math.h, so
// these loops vectorise; f64 uses libm. They are plain loops rather than map_unary lambdas because
// GCC does not inline a lambda this large into the loop, and a call in the loop stops it from
// vectorising.
[[gnu::always_inline]] inline float gelu_erf_of(float v) { return erf_poly(v); }
inline double gelu_erf_of(double v) { return std::erf(v); }
[[gnu::always_inline]] inline float gelu_exp_of(float v) { return exp_poly(v); }
inline double gelu_exp_of(double v) { return std::exp(v); }

template <class T>
[[gnu::always_inline]] inline void gelu_erf_span(const T* x, T* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    y[i] = T(0.5) * v * (T(1) + gelu_erf_of(v * T(kSqrt1_2)));
  }
}

// d [x Phi(x)] = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi)
template <class T>
[[gnu::always_inline]] inline void gelu_erf_backward_span(const T* x, const T* g, T* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T cdf = T(0.5) * (T(1) + gelu_erf_of(v * T(kSqrt1_2)));
    const T pdf = T(kInvSqrt2Pi) * gelu_exp_of(T(-0.5) * v * v);
    y[i] = g[i] * (cdf + v * pdf);
  }
}

// The f32 spans, built per ISA (DTRAIN_CPU_CLONES): GELU is the widest elementwise op of a transformer
// block (its MLP hidden layer), and AVX-512 runs it about 3x faster than the baseline's SSE2.
DTRAIN_CPU_CLONES void gelu_erf_f32(const float* x, float* y, int64_t n) { gelu_erf_span(x, y, n); }
DTRAIN_CPU_CLONES void gelu_erf_backward_f32(const float* x, const float* g, float* y, int64_t n) {
  gelu_erf_backward_span(x, g, y, n);
}
// f32 goes to the per-ISA builds, f64 to the plain span.
template <class T>
void gelu_erf_any(const T* x, T* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    gelu_erf_f32(x, y, n);
  } else {
    gelu_erf_span(x, y, n);
  }
}
template <class T>
void gelu_erf_backward_any(const T* x, const T* g, T* y, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    gelu_erf_backward_f32(x, g, y, n);
  } else {
    gelu_erf_backward_span(x, g, y, n);
  }
}

template <class T>
inline T sigmoid_of(T x) {
  // Never exponentiates a large positive number: for x < 0 use e^x / (1 + e^x).
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  T e = std::exp(x);
  return e / (T(1) + e);
}

template <class T, class F>
void map_backward(const T* x, const T* g, T* y, int64_t n, int64_t cost, F f) {
  parallel_for(n, cost, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) y[i] = f(x[i], g[i]);
  });
}

// ---- one forward and one backward per row of unary_ops.def. The number passed to map_unary and
// map_backward is the relative cost of one element (for the parallel threshold).
#define DTRAIN_FWD(name) \
  template <class T>     \
  void unary_##name(const T* x, T* y, int64_t n)
#define DTRAIN_BWD(name) \
  template <class T>     \
  void unary_backward_##name(const T* x, const T* g, T* y, int64_t n)

DTRAIN_FWD(neg) {
  map_unary(x, y, n, 1, [](T v) { return -v; });
}
DTRAIN_BWD(neg) {
  map_backward(x, g, y, n, 1, [](T, T d) { return -d; });
}

DTRAIN_FWD(exp) {
  map_unary(x, y, n, 8, [](T v) { return std::exp(v); });
}
DTRAIN_BWD(exp) {
  map_backward(x, g, y, n, 8, [](T v, T d) { return d * std::exp(v); });
}

DTRAIN_FWD(log) {
  map_unary(x, y, n, 8, [](T v) { return std::log(v); });
}
DTRAIN_BWD(log) {
  map_backward(x, g, y, n, 2, [](T v, T d) { return d / v; });
}

// d sqrt(x) = 1 / (2 sqrt(x))
DTRAIN_FWD(sqrt) {
  map_unary(x, y, n, 4, [](T v) { return std::sqrt(v); });
}
DTRAIN_BWD(sqrt) {
  map_backward(x, g, y, n, 4, [](T v, T d) { return d / (T(2) * std::sqrt(v)); });
}

// d x^(-1/2) = -1/2 x^(-3/2)
DTRAIN_FWD(rsqrt) {
  map_unary(x, y, n, 4, [](T v) { return T(1) / std::sqrt(v); });
}
DTRAIN_BWD(rsqrt) {
  map_backward(x, g, y, n, 4, [](T v, T d) {
    T r = T(1) / std::sqrt(v);
    return T(-0.5) * d * r * r * r;
  });
}

// d|x| = sign(x), 0 at 0 (as PyTorch).
DTRAIN_FWD(abs) {
  map_unary(x, y, n, 1, [](T v) { return std::abs(v); });
}
DTRAIN_BWD(abs) {
  map_backward(x, g, y, n, 1, [](T v, T d) { return v > T(0) ? d : (v < T(0) ? -d : T(0)); });
}

// `v < 0 ? 0 : v` keeps NaN as NaN, as PyTorch's relu does.
DTRAIN_FWD(relu) {
  map_unary(x, y, n, 1, [](T v) { return v < T(0) ? T(0) : v; });
}
DTRAIN_BWD(relu) {
  map_backward(x, g, y, n, 1, [](T v, T d) { return v > T(0) ? d : T(0); });
}

DTRAIN_FWD(gelu_erf) {
  parallel_for(n, 16, [&](int64_t b, int64_t e) { gelu_erf_any(x + b, y + b, e - b); });
}
DTRAIN_BWD(gelu_erf) {
  parallel_for(n, 16,
               [&](int64_t b, int64_t e) { gelu_erf_backward_any(x + b, g + b, y + b, e - b); });
}

DTRAIN_FWD(gelu_tanh) {
  map_unary(x, y, n, 16, [](T v) {
    T u = T(kSqrt2Pi) * (v + T(kGeluCubic) * v * v * v);
    return T(0.5) * v * (T(1) + std::tanh(u));
  });
}
DTRAIN_BWD(gelu_tanh) {
  map_backward(x, g, y, n, 16, [](T v, T d) {
    T u = T(kSqrt2Pi) * (v + T(kGeluCubic) * v * v * v);
    T t = std::tanh(u);
    T du = T(kSqrt2Pi) * (T(1) + T(3 * kGeluCubic) * v * v);
    return d * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
  });
}

DTRAIN_FWD(tanh) {
  map_unary(x, y, n, 8, [](T v) { return std::tanh(v); });
}
DTRAIN_BWD(tanh) {
  map_backward(x, g, y, n, 8, [](T v, T d) {
    T t = std::tanh(v);
    return d * (T(1) - t * t);
  });
}

DTRAIN_FWD(sigmoid) {
  map_unary(x, y, n, 8, [](T v) { return sigmoid_of(v); });
}
DTRAIN_BWD(sigmoid) {
  map_backward(x, g, y, n, 8, [](T v, T d) {
    T s = sigmoid_of(v);
    return d * s * (T(1) - s);
  });
}

DTRAIN_FWD(square) {
  map_unary(x, y, n, 1, [](T v) { return v * v; });
}
DTRAIN_BWD(square) {
  map_backward(x, g, y, n, 1, [](T v, T d) { return T(2) * v * d; });
}

DTRAIN_FWD(reciprocal) {
  map_unary(x, y, n, 2, [](T v) { return T(1) / v; });
}
DTRAIN_BWD(reciprocal) {
  map_backward(x, g, y, n, 2, [](T v, T d) { return -d / (v * v); });
}

DTRAIN_FWD(silu) {
  map_unary(x, y, n, 8, [](T v) { return v * sigmoid_of(v); });
}
DTRAIN_BWD(silu) {
  map_backward(x, g, y, n, 8, [](T v, T d) {
    T s = sigmoid_of(v);
    return d * s * (T(1) + v * (T(1) - s));
  });
}

#undef DTRAIN_FWD
#undef DTRAIN_BWD

// ---- the dispatch, generated from the table.

template <class T>
void unary_typed(UnaryOp op, const T* x, T* y, int64_t n) {
  switch (op) {
#define DTRAIN_UNARY_OP(name, ...) \
  case UnaryOp::name:              \
    return unary_##name<T>(x, y, n);
#include "core/backend/unary_ops.def"
  }
}

// out = g * d op(x) / dx.
template <class T>
void unary_backward_typed(UnaryOp op, const T* x, const T* g, T* y, int64_t n) {
  switch (op) {
#define DTRAIN_UNARY_OP(name, ...) \
  case UnaryOp::name:              \
    return unary_backward_##name<T>(x, g, y, n);
#include "core/backend/unary_ops.def"
  }
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  check_same_numel("unary", x, out);
  check_same_dtype("unary", x, out);
  if (out.numel() == 0) return;
  if (is_half(x.dtype()) || !out.is_contiguous()) {
    F32Staging f32;
    unary(op, f32.in(x), f32.out(out));
    return f32.write_back();
  }
  Tensor xc = dense(x);
  dispatch_float(x.dtype(), "unary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_typed<T>(op, xc.data<T>(), out.data<T>(), out.numel());
  });
}

void CpuBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& grad,
                                const Tensor& out) {
  check_same_numel("unary_backward", x, out);
  check_same_numel("unary_backward", grad, out);
  check_same_dtype("unary_backward", x, grad);
  check_same_dtype("unary_backward", x, out);
  if (out.numel() == 0) return;
  if (is_half(x.dtype()) || !out.is_contiguous()) {
    F32Staging f32;
    unary_backward(op, f32.in(x), f32.in(grad), f32.out(out));
    return f32.write_back();
  }
  Tensor xc = dense(x), gc = dense(grad);
  dispatch_float(x.dtype(), "unary_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_backward_typed<T>(op, xc.data<T>(), gc.data<T>(), out.data<T>(), out.numel());
  });
}

}  // namespace dtrain
