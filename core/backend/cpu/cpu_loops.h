// Internal to the CPU backend (included only by core/backend/cpu/*.cpp): the pieces its kernel
// files share. Storage types and conversions between them, dtype dispatch, the rule for when a loop
// runs on several threads, and the strided loop nest that walks tensors of any layout.
#pragma once
#include <omp.h>

#include <algorithm>
#include <array>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"

namespace dtrain::cpu_detail {

// ---- element types and conversions

template <class T>
struct TypeTag {
  using type = T;
};

template <class T>
constexpr bool is_half_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

inline float widen(Half h) { return half_to_float(h); }
inline float widen(BFloat16 h) { return bf16_to_float(h); }
template <class T>
inline T widen(T v) {
  return v;
}

// Converts one element between any two storage types; halves go through f32.
template <class D, class S>
inline D convert(S s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (is_half_v<S>) {
    return convert<D>(widen(s));
  } else if constexpr (std::is_same_v<D, Half>) {
    return float_to_half(static_cast<float>(s));
  } else if constexpr (std::is_same_v<D, BFloat16>) {
    return float_to_bf16(static_cast<float>(s));
  } else {
    return static_cast<D>(s);
  }
}

// ---- dtype dispatch: each calls f(TypeTag<T>{}) with T the storage type of `t`.

template <class F>
void dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::f32:
      return f(TypeTag<float>{});
    case DType::f64:
      return f(TypeTag<double>{});
    case DType::f16:
      return f(TypeTag<Half>{});
    case DType::bf16:
      return f(TypeTag<BFloat16>{});
    case DType::i32:
      return f(TypeTag<int32_t>{});
    case DType::i64:
      return f(TypeTag<int64_t>{});
  }
}

// f32/f64 only. The backend's entry points stage f16/bf16 through f32 (F32Staging) before they
// reach a compute kernel, so only integer dtypes are refused here.
template <class F>
void dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32:
      return f(TypeTag<float>{});
    case DType::f64:
      return f(TypeTag<double>{});
    default:
      throw Error(detail::concat("cpu ", op, ": dtype ", dtype_name(t),
                                 " is not supported; use f32, f64, f16 or bf16"));
  }
}

// f32/f64 and the integer types.
template <class F>
void dispatch_numeric(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32:
      return f(TypeTag<float>{});
    case DType::f64:
      return f(TypeTag<double>{});
    case DType::i32:
      return f(TypeTag<int32_t>{});
    case DType::i64:
      return f(TypeTag<int64_t>{});
    default:
      throw Error(detail::concat("cpu ", op, ": dtype ", dtype_name(t),
                                 " is not supported here; use f32, f64, i32 or i64"));
  }
}

// ---- threading
// Below ~32k element operations a parallel region costs more than it saves.
constexpr int64_t kParallelGrain = 1 << 15;

// Splits [0, n) into one static chunk per thread, and only when there is enough work:
// f(begin, end) is called once per chunk.
template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& f) {
  if (n <= 0) return;
  int64_t work = n * std::max<int64_t>(cost_per_item, 1);
  int max_threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  int threads = static_cast<int>(std::min<int64_t>({max_threads, work / kParallelGrain, n}));
  if (threads <= 1) {
    f(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    int nt = omp_get_num_threads();
    int t = omp_get_thread_num();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t begin = std::min<int64_t>(n, t * chunk);
    int64_t end = std::min<int64_t>(n, begin + chunk);
    if (begin < end) f(begin, end);
  }
}

// y[i] = f(x[i]) over contiguous spans, split across threads; `cost` as for parallel_for.
template <class T, class F>
void map_unary(const T* x, T* y, int64_t n, int64_t cost, F f) {
  parallel_for(n, cost, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) y[i] = f(x[i]);
  });
}

// ---- strided iteration
// A loop nest over `sizes` (innermost last) with one stride vector per operand. Dims of size 1 are
// dropped and neighbouring dims that are contiguous with each other in every operand are merged, so
// a contiguous tensor becomes one flat row and a broadcast bias becomes rows with a stride-0
// operand.
template <size_t N>
struct Nest {
  std::vector<int64_t> sizes;
  std::array<std::vector<int64_t>, N> strides;
};

