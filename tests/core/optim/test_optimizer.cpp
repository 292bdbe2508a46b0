// Optimizers against torch.optim (PyTorch 1.13): 10-step trajectories of two parameters under a
// fixed gradient sequence, from tests/reference/generate_optim.py. Each case here builds the
// optimizer the script's case of the same name builds.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <set>

#include "core/autograd/grad_mode.h"
#include "core/backend/backend.h"
#include "core/optim/optim.h"
#include "optim_fixture.h"

namespace dtrain::optim {
namespace {

using dtrain::testing::all_close;
using dtrain::testing::all_equal;
using dtrain::testing::optim_fixture;

constexpr int kSteps = 10;
constexpr int kSkipP1At = 4;  // p1 has no gradient at this step
constexpr double kRtol = 1e-6;

using MakeOptimizer = std::function<std::unique_ptr<Optimizer>(Tensor p0, Tensor p1)>;

// One parameter group holding both parameters.
template <class Opt, class Options>
MakeOptimizer one_group(Options options) {
  return [options](Tensor p0, Tensor p1) {
    return std::make_unique<Opt>(std::vector{p0, p1}, options);
  };
}

// p0 in group 0 and p1 in group 1.
template <class Opt, class Options>
MakeOptimizer two_groups(Options first, Options second) {
  return [first, second](Tensor p0, Tensor p1) {
    return std::make_unique<Opt>(std::vector<ParamGroup<Options>>{{{p0}, first}, {{p1}, second}});
  };
}

struct Trajectory {
  Tensor p0, p1;
  std::unique_ptr<Optimizer> opt;
};

Trajectory start(const MakeOptimizer& make, Device device = Device::cpu()) {
  const auto& f = optim_fixture();
  Trajectory r;
  r.p0 = f.at("init.p0").to(device).clone();
  r.p1 = f.at("init.p1").to(device).clone();
  r.p0.set_requires_grad(true);
  r.p1.set_requires_grad(true);
  r.opt = make(r.p0, r.p1);
  return r;
}

// Sets step k's gradients from the fixture and steps.
void step(Trajectory& r, int k) {
  const auto& f = optim_fixture();
  const Device device = r.p0.device();
  r.p0.set_grad(f.at("grads.p0").select(0, k).contiguous().to(device).clone());
  r.p1.set_grad(k == kSkipP1At ? Tensor()
                               : f.at("grads.p1").select(0, k).contiguous().to(device).clone());
  r.opt->step();
}

void expect_trajectory(const std::string& name, const MakeOptimizer& make, bool fused);

// The case on the per-tensor path and, for an optimizer that has one, on the fused path (one kernel
// call per group): both against the same PyTorch values.
void expect_trajectory(const std::string& name, const MakeOptimizer& make) {
  expect_trajectory(name, make, false);
  if (start(make).opt->has_fused_path()) expect_trajectory(name, make, true);
}

void expect_trajectory(const std::string& name, const MakeOptimizer& make, bool fused) {
  SCOPED_TRACE("case " + name + (fused ? " (fused)" : ""));
  const auto& f = optim_fixture();
  Trajectory r = start(make);
  r.opt->set_fused(fused);
  for (int k = 0; k < kSteps; ++k) {
    step(r, k);
    ASSERT_TRUE(all_close(r.p0, f.at(name + ".p0").select(0, k), kRtol)) << "p0 after step " << k;
    ASSERT_TRUE(all_close(r.p1, f.at(name + ".p1").select(0, k), kRtol)) << "p1 after step " << k;
  }
  // The final state: the same tensors under PyTorch's names, with the same values.
  std::set<std::string> want, got;
  const std::string prefix = name + ".state.";
  for (const auto& n : f.names()) {
    if (n.compare(0, prefix.size(), prefix) == 0) want.insert(n.substr(name.size() + 1));
  }
  for (const auto& [n, t] : r.opt->state_dict().tensors) {
    got.insert(n);
    if (want.count(n)) {
      EXPECT_TRUE(all_close(t, f.at(name + "." + n), kRtol)) << n;
    }
  }
  EXPECT_EQ(got, want);
  ASSERT_NE(r.opt->state(0), nullptr);
  ASSERT_NE(r.opt->state(1), nullptr);
  EXPECT_EQ(r.opt->state(0)->step, kSteps);
  EXPECT_EQ(r.opt->state(1)->step, kSteps - 1);  // skipped once
}

TEST(Optim, SGD) {
  expect_trajectory("sgd", one_group<SGD>(SGDOptions{.lr = 0.1}));
  expect_trajectory("sgd_momentum",
                    one_group<SGD>(SGDOptions{
                        .lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01}));
  expect_trajectory("sgd_groups",
                    two_groups<SGD>(SGDOptions{.lr = 0.05, .momentum = 0.9},
                                    SGDOptions{.lr = 0.2, .momentum = 0.5, .nesterov = true}));
}

TEST(Optim, SGDNesterov) {
  expect_trajectory("sgd_nesterov",
                    one_group<SGD>(SGDOptions{
                        .lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true}));
}

TEST(Optim, Adam) {
  expect_trajectory("adam", one_group<Adam>(AdamOptions{.lr = 0.01}));
  expect_trajectory(
      "adam_wd", one_group<Adam>(AdamOptions{
                     .lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1}));
  expect_trajectory(
      "adam_groups",
      two_groups<Adam>(
          AdamOptions{.lr = 0.01},
          AdamOptions{
              .lr = 0.03, .beta1 = 0.5, .beta2 = 0.9, .weight_decay = 0.05, .amsgrad = true}));
}

TEST(Optim, AdamAmsgrad) {
  expect_trajectory("adam_amsgrad", one_group<Adam>(AdamOptions{
                                        .lr = 0.01, .weight_decay = 0.01, .amsgrad = true}));
}

TEST(Optim, AdamW) {
  expect_trajectory("adamw", one_group<AdamW>(AdamWOptions{.lr = 0.01, .weight_decay = 0.1}));
  expect_trajectory("adamw_amsgrad", one_group<AdamW>(AdamWOptions{
                                         .lr = 0.01, .weight_decay = 0.05, .amsgrad = true}));
}

// Fine-tuning with a different learning rate per layer: the "pretrained" p0 trains at a tenth of
// the lr of the new "head" p1 (and without weight decay on the head), as in optimizer.h's example.
TEST(Optim, PerLayerLearningRate) {
  const AdamWOptions head{.lr = 1e-2, .weight_decay = 0.0};
  AdamWOptions base{.lr = head.lr / 10, .weight_decay = 0.05};
  expect_trajectory("adamw_groups", two_groups<AdamW>(base, head));

  // A schedule scales both groups and keeps their ratio.
  Trajectory r = start(two_groups<AdamW>(base, head));
  LrScheduler sched(*r.opt, warmup_cosine(2, 8, 0.1));
  for (int k = 0; k < 6; ++k) {
    step(r, k);
    sched.step();
    EXPECT_NEAR(r.opt->lr(1) / r.opt->lr(0), 10.0, 1e-12);
  }
}

TEST(Optim, Adagrad) {
  expect_trajectory("adagrad", one_group<Adagrad>(AdagradOptions{.lr = 0.1}));
  expect_trajectory("adagrad_wd",
                    one_group<Adagrad>(AdagradOptions{.lr = 0.1,
                                                      .lr_decay = 0.05,
                                                      .weight_decay = 0.02,
                                                      .initial_accumulator_value = 0.2,
                                                      .eps = 1e-6}));
  expect_trajectory(
      "adagrad_groups",
      two_groups<Adagrad>(AdagradOptions{.lr = 0.1},
                          AdagradOptions{.lr = 0.3, .lr_decay = 0.1, .weight_decay = 0.1}));
}

TEST(Optim, RMSprop) {
  expect_trajectory("rmsprop", one_group<RMSprop>(RMSpropOptions{.lr = 0.01}));
  expect_trajectory("rmsprop_momentum",
                    one_group<RMSprop>(RMSpropOptions{
                        .lr = 0.01, .alpha = 0.9, .weight_decay = 0.01, .momentum = 0.8}));
  expect_trajectory("rmsprop_groups",
                    two_groups<RMSprop>(RMSpropOptions{.lr = 0.01, .centered = true},
                                        RMSpropOptions{.lr = 0.002, .momentum = 0.9}));
}

TEST(Optim, RMSpropCentered) {
  expect_trajectory("rmsprop_centered", one_group<RMSprop>(RMSpropOptions{.lr = 0.01,
                                                                          .alpha = 0.95,
                                                                          .eps = 1e-6,
                                                                          .weight_decay = 0.01,
                                                                          .momentum = 0.5,
                                                                          .centered = true}));
}

TEST(Optim, Adamax) {
  expect_trajectory("adamax", one_group<Adamax>(AdamaxOptions{.lr = 0.02}));
  expect_trajectory(
      "adamax_wd",
      one_group<Adamax>(AdamaxOptions{
          .lr = 0.02, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-4, .weight_decay = 0.05}));
  expect_trajectory("adamax_groups",
                    two_groups<Adamax>(AdamaxOptions{.lr = 0.02},
                                       AdamaxOptions{.lr = 0.05, .beta1 = 0.5, .beta2 = 0.99}));
}

TEST(Optim, NAdam) {
  expect_trajectory("nadam", one_group<NAdam>(NAdamOptions{.lr = 0.01}));
  expect_trajectory(
      "nadam_wd",
      one_group<NAdam>(NAdamOptions{
          .lr = 0.02, .beta1 = 0.8, .beta2 = 0.99, .weight_decay = 0.05, .momentum_decay = 8e-3}));
  expect_trajectory("nadam_groups",
                    two_groups<NAdam>(NAdamOptions{.lr = 0.01},
                                      NAdamOptions{.lr = 0.03, .beta1 = 0.95, .beta2 = 0.9}));
}

// Every optimizer kind, configured to use all of its state.
std::vector<std::pair<std::string, MakeOptimizer>> all_kinds() {
  return {
      {"sgd", two_groups<SGD>(SGDOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.1},
                              SGDOptions{.lr = 0.1, .momentum = 0.5, .nesterov = true})},
      {"adam", two_groups<Adam>(AdamOptions{.lr = 0.01, .amsgrad = true},
                                AdamOptions{.lr = 0.02, .weight_decay = 0.1})},
      {"adamw", one_group<AdamW>(AdamWOptions{.lr = 0.01, .weight_decay = 0.1, .amsgrad = true})},
      {"adagrad", one_group<Adagrad>(AdagradOptions{
                      .lr = 0.1, .lr_decay = 0.05, .initial_accumulator_value = 0.1})},
      {"rmsprop",
       one_group<RMSprop>(RMSpropOptions{.lr = 0.01, .momentum = 0.5, .centered = true})},
      {"adamax", one_group<Adamax>(AdamaxOptions{.lr = 0.02, .weight_decay = 0.01})},
      {"nadam", one_group<NAdam>(NAdamOptions{.lr = 0.01, .weight_decay = 0.01})},
  };
}

// 5 steps, save, restore into a fresh optimizer over fresh parameters, 5 more steps: bitwise the
// same parameters and state as 10 uninterrupted steps. The saved scalars go through JSON text, as
// in a checkpoint file.
TEST(Optim, StateDictRoundTrip) {
  for (const auto& [kind, make] : all_kinds()) {
    SCOPED_TRACE(kind);
    Trajectory whole = start(make);
    for (int k = 0; k < kSteps; ++k) step(whole, k);

    Trajectory first = start(make);
    for (int k = 0; k < kSteps / 2; ++k) step(first, k);
    OptimizerState saved = first.opt->state_dict();
    EXPECT_EQ(saved.scalars.at("optimizer").get<std::string>(), kind);
    OptimizerState copy;
    for (const auto& [n, t] : saved.tensors) copy.tensors.emplace_back(n, t.clone());
    copy.scalars = nlohmann::json::parse(saved.scalars.dump());

    Trajectory resumed = start(make);
    resumed.p0.detach().copy_(first.p0);
    resumed.p1.detach().copy_(first.p1);
    resumed.opt->load_state_dict(copy);
    for (int k = kSteps / 2; k < kSteps; ++k) step(resumed, k);

    EXPECT_TRUE(all_equal(resumed.p0, whole.p0));
    EXPECT_TRUE(all_equal(resumed.p1, whole.p1));
    OptimizerState a = resumed.opt->state_dict(), b = whole.opt->state_dict();
    EXPECT_EQ(a.scalars.dump(), b.scalars.dump());
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i) {
      EXPECT_EQ(a.tensors[i].first, b.tensors[i].first);
      EXPECT_TRUE(all_equal(a.tensors[i].second, b.tensors[i].second)) << a.tensors[i].first;
    }
  }
}

