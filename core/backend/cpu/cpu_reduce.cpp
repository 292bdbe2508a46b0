// CPU reductions of x viewed as [outer, n, inner] over its middle dim into out [outer, inner]: sum,
// and max/min with the position of the winner. Sums are bitwise the same for any thread count.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"

namespace dtrain {

using namespace cpu_detail;

namespace {

// Sums are accumulated in double for floating types (and int64 for integers), in blocks of a fixed
// size combined in a fixed order, so the result does not depend on the number of threads.
constexpr int64_t kSumBlock = 8192;

template <class T>
using Acc = std::conditional_t<std::is_integral_v<T>, int64_t, double>;

template <class T>
Acc<T> sum_row(const T* p, int64_t n) {
  // simd reduction keeps one partial sum per vector lane (a fixed order for a given build), which
  // breaks the serial add chain.
  Acc<T> s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<Acc<T>>(p[i]);
  return s;
}

template <class T>
void sum_typed(const T* x, int64_t outer, int64_t n, int64_t inner, T* out) {
  if (inner == 1) {
    const int64_t blocks = std::max<int64_t>(1, (n + kSumBlock - 1) / kSumBlock);
    if (blocks == 1) {  // short rows: one sum each, no partials to combine
      parallel_for(outer, n, [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) out[o] = static_cast<T>(sum_row(x + o * n, n));
      });
      return;
    }
    std::vector<Acc<T>> partial(static_cast<size_t>(outer * blocks));
    parallel_for(outer * blocks, std::min(n, kSumBlock), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        int64_t o = t / blocks, blk = t % blocks;
        int64_t start = blk * kSumBlock;
        int64_t len = std::min(kSumBlock, n - start);
        partial[static_cast<size_t>(t)] = len > 0 ? sum_row(x + o * n + start, len) : Acc<T>(0);
      }
    });
    for (int64_t o = 0; o < outer; ++o) {
      Acc<T> s = 0;
      const Acc<T>* part = partial.data() + o * blocks;
      for (int64_t blk = 0; blk < blocks; ++blk) s += part[blk];
      out[o] = static_cast<T>(s);
    }
    return;
  }
  // Reduce the middle dim with a row of accumulators over a slab of the inner dim.
  constexpr int64_t kSlab = 512;
  const int64_t slabs = (inner + kSlab - 1) / kSlab;
  parallel_for(outer * slabs, n * std::min(inner, kSlab), [&](int64_t b, int64_t e) {
    Acc<T> acc[kSlab];
    for (int64_t t = b; t < e; ++t) {
      int64_t o = t / slabs;
      int64_t i0 = (t % slabs) * kSlab;
      int64_t w = std::min(kSlab, inner - i0);
      std::fill(acc, acc + w, Acc<T>(0));
      const T* base = x + o * n * inner + i0;
      for (int64_t j = 0; j < n; ++j) {
        const T* row = base + j * inner;
#pragma omp simd
        for (int64_t i = 0; i < w; ++i) acc[i] += static_cast<Acc<T>>(row[i]);
      }
      T* dst = out + o * inner + i0;
      for (int64_t i = 0; i < w; ++i) dst[i] = static_cast<T>(acc[i]);
    }
  });
}

// Whether v replaces the current best: strictly better (so the first arg max wins ties), or NaN
// (which, as in PyTorch, wins over any number).
template <class T, bool IsMax>
inline bool better(T v, T best) {
  if constexpr (std::is_floating_point_v<T>) {
    if (v != v) return best == best;
  }
  return IsMax ? v > best : v < best;
}

template <class T, bool IsMax>
void extremum_typed(const T* x, int64_t outer, int64_t n, int64_t inner, T* out, int64_t* idx) {
  if (inner == 1) {
    parallel_for(outer, n, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* p = x + o * n;
        T best = p[0];
        int64_t arg = 0;
        for (int64_t j = 1; j < n; ++j) {
          if (better<T, IsMax>(p[j], best)) {
            best = p[j];
            arg = j;
          }
        }
        out[o] = best;
        if (idx) idx[o] = arg;
      }
    });
    return;
  }
  // Over the middle dim, a slab of the inner dim at a time: every pass reads one contiguous row.
  constexpr int64_t kSlab = 512;
  const int64_t slabs = (inner + kSlab - 1) / kSlab;
  parallel_for(outer * slabs, n * std::min(inner, kSlab), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t o = t / slabs, i0 = (t % slabs) * kSlab, w = std::min(kSlab, inner - i0);
      const T* base = x + o * n * inner + i0;
      T* best = out + o * inner + i0;
      int64_t* arg = idx ? idx + o * inner + i0 : nullptr;
      std::copy(base, base + w, best);
      if (arg) std::fill(arg, arg + w, int64_t{0});
      for (int64_t j = 1; j < n; ++j) {
        const T* row = base + j * inner;
        for (int64_t i = 0; i < w; ++i) {
          if (better<T, IsMax>(row[i], best[i])) {
            best[i] = row[i];
            if (arg) arg[i] = j;
          }
        }
      }
    }
  });
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner,
                        const Tensor& out, const Tensor& indices) {
  DTRAIN_CHECK(outer * n * inner == x.numel() && outer * inner == out.numel(), "cpu reduce: [",
               outer, ", ", n, ", ", inner, "] does not match input shape ", shape_str(x.shape()),
               " and output shape ", shape_str(out.shape()));
  check_same_dtype("reduce", x, out);
  DTRAIN_CHECK(!indices.defined() || (indices.dtype() == DType::i64 && indices.is_contiguous() &&
                                      indices.numel() == out.numel()),
               "cpu reduce: indices must be a contiguous i64 tensor of ", out.numel(), " elements");
  if (out.numel() == 0) return;
  DTRAIN_CHECK(op == ReduceOp::sum || n > 0, "cpu reduce: max/min over an empty dim of shape ",
               shape_str(x.shape()), " has no value; reduce a non-empty dim");
  if (is_half(x.dtype()) || !out.is_contiguous()) {
    F32Staging f32;
    reduce(op, f32.in(x), outer, n, inner, f32.out(out), indices);
    return f32.write_back();
  }
  Tensor xc = dense(x);
  dispatch_numeric(x.dtype(), "reduce", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = xc.data<T>();
    T* po = out.data<T>();
    int64_t* pi = indices.defined() ? indices.data<int64_t>() : nullptr;
    switch (op) {
      case ReduceOp::sum:
        return sum_typed<T>(px, outer, n, inner, po);
      case ReduceOp::max:
        return extremum_typed<T, true>(px, outer, n, inner, po, pi);
      case ReduceOp::min:
        return extremum_typed<T, false>(px, outer, n, inner, po, pi);
    }
  });
}

}  // namespace dtrain