template <size_t N>
Nest<N> make_nest(const Shape& shape, const std::array<const Shape*, N>& strides) {
  Nest<N> nest;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !nest.sizes.empty();
    for (size_t k = 0; k < N && merge; ++k) {
      merge = nest.strides[k].back() == (*strides[k])[d] * shape[d];
    }
    if (merge) {
      nest.sizes.back() *= shape[d];
      for (size_t k = 0; k < N; ++k) nest.strides[k].back() = (*strides[k])[d];
    } else {
      nest.sizes.push_back(shape[d]);
      for (size_t k = 0; k < N; ++k) nest.strides[k].push_back((*strides[k])[d]);
    }
  }
  if (nest.sizes.empty()) {
    nest.sizes.push_back(1);
    for (size_t k = 0; k < N; ++k) nest.strides[k].push_back(0);
  }
  return nest;
}

// Calls row(offsets, n, inner_strides) for every innermost row, rows split across threads.
// `cost` is the relative cost of one element (for the parallel threshold).
template <size_t N, class Row>
void for_each_row(const Nest<N>& nest, int64_t cost, Row&& row) {
  const int64_t ndim = static_cast<int64_t>(nest.sizes.size());
  const int64_t inner = nest.sizes.back();
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < ndim; ++d) rows *= nest.sizes[static_cast<size_t>(d)];
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = nest.strides[k].back();
  parallel_for(rows, inner * cost, [&](int64_t begin, int64_t end) {
    // Position of row `begin` in the outer dims, then advanced like an odometer.
    std::vector<int64_t> index(static_cast<size_t>(std::max<int64_t>(ndim - 1, 0)), 0);
    std::array<int64_t, N> offsets{};
    int64_t rest = begin;
    for (int64_t d = ndim - 2; d >= 0; --d) {
      size_t du = static_cast<size_t>(d);
      index[du] = rest % nest.sizes[du];
      rest /= nest.sizes[du];
      for (size_t k = 0; k < N; ++k) offsets[k] += index[du] * nest.strides[k][du];
    }
    for (int64_t r = begin; r < end; ++r) {
      row(offsets, inner, inner_strides);
      for (int64_t d = ndim - 2; d >= 0; --d) {
        size_t du = static_cast<size_t>(d);
        for (size_t k = 0; k < N; ++k) offsets[k] += nest.strides[k][du];
        if (++index[du] < nest.sizes[du]) break;
        for (size_t k = 0; k < N; ++k) offsets[k] -= nest.sizes[du] * nest.strides[k][du];
        index[du] = 0;
      }
    }
  });
}

// ---- operands

// A contiguous tensor with t's values (t itself when it already is).
inline Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  backend_for(Device::cpu()).copy(t, out);
  return out;
}

// The CPU's half-precision path, and its path for a strided output: a kernel method that cannot run
// on its tensors as they are calls itself again on stand-ins and copies the results back:
//
//   if (is_half(x.dtype())) {
//     F32Staging f32;
//     conv2d(f32.in(x), f32.in(weight), f32.in(bias), args, f32.out(out));
//     return f32.write_back();
//   }
//
// in(t): t widened (a dense f32 copy of an f16/bf16 tensor; any other tensor as it is).
// out(t): a dense, uninitialised stand-in for an output in t's widened dtype, copied into t by
//   write_back(); t itself when it needs none (neither half precision nor strided).
// inout(t): like out(t), but the stand-in starts with t's values (for outputs that accumulate).
// Undefined tensors pass through all three. Inputs are copied before the kernel writes anything, so
// an output may alias an input.
class F32Staging {
 public:
  Tensor in(const Tensor& t) const { return cpu_to_f32(t); }
  Tensor out(const Tensor& t) {
    if (!t.defined() || (!is_half(t.dtype()) && t.is_contiguous())) return t;
    return stage(Tensor::empty(t.shape(), is_half(t.dtype()) ? DType::f32 : t.dtype()), t);
  }
  Tensor inout(const Tensor& t) {
    Tensor w = cpu_to_f32(t);
    return w.same(t) ? t : stage(w, t);
  }
  void write_back() const {
    Backend& cpu = backend_for(Device::cpu());
    for (const auto& [stand_in, target] : staged_) cpu.copy(stand_in, target);
  }

 private:
  Tensor stage(Tensor stand_in, const Tensor& target) {
    staged_.emplace_back(stand_in, target);
    return stand_in;
  }
  std::vector<std::pair<Tensor, Tensor>> staged_;
};

inline void check_same_numel(const char* op, const Tensor& a, const Tensor& b) {
  DTRAIN_CHECK(a.numel() == b.numel(), "cpu ", op, ": shapes ", shape_str(a.shape()), " and ",
               shape_str(b.shape()), " differ in size");
}

inline void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  DTRAIN_CHECK(a.dtype() == b.dtype(), "cpu ", op, ": dtypes ", dtype_name(a.dtype()), " and ",
               dtype_name(b.dtype()), " differ; convert one with .to(dtype)");
}

}  // namespace dtrain::cpu_detail
