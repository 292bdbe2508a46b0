// core/autograd: the backward engine and the per-parameter post-accumulate hooks, on one process.
// DDP starts a bucket's all-reduce from these hooks, so they must fire exactly once per backward for
// each parameter that gets a gradient, only once that gradient is final (every use of the parameter
// has delivered its part), and as early as that: in the order backward reaches the parameters, which
// for a chain of layers is the last layer first.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/tensor/random.h"
#include "tests/error_message.h"

namespace dtrain {
namespace {

using testing::error_of;

Tensor param(const Shape& shape) {
  return Tensor::randn(shape, DType::f64).set_requires_grad(true);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// x -> x w1 -> x w1 w2 -> x w1 w2 w3 -> sum: a chain of three layers, each one parameter.
struct Chain {
  Tensor x = Tensor::randn({2, 3}, DType::f64);
  std::vector<Tensor> w = {param({3, 4}), param({4, 4}), param({4, 2})};
  Tensor loss() const { return sum(matmul(matmul(matmul(x, w[0]), w[1]), w[2])); }
};

TEST(AutogradHooks, FireOncePerBackwardWithTheGradientSoFar) {
  manual_seed(1);
  Chain chain;
  std::vector<int> calls(3, 0);
  std::vector<std::vector<double>> seen(3);
  for (size_t i = 0; i < 3; ++i) {
    chain.w[i].register_post_accumulate_grad_hook([&, i](const Tensor& p) {
      EXPECT_TRUE(p.same(chain.w[i]));  // the hook is handed its own parameter
      ++calls[i];
      seen[i] = p.grad().to_vector<double>();
    });
  }
  chain.loss().backward();
  EXPECT_EQ(calls, (std::vector<int>{1, 1, 1}));
  std::vector<std::vector<double>> first = seen;
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(seen[i], chain.w[i].grad().to_vector<double>()) << i;

  // A second backward (a fresh forward, gradients not zeroed): one more call each, and the hook sees
  // the gradient accumulated over both passes, as gradient accumulation before an all-reduce needs.
  chain.loss().backward();
  EXPECT_EQ(calls, (std::vector<int>{2, 2, 2}));
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(seen[i].size(), first[i].size());
    for (size_t k = 0; k < seen[i].size(); ++k) EXPECT_DOUBLE_EQ(seen[i][k], 2 * first[i][k]);
  }
}

TEST(AutogradHooks, FireLastLayerFirstAsSoonAsEachGradientIsFinal) {
  manual_seed(2);
  Chain chain;
  std::vector<int> order;
  std::vector<std::vector<bool>> defined_when_fired;  // which grads exist as each hook fires
  for (int i = 0; i < 3; ++i) {  // registered first layer first; the order is backward's, not this
    chain.w[static_cast<size_t>(i)].register_post_accumulate_grad_hook([&, i](const Tensor&) {
      order.push_back(i);
      std::vector<bool> defined;
      for (const Tensor& w : chain.w) defined.push_back(w.grad().defined());
      defined_when_fired.push_back(defined);
    });
  }
  chain.loss().backward();
  EXPECT_EQ(order, (std::vector<int>{2, 1, 0}));
  // Each hook fires before backward has reached the layers below: the moment DDP can send a bucket.
  ASSERT_EQ(defined_when_fired.size(), 3u);
  EXPECT_EQ(defined_when_fired[0], (std::vector<bool>{false, false, true}));
  EXPECT_EQ(defined_when_fired[1], (std::vector<bool>{false, true, true}));
  EXPECT_EQ(defined_when_fired[2], (std::vector<bool>{true, true, true}));
}

TEST(AutogradHooks, ParameterUsedTwiceFiresOnceWithTheWholeGradient) {
  manual_seed(3);
  // w is used by the first and the last layer (tied weights); v sits between them.
  Tensor x = Tensor::randn({2, 3}, DType::f64);
  Tensor w = param({3, 3}), v = param({3, 3});
  std::vector<std::string> order;
  std::vector<double> w_seen;
  w.register_post_accumulate_grad_hook([&](const Tensor& p) {
    order.push_back("w");
    w_seen = p.grad().to_vector<double>();
  });
  v.register_post_accumulate_grad_hook([&](const Tensor&) { order.push_back("v"); });
  sum(matmul(matmul(matmul(x, w), v), w)).backward();
  // The last use of w is reached first, but w is final only after its first use: v comes before it.
  EXPECT_EQ(order, (std::vector<std::string>{"v", "w"}));
  EXPECT_EQ(w_seen, w.grad().to_vector<double>());

  // The same computation with the two uses as separate leaves: w's gradient is the sum of theirs.
  Tensor w_first = w.detach().clone().set_requires_grad(true);
  Tensor w_last = w.detach().clone().set_requires_grad(true);
  sum(matmul(matmul(matmul(x, w_first), v.detach()), w_last)).backward();
  std::vector<double> a = w_first.grad().to_vector<double>(), b = w_last.grad().to_vector<double>();
  ASSERT_EQ(w_seen.size(), a.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(w_seen[k], a[k] + b[k], 1e-12) << k;
}

TEST(AutogradHooks, NotForParametersWithoutAGradient) {
  manual_seed(4);
  Chain chain;
  Tensor unused = param({2, 2});
  std::vector<int> calls(4, 0);
  for (size_t i = 0; i < 3; ++i) {
    chain.w[i].register_post_accumulate_grad_hook([&, i](const Tensor&) { ++calls[i]; });
  }
  unused.register_post_accumulate_grad_hook([&](const Tensor&) { ++calls[3]; });
  chain.w[1].set_requires_grad(false);  // frozen after its hook was registered
  chain.loss().backward();
  EXPECT_EQ(calls, (std::vector<int>{1, 0, 1, 0}));
  EXPECT_FALSE(chain.w[1].grad().defined());
  EXPECT_FALSE(unused.grad().defined());

  // A forward under NoGradGuard records nothing, so nothing can fire.
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(chain.loss().requires_grad());
  }
  // Hooks go only on leaves that require grad; clear_hooks removes them.
  EXPECT_TRUE(contains(error_of([&] { Tensor::ones({2}).register_post_accumulate_grad_hook({}); }),
                       "needs a leaf tensor that requires grad"));
  Tensor non_leaf = mul(chain.w[0], 2.0);
  EXPECT_THROW(non_leaf.register_post_accumulate_grad_hook([](const Tensor&) {}), Error);
  for (const Tensor& w : chain.w) w.clear_hooks();
  chain.w[1].set_requires_grad(true);
  chain.loss().backward();
  EXPECT_EQ(calls, (std::vector<int>{1, 0, 1, 0}));
}

TEST(AutogradEngine, BackwardChecksItsRootAndGradient) {
  Tensor w = Tensor::ones({2, 2}).set_requires_grad(true);
  EXPECT_TRUE(contains(error_of([] { Tensor::ones({2}).backward(); }), "does not require grad"));
  Tensor y = mul(w, 3.0);
  EXPECT_TRUE(contains(error_of([&] { y.backward(); }), "needs a gradient of that shape"));
  EXPECT_TRUE(contains(error_of([&] { y.backward(Tensor::ones({4})); }), "does not match"));
  y.backward(Tensor::full({2, 2}, 2.0));  // an explicit gradient of the root's shape
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{6, 6, 6, 6}));
}

TEST(AutogradEngine, SecondBackwardNeedsRetainGraph) {
  Tensor w = Tensor::full({3}, 2.0).set_requires_grad(true);
  Tensor kept = sum(mul(w, w));
  kept.backward(Tensor(), /*retain_graph=*/true);
  kept.backward();
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{8, 8, 8}));  // 2 w, twice
  EXPECT_TRUE(contains(error_of([&] { kept.backward(); }), "retain_graph=true"));
}

}  // namespace
}  // namespace dtrain
