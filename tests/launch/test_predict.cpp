// `dtrain predict` seen from outside: a tiny model is trained for a few steps with a checkpoint, the
// dtrain program is run on an input, and its output is checked against the same model driven through
// the library here (the eval batch through the ViT, Gpt::generate, Transformer::greedy_decode).
// The GPT and Transformer tests read the Debian packages fortunes and dict-freedict-eng-deu and skip,
// naming the package, where they are missing.
#include <gtest/gtest.h>

#include <map>
#include <regex>

#include "core/backend/backend.h"
#include "core/data/translation_dataset.h"
#include "core/data/text_corpus.h"
#include "core/data/fashion_mnist.h"
#include "core/io/checkpoint.h"
#include "core/ops/ops.h"
#include "core/tensor/random.h"
#include "launch/cli_test_util.h"
#include "launch/workload.h"
#include "models/gpt.h"
#include "models/transformer.h"
#include "models/vit.h"

using namespace dtrain;
using namespace dtrain::cli_test;

namespace {

// A PNG of 8-bit samples (colour type 0 gray, 2 RGB, 4 gray + alpha), every row unfiltered.
std::string png_bytes(const std::string& interleaved, uint32_t width, uint32_t height, int color) {
  auto be32 = [](uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 8), static_cast<char>(v)};
  };
  auto chunk = [&](const std::string& type, const std::string& data) {
    const std::string body = type + data;
    const uLong crc =
        crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
    return be32(static_cast<uint32_t>(data.size())) + body + be32(static_cast<uint32_t>(crc));
  };
  const size_t stride = interleaved.size() / height;
  std::string rows;
  for (size_t y = 0; y < height; ++y) rows += '\0' + interleaved.substr(y * stride, stride);
  uLongf size = compressBound(static_cast<uLong>(rows.size()));
  std::string stream(size, '\0');
  EXPECT_EQ(compress(reinterpret_cast<Bytef*>(stream.data()), &size,
                     reinterpret_cast<const Bytef*>(rows.data()), static_cast<uLong>(rows.size())),
            Z_OK);
  stream.resize(size);
  const std::string header =
      be32(width) + be32(height) + std::string{8, static_cast<char>(color), 0, 0, 0};
  return "\x89PNG\r\n\x1a\n" + chunk("IHDR", header) + chunk("IDAT", stream) + chunk("IEND", "");
}

// "dtrain predict: error: ..." on one line, naming each of `mentions`, and a failure status.
void expect_predict_error(const RunResult& r, const std::vector<std::string>& mentions) {
  expect_one_line_error(r, mentions, "predict");
  EXPECT_EQ(r.out, "");
}

// The checkpoint a run wrote into `dir`: `dir` itself, or its newest step-N checkpoint.
fs::path checkpoint_in(const fs::path& dir) {
  if (fs::exists(dir / kCheckpointModelFile)) return dir;
  fs::path newest;
  int64_t newest_step = -1;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("step-") && fs::exists(entry.path() / kCheckpointModelFile)) {
      const int64_t step = std::stoll(name.substr(5));
      if (step > newest_step) newest_step = step, newest = entry.path();
    }
  }
  return newest;
}

