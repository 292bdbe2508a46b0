// core/amp/loss_scaler: the dynamic loss scaler's logic (one process).
#include <gtest/gtest.h>

#include <cmath>

#include "core/amp/loss_scaler.h"
#include "core/ops/ops.h"

namespace dtrain::amp {
namespace {

// Parameters with given gradient values.
std::vector<Tensor> params_with_grads(const std::vector<std::vector<float>>& grads) {
  std::vector<Tensor> params;
  for (const auto& g : grads) {
    Tensor p = Tensor::zeros({static_cast<int64_t>(g.size())}).set_requires_grad(true);
    p.set_grad(Tensor::from_vector(g, {static_cast<int64_t>(g.size())}));
    params.push_back(p);
  }
  return params;
}

TEST(LossScaler, DefaultsAndScaling) {
  DynamicLossScaler scaler;
  EXPECT_EQ(scaler.scale_value(), 65536.0);
  EXPECT_EQ(scaler.options().growth_interval, 2000);
  Tensor loss = Tensor::scalar(0.25);
  EXPECT_EQ(scaler.scale(loss).item(), 16384.0);
}

TEST(LossScaler, UnscalesOnceAndSteps) {
  DynamicLossScaler scaler({.init_scale = 4.0});
  std::vector<Tensor> params = params_with_grads({{4, 8}, {-12}});
  int steps = 0;
  EXPECT_FALSE(scaler.unscale(params));
  EXPECT_FALSE(scaler.unscale(params));  // a second call does not divide again
  EXPECT_TRUE(scaler.step(params, [&] { ++steps; }));
  EXPECT_EQ(steps, 1);
  EXPECT_EQ(params[0].grad().to_vector<float>(), (std::vector<float>{1, 2}));
  EXPECT_EQ(params[1].grad().to_vector<float>(), (std::vector<float>{-3}));
  EXPECT_EQ(scaler.scale_value(), 4.0);
  EXPECT_EQ(scaler.clean_steps(), 1);
}

TEST(LossScaler, OverflowSkipsAndHalvesCleanStepsGrow) {
  DynamicLossScaler scaler({.init_scale = 1024.0, .growth_interval = 3});
  int steps = 0;
  auto step = [&] { ++steps; };
  for (float bad : {INFINITY, -INFINITY, NAN}) {
    std::vector<Tensor> params = params_with_grads({{1, 2}, {3, bad}});
    EXPECT_FALSE(scaler.step(params, step));
  }
  EXPECT_EQ(steps, 0);
  EXPECT_EQ(scaler.scale_value(), 128.0);
  EXPECT_EQ(scaler.skipped_steps(), 3);
  for (int k = 0; k < 3; ++k) {
    std::vector<Tensor> params = params_with_grads({{1, 2}});
    EXPECT_TRUE(scaler.step(params, step));
  }
  EXPECT_EQ(steps, 3);
  EXPECT_EQ(scaler.scale_value(), 256.0);  // doubled after 3 clean steps
  EXPECT_EQ(scaler.clean_steps(), 0);
  // An overflow resets the count of clean steps.
  scaler.step(params_with_grads({{1}}), step);
  scaler.step(params_with_grads({{NAN}}), step);
  EXPECT_EQ(scaler.clean_steps(), 0);
  EXPECT_EQ(scaler.scale_value(), 128.0);
}

TEST(LossScaler, ReducerDecidesForEveryRank) {
  DynamicLossScaler scaler({.init_scale = 8.0});
  bool seen_local = true;
  scaler.set_overflow_reducer([&](Tensor& found) {
    seen_local = found.item() > 0.0;
    found.fill_(1.0);  // another rank overflowed
  });
  int steps = 0;
  EXPECT_FALSE(scaler.step(params_with_grads({{1, 2}}), [&] { ++steps; }));
  EXPECT_FALSE(seen_local);
  EXPECT_EQ(steps, 0);
  EXPECT_EQ(scaler.scale_value(), 4.0);
}

TEST(LossScaler, DisabledIsTransparent) {
  DynamicLossScaler scaler({.enabled = false});
  EXPECT_EQ(scaler.scale_value(), 1.0);
  Tensor loss = Tensor::scalar(3.0);
  EXPECT_TRUE(scaler.scale(loss).same(loss));
  int steps = 0;
  EXPECT_TRUE(scaler.step(params_with_grads({{NAN}}), [&] { ++steps; }));
  EXPECT_EQ(steps, 1);
}

TEST(LossScaler, StateRoundTripsAndOptionsAreChecked) {
  DynamicLossScaler a({.growth_interval = 5});
  a.step(params_with_grads({{1}}), [] {});
  a.step(params_with_grads({{INFINITY}}), [] {});
  a.step(params_with_grads({{1}}), [] {});
  DynamicLossScaler b({.growth_interval = 5});
  b.load_state(a.state());
  EXPECT_EQ(b.scale_value(), 32768.0);
  EXPECT_EQ(b.clean_steps(), 1);
  EXPECT_THROW(b.load_state({-1.0, 0}), Error);
  EXPECT_THROW(DynamicLossScaler({.growth_factor = 0.5}), Error);
  EXPECT_THROW(DynamicLossScaler({.backoff_factor = 1.0}), Error);
  EXPECT_THROW(DynamicLossScaler({.growth_interval = 0}), Error);
}

TEST(LossScaler, HasInfOrNan) {
  EXPECT_FALSE(has_inf_or_nan(Tensor::from_vector({1e38f, -1e38f, 3.0f}, {3})));
  EXPECT_TRUE(has_inf_or_nan(Tensor::from_vector({1.0f, INFINITY}, {2})));
  EXPECT_TRUE(has_inf_or_nan(Tensor::from_vector({NAN, 1.0f}, {2})));
  EXPECT_TRUE(has_inf_or_nan(Tensor::from_vector({1.0f, INFINITY}, {2}).to(DType::f16)));
}

}  // namespace
}  // namespace dtrain::amp
