// Device math of the elementwise kernels (included only by cuda_elementwise.cu), in the compute
// type C (float for f32/f16/bf16, double for f64, int64 for integer binary ops): one forward,
// unary_<name>(x), and one backward, unary_backward_<name>(x, g) = g * f'(x), per row of
// core/backend/unary_ops.def, and binary_<name>(a, b) per row of core/backend/binary_ops.def. The
// dispatch over UnaryOp and BinaryOp is generated from those tables, so a row without its functions
// here does not compile. Formulas as in the CPU backend (cpu_unary.cpp):
//   gelu_erf(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),  d = Phi(x) + x phi(x)
//   gelu_tanh(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
//     d = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t = tanh(u)
//   silu(x) = x s, s = sigmoid(x),  d = s (1 + x (1 - s))
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/backend/backend.h"

namespace dtrain::cuda {

// ---- math in the compute type (float or double; int64 for integer binary ops)

#define DTRAIN_MATH1(name, ffun, dfun)                               \
  __device__ __forceinline__ float name(float x) { return ffun(x); } \
  __device__ __forceinline__ double name(double x) { return dfun(x); }
DTRAIN_MATH1(m_exp, expf, exp)
DTRAIN_MATH1(m_log, logf, log)
DTRAIN_MATH1(m_sqrt, sqrtf, sqrt)
DTRAIN_MATH1(m_abs, fabsf, fabs)
DTRAIN_MATH1(m_tanh, tanhf, tanh)
DTRAIN_MATH1(m_erf, erff, erf)
#undef DTRAIN_MATH1
__device__ __forceinline__ float m_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double m_pow(double a, double b) { return pow(a, b); }
__device__ __forceinline__ int64_t m_pow(int64_t a, int64_t b) {
  return static_cast<int64_t>(pow(static_cast<double>(a), static_cast<double>(b)));
}

template <class C>
__device__ __forceinline__ bool is_nan(C v) {
  return v != v;  // false for integers
}

namespace unary_math {

template <class C>
inline constexpr C kSqrtHalf = C(0.70710678118654752440);  // 1 / sqrt(2)
template <class C>
inline constexpr C kInvSqrt2Pi = C(0.39894228040143267794);  // 1 / sqrt(2 pi)
template <class C>
inline constexpr C kSqrt2OverPi = C(0.79788456080286535588);  // sqrt(2 / pi)
template <class C>
inline constexpr C kGeluCubic = C(0.044715);

template <class C>
__device__ __forceinline__ C sigmoid(C x) {
  return C(1) / (C(1) + m_exp(-x));
}

// One forward and one backward per op; x the input, g the upstream gradient.
#define DTRAIN_FWD(name) \
  template <class C>     \
  __device__ __forceinline__ C unary_##name(C x)
#define DTRAIN_BWD(name) \
  template <class C>     \
  __device__ __forceinline__ C unary_backward_##name(C x, C g)

DTRAIN_FWD(neg) { return -x; }
DTRAIN_BWD(neg) { return -g; }
DTRAIN_FWD(exp) { return m_exp(x); }
DTRAIN_BWD(exp) { return g * m_exp(x); }
DTRAIN_FWD(log) { return m_log(x); }
DTRAIN_BWD(log) { return g / x; }
DTRAIN_FWD(sqrt) { return m_sqrt(x); }
DTRAIN_BWD(sqrt) { return g * C(0.5) / m_sqrt(x); }
DTRAIN_FWD(rsqrt) { return C(1) / m_sqrt(x); }
DTRAIN_BWD(rsqrt) {  // d x^(-1/2) = -1/2 x^(-3/2)
  const C r = C(1) / m_sqrt(x);
  return C(-0.5) * g * r * r * r;
}
DTRAIN_FWD(abs) { return m_abs(x); }
DTRAIN_BWD(abs) { return x > C(0) ? g : (x < C(0) ? -g : C(0)); }
DTRAIN_FWD(relu) { return x > C(0) || is_nan(x) ? x : C(0); }
DTRAIN_BWD(relu) { return x > C(0) ? g : C(0); }
DTRAIN_FWD(gelu_erf) { return C(0.5) * x * (C(1) + m_erf(x * kSqrtHalf<C>)); }
DTRAIN_BWD(gelu_erf) {
  const C cdf = C(0.5) * (C(1) + m_erf(x * kSqrtHalf<C>));
  const C pdf = kInvSqrt2Pi<C> * m_exp(C(-0.5) * x * x);
  return g * (cdf + x * pdf);
}
DTRAIN_FWD(gelu_tanh) {
  return C(0.5) * x * (C(1) + m_tanh(kSqrt2OverPi<C> * (x + kGeluCubic<C> * x * x * x)));
}
DTRAIN_BWD(gelu_tanh) {
  const C t = m_tanh(kSqrt2OverPi<C> * (x + kGeluCubic<C> * x * x * x));
  const C du = kSqrt2OverPi<C> * (C(1) + C(3) * kGeluCubic<C> * x * x);
  return g * (C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * du);
}
DTRAIN_FWD(tanh) { return m_tanh(x); }
DTRAIN_BWD(tanh) {
  const C t = m_tanh(x);
  return g * (C(1) - t * t);
}
DTRAIN_FWD(sigmoid) { return sigmoid(x); }
DTRAIN_BWD(sigmoid) {
  const C s = sigmoid(x);
  return g * s * (C(1) - s);
}
DTRAIN_FWD(square) { return x * x; }
DTRAIN_BWD(square) { return C(2) * x * g; }
DTRAIN_FWD(reciprocal) { return C(1) / x; }
DTRAIN_BWD(reciprocal) { return -g / (x * x); }
DTRAIN_FWD(silu) { return x * sigmoid(x); }
DTRAIN_BWD(silu) {
  const C s = sigmoid(x);
  return g * s * (C(1) + x * (C(1) - s));
}
#undef DTRAIN_FWD
#undef DTRAIN_BWD

}  // namespace unary_math

// The unary dispatch, generated from the table.
template <class C>
__device__ __forceinline__ C apply_unary(UnaryOp op, C x) {
  switch (op) {
#define DTRAIN_UNARY_OP(name, ...) \
  case UnaryOp::name:              \
    return unary_math::unary_##name(x);
#include "core/backend/unary_ops.def"
  }
  return x;
}

// grad * d op(x) / dx
template <class C>
__device__ __forceinline__ C apply_unary_backward(UnaryOp op, C x, C g) {
  switch (op) {
#define DTRAIN_UNARY_OP(name, ...) \
  case UnaryOp::name:              \
    return unary_math::unary_backward_##name(x, g);
#include "core/backend/unary_ops.def"
  }
  return g;
}

// ---- binary ops. maximum/minimum: NaN wins, as in torch.maximum / torch.minimum.

namespace binary_math {

#define DTRAIN_BINARY(name) \
  template <class C>        \
  __device__ __forceinline__ C binary_##name(C a, C b)
DTRAIN_BINARY(add) { return a + b; }
DTRAIN_BINARY(sub) { return a - b; }
DTRAIN_BINARY(mul) { return a * b; }
DTRAIN_BINARY(div) {
  if constexpr (std::is_integral_v<C>) {
    return b == 0 ? C(0) : a / b;
  } else {
    return a / b;
  }
}
DTRAIN_BINARY(pow) { return m_pow(a, b); }
DTRAIN_BINARY(maximum) { return is_nan(a) ? a : (is_nan(b) ? b : (a > b ? a : b)); }
DTRAIN_BINARY(minimum) { return is_nan(a) ? a : (is_nan(b) ? b : (a < b ? a : b)); }
DTRAIN_BINARY(eq) { return C(a == b ? 1 : 0); }
DTRAIN_BINARY(ne) { return C(a != b ? 1 : 0); }
DTRAIN_BINARY(gt) { return C(a > b ? 1 : 0); }
DTRAIN_BINARY(ge) { return C(a >= b ? 1 : 0); }
DTRAIN_BINARY(lt) { return C(a < b ? 1 : 0); }
DTRAIN_BINARY(le) { return C(a <= b ? 1 : 0); }
#undef DTRAIN_BINARY

}  // namespace binary_math

template <class C>
__device__ __forceinline__ C apply_binary(BinaryOp op, C a, C b) {
  switch (op) {
#define DTRAIN_BINARY_OP(name, ...) \
  case BinaryOp::name:              \
    return binary_math::binary_##name(a, b);
#include "core/backend/binary_ops.def"
  }
  return a;
}

}  // namespace dtrain::cuda