// The workload `config` describes with the weights of `checkpoint`, built here as dtrain builds it.
std::unique_ptr<launch::Workload> load_here(const launch::TrainConfig& config,
                                            const fs::path& checkpoint) {
  set_num_threads(1);  // as the child ran (--threads 1), so that the sums run in the same order
  auto w = launch::make_workload(config, Device::cpu());
  w->load_checkpoint_state(Checkpoint(checkpoint.string()).tensors(kCheckpointModelFile).tensors());
  return w;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class Predict : public CliTest {
 protected:
  // dtrain predict on the run's directory: the model and data settings come from its checkpoint.
  RunResult predict(const std::vector<std::string>& input) {
    std::vector<std::string> args = {"predict", "--resume", (dir_ / "run").string()};
    args.insert(args.end(), input.begin(), input.end());
    return run(args);
  }
  // Trains for 3 steps with `model_options` plus `train_options`, into dir_/run.
  void train_model(const std::vector<std::string>& model_options,
                   const std::vector<std::string>& train_options) {
    std::vector<std::string> args = model_options;
    args.insert(args.end(), train_options.begin(), train_options.end());
    args.insert(args.end(), {"--steps", "3", "--eval-batches", "1", "--progress", "0",
                             "--checkpoint-dir", (dir_ / "run").string()});
    RunResult r = train(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    checkpoint_ = checkpoint_in(dir_ / "run");
    ASSERT_FALSE(checkpoint_.empty()) << "no checkpoint under " << dir_ / "run";
  }

  void train_vit() {
    ensure_data();
    train_model({"--data-dir", data_dir().string(), "--depth", "1", "--dim", "16", "--heads", "2",
                 "--mlp-dim", "32", "--patch", "7", "--threads", "1"},
                {"--batch-size", "16"});
    config_.data_dir = data_dir().string();
    config_.depth = 1, config_.dim = 16, config_.heads = 2, config_.mlp_dim = 32, config_.patch = 7;
  }

  void train_text(const std::string& model, const std::string& dataset,
                  const std::string& seq_len) {
    train_model(
        {"--model", model, "--dataset", dataset, "--model-size", "tiny", "--dim", "16", "--heads",
         "2", "--mlp-dim", "32", "--depth", "1", "--seq-len", seq_len, "--threads", "1"},
        {"--batch-size", "8"});
    config_.model = model, config_.dataset = dataset, config_.model_size = "tiny";
    config_.dim = 16, config_.heads = 2, config_.mlp_dim = 32, config_.depth = 1;
    config_.seq_len = std::stoll(seq_len);
  }

  fs::path checkpoint_;         // the run's newest checkpoint
  launch::TrainConfig config_;  // what the run trained, for building its model here
};

}  // namespace

// The five lines are the model's five likeliest classes with their softmax probabilities, computed
// here from the eval split's copy of the image; a PNG or PGM of the same pixels gives the same lines.
TEST_F(Predict, VitTopFiveIsTheModelsSoftmax) {
  train_vit();
  const int64_t index = 5;
  RunResult r =
      predict({"--image", (data_dir() / "t10k-images-idx3-ubyte").string(), "--index", "5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;

  std::vector<float> probabilities;
  {
    auto w = load_here(config_, checkpoint_);
    NoGradGuard no_grad;
    w->model().eval();
    Tensor input = w->eval_set->get_batch({index}, 0).input;
    auto& vit = dynamic_cast<models::VisionTransformer&>(w->model());
    probabilities = softmax(vit.forward(input), -1).to_vector<float>();
  }
  const auto& names = data::FashionMnist::class_names();
  const size_t top =
      std::max_element(probabilities.begin(), probabilities.end()) - probabilities.begin();
  std::map<std::string, size_t> class_of;
  for (size_t c = 0; c < names.size(); ++c) class_of[names[c]] = c;
  double previous = 1.0;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(lines[i], m, std::regex(R"(([01]\.[0-9]{4})  (.+))"))) << lines[i];
    ASSERT_TRUE(class_of.count(m[2])) << "not a Fashion-MNIST class: " << lines[i];
    const double p = std::stod(m[1]);
    EXPECT_NEAR(p, probabilities[class_of[m[2]]], 5.1e-5) << lines[i];
    EXPECT_LE(p, previous) << r.out;
    previous = p;
    if (i == 0) {
      EXPECT_EQ(m[2].str(), names[top]) << "the first line is not the model's arg max:\n" << r.out;
    }
  }

  // The same pixels as PGM (binary and plain), as a gray PNG, and as a gray + opaque alpha PNG.
  const std::string payload = image_payload(32).substr(static_cast<size_t>(index) * 784, 784);
  std::string plain = "P2\n28 28\n255\n", gray_alpha;
  for (char ch : payload) {
    plain += std::to_string(static_cast<uint8_t>(ch)) + "\n";
    gray_alpha += std::string{ch, '\xff'};
  }
  write_text(dir_ / "image.pgm", "P5\n# image 5\n28 28\n255\n" + payload);
  write_text(dir_ / "plain.pgm", plain);
  write_text(dir_ / "image.png", png_bytes(payload, 28, 28, 0));
  write_text(dir_ / "alpha.png", png_bytes(gray_alpha, 28, 28, 4));
  for (const char* file : {"image.pgm", "plain.pgm", "image.png", "alpha.png"}) {
    RunResult same = predict({"--image", (dir_ / file).string()});
    EXPECT_EQ(same.exit_code, 0) << file << ": " << same.err;
    EXPECT_EQ(same.out, r.out) << file;
  }
  // The checkpoint itself rather than its run, with the model options given as they were trained.
  RunResult direct = run({"predict", "--resume", checkpoint_.string(), "--dim", "16", "--depth",
                          "1", "--patch", "7", "--image", (dir_ / "image.png").string()});
  EXPECT_EQ(direct.exit_code, 0) << direct.err;
  EXPECT_EQ(direct.out, r.out);
}

TEST_F(Predict, VitInputsThatDoNotFit) {
  train_vit();
  const std::string images = (data_dir() / "t10k-images-idx3-ubyte").string();
  write_text(dir_ / "small.pgm", "P5 27 28 255\n" + std::string(27 * 28, '\x40'));
  expect_predict_error(predict({"--image", (dir_ / "small.pgm").string()}),
                       {"small.pgm", "27x28 grayscale", "takes 28x28 grayscale", "resize"});
  write_text(dir_ / "rgb.png", png_bytes(std::string(28 * 28 * 3, '\x40'), 28, 28, 2));
  expect_predict_error(predict({"--image", (dir_ / "rgb.png").string()}),
                       {"rgb.png", "28x28 RGB", "28x28 grayscale"});
  std::string corrupt = png_bytes(std::string(28 * 28, '\x40'), 28, 28, 0);
  corrupt[45] ^= 0x55;  // inside the IDAT chunk's data
  write_text(dir_ / "corrupt.png", corrupt);
  expect_predict_error(predict({"--image", (dir_ / "corrupt.png").string()}),
                       {"corrupt.png", "CRC"});
  write_text(dir_ / "cut.png", corrupt.substr(0, 50));
  expect_predict_error(predict({"--image", (dir_ / "cut.png").string()}), {"cut.png", "truncated"});
  expect_predict_error(predict({"--image", (dir_ / "absent.png").string()}), {"absent.png"});
  expect_predict_error(predict({"--image", images}), {"IDX", "--index K"});
  expect_predict_error(predict({"--image", images, "--index", "32"}), {"--index 32", "0 to 31"});
  expect_predict_error(predict({}), {"no input", "vit", "--image FILE"});
  expect_predict_error(predict({"--prompt", "The "}), {"--prompt is for gpt", "vit", "--image"});
  expect_predict_error(predict({"--image", images, "--index", "1", "--text", "a house"}),
                       {"--text is for transformer"});
  expect_predict_error(predict({"--image", images, "--index", "1", "--temperature", "0"}),
                       {"--temperature is for gpt"});
  expect_predict_error(predict({"--index", "1"}), {"--index", "give --image FILE"});
  // An option on the command line overrides the checkpoint's: here one that no longer fits its weights.
  expect_predict_error(predict({"--dim", "32", "--image", images, "--index", "1"}),
                       {checkpoint_.string(), "does not fit"});
  expect_predict_error(predict({"--image", images, "--index", "1", "--lr", "0.1"}), {"--lr"});
  RunResult no_checkpoint = run({"predict", "--image", images, "--index", "1"});
  expect_predict_error(no_checkpoint, {"--resume"});
}

// Greedy decoding (temperature 0), and top-k 1 at any temperature, is Gpt::generate's arg max; a seeded
// sample is Gpt::generate's sample with that seed, the same on every run.
// A GPT trained on --dataset synthetic (random token windows, for benchmarks) trains like any other
// and has no text vocabulary: predict refuses it in one line.
TEST_F(Predict, GptOnSyntheticTokensTrainsButCannotReadAPrompt) {
  train_model(
      {"--model", "gpt", "--dataset", "synthetic", "--model-size", "tiny", "--dim", "16", "--heads",
       "2", "--mlp-dim", "32", "--depth", "1", "--seq-len", "16", "--threads", "1"},
      {"--batch-size", "4"});
  RunResult r = predict({"--prompt", "The "});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("trained on --dataset synthetic"), std::string::npos) << r.err;
}

