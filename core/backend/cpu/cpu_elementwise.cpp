// CPU elementwise kernels: copy (any strides, any dtype pair), fill, and binary with broadcast
// (stride-0) operands, and with a scalar. f32/f64 compute natively; f16/bf16 are staged through
// f32 (F32Staging) and rounded back on store. Unary ops are in cpu_unary.cpp, reductions in
// cpu_reduce.cpp, random fills in cpu_random.cpp; the loop helpers all of them share are in
// cpu_loops.h.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"

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
  for_each_row(
      nest, 2,
      [&](const std::array<int64_t, 2>& off, int64_t len, const std::array<int64_t, 2>& st) {
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

// ---- binary math, one function per row of core/backend/binary_ops.def. maximum/minimum propagate
// NaN from either side (as torch.maximum).

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
  for_each_row(
      nest, cost,
      [&](const std::array<int64_t, 3>& off, int64_t len, const std::array<int64_t, 3>& st) {
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

// The dispatch, generated from core/backend/binary_ops.def; integer operands of an op that does not
// take them (div, pow) fall through to the error.
template <class T>
void binary_typed(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  switch (op) {
#define DTRAIN_BINARY_OP(name, ...)                                                     \
  case BinaryOp::name:                                                                  \
    if constexpr (std::is_integral_v<T> && !binary_op_takes_integers(BinaryOp::name)) { \
      break;                                                                            \
    } else {                                                                            \
      return binary_loop<T, &BinaryFns<T>::name>(a, b, out, binary_cost(op));           \
    }
#include "core/backend/binary_ops.def"
  }
  throw Error(detail::concat("cpu ", binary_op_name(op),
                             " on integer tensors is not supported; "
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
  switch (op) {
#define DTRAIN_BINARY_OP(name, ...) \
  case BinaryOp::name:              \
    return run([](T x, T y) { return BinaryFns<T>::name(x, y); });
#include "core/backend/binary_ops.def"
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
    for_each_row(
        nest, 1,
        [&](const std::array<int64_t, 1>& off, int64_t len, const std::array<int64_t, 1>& st) {
          for (int64_t i = 0; i < len; ++i) p[off[0] + i * st[0]] = v;
        });
  });
}

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  const char* name = binary_op_name(op);
  DTRAIN_CHECK(a.shape() == out.shape() && b.shape() == out.shape(), "cpu ", name,
               ": operands of shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
               " must be broadcast to the output shape ", shape_str(out.shape()));
  check_same_dtype(name, a, b);
  check_same_dtype(name, a, out);
  if (out.numel() == 0) return;
  if (is_half(a.dtype()) || !out.is_contiguous()) {
    F32Staging f32;  // widens a and b before `out` is written, so out may alias a here too
    binary(op, f32.in(a), f32.in(b), f32.out(out));
    return f32.write_back();
  }
  dispatch_numeric(a.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    binary_typed<T>(op, a, b, out);
  });
}

void CpuBackend::binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_first,
                               const Tensor& out) {
  const char* name = binary_op_name(op);
  check_same_numel(name, a, out);
  check_same_dtype(name, a, out);
  if (out.numel() == 0) return;
  if (is_half(a.dtype()) || !out.is_contiguous()) {
    F32Staging f32;
    binary_scalar(op, f32.in(a), s, scalar_first, f32.out(out));
    return f32.write_back();
  }
  Tensor ac = dense(a);
  dispatch_numeric(a.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_integral_v<T>) {
      DTRAIN_CHECK(binary_op_takes_integers(op), "cpu ", name,
                   " on integer tensors is not supported; convert to f32 or f64 first");
    }
    binary_scalar_typed<T>(op, ac.data<T>(), static_cast<T>(s), scalar_first, out.data<T>(),
                           out.numel());
  });
}

}  // namespace dtrain