// The update rules use only ops, so they run on any backend: the same trajectories on a GPU.
TEST(Optim, RunsOnCuda) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (const auto& [kind, make] : all_kinds()) {
    SCOPED_TRACE(kind);
    Trajectory cpu = start(make);
    Trajectory gpu = start(make, Device::cuda(0));
    for (int k = 0; k < kSteps; ++k) {
      step(cpu, k);
      step(gpu, k);
    }
    EXPECT_TRUE(gpu.opt->state(0)->tensors.begin()->second.device() == Device::cuda(0));
    EXPECT_TRUE(all_close(gpu.p0.to(Device::cpu()), cpu.p0, kRtol));
    EXPECT_TRUE(all_close(gpu.p1.to(Device::cpu()), cpu.p1, kRtol));
  }
}

TEST(Optim, LoadStateDictRejectsMismatches) {
  Trajectory a = start(one_group<Adam>(AdamOptions{}));
  step(a, 0);
  OptimizerState saved = a.opt->state_dict();

  Trajectory sgd = start(one_group<SGD>(SGDOptions{.momentum = 0.9}));
  EXPECT_THROW(sgd.opt->load_state_dict(saved), Error);  // another kind

  Trajectory groups = start(two_groups<Adam>(AdamOptions{}, AdamOptions{}));
  EXPECT_THROW(groups.opt->load_state_dict(saved), Error);  // another grouping

  Tensor q0 = Tensor::zeros({4, 3}).set_requires_grad(true);
  Tensor q1 = Tensor::zeros({5}).set_requires_grad(true);
  Adam other({q0, q1}, AdamOptions{});
  EXPECT_THROW(other.load_state_dict(saved), Error);  // another shape

  OptimizerState bad_name = saved;
  bad_name.tensors[0].first = "exp_avg";
  Trajectory b = start(one_group<Adam>(AdamOptions{}));
  EXPECT_THROW(b.opt->load_state_dict(bad_name), Error);
  EXPECT_EQ(b.opt->state(0), nullptr);  // nothing changed

  OptimizerState bad_options = saved;
  bad_options.scalars["param_groups"][0]["options"]["beta1"] = 1.5;
  EXPECT_THROW(b.opt->load_state_dict(bad_options), Error);
  EXPECT_EQ(b.opt->state(0), nullptr);
}

