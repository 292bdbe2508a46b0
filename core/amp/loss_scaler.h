// Dynamic loss scaling for f16 training. f16 gradients underflow below 2^-24; multiplying the loss by
// a large scale S moves them into range, and dividing the f32 gradients by S afterwards restores their
// value. S adapts: it starts at 2^16, halves (and the step is skipped) whenever a gradient is inf or
// NaN, and doubles after growth_interval consecutive clean steps, so it sits near the largest value
// that does not overflow.
//
//   Tensor loss = ...;
//   scaler.scale(loss).backward();
//   ddp.finish_gradient_synchronization();
//   scaler.unscale(params);                       // optional: before clipping, which needs true values
//   clip_grad_norm(params, 1.0);
//   bool stepped = scaler.step(params, [&] { opt.step(); });   // skipped on overflow
//
// In a distributed run every rank must skip together, or the replicas drift apart: the overflow flag is
// combined across ranks by the reducer the distributed layer installs (an all-reduce of max), since
// core knows nothing of processes.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor/tensor.h"

namespace dtrain::amp {

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  // false: scale() and unscale() are identities and step() always steps (bf16 or f32 training).
  bool enabled = true;
  void check() const;
};

class DynamicLossScaler {
 public:
  // Turns this rank's "found inf/nan" flag (a 0-dim f32 tensor on the gradients' device: 1 found, 0
  // not) into the job's, in place: an all-reduce of max, queued like any other device work.
  using OverflowReducer = std::function<void(Tensor& found_inf)>;

  explicit DynamicLossScaler(LossScalerOptions options = {});
  void set_overflow_reducer(OverflowReducer reducer) { reducer_ = std::move(reducer); }

  // loss * scale (recorded, so backward scales every gradient by it).
  Tensor scale(const Tensor& loss) const;
  // Divides each parameter's gradient by the scale in place and finds whether any is inf or NaN,
  // agreed across ranks. At most once per step; later calls return the first answer. Parameters
  // without a gradient are skipped. The flag is formed on the device and read back once: the step's
  // one host synchronisation (PyTorch's GradScaler with an unfused optimizer reads it too). A fused
  // optimizer that takes the flag on the device would remove it.
  bool unscale(const std::vector<Tensor>& params);
  // Unscales (if not done yet), runs `optimizer_step` unless an overflow was found, and updates the
  // scale. Returns whether the step ran.
  bool step(const std::vector<Tensor>& params, const std::function<void()>& optimizer_step);

  double scale_value() const { return scale_; }
  int64_t clean_steps() const { return growth_tracker_; }  // since the last change of scale
  int64_t skipped_steps() const { return skipped_; }       // in total
  bool enabled() const { return options_.enabled; }
  const LossScalerOptions& options() const { return options_; }

  // Checkpoints: the scale and the count of clean steps since it last changed.
  struct State {
    double scale = 65536.0;
    int64_t growth_tracker = 0;
  };
  State state() const { return {scale_, growth_tracker_}; }
  void load_state(const State& s);

 private:
  LossScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
  int64_t skipped_ = 0;
  OverflowReducer reducer_;
  bool unscaled_ = false;  // in the current step
  bool found_inf_ = false;
};

// True when any element of `t` is inf or NaN. (t * 0 is NaN exactly at those elements and 0
// elsewhere, and a sum containing a NaN is NaN - unlike a max, which some kernels let skip NaN.)
bool has_inf_or_nan(const Tensor& t);
// The same without a read back: sum(t * 0) as a 0-dim f32 tensor on t's device, NaN when t holds an
// inf or a NaN and 0 otherwise; such sums add up across tensors.
Tensor inf_or_nan_sum(const Tensor& t);

}  // namespace dtrain::amp
