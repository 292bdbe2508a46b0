// CPU fused optimizer updates: each parameter of the list in turn, its elements split across
// threads, with the per-element arithmetic of core/backend/optim_update.h (shared with the CUDA
// kernel).
#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"

namespace dtrain {

using cpu_detail::dispatch_float;
using cpu_detail::parallel_for;

namespace {
template <class T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}
}  // namespace

void CpuBackend::adam_update(const AdamUpdateArgs& args,
                             const std::vector<AdamUpdateTensors>& list) {
  if (list.empty()) return;
  dispatch_float(list.front().param.dtype(), "adam_update", [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (const AdamUpdateTensors& e : list) {
      const auto s = optim_math::adam_scalars<T>(args, e.step_size, e.inv_sqrt_bc2);
      T* p = e.param.data<T>();
      const T* g = e.grad.data<T>();
      T* m = e.exp_avg.data<T>();
      T* v = e.exp_avg_sq.data<T>();
      T* v_max = ptr_or_null<T>(e.max_exp_avg_sq);
      parallel_for(e.param.numel(), 8, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          optim_math::adam_element(s, p[i], g[i], m[i], v[i], v_max ? v_max + i : nullptr);
        }
      });
    }
  });
}

void CpuBackend::sgd_update(const SgdUpdateArgs& args, const std::vector<SgdUpdateTensors>& list) {
  if (list.empty()) return;
  dispatch_float(list.front().param.dtype(), "sgd_update", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto s = optim_math::sgd_scalars<T>(args);
    for (const SgdUpdateTensors& e : list) {
      T* p = e.param.data<T>();
      const T* g = e.grad.data<T>();
      T* b = ptr_or_null<T>(e.momentum_buffer);
      parallel_for(e.param.numel(), 4, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          optim_math::sgd_element(s, p[i], g[i], b ? b + i : nullptr, e.first_step);
        }
      });
    }
  });
}

}  // namespace dtrain
