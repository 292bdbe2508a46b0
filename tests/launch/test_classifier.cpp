// The text classifier on --dataset fortune-files: a short run on topic files this test writes into a
// temporary fortunes directory (each file's fortunes share a few words of their own among common
// ones, so the file is learnable from the words), its eval records (loss falls, accuracy well above
// chance, the bag-of-words baseline beside them), predict on the trained checkpoint, and a missing
// topic file as a one-line error. No timing is checked.
#include <cmath>
#include <string>
#include <vector>

#include "core/data/fortune_files.h"

#include "cli_test_util.h"

namespace dtrain::cli_test {
namespace {

const std::vector<std::string> kCommonWords = {"the", "a",   "is",   "of",   "and", "to",
                                               "in",  "it",  "you",  "that", "was", "for",
                                               "on",  "are", "with", "as"};

// The words that mark file `c`: four made-up ones, distinct per file ("kab", "kac", ... for file 0).
std::vector<std::string> marker_words(size_t c) {
  std::vector<std::string> words;
  for (char k : std::string("bcde"))
    words.push_back(std::string("k") + static_cast<char>('a' + c) + k);
  return words;
}

// Six words per fortune: two of its file's markers among four common words, in a varied order.
void write_topic_files(const fs::path& dir, int per_file) {
  fs::create_directories(dir);
  const std::vector<std::string>& files = data::fortune_topic_files();
  uint32_t state = 7;
  auto next = [&](uint32_t n) {
    state = state * 1664525u + 1013904223u;
    return (state >> 8) % n;
  };
  for (size_t c = 0; c < files.size(); ++c) {
    const std::vector<std::string> markers = marker_words(c);
    std::string text;
    for (int i = 0; i < per_file; ++i) {
      std::vector<std::string> words;
      for (int k = 0; k < 4; ++k) words.push_back(kCommonWords[next(16)]);
      for (int k = 0; k < 2; ++k) words.insert(words.begin() + next(5), markers[next(4)]);
      for (size_t k = 0; k < words.size(); ++k) text += (k ? " " : "") + words[k];
      text += "\n%\n";
    }
    write_text(dir / files[c], text);
  }
}

class Classifier : public CliTest {};

TEST_F(Classifier, ShortRunLearnsBeatsChanceThenPredicts) {
  const fs::path fortunes = dir_ / "fortunes";
  write_topic_files(fortunes, 40);
  const fs::path metrics = dir_ / "metrics.jsonl", run_dir = dir_ / "run";
  RunResult r = train({"--model",
                       "classifier",
                       "--dataset",
                       "fortune-files",
                       "--data-dir",
                       fortunes.string(),
                       "--model-size",
                       "tiny",
                       "--seq-len",
                       "16",
                       "--batch-size",
                       "16",
                       "--steps",
                       "120",
                       "--lr",
                       "0.003",
                       "--warmup-steps",
                       "10",
                       "--eval-interval",
                       "20",
                       "--eval-batches",
                       "0",
                       "--threads",
                       "1",
                       "--progress",
                       "0",
                       "--metrics-file",
                       metrics.string(),
                       "--checkpoint-dir",
                       run_dir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const std::vector<nlohmann::json> evals = eval_records(metrics);
  ASSERT_GE(evals.size(), 2u) << read_text(metrics);
  for (const nlohmann::json& e : evals) {
    ASSERT_TRUE(e.contains("accuracy") && e.contains("baseline_accuracy") && e.contains("loss"))
        << e.dump();
    EXPECT_GE(e["accuracy"].get<double>(), 0.0) << e.dump();
    EXPECT_LE(e["accuracy"].get<double>(), 1.0) << e.dump();
  }
  // Eight files: chance is 1/8, and an untrained model's loss is about ln 8 = 2.08. The markers decide
  // the file outright, so 120 steps take the loss to under half the first eval's and accuracy far
  // above chance; naive Bayes, which sees the same words, gets them too.
  expect_loss_falls(evals, 0.5);
  EXPECT_GT(evals.back()["accuracy"].get<double>(), 0.6) << evals.back().dump();
  EXPECT_GT(evals.back()["baseline_accuracy"].get<double>(), 0.6) << evals.back().dump();
  EXPECT_NE(r.out.find("baseline: bag-of-words naive Bayes accuracy "), std::string::npos) << r.out;

  // predict reloads the files from the checkpoint's --data-dir: markers of "law" (file 3) and common
  // words put law first, five files with their probabilities, likeliest first.
  const std::vector<std::string> law = marker_words(3);
  RunResult p = run({"predict", "--resume", run_dir.string(), "--text",
                     "the " + law[0] + " is " + law[2], "--threads", "1"});
  ASSERT_EQ(p.exit_code, 0) << p.err << p.out;
  std::istringstream lines(p.out);
  std::vector<std::string> got;
  for (std::string line; std::getline(lines, line);) got.push_back(line);
  ASSERT_EQ(got.size(), 5u) << p.out;
  EXPECT_TRUE(got[0].ends_with("  law")) << p.out;
  double previous = 1.0;
  for (const std::string& line : got) {
    const double probability = std::stod(line.substr(0, line.find(' ')));
    EXPECT_LE(probability, previous) << p.out;
    EXPECT_GE(probability, 0.0) << p.out;
    previous = probability;
  }
}

// Loss and accuracy are sums over texts: the whole validation split scores the same in batches of 5
// or 16, on one rank or two (after 10 steps the model is far from right, so the counts matter).
TEST_F(Classifier, EvalMetricsDoNotDependOnBatchingOrRanks) {
  const fs::path fortunes = dir_ / "fortunes";
  write_topic_files(fortunes, 40);
  const fs::path run_dir = dir_ / "run";
  RunResult r = train({"--model",
                       "classifier",
                       "--dataset",
                       "fortune-files",
                       "--data-dir",
                       fortunes.string(),
                       "--model-size",
                       "tiny",
                       "--seq-len",
                       "16",
                       "--batch-size",
                       "16",
                       "--steps",
                       "10",
                       "--lr",
                       "0.003",
                       "--eval-batches",
                       "1",
                       "--threads",
                       "1",
                       "--progress",
                       "0",
                       "--checkpoint-dir",
                       run_dir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  expect_eval_independent_of_batching(run_dir, "baseline_accuracy");
}

TEST_F(Classifier, MissingTopicFileIsAOneLineError) {
  const fs::path fortunes = dir_ / "fortunes";
  write_topic_files(fortunes, 5);
  fs::remove(fortunes / "medicine");
  RunResult r = train({"--model", "classifier", "--dataset", "fortune-files", "--data-dir",
                       fortunes.string(), "--steps", "1", "--threads", "1", "--progress", "0"});
  expect_one_line_error(r, {(fortunes / "medicine").string(), "--data-dir"});
}

TEST_F(Classifier, OtherDatasetIsAOneLineError) {
  RunResult r = train({"--model", "classifier", "--dataset", "fortunes", "--steps", "1",
                       "--threads", "1", "--progress", "0"});
  expect_one_line_error(r, {"fortune-files", "'fortunes'"});
}

}  // namespace
}  // namespace dtrain::cli_test
