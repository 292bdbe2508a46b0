// The Transformer on --dataset gettext-zh: a short run on MO catalogs this test writes into a
// temporary locale directory (a few hundred synthetic English -> Chinese pairs with a learnable
// mapping), its eval records (loss falls; bleu and chrf in [0, 100]), predict on the trained
// checkpoint, and an unknown gettext language as a one-line error. No timing is checked.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/data/gettext_corpus.h"
#include "core/data/mo_test_writer.h"
#include "core/data/text_metrics.h"
#include "core/io/safetensors.h"

#include "cli_test_util.h"

namespace dtrain::cli_test {
namespace {

using ::dtrain::test::mo_bytes;

// Sixteen English syllables, each always translated by the same Chinese character: "kalo mipe" ->
// "卡罗米佩". Two words of two syllables, so every target has four BLEU tokens (zh splits CJK
// characters) and corpus BLEU has 4-grams to count.
const std::vector<std::string> kSyllables = {"ka", "lo", "mi", "nu", "pe", "ri", "so", "tu",
                                             "va", "xe", "bo", "da", "fi", "gu", "he", "jo"};
const std::vector<std::string> kCharacters = {"卡", "罗", "米", "奴", "佩", "日", "索", "图",
                                              "瓦", "谢", "波", "达", "菲", "古", "赫", "乔"};

std::vector<std::pair<std::string, std::string>> synthetic_pairs(int count) {
  // MO requires the originals sorted by bytes; the reader does not rely on it, but keep the format.
  std::vector<std::pair<std::string, std::string>> entries;
  entries.push_back({"", "Content-Type: text/plain; charset=UTF-8\n"});
  for (int i = 0; i < count; ++i) {
    const int code =
        (i * 2654435761u) % 65536;  // distinct for i < 65536: an odd multiplier mod 2^16
    std::string source, target;
    for (int k = 0; k < 4; ++k) {
      const int syllable = (code >> (4 * k)) & 15;
      if (k == 2) source += ' ';
      source += kSyllables[syllable];
      target += kCharacters[syllable];
    }
    entries.push_back({source, target});
  }
  std::sort(entries.begin(), entries.end());
  return entries;
}

class GettextTranslation : public CliTest {
 protected:
  fs::path write_locale() {
    const fs::path locale = dir_ / "locale";
    fs::create_directories(locale / "zh_CN" / "LC_MESSAGES");
    write_text(locale / "zh_CN" / "LC_MESSAGES" / "coreutils.mo", mo_bytes(synthetic_pairs(400)));
    return locale;
  }
  // The one-block Transformer on `locale`, one thread, no progress display.
  static std::vector<std::string> model_args(const fs::path& locale) {
    return {"--model",   "transformer", "--dataset", "gettext-zh", "--data-dir",   locale.string(),
            "--seq-len", "16",          "--depth",   "1",          "--dim",        "32",
            "--heads",   "2",           "--mlp-dim", "64",         "--batch-size", "16",
            "--lr",      "0.003",       "--threads", "1",          "--progress",   "0"};
  }
  // model_args for `steps` steps, evaluated every `eval_interval` steps on 2 batches.
  static std::vector<std::string> tiny(const fs::path& locale, const std::string& steps,
                                       const std::string& eval_interval) {
    std::vector<std::string> args = model_args(locale);
    args.insert(args.end(), {"--dropout", "0", "--steps", steps, "--warmup-steps", "10",
                             "--eval-interval", eval_interval, "--eval-batches", "2"});
    return args;
  }
  // 70 steps on the synthetic catalog into `run_dir`: the decodes are partly right (BLEU about 10,
  // chrF about 19), of varied length.
  void train_partly(const fs::path& run_dir) {
    std::vector<std::string> args = model_args(write_locale());
    args.insert(args.end(),
                {"--steps", "70", "--eval-batches", "1", "--checkpoint-dir", run_dir.string()});
    RunResult r = train(args);
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  }
};

TEST_F(GettextTranslation, ShortRunLearnsAndReportsBleuAndChrfThenPredicts) {
  const fs::path locale = write_locale();
  const fs::path metrics = dir_ / "metrics.jsonl", run_dir = dir_ / "run";
  std::vector<std::string> args = tiny(locale, "150", "25");
  args.insert(args.end(),
              {"--metrics-file", metrics.string(), "--checkpoint-dir", run_dir.string()});
  RunResult r = train(args);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const std::vector<nlohmann::json> evals = eval_records(metrics);
  ASSERT_GE(evals.size(), 2u) << read_text(metrics);
  for (const nlohmann::json& e : evals) {
    ASSERT_TRUE(e.contains("bleu") && e.contains("chrf") && e.contains("cer")) << e.dump();
    EXPECT_GE(e["bleu"].get<double>(), 0.0) << e.dump();
    // sacreBLEU's exp(mean of logs) can land a hair above 100 for a perfect score.
    EXPECT_LE(e["bleu"].get<double>(), 100.0 + 1e-9) << e.dump();
    EXPECT_GE(e["chrf"].get<double>(), 0.0) << e.dump();
    EXPECT_LE(e["chrf"].get<double>(), 100.0) << e.dump();
  }
  // The mapping is one character per syllable: 150 steps take the loss well below the first eval's.
  expect_loss_falls(evals, 0.7);
  EXPECT_NE(r.out.find("sample: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" -> "), std::string::npos) << r.out;
  // The copy baseline: Latin sources share no character with Chinese references, so 0 here.
  EXPECT_NE(r.out.find("baseline: copying the source scores BLEU 0.00, chrF 0.00"),
            std::string::npos)
      << r.out;
  for (const nlohmann::json& e : evals) {
    EXPECT_EQ(e.at("copy_bleu").get<double>(), 0.0) << e.dump();
    EXPECT_EQ(e.at("copy_chrf").get<double>(), 0.0) << e.dump();
  }

  // predict reloads the corpus from the checkpoint's --data-dir and translates with greedy decoding.
  RunResult p =
      run({"predict", "--resume", run_dir.string(), "--text", "kalo mipe", "--threads", "1"});
  ASSERT_EQ(p.exit_code, 0) << p.err << p.out;
  // The mapping is simple enough that the model gets it exactly (its last eval's exact match is 1 here).
  EXPECT_EQ(p.out, "卡罗米佩\n") << p.err;
}

// BLEU and chrF are summed as n-gram statistics, and each hypothesis is cut at its own reference's
// length: the whole valid split scores the same in batches of 5 or 16, on one rank or two.
TEST_F(GettextTranslation, EvalMetricsDoNotDependOnBatchingOrRanks) {
  const fs::path run_dir = dir_ / "run";
  ASSERT_NO_FATAL_FAILURE(train_partly(run_dir));
  expect_eval_independent_of_batching(run_dir, "bleu");
}

// --beam reaches eval and predict: beam search of width 4 scores and translates, and takes each
// pair's own length limit, so its scores do not depend on the batching either; --beam 1 is greedy
// decoding, the default's eval line exactly.
TEST_F(GettextTranslation, EvalAndPredictDecodeWithABeam) {
  const fs::path run_dir = dir_ / "run";
  ASSERT_NO_FATAL_FAILURE(train_partly(run_dir));
  auto eval = [&](std::vector<std::string> options) {
    std::vector<std::string> args = {
        "eval", "--resume", run_dir.string(), "--eval-batches", "0", "--threads", "1"};
    args.insert(args.end(), options.begin(), options.end());
    return eval_line(run(args));
  };
  const std::string greedy = eval({});
  EXPECT_EQ(eval({"--beam", "1"}), greedy);
  const std::string beam = eval({"--beam", "4", "--batch-size", "16"});
  EXPECT_NE(beam.find("bleu "), std::string::npos) << beam;
  EXPECT_NE(beam.find("chrf "), std::string::npos) << beam;
  EXPECT_EQ(eval({"--beam", "4", "--batch-size", "5"}), beam);
  // The model is partly trained, so a wider search changes some of the valid split's decodes: a
  // --beam that never reached the workload would leave the line as greedy's.
  EXPECT_NE(beam, greedy);

  RunResult p = run({"predict", "--resume", run_dir.string(), "--text", "kalo mipe", "--beam", "4",
                     "--length-penalty", "1", "--threads", "1"});
  ASSERT_EQ(p.exit_code, 0) << p.err << p.out;
  EXPECT_FALSE(p.out.empty()) << p.err;
  EXPECT_EQ(p.out.find('\n'), p.out.size() - 1) << p.out;  // one line: the translation
}

// --bpe-merges: the source is read as characters and 30 merges learnt from the training sources
// (the encoder's embedding has those rows), the run learns as the character run does, and predict
// learns the same merges again from the recorded settings (else the checkpoint would not load).
TEST_F(GettextTranslation, SubwordSourcesLearnAndPredict) {
  const fs::path locale = write_locale();
  const fs::path metrics = dir_ / "metrics.jsonl", run_dir = dir_ / "run";
  std::vector<std::string> args = tiny(locale, "150", "50");
  args.insert(args.end(), {"--bpe-merges", "30", "--metrics-file", metrics.string(),
                           "--checkpoint-dir", run_dir.string()});
  RunResult r = train(args);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const std::vector<nlohmann::json> evals = eval_records(metrics);
  ASSERT_GE(evals.size(), 2u) << read_text(metrics);
  expect_loss_falls(evals, 0.7);

  std::set<char> letters = {' '};
  for (const std::string& s : kSyllables) letters.insert(s.begin(), s.end());
  const SafetensorsHeader header =
      read_safetensors_header((run_dir / "step-00000150" / "model.safetensors").string());
  bool found = false;
  for (const SafetensorsEntry& e : header.entries) {
    if (e.name != "src_embed.weight") continue;
    found = true;
    EXPECT_EQ(e.shape[0], static_cast<int64_t>(4 + letters.size() + 30));
  }
  EXPECT_TRUE(found);

  RunResult p =
      run({"predict", "--resume", run_dir.string(), "--text", "kalo mipe", "--threads", "1"});
  ASSERT_EQ(p.exit_code, 0) << p.err << p.out;
  EXPECT_EQ(p.out.find('\n'), p.out.size() - 1) << p.out;
  expect_one_line_error(train({"--model", "gpt", "--dataset", "fortunes", "--bpe-merges", "8",
                               "--steps", "1", "--threads", "1"}),
                        {"--bpe-merges applies to model transformer", "gpt"});
}

// The number after `key ` in a `dtrain eval` line ("... copy_bleu 12.3456  copy_chrf ..."), or NaN.
double metric_in(const std::string& line, const std::string& key) {
  const size_t at = line.find(key + " ");
  return at == std::string::npos ? std::nan("") : std::stod(line.substr(at + key.size() + 1));
}

// The copy baseline scores the split's own pairs, and `dtrain eval --split test` scores the test
// split: every third target here keeps its English source in brackets, so copying scores above 0,
// and each split's baseline is recomputed from the pairs gettext_split_of puts in it.
TEST_F(GettextTranslation, CopyBaselineAndTestSplitScoreTheirOwnPairs) {
  std::vector<std::pair<std::string, std::string>> entries = synthetic_pairs(400);
  for (size_t i = 1; i < entries.size(); i += 3) entries[i].second += " (" + entries[i].first + ")";
  const fs::path locale = dir_ / "locale", run_dir = dir_ / "run";
  fs::create_directories(locale / "zh_CN" / "LC_MESSAGES");
  write_text(locale / "zh_CN" / "LC_MESSAGES" / "coreutils.mo", mo_bytes(entries));
  std::vector<std::string> args = model_args(locale);
  args[std::find(args.begin(), args.end(), "--seq-len") - args.begin() + 1] = "32";
  args.insert(args.end(), {"--steps", "2", "--checkpoint-dir", run_dir.string()});
  RunResult r = train(args);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;

  const data::GettextCorpusOptions options;
  std::map<data::GettextSplit, std::pair<std::vector<std::string>, std::vector<std::string>>> split;
  for (size_t i = 1; i < entries.size(); ++i) {
    auto& [sources, targets] = split[data::gettext_split_of(
        entries[i].first, options.valid_fraction, options.test_fraction)];
    sources.push_back(entries[i].first);
    targets.push_back(entries[i].second);
  }
  for (data::GettextSplit which : {data::GettextSplit::valid, data::GettextSplit::test}) {
    const bool test = which == data::GettextSplit::test;
    std::vector<std::string> eval = {"eval", "--resume", run_dir.string(), "--threads", "1"};
    if (test) eval.insert(eval.end(), {"--split", "test"});
    const std::string line = eval_line(run(eval));
    EXPECT_EQ(line.find("(test split)") != std::string::npos, test) << line;
    const auto& [sources, targets] = split[which];
    ASSERT_GE(sources.size(), 5u);
    const double bleu = data::corpus_bleu(sources, targets, data::BleuTokenizer::kZh).score;
    const double chrf = data::corpus_chrf(sources, targets);
    EXPECT_GT(chrf, 1.0);
    EXPECT_NEAR(metric_in(line, "copy_bleu"), bleu, 1e-4) << line;
    EXPECT_NEAR(metric_in(line, "copy_chrf"), chrf, 1e-4) << line;
  }
  const auto& [valid_sources, valid_targets] = split[data::GettextSplit::valid];
  const auto& [test_sources, test_targets] = split[data::GettextSplit::test];
  EXPECT_NE(data::corpus_chrf(valid_sources, valid_targets),
            data::corpus_chrf(test_sources, test_targets));

  expect_one_line_error(run({"eval", "--resume", run_dir.string(), "--split", "train"}),
                        {"--split must be valid or test", "train"}, "eval");
  expect_one_line_error(
      run({"eval", "--resume", run_dir.string(), "--dataset", "freedict", "--split", "test"}),
      {"--split test applies to gettext-zh and gettext-de", "freedict"}, "eval");
}

// --label-smoothing reaches the Transformer's training loss: step 1 (same weights, same batch) logs
// another loss with it than without.
TEST_F(GettextTranslation, LabelSmoothingReachesTheTrainingLoss) {
  const fs::path locale = write_locale();
  auto step_one = [&](const std::string& smoothing) {
    const fs::path metrics = dir_ / ("metrics-" + smoothing + ".jsonl");
    std::vector<std::string> args = model_args(locale);
    args.insert(args.end(), {"--steps", "1", "--log-interval", "1", "--label-smoothing", smoothing,
                             "--metrics-file", metrics.string()});
    RunResult r = train(args);
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    return first_train_loss(metrics);
  };
  const double plain = step_one("0"), smoothed = step_one("0.5");
  ASSERT_TRUE(std::isfinite(plain) && std::isfinite(smoothed)) << plain << " " << smoothed;
  EXPECT_NE(plain, smoothed);
}

TEST_F(GettextTranslation, UnknownGettextLanguageIsAOneLineError) {
  const fs::path locale = write_locale();
  RunResult r = train({"--model", "transformer", "--dataset", "gettext-xx", "--data-dir",
                       locale.string(), "--steps", "1", "--threads", "1", "--progress", "0"});
  expect_one_line_error(r, {"gettext-xx", "gettext-zh", "gettext-de"});
}

TEST_F(GettextTranslation, LocaleWithoutCatalogsIsAOneLineError) {
  const fs::path empty = dir_ / "empty-locale";
  fs::create_directories(empty);
  RunResult r = train({"--model", "transformer", "--dataset", "gettext-de", "--data-dir",
                       empty.string(), "--steps", "1", "--threads", "1", "--progress", "0"});
  expect_one_line_error(r, {"gettext-de", "0 training", (empty / "de" / "LC_MESSAGES").string()});
}

}  // namespace
}  // namespace dtrain::cli_test
