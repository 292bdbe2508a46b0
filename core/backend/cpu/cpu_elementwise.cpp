// CPU elementwise kernels: copy (any strides, any dtype pair), fill, unary and its backward, and
// binary with broadcast (stride-0) operands. f32/f64 compute natively; f16/bf16 are staged through
// f32 (cpu_to_f32) and rounded back on store. Reductions are in cpu_reduce.cpp, random fills in
// cpu_random.cpp; the loop helpers all of them share are in cpu_loops.h.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/backend/cpu/cpu_math.h"

namespace dtrain {

using namespace cpu_detail;

namespace {

// ---- copy

// A copy whose source is transposed in the last two dims relative to the destination (dst walks
// the last dim with stride 1, src the second-to-last). Row-by-row, one side would jump a whole row
// per element; square tiles keep both sides' lines in cache.
template <class S, class D>
void copy_transposed(const Nest<2>& nest, const S* s, D* d) {
  constexpr int64_t kTile = 32;
  const size_t nd = nest.sizes.size();
  const int64_t rows = nest.sizes[nd - 2], cols = nest.sizes[nd - 1];
  const int64_t d_row = nest.strides[0][nd - 2], s_col = nest.strides[1][nd - 1];
  int64_t outer = 1;
  for (size_t k = 0; k + 2 < nd; ++k) outer *= nest.sizes[k];
  const int64_t row_tiles = (rows + kTile - 1) / kTile;
  parallel_for(outer * row_tiles, kTile * cols * 2, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      // Offsets of outer matrix t / row_tiles in each operand.
      int64_t rest = t / row_tiles, d_off = 0, s_off = 0;
      for (size_t k = nd - 2; k-- > 0;) {
        int64_t idx = rest % nest.sizes[k];
        rest /= nest.sizes[k];
        d_off += idx * nest.strides[0][k];
        s_off += idx * nest.strides[1][k];
      }
      const int64_t r0 = (t % row_tiles) * kTile, r1 = std::min(rows, r0 + kTile);
      for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
        const int64_t c1 = std::min(cols, c0 + kTile);
        for (int64_t r = r0; r < r1; ++r) {
          D* dp = d + d_off + r * d_row;
          const S* sp = s + s_off + r;  // src stride along rows is 1
          for (int64_t c = c0; c < c1; ++c) dp[c] = convert<D>(sp[c * s_col]);
        }
      }
    }
  });
}

template <class S, class D>
void copy_typed(const Tensor& src, const Tensor& dst) {
  const S* s = src.data<S>();
  D* d = dst.data<D>();
  const int64_t n = dst.numel();
  if (src.is_contiguous() && dst.is_contiguous()) {
    if constexpr (std::is_same_v<S, D>) {
      parallel_for(n, 1, [&](int64_t b, int64_t e) {
        std::memcpy(d + b, s + b, static_cast<size_t>(e - b) * sizeof(S));
      });
    } else {
      parallel_for(n, 2, [&](int64_t b, int64_t e) {
#pragma omp simd
        for (int64_t i = b; i < e; ++i) d[i] = convert<D>(s[i]);
      });
    }
    return;
  }
  Nest<2> nest = make_nest<2>(dst.shape(), {&dst.strides(), &src.strides()});
  const size_t nd = nest.sizes.size();
  if (nd >= 2 && nest.strides[0][nd - 1] == 1 && nest.strides[1][nd - 2] == 1 &&
      nest.strides[1][nd - 1] != 1) {
    copy_transposed(nest, s, d);
    return;
  }
  for_each_row(nest, 2, [&](const std::array<int64_t, 2>& off, int64_t len,
                            const std::array<int64_t, 2>& st) {
    D* dp = d + off[0];
    const S* sp = s + off[1];
    if (st[0] == 1 && st[1] == 1) {
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) dp[i] = convert<D>(sp[i]);
    } else if (st[1] == 0) {
      D v = convert<D>(sp[0]);
      for (int64_t i = 0; i < len; ++i) dp[i * st[0]] = v;
    } else {
      for (int64_t i = 0; i < len; ++i) dp[i * st[0]] = convert<D>(sp[i * st[1]]);
    }
  });
}

