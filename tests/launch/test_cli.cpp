// The dtrain command seen from outside: it is run as a child process (the way a person or a job script
// runs it), and its exit status, stderr, stdout, metrics file and checkpoints are checked.
//
// Image runs use a small Fashion-MNIST look-alike written into a temporary --data-dir, so they need no
// package and take well under a second each; the Transformer and GPT runs read the Debian packages
// dict-freedict-eng-deu and fortunes (scripts/bootstrap installs them) and skip, naming the package,
// where they are missing.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "launch/cli_test_util.h"

using namespace dtrain::cli_test;

namespace {

class Cli : public CliTest {
 protected:
  // A 3-step run of a tiny text model (dim 16, 2 heads, 1 block) on `dataset`; returns the run's output
  // after checking that it succeeded, printed nothing to stderr and ended with a tokens/s summary line,
  // which is left in `summary`.
  std::string train_tiny_text(const std::string& model, const std::string& dataset,
                              const std::string& seq_len, const std::string& batch,
                              std::string& summary) {
    RunResult r = train({"--model",    model, "--dataset",      dataset, "--model-size", "tiny",
                         "--dim",      "16",  "--heads",        "2",     "--mlp-dim",    "32",
                         "--depth",    "1",   "--seq-len",      seq_len, "--batch-size", batch,
                         "--steps",    "3",   "--eval-batches", "1",     "--threads",    "1",
                         "--progress", "0"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    std::smatch m;
    if (!std::regex_search(r.out, m,
                           std::regex(R"(done: 3 steps.*throughput ([0-9.]+) tokens/s.*)"))) {
      ADD_FAILURE() << "no summary line with tokens/s:\n" << r.out;
      return r.out;
    }
    EXPECT_GT(std::stod(m[1]), 0.0);
    summary = m[0].str();
    return r.out;
  }
};

}  // namespace

// ---- errors: one line on stderr, non-zero exit

TEST_F(Cli, UnknownOption) {
  expect_one_line_error(train({"--no-such-option", "3"}), {"no-such-option", "--help"});
}

TEST_F(Cli, UnknownCommand) {
  RunResult r = run({"frobnicate"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("frobnicate"), std::string::npos) << r.err;
}

TEST_F(Cli, BadValues) {
  expect_one_line_error(train({"--precision", "f8"}), {"--precision", "f8"});
  expect_one_line_error(train({"--batch-size", "0"}), {"--batch-size", "0"});
  expect_one_line_error(train({"--steps", "many"}), {"many"});
}

// Where no GPU can be used (no device, no driver, a build without CUDA), asking for one says why and
// what to do, in one line, before any work; a GPU machine runs these instead of failing them.
TEST_F(Cli, UnusableGpuIsOneLine) {
  if (dtrain::cuda_available()) GTEST_SKIP() << "a CUDA device is usable here";
  expect_one_line_error(train({"--device", "cuda", "--progress", "0"}),
                        {"--device cuda", "--device cpu"});
  expect_one_line_error(train({"--device", "cuda:1", "--progress", "0"}),
                        {"--device cuda:1", "--device cpu"});
  expect_one_line_error(train({"--device", "gpu"}), {"gpu", "cuda"});
}

TEST_F(Cli, MissingConfigFile) {
  const fs::path absent = dir_ / "absent.ini";
  expect_one_line_error(train({"--config", absent.string()}), {absent.string()});
}

TEST_F(Cli, MissingDatasetDirectory) {
  const fs::path absent = dir_ / "no-such-dir";
  std::vector<std::string> args = {"--data-dir", absent.string()};
  args.insert(args.end(), kTinyVit.begin(), kTinyVit.end());
  RunResult r = train(args);
  expect_one_line_error(r, {absent.string(), "install dataset-fashion-mnist", "--data-dir"});
}

TEST_F(Cli, CorruptIdxFile) {
  write_fashion_mnist(data_dir(), 192, 32);
  // Not IDX at all: wrong magic bytes.
  write_text(data_dir() / "train-images-idx3-ubyte", "<html>404 not found</html>");
  expect_one_line_error(train_tiny_vit({}),
                        {"train-images-idx3-ubyte", "not an IDX file", "--data-dir"});
  // Well-formed header but more data than it declares.
  write_text(data_dir() / "train-images-idx3-ubyte",
             idx_bytes(0x08, {192, 28, 28}, image_payload(192) + "extra"));
  expect_one_line_error(train_tiny_vit({}), {"train-images-idx3-ubyte", "corrupt", "--data-dir"});
}

TEST_F(Cli, TruncatedIdxFile) {
  write_fashion_mnist(data_dir(), 192, 32);
  std::string images = idx_bytes(0x08, {192, 28, 28}, image_payload(192));
  write_text(data_dir() / "train-images-idx3-ubyte", images.substr(0, images.size() - 1000));
  expect_one_line_error(train_tiny_vit({}), {"train-images-idx3-ubyte", "truncated", "--data-dir"});
  // The package's form: a gzip'd file cut short (a partial copy), in place of the plain one.
  fs::remove(data_dir() / "train-images-idx3-ubyte");
  write_gzip(data_dir() / "train-images-idx3-ubyte.gz", images);
  std::string gz = read_text(data_dir() / "train-images-idx3-ubyte.gz");
  write_text(data_dir() / "train-images-idx3-ubyte.gz", gz.substr(0, gz.size() / 2));
  expect_one_line_error(train_tiny_vit({}), {"train-images-idx3-ubyte.gz", "--data-dir"});
}

TEST_F(Cli, LabelImageCountMismatch) {
  write_fashion_mnist(data_dir(), 192, 32);
  write_text(data_dir() / "train-labels-idx1-ubyte", idx_bytes(0x08, {191}, label_payload(191)));
  expect_one_line_error(train_tiny_vit({}), {"192 images", "191 labels", "--data-dir"});
}

// ---- --help and --config

TEST_F(Cli, HelpListsEveryOptionWithItsDefault) {
  RunResult r = run({"train", "--help"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  // Every TrainConfig field, and its default as --help must print it.
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"model", "vit"},
      {"model-size", "fm"},
      {"dim", "0"},
      {"depth", "0"},
      {"heads", "0"},
      {"mlp-dim", "0"},
      {"patch", "0"},
      {"dropout", "0"},
      {"augment", "0"},
      {"dataset", "fashion-mnist"},
      {"data-dir", "\"\""},
      {"seq-len", "64"},
      {"batch-size", "128"},
      {"grad-accum", "1"},
      {"steps", "0"},
      {"epochs", "1"},
      {"optimizer", "adamw"},
      {"lr", "0.001"},
      {"min-lr", "0"},
      {"schedule", "cosine"},
      {"warmup-steps", "0"},
      {"weight-decay", "0.05"},
      {"clip-grad-norm", "1"},
      {"label-smoothing", "0"},
      {"precision", "f32"},
      {"device", "cpu"},
      {"tf32", "1"},
      {"seed", "0"},
      {"threads", "0"},
      {"bucket-cap-mb", "25"},
      {"zero", "0"},
      {"collective-timeout", "600"},
      {"checkpoint-dir", "\"\""},
      {"checkpoint-interval", "0"},
      {"resume", "\"\""},
      {"eval-interval", "0"},
      {"eval-batches", "0"},
      {"log-interval", "10"},
      {"metrics-file", "\"\""},
      {"progress", "1"},
      {"debug-collectives", "0"},
      {"keep-checkpoints", "3"},
      {"profile-steps", "\"\""},
      {"profile-dir", "profile"},
      {"stem", "patch"},
      {"modalities", "both"},
      {"beam", "1"},
      {"length-penalty", "0.6"},
      {"init-from", "\"\""},
      {"trainable-blocks", "-1"},
      {"layer-lr-decay", "1"},
      {"fused-optimizer", "auto"},
      {"checkpoint-activations", "0"},
      {"beta1", "0.9"},
      {"beta2", "0.999"},
      {"bpe-merges", "0"}};
  for (const auto& [name, value] : expected) {
    const std::string shown = "--" + name + " arg (=" + value + ")";
    EXPECT_NE(r.out.find(shown), std::string::npos) << "--help lacks '" << shown << "':\n" << r.out;
  }
  // And no option is listed without a default (but --help and --config themselves).
  std::istringstream in(r.out);
  int options = 0;
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("  --")) continue;
    ++options;
    if (line.starts_with("  --config ")) continue;
    EXPECT_NE(line.find("(="), std::string::npos) << "no default shown: " << line;
  }
  EXPECT_EQ(options,
            static_cast<int>(expected.size()) + 1);  // + --config; --help is "-h [ --help ]"
}

TEST_F(Cli, ConfigFileWithCommandLineWinning) {
  write_text(dir_ / "run.ini", "steps = 7\nlog-interval = 3\nseed = 4\n");
  RunResult r = train_tiny_vit({"--config", (dir_ / "run.ini").string(), "--steps", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(", 4 steps"), std::string::npos) << r.out;  // the command line's --steps
  EXPECT_NE(r.out.find("step 3/4"), std::string::npos) << r.out;   // the file's --log-interval
  // An unknown key in the file is an error like an unknown option.
  write_text(dir_ / "bad.ini", "stepz = 7\n");
  expect_one_line_error(train_tiny_vit({"--config", (dir_ / "bad.ini").string()}), {"stepz"});
}

// ---- training runs

// 20 steps in one process, or 10 steps, a checkpoint, and 10 more in a new process with --resume:
// the same final weights and optimizer state, bit for bit. Dropout, a warmup that spans the resume
// point and an epoch boundary after it (12 batches per epoch) make the RNG, scheduler and data
// position all matter.
TEST_F(Cli, ResumeGivesIdenticalWeights) {
  const std::vector<std::string> common = {"--seed",         "5",        "--dropout",      "0.1",
                                           "--schedule",     "constant", "--warmup-steps", "15",
                                           "--log-interval", "5"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> all = common;
    all.insert(all.end(), extra.begin(), extra.end());
    return all;
  };
  const fs::path straight = dir_ / "straight", first = dir_ / "first", resumed = dir_ / "resumed";
  RunResult a = train_tiny_vit(with({"--steps", "20", "--checkpoint-dir", straight.string(),
                                     "--metrics-file", (dir_ / "straight.jsonl").string()}));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  RunResult b1 = train_tiny_vit(with({"--steps", "10", "--checkpoint-dir", first.string(),
                                      "--metrics-file", (dir_ / "split.jsonl").string()}));
  ASSERT_EQ(b1.exit_code, 0) << b1.err;
  RunResult b2 =
      train_tiny_vit(with({"--steps", "20", "--resume", first.string(), "--checkpoint-dir",
                           resumed.string(), "--metrics-file", (dir_ / "split.jsonl").string()}));
  ASSERT_EQ(b2.exit_code, 0) << b2.err;

  const fs::path step10 = first / "step-00000010", step20 = "step-00000020";
  expect_bitwise_equal(straight / step20 / "model.safetensors",
                       resumed / step20 / "model.safetensors");
  expect_bitwise_equal(straight / step20 / "optimizer.safetensors",
                       resumed / step20 / "optimizer.safetensors");
  EXPECT_TRUE(
      any_tensor_differs(straight / step20 / "model.safetensors", step10 / "model.safetensors"))
      << "the step-10 checkpoint equals the step-20 one: the comparison above proves nothing";

  // The resumed run appended to the metrics file, and its logged steps match the straight run's.
  std::vector<nlohmann::json> want, got;
  for (const auto& r : read_jsonl(dir_ / "straight.jsonl"))
    if (!r.contains("split")) want.push_back(r);
  for (const auto& r : read_jsonl(dir_ / "split.jsonl"))
    if (!r.contains("split")) got.push_back(r);
  ASSERT_EQ(got.size(), 4u);
  ASSERT_EQ(want.size(), 4u);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i]["step"], want[i]["step"]);
    EXPECT_EQ(got[i]["loss"], want[i]["loss"]) << "step " << want[i]["step"];
    EXPECT_EQ(got[i]["lr"], want[i]["lr"]) << "step " << want[i]["step"];
    EXPECT_EQ(got[i]["grad_norm"], want[i]["grad_norm"]) << "step " << want[i]["step"];
  }
}