TEST(Optim, SkipsFrozenAndGradlessParameters) {
  Tensor trained = Tensor::from_vector({1.0f, 2.0f}, {2}).set_requires_grad(true);
  Tensor frozen = Tensor::from_vector({3.0f, 4.0f}, {2});  // requires_grad false
  Tensor unused = Tensor::from_vector({5.0f, 6.0f}, {2}).set_requires_grad(true);
  frozen.set_grad(Tensor::ones({2}));  // a stale gradient must not move a frozen parameter
  trained.set_grad(Tensor::ones({2}));
  SGD opt({trained, frozen, unused}, SGDOptions{.lr = 0.5, .momentum = 0.9});
  opt.step();
  EXPECT_EQ(trained.to_vector<float>(), (std::vector<float>{0.5f, 1.5f}));
  EXPECT_EQ(frozen.to_vector<float>(), (std::vector<float>{3.0f, 4.0f}));
  EXPECT_EQ(unused.to_vector<float>(), (std::vector<float>{5.0f, 6.0f}));
  EXPECT_NE(opt.state(0), nullptr);
  EXPECT_EQ(opt.state(1), nullptr);
  EXPECT_EQ(opt.state(2), nullptr);
  EXPECT_EQ(opt.state_dict().tensors.size(), 1u);
}