// ---- unary math. gelu_erf(x) = x * Phi(x), with Phi the standard normal CDF,
// Phi(x) = (1 + erf(x / sqrt 2)) / 2.
// gelu_tanh(x) = x/2 * (1 + tanh(u)), u = sqrt(2/pi) * (x + 0.044715 x^3).

constexpr double kSqrt1_2 = 0.70710678118654752440;   // 1 / sqrt(2)
constexpr double kSqrt2Pi = 0.79788456080286535588;   // sqrt(2 / pi)
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
void map_unary(const T* x, T* y, int64_t n, int64_t cost, F f) {
  parallel_for(n, cost, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) y[i] = f(x[i]);
  });
}

template <class T>
void unary_typed(UnaryOp op, const T* x, T* y, int64_t n) {
  switch (op) {
    case UnaryOp::neg: return map_unary(x, y, n, 1, [](T v) { return -v; });
    case UnaryOp::exp: return map_unary(x, y, n, 8, [](T v) { return std::exp(v); });
    case UnaryOp::log: return map_unary(x, y, n, 8, [](T v) { return std::log(v); });
    case UnaryOp::sqrt: return map_unary(x, y, n, 4, [](T v) { return std::sqrt(v); });
    case UnaryOp::rsqrt: return map_unary(x, y, n, 4, [](T v) { return T(1) / std::sqrt(v); });
    case UnaryOp::abs: return map_unary(x, y, n, 1, [](T v) { return std::abs(v); });
    // `v < 0 ? 0 : v` keeps NaN as NaN, as PyTorch's relu does.
    case UnaryOp::relu: return map_unary(x, y, n, 1, [](T v) { return v < T(0) ? T(0) : v; });
    case UnaryOp::gelu_erf:
      return parallel_for(n, 16, [&](int64_t b, int64_t e) { gelu_erf_any(x + b, y + b, e - b); });
    case UnaryOp::gelu_tanh:
      return map_unary(x, y, n, 16, [](T v) {
        T u = T(kSqrt2Pi) * (v + T(kGeluCubic) * v * v * v);
        return T(0.5) * v * (T(1) + std::tanh(u));
      });
    case UnaryOp::tanh: return map_unary(x, y, n, 8, [](T v) { return std::tanh(v); });
    case UnaryOp::sigmoid: return map_unary(x, y, n, 8, [](T v) { return sigmoid_of(v); });
    case UnaryOp::square: return map_unary(x, y, n, 1, [](T v) { return v * v; });
    case UnaryOp::reciprocal: return map_unary(x, y, n, 2, [](T v) { return T(1) / v; });
  }
}

template <class T, class F>
void map_backward(const T* x, const T* g, T* y, int64_t n, int64_t cost, F f) {
  parallel_for(n, cost, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) y[i] = f(x[i], g[i]);
  });
}