TEST_F(Cli, MetricsFileAndSummaryLine) {
  const fs::path metrics = dir_ / "metrics.jsonl";
  RunResult r = train_tiny_vit({"--steps", "6", "--log-interval", "2", "--eval-interval", "3",
                                "--metrics-file", metrics.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");

  std::vector<nlohmann::json> records = read_jsonl(metrics);
  const std::set<std::string> step_keys = {
      "step",       "epoch",        "loss",      "lr",
      "grad_norm",  "images_per_s", "elapsed_s", "host_syncs_per_step",
      "peak_rss_mb"};
  const std::set<std::string> eval_keys = {"step", "split", "loss", "accuracy"};
  std::vector<int64_t> logged, evaluated;
  for (const nlohmann::json& rec : records) {
    if (rec.contains("split")) {
      EXPECT_EQ(keys_of(rec), eval_keys) << rec.dump();
      EXPECT_EQ(rec["split"], "eval");
      EXPECT_GE(rec["accuracy"].get<double>(), 0.0);
      EXPECT_LE(rec["accuracy"].get<double>(), 1.0);
      evaluated.push_back(rec["step"].get<int64_t>());
    } else {
      EXPECT_EQ(keys_of(rec), step_keys) << rec.dump();
      EXPECT_TRUE(std::isfinite(rec["loss"].get<double>())) << rec.dump();
      EXPECT_GT(rec["images_per_s"].get<double>(), 0.0) << rec.dump();
      EXPECT_GT(rec["elapsed_s"].get<double>(), 0.0) << rec.dump();
      EXPECT_NEAR(rec["epoch"].get<double>(), rec["step"].get<double>() / 12.0, 1e-12)
          << rec.dump();
      logged.push_back(rec["step"].get<int64_t>());
    }
  }
  EXPECT_EQ(logged, (std::vector<int64_t>{2, 4, 6}));
  EXPECT_EQ(evaluated, (std::vector<int64_t>{3, 6}));

  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(throughput ([0-9.]+) images/s)"))) << r.out;
  EXPECT_GT(std::stod(m[1]), 0.0);
  EXPECT_EQ(count_lines(r.out, "throughput "), 1) << r.out;
  EXPECT_NE(r.out.find("accuracy"), std::string::npos) << r.out;
}

TEST_F(Cli, TransformerOnFreedict) {
  if (!fs::exists("/usr/share/dictd/freedict-eng-deu.dict.dz")) {
    GTEST_SKIP() << "dict-freedict-eng-deu is not installed (scripts/bootstrap installs it)";
  }
  std::string summary;
  const std::string out = train_tiny_text("transformer", "freedict", "24", "16", summary);
  EXPECT_NE(summary.find("cer "), std::string::npos) << summary;
  EXPECT_NE(summary.find("exact_match "), std::string::npos) << summary;
  EXPECT_GE(count_lines(out, "sample: "), 1) << out;
  EXPECT_GE(count_lines(out, "(reference: "), 1) << out;
}

TEST_F(Cli, GptOnFortunes) {
  if (!fs::exists("/usr/share/games/fortunes")) {
    GTEST_SKIP() << "fortunes is not installed (scripts/bootstrap installs it)";
  }
  std::string summary;
  const std::string out = train_tiny_text("gpt", "fortunes", "32", "8", summary);
  EXPECT_NE(summary.find("bpc "), std::string::npos) << summary;
  EXPECT_EQ(count_lines(out, "sample: The "), 1) << out;
}

// Two ranks under mpirun: the job trains, and only rank 0 prints (one header, one summary).
TEST_F(Cli, TwoRanksUnderMpirun) {
  write_fashion_mnist(data_dir(), 192, 32);
  std::vector<std::string> args = {
      "train", "--data-dir", data_dir().string(), "--steps", "4", "--log-interval", "2"};
  args.insert(args.end(), kTinyVit.begin(), kTinyVit.end());
  RunResult r = run(args, "timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 ");
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(count_lines(r.out, "2 rank(s)"), 1) << r.out;
  EXPECT_EQ(count_lines(r.out, "step 4/4"), 1) << r.out;
  EXPECT_EQ(count_lines(r.out, "throughput "), 1) << r.out;
  EXPECT_EQ(count_lines(r.out, "done: 4 steps"), 1) << r.out;
}