TEST_F(Predict, GptContinuationIsGenerate) {
  if (!fs::exists(data::kFortunesDir))
    GTEST_SKIP() << "fortunes is not installed (scripts/bootstrap installs it)";
  train_text("gpt", "fortunes", "32");
  RunResult greedy = predict({"--prompt", "The ", "--temperature", "0", "--max-tokens", "40"});
  ASSERT_EQ(greedy.exit_code, 0) << greedy.err;
  EXPECT_EQ(greedy.err, "");
  RunResult top1 = predict({"--prompt", "The ", "--top-k", "1", "--temperature", "1.5", "--seed",
                            "3", "--max-tokens", "40"});
  ASSERT_EQ(top1.exit_code, 0) << top1.err;
  EXPECT_EQ(top1.out, greedy.out);
  RunResult sampled = predict({"--prompt", "The ", "--temperature", "0.8", "--top-k", "5", "--seed",
                               "11", "--max-tokens", "40"});
  ASSERT_EQ(sampled.exit_code, 0) << sampled.err;
  EXPECT_EQ(predict({"--prompt", "The ", "--temperature", "0.8", "--top-k", "5", "--seed", "11",
                     "--max-tokens", "40"})
                .out,
            sampled.out);

  const data::TextCorpus corpus = data::load_fortunes();
  auto w = load_here(config_, checkpoint_);
  auto& gpt = dynamic_cast<models::Gpt&>(w->model());
  const std::vector<int32_t> ids = corpus.vocab.encode("The ");
  const std::vector<int64_t> prompt(ids.begin(), ids.end());
  Generator unused(0), seeded(11);
  const std::string want_greedy = corpus.vocab.decode(gpt.generate(prompt, 40, 0.0, 0, unused));
  const std::string want_sampled = corpus.vocab.decode(gpt.generate(prompt, 40, 0.8, 5, seeded));
  EXPECT_EQ(greedy.out, want_greedy + "\n");
  EXPECT_EQ(sampled.out, want_sampled + "\n");
  EXPECT_TRUE(greedy.out.starts_with("The ")) << greedy.out;
  EXPECT_EQ(data::utf8_length(greedy.out), 4 + 40 + 1) << greedy.out;

  expect_predict_error(predict({"--prompt", "The \x01"}), {"--prompt has the character", "U+0001"});
  expect_predict_error(predict({"--prompt", ""}), {"--prompt is empty"});
  expect_predict_error(predict({"--prompt", "The", "--max-tokens", "0"}), {"--max-tokens"});
  expect_predict_error(predict({"--prompt", "The", "--temperature", "-1"}), {"--temperature"});
  expect_predict_error(predict({"--image", "x.png"}), {"--image is for vit", "gpt", "--prompt"});
  expect_predict_error(predict({}), {"no input", "--prompt"});
}

