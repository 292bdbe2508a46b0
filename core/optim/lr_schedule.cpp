#include "core/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace dtrain::optim {

const char* lr_schedule_kind_name(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::constant:
      return "constant";
    case LrScheduleKind::step:
      return "step";
    case LrScheduleKind::cosine:
      return "cosine";
    case LrScheduleKind::linear:
      return "linear";
  }
  return "?";
}

LrScheduleKind lr_schedule_kind_from_name(const std::string& name) {
  for (auto k : {LrScheduleKind::constant, LrScheduleKind::step, LrScheduleKind::cosine,
                 LrScheduleKind::linear}) {
    if (name == lr_schedule_kind_name(k)) return k;
  }
  throw Error("lr schedule: unknown kind '" + name + "'; use constant, step, cosine or linear");
}

void LrSchedule::check() const {
  const char* k = lr_schedule_kind_name(kind);
  DTRAIN_CHECK(warmup_steps >= 0, "lr schedule ", k, ": warmup_steps = ", warmup_steps,
               " must be >= 0");
  if (kind == LrScheduleKind::cosine || kind == LrScheduleKind::linear) {
    DTRAIN_CHECK(total_steps > warmup_steps, "lr schedule ", k, ": total_steps = ", total_steps,
                 " must exceed warmup_steps = ", warmup_steps);
    DTRAIN_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, "lr schedule ", k,
                 ": min_lr_ratio = ", min_lr_ratio, " must be in [0, 1]");
  }
  if (kind == LrScheduleKind::step) {
    DTRAIN_CHECK(step_size > 0, "lr schedule step: step_size = ", step_size, " must be > 0");
    DTRAIN_CHECK(gamma >= 0, "lr schedule step: gamma = ", gamma, " must be >= 0");
  }
}

double LrSchedule::factor(int64_t step) const {
  DTRAIN_CHECK(step >= 0, "lr schedule: step ", step, " must be >= 0");
  if (step < warmup_steps) {
    return static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  const int64_t t = step - warmup_steps;
  switch (kind) {
    case LrScheduleKind::constant:
      return 1.0;
    case LrScheduleKind::step: {
      const int64_t decays = t / step_size;  // whole periods: the rate drops in steps
      return std::pow(gamma, static_cast<double>(decays));
    }
    case LrScheduleKind::cosine:
    case LrScheduleKind::linear: {
      const int64_t length = total_steps - warmup_steps;
      const double progress =
          static_cast<double>(std::min(t, length)) / static_cast<double>(length);
      if (kind == LrScheduleKind::linear) return 1.0 - (1.0 - min_lr_ratio) * progress;
      return min_lr_ratio +
             (1.0 - min_lr_ratio) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    }
  }
  return 1.0;
}

LrSchedule constant_lr(int64_t warmup_steps) {
  LrSchedule s;
  s.warmup_steps = warmup_steps;
  return s;
}

LrSchedule step_lr(int64_t step_size, double gamma, int64_t warmup_steps) {
  LrSchedule s;
  s.kind = LrScheduleKind::step;
  s.step_size = step_size;
  s.gamma = gamma;
  s.warmup_steps = warmup_steps;
  return s;
}

LrSchedule warmup_cosine(int64_t warmup_steps, int64_t total_steps, double min_lr_ratio) {
  LrSchedule s;
  s.kind = LrScheduleKind::cosine;
  s.warmup_steps = warmup_steps;
  s.total_steps = total_steps;
  s.min_lr_ratio = min_lr_ratio;
  return s;
}

LrSchedule warmup_linear(int64_t warmup_steps, int64_t total_steps, double min_lr_ratio) {
  LrSchedule s = warmup_cosine(warmup_steps, total_steps, min_lr_ratio);
  s.kind = LrScheduleKind::linear;
  return s;
}

nlohmann::json lr_schedule_to_json(const LrSchedule& s) {
  return {{"kind", lr_schedule_kind_name(s.kind)},
          {"warmup_steps", s.warmup_steps},
          {"total_steps", s.total_steps},
          {"min_lr_ratio", s.min_lr_ratio},
          {"step_size", s.step_size},
          {"gamma", s.gamma}};
}

LrSchedule lr_schedule_from_json(const nlohmann::json& j) {
  LrSchedule s;
  try {
    s.kind = lr_schedule_kind_from_name(j.at("kind").get<std::string>());
    s.warmup_steps = j.value("warmup_steps", s.warmup_steps);
    s.total_steps = j.value("total_steps", s.total_steps);
    s.min_lr_ratio = j.value("min_lr_ratio", s.min_lr_ratio);
    s.step_size = j.value("step_size", s.step_size);
    s.gamma = j.value("gamma", s.gamma);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("lr schedule: malformed JSON (") + e.what() +
                "); expected {\"kind\": ..., \"warmup_steps\": ..., ...}");
  }
  s.check();
  return s;
}

LrScheduler::LrScheduler(Optimizer& optimizer, LrSchedule schedule)
    : optimizer_(optimizer), schedule_(schedule) {
  schedule_.check();
  for (size_t g = 0; g < optimizer_.num_groups(); ++g) base_lrs_.push_back(optimizer_.lr(g));
  apply();
}

void LrScheduler::step() {
  ++step_;
  apply();
}

void LrScheduler::apply() {
  DTRAIN_CHECK(base_lrs_.size() == optimizer_.num_groups(), "lr scheduler: built for ",
               base_lrs_.size(), " parameter groups but the optimizer now has ",
               optimizer_.num_groups(), "; build the scheduler after adding groups");
  const double f = schedule_.factor(step_);
  for (size_t g = 0; g < base_lrs_.size(); ++g) optimizer_.set_lr(g, base_lrs_[g] * f);
}

nlohmann::json LrScheduler::state_dict() const {
  return {{"schedule", lr_schedule_to_json(schedule_)}, {"step", step_}, {"base_lrs", base_lrs_}};
}

void LrScheduler::load_state_dict(const nlohmann::json& saved) {
  int64_t step = 0;
  std::vector<double> base_lrs;
  try {
    step = saved.at("step").get<int64_t>();
    base_lrs = saved.at("base_lrs").get<std::vector<double>>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("lr scheduler: malformed state_dict (") + e.what() +
                "); pass the object state_dict() wrote");
  }
  DTRAIN_CHECK(step >= 0, "lr scheduler: saved step ", step, " must be >= 0");
  DTRAIN_CHECK(base_lrs.size() == optimizer_.num_groups(), "lr scheduler: the saved state has ",
               base_lrs.size(), " base lrs but the optimizer has ", optimizer_.num_groups(),
               " parameter groups");
  step_ = step;
  base_lrs_ = std::move(base_lrs);
  apply();
}

}  // namespace dtrain::optim
