// Each model with checkpoint_activations on (one checkpointed node per block; core/nn/checkpoint.h)
// gives bitwise the loss and every parameter gradient it gives without, dropout included; the ViT
// is also checked end to end by tests/launch/test_memory_and_fusion_options.cpp.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "core/ops/ops.h"
#include "core/optim/optim_fixture.h"
#include "models/gpt.h"
#include "models/transformer.h"
#include "models/vit.h"
#include "token_batch.h"

namespace dtrain::models {
namespace {

using dtrain::testing::all_equal;
using dtrain::testing::padded_batch;

// loss() run from the same seed without and with checkpointing: same loss, same gradients.
void expect_same_gradients(nn::Module& model, bool& flag, const std::function<Tensor()>& loss) {
  std::vector<Tensor> plain, checkpointed;
  Tensor loss_plain, loss_checkpointed;
  for (bool on : {false, true}) {
    flag = on;
    for (Tensor p : model.parameters()) p.set_grad(Tensor());
    manual_seed(9);
    Tensor l = loss();
    l.backward();
    (on ? loss_checkpointed : loss_plain) = l.detach();
    for (const Tensor& p : model.parameters()) (on ? checkpointed : plain).push_back(p.grad());
  }
  EXPECT_TRUE(all_equal(loss_plain, loss_checkpointed));
  ASSERT_EQ(plain.size(), checkpointed.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    ASSERT_TRUE(plain[i].defined() && checkpointed[i].defined()) << "parameter " << i;
    EXPECT_TRUE(all_equal(plain[i], checkpointed[i])) << "parameter " << i;
  }
}

TEST(CheckpointActivations, Vit) {
  manual_seed(1);
  VisionTransformer m(VitConfig{.image_size = 8,
                                .in_channels = 1,
                                .num_classes = 3,
                                .patch_size = 4,
                                .dim = 16,
                                .depth = 2,
                                .heads = 2,
                                .mlp_dim = 32,
                                .dropout = 0.1});
  const Tensor images = Tensor::randn({2, 1, 8, 8});
  const Tensor labels = Tensor::from_vector(std::vector<int64_t>{0, 2}, {2}, DType::i64);
  expect_same_gradients(m, m.checkpoint_activations,
                        [&] { return cross_entropy(m.forward(images), labels); });
}

TEST(CheckpointActivations, Gpt) {
  manual_seed(1);
  Gpt m(GptConfig{.vocab_size = 13,
                  .max_len = 16,
                  .dim = 32,
                  .depth = 2,
                  .heads = 2,
                  .mlp_dim = 64,
                  .dropout = 0.1});
  const Tensor tokens = padded_batch({{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12}}, 0);
  expect_same_gradients(m, m.checkpoint_activations, [&] {
    return cross_entropy(m.forward(tokens).reshape({12, 13}), tokens.reshape({12}));
  });
}

TEST(CheckpointActivations, Transformer) {
  manual_seed(1);
  Transformer m(TransformerConfig{.src_vocab = 11,
                                  .tgt_vocab = 11,
                                  .max_len = 16,
                                  .dim = 32,
                                  .encoder_layers = 2,
                                  .decoder_layers = 2,
                                  .heads = 2,
                                  .mlp_dim = 64,
                                  .dropout = 0.1,
                                  .pad_id = 0});
  const Tensor src = padded_batch({{3, 4, 5, 6}, {7, 8}}, 0);
  const Tensor tgt = padded_batch({{1, 9, 10}, {1, 2}}, 0);
  expect_same_gradients(m, m.checkpoint_activations, [&] {
    return cross_entropy(m.forward(src, tgt).reshape({6, 11}), tgt.reshape({6}), 0);
  });
}

}  // namespace
}  // namespace dtrain::models