// A translation is the model's greedy decoding of the text encoded as the data set encodes a source
// (characters outside the vocabulary become unk); it is the same on every run.
TEST_F(Predict, TransformerTranslationIsGreedyDecode) {
  if (!fs::exists(data::kFreeDictEngDeuPath)) {
    GTEST_SKIP() << "dict-freedict-eng-deu is not installed (scripts/bootstrap installs it)";
  }
  train_text("transformer", "freedict", "24");
  const std::vector<std::string> texts = {
      "house", "a red \xe2\x98\x83 apple"};  // U+2603: not in the vocabulary
  std::vector<std::string> outputs;
  for (const std::string& text : texts) {
    RunResult r = predict({"--text", text});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_EQ(predict({"--text", text}).out, r.out) << "not deterministic";
    outputs.push_back(r.out);
  }
  auto w = load_here(config_, checkpoint_);
  auto& model = dynamic_cast<models::Transformer&>(w->model());
  auto dataset = std::dynamic_pointer_cast<const data::TranslationDataset>(w->eval_set);
  ASSERT_NE(dataset, nullptr);
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> ids = dataset->source_vocab().encode(texts[i]);
    if (i == 1) {
      EXPECT_EQ(std::count(ids.begin(), ids.end(), data::CharVocab::kUnk), 1);
    }
    ids.push_back(data::CharVocab::kEos);
    Tensor source =
        Tensor::from_vector(std::vector<int64_t>(ids.begin(), ids.end()),
                            {1, static_cast<int64_t>(ids.size())}, DType::i64, Device::cpu());
    auto decoded = model.greedy_decode(source, data::CharVocab::kBos, data::CharVocab::kEos, 24);
    EXPECT_EQ(outputs[i], dataset->target_vocab().decode(decoded[0]) + "\n") << texts[i];
  }

  expect_predict_error(predict({"--text", ""}), {"--text is empty"});
  expect_predict_error(predict({"--text", std::string(30, 'a')}), {"30 tokens", "at most 23"});
  expect_predict_error(predict({"--prompt", "house"}),
                       {"--prompt is for gpt", "transformer", "--text"});
}
