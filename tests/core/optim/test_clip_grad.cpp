// Gradient clipping against torch.nn.utils.clip_grad_norm_ / clip_grad_value_ (PyTorch 1.13).
#include "core/optim/clip_grad.h"

#include <gtest/gtest.h>

#include <cmath>

#include "optim_fixture.h"

namespace dtrain::optim {
namespace {

using dtrain::testing::all_close;
using dtrain::testing::all_equal;
using dtrain::testing::optim_fixture;

constexpr int kGrads = 3;

// Parameters whose gradients are the fixture's clip.grad<i>, plus one without a gradient.
std::vector<Tensor> params_with_grads() {
  std::vector<Tensor> params;
  for (int i = 0; i < kGrads; ++i) {
    const Tensor& g = optim_fixture().at("clip.grad" + std::to_string(i));
    Tensor p = Tensor::zeros(g.shape()).set_requires_grad(true);
    p.set_grad(g.clone());
    params.push_back(p);
  }
  params.push_back(Tensor::zeros({2}).set_requires_grad(true));
  return params;
}

TEST(ClipGrad, Norm) {
  for (const std::string tag : {"small", "large"}) {
    SCOPED_TRACE(tag);
    const double max_norm = tag == "small" ? 1.5 : 100.0;
    std::vector<Tensor> params = params_with_grads();
    const double want = optim_fixture().at("clip.norm_" + tag + ".total").item();
    EXPECT_NEAR(grad_norm(params), want, 1e-6 * want);
    const double norm = clip_grad_norm(params, max_norm);
    EXPECT_NEAR(norm, want, 1e-6 * want);
    for (int i = 0; i < kGrads; ++i) {
      const Tensor& expected = optim_fixture().at("clip.norm_" + tag + ".grad" + std::to_string(i));
      EXPECT_TRUE(all_close(params[static_cast<size_t>(i)].grad(), expected, 1e-6)) << "grad " << i;
    }
    EXPECT_FALSE(params.back().grad().defined());
    if (tag == "small") {
      EXPECT_NEAR(grad_norm(params), max_norm, 1e-5);
    } else {
      // Not clipped: the gradients are untouched.
      for (int i = 0; i < kGrads; ++i) {
        EXPECT_TRUE(all_equal(params[static_cast<size_t>(i)].grad(),
                              optim_fixture().at("clip.grad" + std::to_string(i))));
      }
    }
  }
}

TEST(ClipGrad, Value) {
  std::vector<Tensor> params = params_with_grads();
  clip_grad_value(params, 0.75);
  for (int i = 0; i < kGrads; ++i) {
    EXPECT_TRUE(all_equal(params[static_cast<size_t>(i)].grad(),
                          optim_fixture().at("clip.value.grad" + std::to_string(i))))
        << "grad " << i;
  }
}

TEST(ClipGrad, EdgeCases) {
  EXPECT_EQ(grad_norm({}), 0.0);
  Tensor p = Tensor::zeros({3}).set_requires_grad(true);
  p.set_grad(Tensor::zeros({3}));
  EXPECT_EQ(clip_grad_norm({p}, 1.0), 0.0);  // zero gradients stay zero (the 1e-6 guard)
  EXPECT_EQ(p.grad().to_vector<float>(), (std::vector<float>{0, 0, 0}));
  EXPECT_THROW(clip_grad_norm({p}, 0.0), Error);
  EXPECT_THROW(clip_grad_value({p}, -1.0), Error);
  // A non-finite norm poisons the gradients, as in PyTorch, rather than passing silently.
  p.set_grad(Tensor::from_vector({1.0f, NAN, 2.0f}, {3}));
  EXPECT_TRUE(std::isnan(clip_grad_norm({p}, 1.0)));
  EXPECT_TRUE(std::isnan(p.grad().to_vector<float>()[0]));
}

}  // namespace
}  // namespace dtrain::optim