// out = g * d op(x) / dx.
template <class T>
void unary_backward_typed(UnaryOp op, const T* x, const T* g, T* y, int64_t n) {
  switch (op) {
    case UnaryOp::neg: return map_backward(x, g, y, n, 1, [](T, T d) { return -d; });
    case UnaryOp::exp: return map_backward(x, g, y, n, 8, [](T v, T d) { return d * std::exp(v); });
    case UnaryOp::log: return map_backward(x, g, y, n, 2, [](T v, T d) { return d / v; });
    // d sqrt(x) = 1 / (2 sqrt(x))
    case UnaryOp::sqrt:
      return map_backward(x, g, y, n, 4, [](T v, T d) { return d / (T(2) * std::sqrt(v)); });
    // d x^(-1/2) = -1/2 x^(-3/2)
    case UnaryOp::rsqrt:
      return map_backward(x, g, y, n, 4, [](T v, T d) {
        T r = T(1) / std::sqrt(v);
        return T(-0.5) * d * r * r * r;
      });
    // d|x| = sign(x), 0 at 0 (as PyTorch).
    case UnaryOp::abs:
      return map_backward(x, g, y, n, 1, [](T v, T d) {
        return v > T(0) ? d : (v < T(0) ? -d : T(0));
      });
    case UnaryOp::relu:
      return map_backward(x, g, y, n, 1, [](T v, T d) { return v > T(0) ? d : T(0); });
    case UnaryOp::gelu_erf:
      return parallel_for(n, 16, [&](int64_t b, int64_t e) {
        gelu_erf_backward_any(x + b, g + b, y + b, e - b);
      });
    // d/dx x/2 (1 + tanh u) = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    case UnaryOp::gelu_tanh:
      return map_backward(x, g, y, n, 16, [](T v, T d) {
        T u = T(kSqrt2Pi) * (v + T(kGeluCubic) * v * v * v);
        T t = std::tanh(u);
        T du = T(kSqrt2Pi) * (T(1) + T(3 * kGeluCubic) * v * v);
        return d * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du);
      });
    case UnaryOp::tanh:
      return map_backward(x, g, y, n, 8, [](T v, T d) {
        T t = std::tanh(v);
        return d * (T(1) - t * t);
      });
    case UnaryOp::sigmoid:
      return map_backward(x, g, y, n, 8, [](T v, T d) {
        T s = sigmoid_of(v);
        return d * s * (T(1) - s);
      });
    case UnaryOp::square: return map_backward(x, g, y, n, 1, [](T v, T d) { return T(2) * v * d; });
    case UnaryOp::reciprocal:
      return map_backward(x, g, y, n, 2, [](T v, T d) { return -d / (v * v); });
  }
}

// ---- binary math. maximum/minimum propagate NaN from either side (as torch.maximum).

template <class T>
struct BinaryFns {
  static T add(T a, T b) { return a + b; }
  static T sub(T a, T b) { return a - b; }
  static T mul(T a, T b) { return a * b; }
  static T div(T a, T b) { return a / b; }
  static T pow(T a, T b) { return static_cast<T>(std::pow(a, b)); }
  static T maximum(T a, T b) { return (a > b || a != a) ? a : b; }
  static T minimum(T a, T b) { return (a < b || a != a) ? a : b; }
  static T eq(T a, T b) { return a == b ? T(1) : T(0); }
  static T ne(T a, T b) { return a != b ? T(1) : T(0); }
  static T gt(T a, T b) { return a > b ? T(1) : T(0); }
  static T ge(T a, T b) { return a >= b ? T(1) : T(0); }
  static T lt(T a, T b) { return a < b ? T(1) : T(0); }
  static T le(T a, T b) { return a <= b ? T(1) : T(0); }
};

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::add: return "add";
    case BinaryOp::sub: return "sub";
    case BinaryOp::mul: return "mul";
    case BinaryOp::div: return "div";
    case BinaryOp::pow: return "pow";
    case BinaryOp::maximum: return "maximum";
    case BinaryOp::minimum: return "minimum";
    case BinaryOp::eq: return "eq";
    case BinaryOp::ne: return "ne";
    case BinaryOp::gt: return "gt";
    case BinaryOp::ge: return "ge";
    case BinaryOp::lt: return "lt";
    case BinaryOp::le: return "le";
  }
  return "?";
}

int64_t binary_cost(BinaryOp op) { return op == BinaryOp::pow ? 16 : 1; }

// The function is a template parameter so each op gets its own inlined, vectorisable loop.
template <class T, T (*Fn)(T, T)>
void binary_loop(const Tensor& a, const Tensor& b, const Tensor& out, int64_t cost) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = out.data<T>();
  const int64_t n = out.numel();
  if (a.is_contiguous() && b.is_contiguous()) {
    parallel_for(n, cost, [&](int64_t s, int64_t e) {
#pragma omp simd
      for (int64_t i = s; i < e; ++i) po[i] = Fn(pa[i], pb[i]);
    });
    return;
  }
  Nest<3> nest = make_nest<3>(out.shape(), {&out.strides(), &a.strides(), &b.strides()});
  for_each_row(nest, cost, [&](const std::array<int64_t, 3>& off, int64_t len,
                               const std::array<int64_t, 3>& st) {
    T* o = po + off[0];
    const T* x = pa + off[1];
    const T* y = pb + off[2];
    // out is contiguous, so st[0] == 1 except for a lone row of length 1.
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) o[i] = Fn(x[i], y[i]);
    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
      const T yv = y[0];
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) o[i] = Fn(x[i], yv);
    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
      const T xv = x[0];
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) o[i] = Fn(xv, y[i]);
    } else {
      for (int64_t i = 0; i < len; ++i) o[i * st[0]] = Fn(x[i * st[1]], y[i * st[2]]);
    }
  });
}

