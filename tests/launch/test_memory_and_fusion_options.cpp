// The training options that trade memory or launches for nothing in the result: the whole `dtrain
// train` with --checkpoint-activations 1 writes bitwise the weights it writes without (dropout on,
// one rank and two under DDP, whose bucket hooks then fire inside the recomputation), and
// --fused-optimizer on the same weights to f32 rounding; both refuse what they cannot do in one
// line. --beta1/--beta2 reach every Adam-family group and are refused for the other optimizers;
// --label-smoothing reaches the GPT's loss.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/io/safetensors.h"
#include "launch/optimizer_factory.h"
#include "launch/workload.h"
#include "models/gpt.h"
#include "models/vit.h"
#include "tests/launch/cli_test_util.h"

namespace dtrain::cli_test {
namespace {

class TrainingOptions : public CliTest {
 protected:
  // Trains the tiny ViT for 3 steps with dropout into dir_/name; the final weights' path.
  fs::path train_into(const std::string& name, const std::vector<std::string>& extra,
                      const std::string& prefix = "") {
    ensure_data();
    const fs::path rundir = dir_ / name;
    std::vector<std::string> args = {
        "train",     "--data-dir", data_dir().string(), "--steps",      "3",
        "--dropout", "0.1",        "--checkpoint-dir",  rundir.string()};
    args.insert(args.end(), kTinyVit.begin(), kTinyVit.end());
    args.insert(args.end(), extra.begin(), extra.end());
    const RunResult r = run(args, prefix);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return rundir / "step-00000003" / "model.safetensors";
  }
};

TEST_F(TrainingOptions, CheckpointedActivationsTrainTheSameWeights) {
  const fs::path plain = train_into("plain", {});
  const fs::path checkpointed = train_into("checkpointed", {"--checkpoint-activations", "1"});
  ASSERT_TRUE(fs::exists(plain) && fs::exists(checkpointed));
  expect_bitwise_equal(plain, checkpointed);
}

TEST_F(TrainingOptions, CheckpointedActivationsUnderDdpTrainTheSameWeights) {
  if (mpiexec().empty()) GTEST_SKIP() << "no mpiexec or mpirun found";
  const std::string two_ranks =
      "timeout 120 " + shell_quote(mpiexec()) + " --allow-run-as-root --oversubscribe -np 2 ";
  const fs::path plain = train_into("plain", {}, two_ranks);
  const fs::path checkpointed =
      train_into("checkpointed", {"--checkpoint-activations", "1"}, two_ranks);
  ASSERT_TRUE(fs::exists(plain) && fs::exists(checkpointed));
  expect_bitwise_equal(plain, checkpointed);
}

TEST_F(TrainingOptions, FusedOptimizerTrainsTheSameWeightsToRounding) {
  for (const char* optimizer : {"adamw", "sgd"}) {
    SCOPED_TRACE(optimizer);
    const std::string o = optimizer;
    const SafetensorsFile off =
        load_safetensors(train_into(o + "-off", {"--optimizer", o, "--fused-optimizer", "off"}));
    const SafetensorsFile on =
        load_safetensors(train_into(o + "-on", {"--optimizer", o, "--fused-optimizer", "on"}));
    ASSERT_EQ(off.names(), on.names());
    for (const auto& [name, a] : off.tensors()) {
      const std::vector<double> x = a.to_vector<double>(), y = on.at(name).to_vector<double>();
      double scale = 0.0, worst = 0.0;
      for (size_t i = 0; i < x.size(); ++i) scale = std::max(scale, std::fabs(x[i]));
      for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(x[i] - y[i]));
      // Relative to the tensor's scale, plus 1e-6 absolute: a bias that starts at 0 moves by about
      // lr (1e-3) a step, and Adam's m / (sqrt(v) + eps) of near-zero gradients amplifies rounding
      // to ~1e-7 there; a wrong update would differ by ~lr.
      EXPECT_LE(worst, 1e-5 * scale + 1e-6) << name;
    }
  }
}

using launch::make_optimizer;
using launch::make_workload;
using launch::TrainConfig;

// The whole-run comparisons above would also pass if an option never reached the model or the
// optimizer; these check that it does.
TEST(TrainingOptionsWiring, CheckpointActivationsReachesTheModels) {
  for (bool on : {false, true}) {
    TrainConfig c;
    c.dataset = "synthetic";
    c.checkpoint_activations = on;
    c.model = "vit";
    auto vit = std::dynamic_pointer_cast<models::VisionTransformer>(
        make_workload(c, Device::cpu())->shared_model());
    ASSERT_NE(vit, nullptr);
    EXPECT_EQ(vit->checkpoint_activations, on);
    c.model = "gpt";
    c.model_size = "tiny";
    auto gpt =
        std::dynamic_pointer_cast<models::Gpt>(make_workload(c, Device::cpu())->shared_model());
    ASSERT_NE(gpt, nullptr);
    EXPECT_EQ(gpt->checkpoint_activations, on);
  }
}

TEST(TrainingOptionsWiring, FusedOptimizerFollowsTheFlag) {
  const Tensor p = Tensor::zeros({4}).set_requires_grad(true);
  for (const char* optimizer : {"sgd", "adam", "adamw", "rmsprop"}) {
    SCOPED_TRACE(optimizer);
    TrainConfig c;
    c.optimizer = optimizer;
    const bool has_fused = c.optimizer != "rmsprop";
    for (const char* mode : {"auto", "on", "off"}) {
      c.fused_optimizer = mode;
      if (c.fused_optimizer == "on" && !has_fused) continue;  // refused by the config check
      const bool want = c.fused_optimizer == "on" || (c.fused_optimizer == "auto" && has_fused);
      EXPECT_EQ(make_optimizer(c, {{p}, {}})->fused(), want) << mode;
    }
  }
}

TEST(TrainingOptionsWiring, BetasReachTheAdamFamily) {
  const Tensor p = Tensor::zeros({4, 4}).set_requires_grad(true);
  const Tensor q = Tensor::zeros({4}).set_requires_grad(true);
  for (const char* optimizer : {"adam", "adamw", "adamax", "nadam"}) {
    SCOPED_TRACE(optimizer);
    TrainConfig c;
    c.optimizer = optimizer;
    c.beta1 = 0.8, c.beta2 = 0.95;
    const auto opt = make_optimizer(c, {{p}, {q}});
    const nlohmann::json groups = opt->state_dict().scalars.at("param_groups");
    ASSERT_EQ(groups.size(), 2u);
    for (const nlohmann::json& g : groups) {
      const nlohmann::json& o = g.at("options");
      EXPECT_EQ(o.at("beta1").get<double>(), 0.8) << o.dump();
      EXPECT_EQ(o.at("beta2").get<double>(), 0.95) << o.dump();
    }
  }
}

TEST_F(TrainingOptions, RefusedInOneLine) {
  expect_one_line_error(train_tiny_vit({"--optimizer", "rmsprop", "--fused-optimizer", "on"}),
                        {"--fused-optimizer on", "rmsprop", "auto or off"});
  expect_one_line_error(train_tiny_vit({"--fused-optimizer", "yes"}),
                        {"--fused-optimizer must be auto, on or off", "yes"});
  expect_one_line_error(train({"--model", "classifier", "--dataset", "fortune-files",
                               "--checkpoint-activations", "1", "--steps", "1"}),
                        {"--checkpoint-activations applies to vit, gpt and transformer"});
  expect_one_line_error(train_tiny_vit({"--optimizer", "sgd", "--beta2", "0.95"}),
                        {"--beta1 and --beta2 apply to adam", "sgd"});
  expect_one_line_error(train_tiny_vit({"--beta2", "1"}), {"beta2"});
}

// --label-smoothing reaches the GPT's training loss (synthetic tokens: no data to install): step 1,
// from the same weights on the same batch, logs another loss with it than without.
TEST_F(TrainingOptions, LabelSmoothingReachesTheGptLoss) {
  auto step_one = [&](const std::string& smoothing) {
    const fs::path metrics = dir_ / ("metrics-" + smoothing + ".jsonl");
    RunResult r = train({"--model",
                         "gpt",
                         "--dataset",
                         "synthetic",
                         "--model-size",
                         "tiny",
                         "--dim",
                         "16",
                         "--heads",
                         "2",
                         "--mlp-dim",
                         "32",
                         "--depth",
                         "1",
                         "--seq-len",
                         "16",
                         "--batch-size",
                         "4",
                         "--steps",
                         "1",
                         "--log-interval",
                         "1",
                         "--label-smoothing",
                         smoothing,
                         "--metrics-file",
                         metrics.string(),
                         "--threads",
                         "1",
                         "--progress",
                         "0"});
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    return first_train_loss(metrics);
  };
  const double plain = step_one("0"), smoothed = step_one("0.5");
  ASSERT_TRUE(std::isfinite(plain) && std::isfinite(smoothed)) << plain << " " << smoothed;
  EXPECT_NE(plain, smoothed);
}

}  // namespace
}  // namespace dtrain::cli_test
