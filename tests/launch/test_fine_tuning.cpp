// Fine-tuning (launch/optimizer_factory.h, load_initial_weights in launch/checkpoints.h): which layer
// each parameter belongs to, freezing all but the last blocks, layer-wise learning rates, and a run
// that starts from another run's weights (--init-from) with frozen blocks whose weights stay exactly
// the checkpoint's while the head trains.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli_test_util.h"
#include "error_message.h"
#include "core/io/checkpoint.h"
#include "launch/optimizer_factory.h"
#include "models/transformer.h"
#include "models/vit.h"

namespace dtrain::launch {
namespace {

models::VitConfig two_block_vit(const std::string& stem) {
  models::VitConfig c;
  c.image_size = 8, c.patch_size = 4, c.dim = 8, c.depth = 2, c.heads = 2, c.mlp_dim = 16,
  c.num_classes = 3;
  c.stem = stem, c.stem_channels = 4;
  return c;
}

// The layer of the parameter `name` in `model`.
int64_t layer_of(const nn::Module& model, const std::string& name) {
  const ParameterLayers layers = parameter_layers(model);
  int64_t i = 0;
  for (const auto& [n, p] : model.named_parameters()) {
    if (n == name) return layers.layer[i];
    ++i;
  }
  ADD_FAILURE() << "no parameter " << name;
  return -1;
}

TEST(FineTuning, ParameterLayersCountBlocksFromOneWithEmbeddingsAtZeroAndTheHeadLast) {
  models::VisionTransformer vit(two_block_vit("dwsep"));
  EXPECT_EQ(parameter_layers(vit).depth, 2);
  for (const char* name :
       {"stem.conv1.depthwise.weight", "patch_embed.proj.weight", "cls_token", "pos_embed"}) {
    EXPECT_EQ(layer_of(vit, name), 0) << name;
  }
  EXPECT_EQ(layer_of(vit, "blocks.0.attn.qkv.weight"), 1);
  EXPECT_EQ(layer_of(vit, "blocks.1.mlp.fc2.bias"), 2);
  EXPECT_EQ(layer_of(vit, "norm.weight"), 3);
  EXPECT_EQ(layer_of(vit, "head.weight"), 3);

  // The Transformer's two stacks number their layers alike; its encoder's final norm follows blocks.
  models::Transformer transformer(models::TransformerConfig::preset("tiny", 20, 20, 16, 0));
  const int64_t depth = parameter_layers(transformer).depth;
  EXPECT_EQ(depth, transformer.config().encoder_layers);
  EXPECT_EQ(layer_of(transformer, "src_embed.weight"), 0);
  EXPECT_EQ(layer_of(transformer, "encoder_layers.0.attn.qkv.weight"), 1);
  EXPECT_EQ(layer_of(transformer, "decoder_layers.0.cross_attn.q.weight"), 1);
  EXPECT_EQ(layer_of(transformer, "generator.weight"), depth + 1);
}

TEST(FineTuning, FreezingKeepsTheLastBlocksAndTheHeadTrainable) {
  models::VisionTransformer vit(two_block_vit("patch"));
  // Layer 0 (cls, pos, patch weight and bias) and block 0 (12 tensors) are frozen.
  EXPECT_EQ(freeze_below_last_blocks(vit, 1), 16);
  for (const auto& [name, p] : vit.named_parameters()) {
    const bool trains =
        name.starts_with("blocks.1.") || name.starts_with("norm.") || name.starts_with("head.");
    EXPECT_EQ(p.requires_grad(), trains) << name;
  }
  // The optimizer's groups hold only what trains.
  TrainConfig c;
  size_t grouped = 0;
  for (const GroupSpec& g : param_groups(c, vit)) grouped += g.params.size();
  EXPECT_EQ(grouped, 12u + 4u);

  models::VisionTransformer other(two_block_vit("patch"));
  EXPECT_EQ(freeze_below_last_blocks(other, -1), 0);
  EXPECT_EQ(freeze_below_last_blocks(other, 2), 4);  // all blocks train: only the embeddings freeze
  const std::string error = testing::error_of([&] { freeze_below_last_blocks(other, 3); });
  EXPECT_NE(error.find("--trainable-blocks 3 but the model has 2 blocks"), std::string::npos)
      << error;
}

TEST(FineTuning, LayerWiseLearningRatesDecayFromTheHead) {
  models::VisionTransformer vit(two_block_vit("patch"));
  TrainConfig c;
  c.lr = 0.01;
  c.layer_lr_decay = 0.5;
  c.weight_decay = 0.1;
  const std::vector<GroupSpec> groups = param_groups(c, vit);
  ASSERT_EQ(groups.size(),
            2u * (2 + 2));  // {decay, no decay} for the embeddings, 2 blocks, the head
  // Layer l of depth 2 trains at 0.5^(3 - l): embeddings 1/8, block 0 1/4, block 1 1/2, head 1.
  const std::vector<double> scales = {0.125, 0.25, 0.5, 1.0};
  for (size_t g = 0; g < groups.size(); ++g) {
    EXPECT_DOUBLE_EQ(groups[g].lr_scale, scales[g / 2]) << "group " << g;
    EXPECT_EQ(groups[g].decay, g % 2 == 0) << "group " << g;
  }
  // head.weight (a matrix, decayed) is in the head's first group; blocks.0's LayerNorm in block 0's second.
  auto holds = [](const GroupSpec& g, const Tensor& t) {
    for (const Tensor& p : g.params) {
      if (p.same(t)) return true;
    }
    return false;
  };
  EXPECT_TRUE(holds(groups[6], vit.head->weight));
  EXPECT_TRUE(holds(groups[3], vit.blocks->at<nn::EncoderLayer>(0)->norm1->weight));
  EXPECT_TRUE(holds(groups[1], vit.pos_embed));

  auto optimizer = make_optimizer(c, param_groups(c, vit));
  ASSERT_EQ(optimizer->num_groups(), groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    EXPECT_DOUBLE_EQ(optimizer->lr(g), 0.01 * scales[g / 2]) << "group " << g;
    EXPECT_DOUBLE_EQ(optimizer->weight_decay(g), g % 2 == 0 ? 0.1 : 0.0) << "group " << g;
  }
  // Without decay, the two groups of before (checkpoints of earlier runs keep loading).
  c.layer_lr_decay = 1.0;
  EXPECT_EQ(param_groups(c, vit).size(), 2u);
}

class FineTuningRun : public cli_test::CliTest {};

// The step checkpoint of `run` after `steps` steps: its model tensors.
SafetensorsFile model_tensors(const cli_test::fs::path& run, int steps) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08d", steps);
  return load_safetensors((run / name / kCheckpointModelFile).string());
}

TEST_F(FineTuningRun, InitFromTrainsTheHeadAloneFromTheCheckpointsWeights) {
  const auto base = dir_ / "base", tuned = dir_ / "tuned";
  cli_test::RunResult r = train_tiny_vit({"--steps", "20", "--checkpoint-dir", base.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  r = train_tiny_vit({"--steps", "10", "--init-from", base.string(), "--trainable-blocks", "0",
                      "--layer-lr-decay", "0.5", "--seed", "3", "--checkpoint-dir",
                      tuned.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(
      r.out.find("initialised from " + (base / "step-00000020").string() + ": 20 of 20 tensors"),
      std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("parameter tensors frozen, 0 blocks and the head train"), std::string::npos)
      << r.out;

  const SafetensorsFile before = model_tensors(base, 20), after = model_tensors(tuned, 10);
  ASSERT_EQ(before.names(), after.names());
  for (const std::string& name : before.names()) {
    const std::vector<float> a = before.at(name).to_vector<float>(),
                             b = after.at(name).to_vector<float>();
    if (name.starts_with("head.") || name.starts_with("norm.")) {
      if (name == "head.weight") {
        EXPECT_NE(a, b) << name << " did not train";
      }
    } else {
      EXPECT_EQ(a, b) << name << " is frozen but changed";
    }
  }
}

TEST_F(FineTuningRun, InitFromSomethingThatIsNotACheckpointIsAOneLineError) {
  cli_test::RunResult r =
      train_tiny_vit({"--steps", "2", "--init-from", (dir_ / "nothing").string()});
  cli_test::expect_one_line_error(r, {"no checkpoint at " + (dir_ / "nothing").string()});
}

}  // namespace
}  // namespace dtrain::launch