template <class T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  switch (op) {
#define DTRAIN_BINARY_CASE(name)                                                   \
  case BinaryOp::name:                                                             \
    if constexpr (std::is_integral_v<T> &&                                         \
                  (BinaryOp::name == BinaryOp::div || BinaryOp::name == BinaryOp::pow)) { \
      break;                                                                       \
    } else {                                                                       \
      return binary_loop<T, &BinaryFns<T>::name>(a, b, out, binary_cost(op));      \
    }
    DTRAIN_BINARY_CASE(add)
    DTRAIN_BINARY_CASE(sub)
    DTRAIN_BINARY_CASE(mul)
    DTRAIN_BINARY_CASE(div)
    DTRAIN_BINARY_CASE(pow)
    DTRAIN_BINARY_CASE(maximum)
    DTRAIN_BINARY_CASE(minimum)
    DTRAIN_BINARY_CASE(eq)
    DTRAIN_BINARY_CASE(ne)
    DTRAIN_BINARY_CASE(gt)
    DTRAIN_BINARY_CASE(ge)
    DTRAIN_BINARY_CASE(lt)
    DTRAIN_BINARY_CASE(le)
#undef DTRAIN_BINARY_CASE
  }
  throw Error(detail::concat("cpu ", binary_name(op), " on integer tensors is not supported; "
                             "convert to f32 or f64 first"));
}

template <class T>
void binary_scalar_typed(BinaryOp op, const T* a, T s, bool scalar_first, T* out, int64_t n) {
  // Common exponents avoid std::pow, which is an order of magnitude slower than a multiply.
  if constexpr (std::is_floating_point_v<T>) {
    if (op == BinaryOp::pow && !scalar_first) {
      if (s == T(2)) return map_unary(a, out, n, 1, [](T v) { return v * v; });
      if (s == T(1)) return map_unary(a, out, n, 1, [](T v) { return v; });
      if (s == T(0.5)) return map_unary(a, out, n, 4, [](T v) { return std::sqrt(v); });
      if (s == T(-1)) return map_unary(a, out, n, 2, [](T v) { return T(1) / v; });
    }
  }
  int64_t cost = binary_cost(op);
  auto run = [&](auto f) {
    if (scalar_first) {
      map_unary(a, out, n, cost, [&](T v) { return f(s, v); });
    } else {
      map_unary(a, out, n, cost, [&](T v) { return f(v, s); });
    }
  };
  using B = BinaryFns<T>;
  switch (op) {
    case BinaryOp::add: return run([](T x, T y) { return B::add(x, y); });
    case BinaryOp::sub: return run([](T x, T y) { return B::sub(x, y); });
    case BinaryOp::mul: return run([](T x, T y) { return B::mul(x, y); });
    case BinaryOp::div: return run([](T x, T y) { return B::div(x, y); });
    case BinaryOp::pow: return run([](T x, T y) { return B::pow(x, y); });
    case BinaryOp::maximum: return run([](T x, T y) { return B::maximum(x, y); });
    case BinaryOp::minimum: return run([](T x, T y) { return B::minimum(x, y); });
    case BinaryOp::eq: return run([](T x, T y) { return B::eq(x, y); });
    case BinaryOp::ne: return run([](T x, T y) { return B::ne(x, y); });
    case BinaryOp::gt: return run([](T x, T y) { return B::gt(x, y); });
    case BinaryOp::ge: return run([](T x, T y) { return B::ge(x, y); });
    case BinaryOp::lt: return run([](T x, T y) { return B::lt(x, y); });
    case BinaryOp::le: return run([](T x, T y) { return B::le(x, y); });
  }
}

}  // namespace

