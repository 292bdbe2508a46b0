// Learning-rate schedules. A schedule is a factor f(s) of the step s = 0, 1, 2, ...; the scheduler
// sets each group's lr to base_lr * f(s), so groups trained at different rates keep their ratio.
//
// Every kind may start with a linear warmup of W steps: f(s) = (s + 1) / W for s < W, reaching the
// full rate at s = W - 1. After it, with t = s - W and decay length D = total_steps - W:
//
//   constant: f = 1
//   step:     f = gamma^floor(t / step_size)
//   cosine:   f = r + (1 - r) * (1 + cos(pi * min(t, D) / D)) / 2      r = min_lr_ratio
//   linear:   f = 1 - (1 - r) * min(t, D) / D
//
// so cosine and linear reach min_lr = r * base_lr at s = total_steps and stay there. In PyTorch
// terms the warmup is LinearLR(start_factor = 1 / W, total_iters = W - 1), followed under
// SequentialLR by CosineAnnealingLR(T_max = D, eta_min = r * base_lr) or LinearLR(end_factor = r,
// total_iters = D); step is StepLR.
//
// Use: build the scheduler after the optimizer (it records the groups' lrs as base lrs and applies
// f(0)), then call scheduler.step() after each optimizer.step().
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/optim/optimizer.h"

namespace dtrain::optim {

enum class LrScheduleKind : uint8_t { constant, step, cosine, linear };
const char* lr_schedule_kind_name(LrScheduleKind kind);  // "constant", "step", "cosine", "linear"
LrScheduleKind lr_schedule_kind_from_name(const std::string& name);  // throws on another name

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::constant;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;    // cosine, linear: the step at which the factor reaches min_lr_ratio
  double min_lr_ratio = 0.0;  // cosine, linear
  int64_t step_size = 1;      // step
  double gamma = 0.1;         // step

  double factor(int64_t step) const;
  void check() const;  // dtrain::Error naming the bad field
};

LrSchedule constant_lr(int64_t warmup_steps = 0);
LrSchedule step_lr(int64_t step_size, double gamma, int64_t warmup_steps = 0);
LrSchedule warmup_cosine(int64_t warmup_steps, int64_t total_steps, double min_lr_ratio = 0.0);
LrSchedule warmup_linear(int64_t warmup_steps, int64_t total_steps, double min_lr_ratio = 0.0);

nlohmann::json lr_schedule_to_json(const LrSchedule& schedule);
LrSchedule lr_schedule_from_json(const nlohmann::json& j);

class LrScheduler {
 public:
  // Records each group's current lr as its base lr and sets the lr for step 0.
  LrScheduler(Optimizer& optimizer, LrSchedule schedule);

  // Moves to the next step and sets every group's lr for it.
  void step();
  int64_t current_step() const { return step_; }  // the step whose lr is set now
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  const LrSchedule& schedule() const { return schedule_; }

  // {"schedule": ..., "step": s, "base_lrs": [...]}. Loading restores the step and base lrs (the
  // schedule itself comes from the constructor, i.e. the run's configuration) and sets the lrs.
  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& saved);

 private:
  void apply();

  Optimizer& optimizer_;
  LrSchedule schedule_;
  std::vector<double> base_lrs_;
  int64_t step_ = 0;
};

}  // namespace dtrain::optim
