// CPU fused dropout + residual add (backend_kernels.def: dropout_add):
//   out_i = residual_i + x_i keep_i / (1 - p)
// with keep_i from dropout_add_mask.h, the same bits the CUDA kernel draws. f32 and f64 compute in
// their own dtype; f16 and bf16 go through f32 stand-ins (F32Staging), so out is rounded once.
#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/backend/dropout_add_mask.h"

namespace dtrain {

using namespace cpu_detail;

namespace {

// One Philox call per group of 4 elements; groups split across threads.
template <class T>
void dropout_add_kernel(const Tensor& x, const Tensor& residual, double p, uint64_t seed,
                        const Tensor& out) {
  const int64_t n = out.numel();
  const float pf = static_cast<float>(p);
  const T scale = static_cast<T>(dropout_add_scale(p));
  const T* xp = x.data<T>();
  const T* rp = residual.defined() ? residual.data<T>() : nullptr;
  T* op = out.data<T>();
  constexpr int64_t kPhiloxCost = 64;  // element operations one group costs, roughly
  parallel_for((n + 3) / 4, kPhiloxCost, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const cuda::Philox4 words = dropout_add_words(seed, static_cast<uint64_t>(g));
      for (int64_t lane = 0; lane < 4 && 4 * g + lane < n; ++lane) {
        const int64_t i = 4 * g + lane;
        const T kept = dropout_add_keep_word(words.v[lane], pf) ? xp[i] * scale : T(0);
        op[i] = rp ? rp[i] + kept : kept;
      }
    }
  });
}

}  // namespace

void CpuBackend::dropout_add(const Tensor& x, const Tensor& residual, double p, uint64_t seed,
                             const Tensor& out) {
  if (out.numel() == 0) return;
  check_same_numel("dropout_add", x, out);
  if (residual.defined()) check_same_numel("dropout_add", residual, out);
  if (is_half(out.dtype()) || is_half(x.dtype())) {
    F32Staging f32;
    dropout_add(f32.in(x), f32.in(residual), p, seed, f32.out(out));
    return f32.write_back();
  }
  check_same_dtype("dropout_add", x, out);
  if (residual.defined()) check_same_dtype("dropout_add", residual, out);
  dispatch_float(out.dtype(), "dropout_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    dropout_add_kernel<T>(x, residual, p, seed, out);
  });
}

}  // namespace dtrain
