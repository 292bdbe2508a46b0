// core/autograd/grad_mode: NoGradGuard turns recording off for a scope, nests, restores what was there
// before, and is per thread (a data-loader thread's ops do not change what the training thread records).
#include <gtest/gtest.h>

#include <thread>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"

namespace dtrain {
namespace {

TEST(GradMode, NoGradGuardNestsAndRestores) {
  Tensor w = Tensor::ones({2}).set_requires_grad(true);
  EXPECT_TRUE(autograd::grad_enabled());
  {
    NoGradGuard outer;
    EXPECT_FALSE(autograd::grad_enabled());
    Tensor y = mul(w, 2.0);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    {
      NoGradGuard inner;
      EXPECT_FALSE(autograd::grad_enabled());
    }
    EXPECT_FALSE(autograd::grad_enabled());  // the inner guard restores "off", not "on"
    autograd::set_grad_enabled(true);
    EXPECT_TRUE(mul(w, 2.0).requires_grad());
  }
  EXPECT_TRUE(autograd::grad_enabled());
  Tensor y = mul(w, 2.0);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_NE(y.grad_fn(), nullptr);
}

TEST(GradMode, IsPerThread) {
  NoGradGuard no_grad;
  bool other_thread_enabled = false;
  std::thread([&] { other_thread_enabled = autograd::grad_enabled(); }).join();
  EXPECT_TRUE(other_thread_enabled);
  EXPECT_FALSE(autograd::grad_enabled());
}

}  // namespace
}  // namespace dtrain