// ---- Backend methods

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  DTRAIN_CHECK(src.shape() == dst.shape(), "cpu copy: source shape ", shape_str(src.shape()),
               " differs from destination shape ", shape_str(dst.shape()));
  if (dst.numel() == 0) return;
  dispatch_all(src.dtype(), [&](auto s) {
    dispatch_all(dst.dtype(), [&](auto d) {
      copy_typed<typename decltype(s)::type, typename decltype(d)::type>(src, dst);
    });
  });
}

void CpuBackend::fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  dispatch_all(dst.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = convert<T>(value);
    T* p = dst.data<T>();
    if (dst.is_contiguous()) {
      parallel_for(dst.numel(), 1, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
      return;
    }
    Nest<1> nest = make_nest<1>(dst.shape(), {&dst.strides()});
    for_each_row(nest, 1, [&](const std::array<int64_t, 1>& off, int64_t len,
                              const std::array<int64_t, 1>& st) {
      for (int64_t i = 0; i < len; ++i) p[off[0] + i * st[0]] = v;
    });
  });
}

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  check_same_numel("unary", x, out);
  check_same_dtype("unary", x, out);
  if (out.numel() == 0) return;
  if (is_half(x.dtype()) || !out.is_contiguous()) {
    Tensor xf = cpu_to_f32(dense(x));
    Tensor yf = Tensor::empty(out.shape(), xf.dtype(), Device::cpu());
    unary(op, xf, yf);
    copy(yf, out);
    return;
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
    Tensor xf = cpu_to_f32(dense(x));
    Tensor gf = cpu_to_f32(dense(grad));
    Tensor yf = Tensor::empty(out.shape(), xf.dtype(), Device::cpu());
    unary_backward(op, xf, gf, yf);
    copy(yf, out);
    return;
  }
  Tensor xc = dense(x), gc = dense(grad);
  dispatch_float(x.dtype(), "unary_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_backward_typed<T>(op, xc.data<T>(), gc.data<T>(), out.data<T>(), out.numel());
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const char* name = binary_name(op);
  DTRAIN_CHECK(a.shape() == out.shape() && b.shape() == out.shape(), "cpu ", name,
               ": operands of shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
               " must be broadcast to the output shape ", shape_str(out.shape()));
  check_same_dtype(name, a, b);
  check_same_dtype(name, a, out);
  if (out.numel() == 0) return;
  if (is_half(a.dtype()) || !out.is_contiguous()) {
    // cpu_to_f32 makes dense f32 copies before `out` is written, so out may alias a here too.
    Tensor af = cpu_to_f32(a), bf = cpu_to_f32(b);
    Tensor yf = Tensor::empty(out.shape(), af.dtype(), Device::cpu());
    binary(op, af, bf, yf);
    copy(yf, out);
    return;
  }
  dispatch_numeric(a.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    binary_typed<T>(op, a, b, out);
  });
}

void CpuBackend::binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_first,
                               const Tensor& out) {
  const char* name = binary_name(op);
  check_same_numel(name, a, out);
  check_same_dtype(name, a, out);
  if (out.numel() == 0) return;
  if (is_half(a.dtype()) || !out.is_contiguous()) {
    Tensor af = cpu_to_f32(dense(a));
    Tensor yf = Tensor::empty(out.shape(), af.dtype(), Device::cpu());
    binary_scalar(op, af, s, scalar_first, yf);
    copy(yf, out);
    return;
  }
  Tensor ac = dense(a);
  dispatch_numeric(a.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_integral_v<T>) {
      DTRAIN_CHECK(op != BinaryOp::div && op != BinaryOp::pow, "cpu ", name,
                   " on integer tensors is not supported; convert to f32 or f64 first");
    }
    binary_scalar_typed<T>(op, ac.data<T>(), static_cast<T>(s), scalar_first, out.data<T>(),
                           out.numel());
  });
}

}  // namespace dtrain
