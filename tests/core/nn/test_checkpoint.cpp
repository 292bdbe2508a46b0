// Activation checkpointing (core/nn/checkpoint.h): the same gradients as the plain forward, bitwise
// (dropout replays its masks, autocast its precision), by finite differences, and less memory held.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "core/amp/autocast.h"
#include "core/backend/runtime.h"
#include "core/nn/nn.h"
#include "core/ops/ops.h"
#include "gradcheck.h"
#include "core/optim/optim_fixture.h"

namespace dtrain::nn {
namespace {

using dtrain::testing::all_equal;

// A stack of pre-LN encoder blocks with dropout everywhere, as a model's forward runs them.
struct Stack {
  std::vector<std::shared_ptr<EncoderLayer>> blocks;
  explicit Stack(int depth, int64_t dim = 32) {
    manual_seed(3);
    for (int i = 0; i < depth; ++i) {
      blocks.push_back(std::make_shared<EncoderLayer>(
          dim, 4, 4 * dim, TransformerLayerOptions{.dropout = 0.1, .attn_dropout = 0.1}));
    }
  }
  Tensor forward(Tensor x, bool checkpointed) const {
    for (const auto& block : blocks) {
      x = maybe_checkpoint(checkpointed, *block, {x}, [block](const std::vector<Tensor>& in) {
        return block->forward(in[0]);
      });
    }
    return x;
  }
  std::vector<Tensor> parameters() const {
    std::vector<Tensor> all;
    for (const auto& b : blocks) {
      for (const Tensor& p : b->parameters()) all.push_back(p);
    }
    return all;
  }
};

struct Grads {
  Tensor out, dx;
  std::vector<Tensor> dparams;
  std::array<uint64_t, 6> rng_after;
};

// One forward (under bf16 autocast when `autocast`) and backward (outside it, as the trainer runs
// it) from a fixed seed; the input's and every parameter's gradient.
Grads run(const Stack& stack, const Tensor& input, bool checkpointed, bool autocast = false) {
  for (Tensor p : stack.parameters()) p.set_grad(Tensor());
  Tensor x = input.detach().clone().set_requires_grad(true);
  manual_seed(42);
  Tensor loss;
  Tensor out;
  {
    amp::AutocastGuard guard(DType::bf16, autocast);
    out = stack.forward(x, checkpointed);
    loss = sum(mul(out, out));
  }
  loss.backward();
  Grads g{out.detach(), x.grad(), {}, default_generator().state()};
  for (const Tensor& p : stack.parameters()) g.dparams.push_back(p.grad());
  return g;
}

void expect_same(const Grads& a, const Grads& b) {
  EXPECT_TRUE(all_equal(a.out, b.out)) << "output";
  EXPECT_TRUE(all_equal(a.dx, b.dx)) << "input gradient";
  ASSERT_EQ(a.dparams.size(), b.dparams.size());
  for (size_t i = 0; i < a.dparams.size(); ++i) {
    ASSERT_TRUE(a.dparams[i].defined() && b.dparams[i].defined()) << "parameter " << i;
    EXPECT_TRUE(all_equal(a.dparams[i], b.dparams[i])) << "parameter " << i;
  }
  // The replay restores the stream: what is drawn after the step does not depend on checkpointing.
  EXPECT_EQ(a.rng_after, b.rng_after);
}

TEST(Checkpoint, SameGradientsAsThePlainForwardWithDropout) {
  const Stack stack(3);
  manual_seed(1);
  const Tensor input = Tensor::randn({2, 9, 32});
  const Grads plain = run(stack, input, false), checkpointed = run(stack, input, true);
  expect_same(plain, checkpointed);
  // Dropout really drew masks: a different seed gives another output.
  manual_seed(43);
  EXPECT_FALSE(all_equal(stack.forward(input, false), plain.out));
}

TEST(Checkpoint, SameGradientsUnderAutocast) {
  const Stack stack(2);
  manual_seed(1);
  // bf16 activations between blocks, as a model's embedding gives them under autocast.
  const Tensor input = Tensor::randn({2, 5, 32}).to(DType::bf16);
  const Grads plain = run(stack, input, false, true), checkpointed = run(stack, input, true, true);
  expect_same(plain, checkpointed);
  // Autocast was on: its bf16 GEMMs give other numbers than the same run in f32.
  EXPECT_FALSE(all_equal(run(stack, input.to(DType::f32), false, false).out, plain.out));
}

// The parameters get their gradients through the node even when no input requires one (a block
// over a frozen embedding), and by finite differences the gradients are right.
TEST(Checkpoint, GradcheckInputsAndParameters) {
  manual_seed(5);
  dtrain::testing::expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        const Tensor w = in[1], b = in[2];
        return checkpoint(
            [w, b](const std::vector<Tensor>& a) {
              return mul(tanh(add(matmul(a[0], w), b)), a[0]);
            },
            {in[0]}, {w, b});
      },
      {Tensor::randn({3, 4}, DType::f64), Tensor::randn({4, 4}, DType::f64),
       Tensor::randn({4}, DType::f64)});

  Tensor w = Tensor::randn({4, 4}, DType::f64).set_requires_grad(true);
  const Tensor x = Tensor::randn({3, 4}, DType::f64);  // needs no gradient
  Tensor y = checkpoint([w](const std::vector<Tensor>& a) { return matmul(a[0], w); }, {x}, {w});
  ASSERT_TRUE(y.requires_grad());
  sum(y).backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_TRUE(all_equal(w.grad(), matmul(x.transpose(0, 1), Tensor::ones({3, 4}, DType::f64))));
}

// Outside autograd (evaluation) and with nothing to differentiate, fn runs once, as is.
TEST(Checkpoint, RunsPlainWithoutAutograd) {
  int calls = 0;
  const Tensor x = Tensor::ones({2});
  CheckpointFn fn = [&calls](const std::vector<Tensor>& a) {
    ++calls;
    return mul(a[0], 2.0);
  };
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(checkpoint(fn, {x.detach().clone().set_requires_grad(true)}, {}).requires_grad());
  }
  EXPECT_FALSE(checkpoint(fn, {x}, {}).requires_grad());
  EXPECT_EQ(calls, 2);
}

// What checkpointing is for: the tensors alive at the peak of a forward and backward of six blocks.
// Without it every block's activations are held until backward reaches them; with it only each
// block's input is, plus one block's activations while that block is recomputed.
TEST(Checkpoint, HoldsLessMemoryAtThePeak) {
  const Stack stack(6, 64);
  manual_seed(1);
  const Tensor input = Tensor::randn({4, 65, 64});
  auto peak_of = [&](bool checkpointed) {
    run(stack, input, checkpointed);  // first: gradients allocated, as in a training loop
    reset_peak_device_memory(Device::cpu());
    run(stack, input, checkpointed);
    return static_cast<double>(peak_device_memory_bytes(Device::cpu()));
  };
  const double plain = peak_of(false), checkpointed = peak_of(true);
  RecordProperty("plain_peak_bytes", std::to_string(plain));
  RecordProperty("checkpointed_peak_bytes", std::to_string(checkpointed));
  EXPECT_GT(plain, 0.0);
  EXPECT_LT(checkpointed, 0.5 * plain) << "peak " << checkpointed << " bytes vs " << plain;
}

}  // namespace
}  // namespace dtrain::nn