TEST(Optim, ZeroGrad) {
  Tensor p = Tensor::zeros({3}).set_requires_grad(true);
  Adam opt({p}, AdamOptions{});
  p.set_grad(Tensor::ones({3}));
  Tensor kept = p.grad();
  opt.zero_grad(/*set_to_none=*/false);
  EXPECT_TRUE(p.grad().same(kept));
  EXPECT_EQ(kept.to_vector<float>(), (std::vector<float>{0, 0, 0}));
  opt.zero_grad();
  EXPECT_FALSE(p.grad().defined());
  opt.step();  // no gradients: nothing happens
  EXPECT_EQ(opt.state(0), nullptr);
}

TEST(Optim, RejectsBadParametersAndOptions) {
  Tensor p = Tensor::zeros({2}).set_requires_grad(true);
  Tensor half = Tensor::zeros({2}, DType::bf16).set_requires_grad(true);
  EXPECT_THROW((SGD({half}, SGDOptions{})), Error);
  EXPECT_THROW((SGD({p, p}, SGDOptions{})), Error);  // one parameter in two places
  EXPECT_THROW((Adam({p}, AdamOptions{.beta1 = 1.0})), Error);
  EXPECT_THROW((Adam({p}, AdamOptions{.lr = -1.0})), Error);
  EXPECT_THROW((SGD({p}, SGDOptions{.momentum = 0.0, .nesterov = true})), Error);
  EXPECT_THROW((RMSprop({p}, RMSpropOptions{.eps = -1.0})), Error);

  SGD opt({p}, SGDOptions{});
  p.set_grad(Tensor::zeros({3}));
  EXPECT_THROW(opt.step(), Error);  // gradient of another shape
}

TEST(Optim, AddParamGroup) {
  Tensor a = Tensor::ones({2}).set_requires_grad(true);
  Tensor b = Tensor::ones({2}).set_requires_grad(true);
  SGD opt({a}, SGDOptions{.lr = 0.1});
  opt.add_param_group({{b}, SGDOptions{.lr = 0.5}});
  EXPECT_EQ(opt.num_groups(), 2u);
  EXPECT_THROW((opt.add_param_group({{a}, SGDOptions{}})), Error);
  a.set_grad(Tensor::ones({2}));
  b.set_grad(Tensor::ones({2}));
  opt.step();
  EXPECT_FLOAT_EQ(a.to_vector<float>()[0], 0.9f);
  EXPECT_FLOAT_EQ(b.to_vector<float>()[0], 0.5f);
}

}  // namespace
}  // namespace dtrain::optim
