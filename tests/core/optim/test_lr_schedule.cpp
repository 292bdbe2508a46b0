// LR schedules against PyTorch's schedulers (tests/reference/generate_optim.py): the lr each group
// has before the optimizer step at index s, for 30 steps and two groups with base lrs 0.1 and 0.01.
#include "core/optim/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/optim/sgd.h"
#include "optim_fixture.h"

namespace dtrain::optim {
namespace {

using dtrain::testing::optim_fixture;

constexpr int64_t kWarmup = 5, kTotal = 25;
constexpr double kMinRatio = 0.1;

struct TwoGroups {
  Tensor p = Tensor::zeros({1}).set_requires_grad(true);
  Tensor q = Tensor::zeros({1}).set_requires_grad(true);
  SGD opt{{{{p}, SGDOptions{.lr = 0.1}}, {{q}, SGDOptions{.lr = 0.01}}}};
};

// want: [steps, groups] (groups = 2) or [steps] (group 0 only).
void expect_schedule(const std::string& name, const LrSchedule& schedule) {
  SCOPED_TRACE(name);
  const Tensor want_t = optim_fixture().at("sched." + name);
  const std::vector<double> want = want_t.to_vector<double>();
  const int64_t steps = want_t.size(0);
  const int64_t groups = want_t.dim() == 2 ? want_t.size(1) : 1;
  TwoGroups m;
  LrScheduler sched(m.opt, schedule);
  for (int64_t s = 0; s < steps; ++s) {
    EXPECT_EQ(sched.current_step(), s);
    for (int64_t g = 0; g < groups; ++g) {
      const double w = want[static_cast<size_t>(s * groups + g)];
      EXPECT_NEAR(m.opt.lr(static_cast<size_t>(g)), w, 1e-14 * w) << "step " << s << " group " << g;
    }
    sched.step();
  }
}

TEST(LrSchedule, WarmupCosine) {
  expect_schedule("warmup_cosine", warmup_cosine(kWarmup, kTotal, kMinRatio));
  expect_schedule("cosine", warmup_cosine(0, kTotal, kMinRatio));
}

TEST(LrSchedule, WarmupLinear) {
  expect_schedule("warmup_linear", warmup_linear(kWarmup, kTotal, kMinRatio));
  expect_schedule("linear", warmup_linear(0, kTotal, kMinRatio));
}

TEST(LrSchedule, Step) { expect_schedule("step", step_lr(7, 0.3)); }

TEST(LrSchedule, Constant) {
  expect_schedule("warmup_constant", constant_lr(kWarmup));
  TwoGroups m;
  LrScheduler sched(m.opt, constant_lr());
  for (int i = 0; i < 3; ++i) sched.step();
  EXPECT_EQ(m.opt.lr(0), 0.1);
  EXPECT_EQ(m.opt.lr(1), 0.01);
}

TEST(LrSchedule, ClosedForms) {
  // Warmup reaches the full rate on its last step; cosine passes the midpoint at half the decay.
  LrSchedule s = warmup_cosine(4, 14, 0.0);
  EXPECT_DOUBLE_EQ(s.factor(0), 0.25);
  EXPECT_DOUBLE_EQ(s.factor(3), 1.0);
  EXPECT_DOUBLE_EQ(s.factor(4), 1.0);
  EXPECT_NEAR(s.factor(9), 0.5, 1e-15);
  EXPECT_NEAR(s.factor(14), 0.0, 1e-15);
  EXPECT_NEAR(s.factor(1000), 0.0, 1e-15);
  LrSchedule l = warmup_linear(0, 10, 0.2);
  EXPECT_DOUBLE_EQ(l.factor(5), 0.6);
  EXPECT_DOUBLE_EQ(l.factor(50), 0.2);
  LrSchedule st = step_lr(3, 0.5, 2);
  EXPECT_DOUBLE_EQ(st.factor(1), 1.0);
  EXPECT_DOUBLE_EQ(st.factor(4), 1.0);
  EXPECT_DOUBLE_EQ(st.factor(5), 0.5);
  EXPECT_DOUBLE_EQ(st.factor(11), 0.125);
}

TEST(LrSchedule, StateDictRoundTrip) {
  TwoGroups a, b;
  LrScheduler sa(a.opt, warmup_cosine(kWarmup, kTotal, kMinRatio));
  for (int i = 0; i < 12; ++i) sa.step();
  const std::string text = sa.state_dict().dump();

  // The resumed run's optimizer starts at other lrs (as a fresh one built from the config would
  // after warmup changed them); loading restores base lrs and step, and so the lrs.
  b.opt.set_lr(0, 7.0);
  LrScheduler sb(b.opt, warmup_cosine(kWarmup, kTotal, kMinRatio));
  sb.load_state_dict(nlohmann::json::parse(text));
  EXPECT_EQ(sb.current_step(), 12);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(a.opt.lr(0), b.opt.lr(0));
    EXPECT_EQ(a.opt.lr(1), b.opt.lr(1));
    sa.step();
    sb.step();
  }
  EXPECT_EQ(lr_schedule_from_json(lr_schedule_to_json(sa.schedule())).total_steps, kTotal);
}

TEST(LrSchedule, RejectsBadSettings) {
  TwoGroups m;
  EXPECT_THROW(LrScheduler(m.opt, warmup_cosine(10, 10)), Error);
  EXPECT_THROW(LrScheduler(m.opt, warmup_linear(0, 10, 1.5)), Error);
  EXPECT_THROW(LrScheduler(m.opt, step_lr(0, 0.5)), Error);
  EXPECT_THROW(lr_schedule_kind_from_name("exponential"), Error);
  LrScheduler sched(m.opt, constant_lr());
  EXPECT_THROW(sched.load_state_dict(nlohmann::json{{"step", 3}}), Error);
  EXPECT_THROW((sched.load_state_dict(nlohmann::json{{"step", 3}, {"base_lrs", {0.1}}})), Error);
}

}  // namespace
}  // namespace dtrain::optim
