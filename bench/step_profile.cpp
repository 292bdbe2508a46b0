#include "bench/step_profile.h"

#include <chrono>

#include "core/backend/runtime.h"

namespace dtrain::bench {

StepProfile measure_step_profile(nn::Module& model, Device device,
                                 const std::function<Tensor()>& loss,
                                 const std::function<void()>& update, int warmup_steps, int steps) {
  DTRAIN_CHECK(steps > 0 && warmup_steps >= 0, "measure_step_profile: steps = ", steps,
               " and warmup_steps = ", warmup_steps, " must be positive and non-negative");
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  auto device_done = [&] { synchronize(device); };

  std::vector<Tensor> params;
  for (const Tensor& p : model.parameters()) {
    if (p.requires_grad()) params.push_back(p);
  }
  // Arrival of each gradient in the current backward, and their sums over the timed steps.
  std::vector<Clock::time_point> arrived(params.size());
  std::vector<double> arrival_sum(params.size(), 0.0);
  std::vector<bool> seen(params.size(), false);
  // The hooks refer to the vectors above: they go when this function leaves, by return or by throw.
  struct ClearHooks {
    const std::vector<Tensor>& params;
    ~ClearHooks() {
      for (const Tensor& p : params) p.clear_hooks();
    }
  } clear_hooks{params};
  for (size_t i = 0; i < params.size(); ++i) {
    params[i].register_post_accumulate_grad_hook([&arrived, &seen, i](const Tensor&) {
      arrived[i] = Clock::now();
      seen[i] = true;
    });
  }

  StepProfile profile;
  for (int s = 0; s < warmup_steps + steps; ++s) {
    const bool timed = s >= warmup_steps;
    device_done();
    const Clock::time_point t0 = Clock::now();
    Tensor l = loss();
    device_done();
    const Clock::time_point t1 = Clock::now();
    std::fill(seen.begin(), seen.end(), false);
    l.backward();
    device_done();
    const Clock::time_point t2 = Clock::now();
    if (update) update();
    device_done();
    const Clock::time_point t3 = Clock::now();
    model.zero_grad();
    if (!timed) continue;
    profile.forward_s += seconds(t0, t1);
    profile.backward_s += seconds(t1, t2);
    profile.optimizer_s += seconds(t2, t3);
    // A parameter backward did not reach (unused in this forward) counts as ready when backward ends,
    // which is when DDP launches the buckets still waiting for it.
    for (size_t i = 0; i < params.size(); ++i)
      arrival_sum[i] += seen[i] ? seconds(t1, arrived[i]) : seconds(t1, t2);
  }

  profile.forward_s /= steps;
  profile.backward_s /= steps;
  profile.optimizer_s /= steps;
  for (size_t k = params.size(); k-- > 0;) {
    const int64_t bytes = params[k].numel() * static_cast<int64_t>(dtype_size(params[k].dtype()));
    profile.grads.push_back(GradReady{arrival_sum[k] / steps, bytes});
  }
  return profile;
}

}  // namespace dtrain::bench
