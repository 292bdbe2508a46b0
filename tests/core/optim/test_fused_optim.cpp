// The fused optimizer path (set_fused(true): one adam_update / sgd_update call per group, device
// and dtype) against the per-tensor path on a list shaped like a model's: sizes from 1 element to
// more than one CUDA chunk (65,536), f32 and f64, a parameter that skips a step (so one call mixes
// step counts), and one that is not contiguous (handed to the per-tensor path). Tolerances: the two
// paths apply the same operations in the same order, so f32 agrees to a few ulps (1e-6 relative, on
// the tensor's scale) and f64 to 1e-13. The PyTorch trajectories of test_optimizer.cpp run fused
// too.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/backend/cuda/parity.h"
#include "core/ops/optim_update.h"
#include "core/optim/optim.h"
#include "optim_fixture.h"
#include "error_message.h"

namespace dtrain::optim {
namespace {

using dtrain::testing::all_close;

using Make = std::function<std::unique_ptr<Optimizer>(std::vector<Tensor>)>;

struct Case {
  std::string name;
  Make make;
};

std::vector<Case> cases() {
  return {
      {"sgd", [](auto p) { return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1}); }},
      {"sgd_momentum",
       [](auto p) {
         return std::make_unique<SGD>(
             p, SGDOptions{.lr = 0.05, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
       }},
      {"sgd_nesterov",
       [](auto p) {
         return std::make_unique<SGD>(
             p, SGDOptions{.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
       }},
      {"adam",
       [](auto p) {
         return std::make_unique<Adam>(p, AdamOptions{.lr = 0.01, .weight_decay = 0.1});
       }},
      {"adam_amsgrad",
       [](auto p) {
         return std::make_unique<Adam>(
             p, AdamOptions{.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .amsgrad = true});
       }},
      {"adamw",
       [](auto p) {
         return std::make_unique<AdamW>(p, AdamWOptions{.lr = 0.01, .weight_decay = 0.1});
       }},
      {"adamw_amsgrad",
       [](auto p) {
         return std::make_unique<AdamW>(
             p, AdamWOptions{.lr = 0.02, .eps = 1e-6, .weight_decay = 0.05, .amsgrad = true});
       }},
  };
}

// Leaves of several sizes and dtypes on `device`; the last is a transposed (non-contiguous) view.
std::vector<Tensor> make_params(Device device) {
  manual_seed(7);
  std::vector<Tensor> params;
  for (const Shape& s : std::vector<Shape>{{1}, {7}, {3, 5}, {300}, {2, 65536 + 17}}) {
    params.push_back(Tensor::randn(s).to(device));
  }
  params.push_back(Tensor::randn({33}, DType::f64).to(device));
  params.push_back(Tensor::randn({5, 4}, DType::f64).to(device));
  params.push_back(Tensor::randn({6, 4}).to(device).transpose(0, 1));
  for (Tensor& p : params) p.set_requires_grad(true);
  return params;
}

std::vector<Tensor> clones(const std::vector<Tensor>& params) {
  std::vector<Tensor> out;
  for (const Tensor& p : params) {
    Tensor c = p.detach().clone();
    if (!p.is_contiguous()) c = p.detach().transpose(0, 1).clone().transpose(0, 1);
    out.push_back(c.set_requires_grad(true));
  }
  return out;
}

// Ten steps of both runs under the same gradients (parameter 1 has none at step 3).
void run_both(Optimizer& a, std::vector<Tensor>& pa, Optimizer& b, std::vector<Tensor>& pb) {
  manual_seed(11);
  for (int step = 0; step < 10; ++step) {
    for (size_t i = 0; i < pa.size(); ++i) {
      Tensor g = i == 1 && step == 3 ? Tensor() : Tensor::randn(pa[i].shape(), pa[i].dtype());
      pa[i].set_grad(g.defined() ? g.to(pa[i].device()).clone() : g);
      pb[i].set_grad(g.defined() ? g.to(pb[i].device()).clone() : g);
    }
    a.step();
    b.step();
  }
}

// Passes when `f` throws a dtrain::Error whose message contains `text`.
template <class F>
::testing::AssertionResult error_says(F&& f, const std::string& text) {
  const std::string message = dtrain::testing::error_of(f);
  if (message.find(text) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "the error says \"" << message << "\", not \"" << text << "\"";
}

void expect_close(const std::vector<Tensor>& got, const std::vector<Tensor>& want,
                  const Optimizer& og, const Optimizer& ow) {
  for (size_t i = 0; i < got.size(); ++i) {
    const double rtol = got[i].dtype() == DType::f64 ? 1e-13 : 1e-6;
    EXPECT_TRUE(all_close(got[i].to(Device::cpu()), want[i].to(Device::cpu()), rtol))
        << "parameter " << i;
    ASSERT_NE(og.state(i), nullptr);
    EXPECT_EQ(og.state(i)->step, ow.state(i)->step) << "parameter " << i;
    for (const auto& [name, t] : ow.state(i)->tensors) {
      ASSERT_TRUE(og.state(i)->tensors.count(name)) << "parameter " << i << " lacks " << name;
      EXPECT_TRUE(
          all_close(og.state(i)->tensors.at(name).to(Device::cpu()), t.to(Device::cpu()), rtol))
          << "parameter " << i << "'s " << name;
    }
  }
}

TEST(FusedOptim, MatchesThePerTensorPath) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    std::vector<Tensor> pf = make_params(Device::cpu()), pt = clones(pf);
    auto fused = c.make(pf), per_tensor = c.make(pt);
    fused->set_fused(true);
    ASSERT_TRUE(fused->fused());
    run_both(*fused, pf, *per_tensor, pt);
    expect_close(pf, pt, *fused, *per_tensor);
    EXPECT_EQ(fused->state(1)->step, 9);  // skipped once, inside a fused list
  }
}

// One launch per list on the GPU, over chunks that split the largest parameter: equal to the CPU's
// fused path to rounding.
TEST(FusedOptim, CudaMatchesCpu) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    std::vector<Tensor> pg = make_params(Device::cuda(0)), pc = make_params(Device::cpu());
    auto gpu = c.make(pg), cpu = c.make(pc);
    gpu->set_fused(true);
    cpu->set_fused(true);
    run_both(*gpu, pg, *cpu, pc);
    expect_close(pg, pc, *gpu, *cpu);
  }
}

TEST(FusedOptim, RefusesWhatItCannotRun) {
  Tensor p = Tensor::zeros({2}).set_requires_grad(true);
  RMSprop rms({p}, RMSpropOptions{});
  EXPECT_TRUE(error_says([&] { rms.set_fused(true); }, "rmsprop has no fused path"));
  rms.set_fused(false);  // off is always allowed

  Tensor a = Tensor::zeros({2}), b = Tensor::zeros({2}, DType::f64), c = Tensor::zeros({3});
  const AdamUpdateArgs args;
  EXPECT_TRUE(error_says(
      [&] {
        adam_update_(args, {{a, a, a, a, Tensor()}, {b, b, b, b, Tensor()}});
      },
      "entry 1's parameter is f64 on cpu but the list is f32 on cpu"));
  EXPECT_TRUE(error_says(
      [&] {
        adam_update_(args, {{a, c, a, a, Tensor()}});
      },
      "entry 0's gradient is [3] but its parameter is [2]"));
  EXPECT_TRUE(error_says(
      [&] {
        sgd_update_(SgdUpdateArgs{.momentum = 0.9}, {{a, a, Tensor(), false}});
      },
      "entry 0 has no momentum buffer"));
  Tensor h = Tensor::zeros({2}, DType::bf16);
  EXPECT_TRUE(error_says(
      [&] {
        sgd_update_(SgdUpdateArgs{}, {{h, h, Tensor(), false}});
      },
      "fused updates take f32 or f64"));
}

}  // namespace
}  // namespace dtrain::optim
