// BLEU and chrF against the sacrebleu package (tests/reference/text_metrics.py wrote
// text_metrics.json with sacrebleu itself: scores of fixed pairs and corpora, and tokenized text),
// plus small cases whose BLEU statistics are worked out by hand below.
#include "core/data/text_metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "error_message.h"

namespace dtrain::data {
namespace {

using nlohmann::json;
using testing::error_of;

// sacreBLEU and this code do the same float operations in the same order, so they agree to the last
// bit in practice; the tolerance only allows for a libm whose log/exp round differently.
constexpr double kRelativeTolerance = 1e-9;

const json& fixture() {
  static const json doc = [] {
    std::ifstream in(std::string(DTRAIN_SOURCE_DIR) + "/tests/reference/text_metrics.json");
    EXPECT_TRUE(in.good()) << "tests/reference/text_metrics.json is missing";
    std::stringstream s;
    s << in.rdbuf();
    return json::parse(s.str());
  }();
  return doc;
}

// The largest relative difference seen, printed by the last fixture test.
double largest_difference = 0;

void expect_close(double actual, double expected, const std::string& what) {
  const double diff = std::abs(actual - expected);
  const double relative = expected == 0 ? diff : diff / std::abs(expected);
  largest_difference = std::max(largest_difference, relative);
  EXPECT_LE(relative, kRelativeTolerance)
      << what << ": dtrain " << actual << ", sacrebleu " << expected;
}

void expect_bleu(const BleuScore& actual, const json& expected, const std::string& what) {
  expect_close(actual.score, expected.at("score").get<double>(), what + " score");
  expect_close(actual.bp, expected.at("bp").get<double>(), what + " bp");
  EXPECT_EQ(actual.sys_len, expected.at("sys_len").get<int64_t>()) << what;
  EXPECT_EQ(actual.ref_len, expected.at("ref_len").get<int64_t>()) << what;
  for (int n = 0; n < 4; ++n) {
    const std::string order = what + " order " + std::to_string(n + 1);
    expect_close(actual.precisions[n], expected.at("precisions").at(n).get<double>(),
                 order + " precision");
    EXPECT_EQ(actual.counts[n], expected.at("counts").at(n).get<int64_t>()) << order << " matches";
    EXPECT_EQ(actual.totals[n], expected.at("totals").at(n).get<int64_t>()) << order << " n-grams";
  }
}

TEST(TextMetricsReference, FixtureIsFromSacrebleu) {
  EXPECT_EQ(fixture().at("sacrebleu_version").get<std::string>().substr(0, 2), "2.");
  EXPECT_GE(fixture().at("pairs").size(), 20u);
}

TEST(TextMetricsReference, TokenizersMatchSacrebleu) {
  const std::map<std::string, BleuTokenizer> tokenizers = {
      {"13a", BleuTokenizer::k13a}, {"zh", BleuTokenizer::kZh}, {"char", BleuTokenizer::kChar}};
  for (const json& entry : fixture().at("tokenized")) {
    const std::string text = entry.at("text").get<std::string>();
    for (const auto& [name, tokenizer] : tokenizers) {
      EXPECT_EQ(bleu_tokenize(text, tokenizer), entry.at(name).get<std::string>())
          << "tokenizer " << name << " on '" << text << "'";
    }
  }
}

TEST(TextMetricsReference, EachPairAloneMatchesSacrebleu) {
  for (const json& pair : fixture().at("pairs")) {
    const std::string name = pair.at("name").get<std::string>();
    const std::string hyp = pair.at("hypothesis").get<std::string>();
    const std::string ref = pair.at("reference").get<std::string>();
    for (const std::string tok : {"13a", "zh"}) {
      const BleuTokenizer tokenizer = bleu_tokenizer_from_name(tok);
      expect_bleu(corpus_bleu({hyp}, {ref}, tokenizer), pair.at("bleu").at(tok).at("corpus"),
                  name + " corpus_bleu " + tok);
      expect_bleu(sentence_bleu(hyp, ref, tokenizer), pair.at("bleu").at(tok).at("sentence"),
                  name + " sentence_bleu " + tok);
    }
    expect_close(corpus_chrf({hyp}, {ref}), pair.at("chrf").at("corpus").get<double>(),
                 name + " corpus_chrf");
    expect_close(sentence_chrf(hyp, ref), pair.at("chrf").at("sentence").get<double>(),
                 name + " sentence_chrf");
  }
}

TEST(TextMetricsReference, CorporaMatchSacrebleu) {
  std::map<std::string, std::vector<std::string>> hyps, refs;
  for (const json& pair : fixture().at("pairs")) {
    for (const std::string& group : {pair.at("group").get<std::string>(), std::string("all")}) {
      hyps[group].push_back(pair.at("hypothesis").get<std::string>());
      refs[group].push_back(pair.at("reference").get<std::string>());
    }
  }
  for (const json& corpus : fixture().at("corpora")) {
    const std::string name = corpus.at("name").get<std::string>();
    ASSERT_TRUE(hyps.count(name)) << name;
    for (const std::string tok : {"13a", "zh"}) {
      expect_bleu(corpus_bleu(hyps[name], refs[name], bleu_tokenizer_from_name(tok)),
                  corpus.at("bleu").at(tok), name + " corpus_bleu " + tok);
    }
    expect_close(corpus_chrf(hyps[name], refs[name]), corpus.at("chrf").get<double>(),
                 name + " corpus_chrf");
  }
  std::cout << "largest relative difference from sacrebleu: " << largest_difference << "\n";
}

// ---------------------------------------------------------------- worked by hand

TEST(Bleu, BrevityPenaltyOfAShortHypothesis) {
  // Every n-gram of "a b c d" is in the reference: matches/totals 4/4, 3/3, 2/2, 1/1. c = 4 < r = 6,
  // so bp = exp(1 - 6/4) = exp(-0.5) and BLEU = 100 * exp(-0.5).
  const BleuScore s = corpus_bleu({"a b c d"}, {"a b c d e f"});
  EXPECT_EQ(s.sys_len, 4);
  EXPECT_EQ(s.ref_len, 6);
  EXPECT_EQ(s.counts, (std::array<int64_t, 4>{4, 3, 2, 1}));
  EXPECT_EQ(s.totals, (std::array<int64_t, 4>{4, 3, 2, 1}));
  EXPECT_EQ(s.precisions, (std::array<double, 4>{100, 100, 100, 100}));
  EXPECT_DOUBLE_EQ(s.bp, std::exp(-0.5));
  EXPECT_DOUBLE_EQ(s.score, 100 * std::exp(-0.5));
}

TEST(Bleu, ClippingAndExpSmoothing) {
  // "the" occurs 4 times but the reference has it once: p1 = 1/4 = 25%. No bigram, trigram or 4-gram
  // matches; 'exp' smoothing gives the k-th such order 100 / (2^k * total): p2 = 100 / (2 * 3),
  // p3 = 100 / (4 * 2) = 12.5, p4 = 100 / (8 * 1) = 12.5. c = 4 >= r = 2, so bp = 1.
  const BleuScore s = corpus_bleu({"the the the the"}, {"the cat"});
  EXPECT_EQ(s.counts, (std::array<int64_t, 4>{1, 0, 0, 0}));
  EXPECT_EQ(s.totals, (std::array<int64_t, 4>{4, 3, 2, 1}));
  EXPECT_DOUBLE_EQ(s.precisions[0], 25.0);
  EXPECT_DOUBLE_EQ(s.precisions[1], 100.0 / 6.0);
  EXPECT_DOUBLE_EQ(s.precisions[2], 12.5);
  EXPECT_DOUBLE_EQ(s.precisions[3], 12.5);
  EXPECT_EQ(s.bp, 1.0);
  EXPECT_NEAR(s.score, std::exp((std::log(25.0) + std::log(100.0 / 6.0) + 2 * std::log(12.5)) / 4),
              1e-12);
}

TEST(Bleu, EffectiveOrderOnlyForSentences) {
  // A two-word hypothesis has no trigrams: corpus BLEU (all 4 orders) is 0, sentence BLEU averages
  // over the 2 orders it has and is 100.
  EXPECT_EQ(corpus_bleu({"a b"}, {"a b"}).score, 0.0);
  EXPECT_DOUBLE_EQ(sentence_bleu("a b", "a b").score, 100.0);
  // Statistics add up over segments before the score: together the corpus has a 4-gram.
  EXPECT_DOUBLE_EQ(corpus_bleu({"a b", "c d e f"}, {"a b", "c d e f"}).score, 100.0);
}

TEST(Bleu, EmptyHypothesisScoresZero) {
  const BleuScore s = corpus_bleu({""}, {"some words"});
  EXPECT_EQ(s.score, 0.0);
  EXPECT_EQ(s.bp, 0.0);
  EXPECT_EQ(s.sys_len, 0);
  EXPECT_EQ(s.ref_len, 2);
}

TEST(Bleu, TokenizerOf13aSeparatesPunctuationButNotNumbers) {
  EXPECT_EQ(bleu_tokenize("Hello, world! It's 3,000.50 (ok).", BleuTokenizer::k13a),
            "Hello , world ! It's 3,000.50 ( ok ) .");
  // zh splits CJK characters and full-width punctuation, and leaves Latin words and numbers whole.
  EXPECT_EQ(bleu_tokenize("我有3个iPhone。", BleuTokenizer::kZh), "我 有 3 个 iPhone 。");
}

TEST(Chrf, WorkedExample) {
  // "ab" against "ac": 1-grams 1 match of 2 (P = R = 1/2), 2-grams 0 of 1 (P = R = 0); orders 3..6
  // have no n-grams and are left out of the average. Averages P = R = 1/4, and
  // F_2 = (1 + 4) P R / (4 P + R) = 1/4.
  EXPECT_DOUBLE_EQ(sentence_chrf("ab", "ac"), 25.0);
  EXPECT_DOUBLE_EQ(sentence_chrf("a b", "ab"), 100.0);  // whitespace is removed first
  EXPECT_EQ(sentence_chrf("", "abc"), 0.0);
}

TEST(TextMetrics, DifferentCountsAreOneLineErrors) {
  for (const std::string& message : {error_of([] {
                                       corpus_bleu({"a", "b"}, {"a"});
                                     }),
                                     error_of([] { corpus_chrf({"a"}, {}); })}) {
    EXPECT_NE(message.find("hypotheses but"), std::string::npos) << message;
    EXPECT_NE(message.find("one reference per hypothesis"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  EXPECT_NE(error_of([] {
              corpus_bleu({"a", "b"}, {"a"});
            }).find("corpus_bleu: 2 hypotheses but 1 references"),
            std::string::npos);
  EXPECT_NE(error_of([] { bleu_tokenizer_from_name("intl"); }).find("use 13a, zh, char or none"),
            std::string::npos);
}

// A corpus scored in three uneven parts (as eval batches on several ranks score it): the parts'
// statistics, summed, give exactly the whole corpus' BLEU and chrF, for both tokenizers the gettext
// datasets use. A mean of the parts' scores would not.
TEST(TextMetrics, ScoresFromSummedStatisticsEqualTheWholeCorpus) {
  const std::vector<std::string> hyps = {
      "the cat sat on the mat",          "打开文件",    "a dog", "", "关闭 窗口 现在",
      "Die Datei wurde nicht gefunden.", "the the the", "保存"};
  const std::vector<std::string> refs = {
      "the cat is on the mat", "打开此文件", "a big dog barks", "nothing", "关闭窗口",
      "Datei nicht gefunden.", "the cat",    "保存文件"};
  const std::vector<size_t> cuts = {0, 3, 4, hyps.size()};
  for (BleuTokenizer tokenizer : {BleuTokenizer::k13a, BleuTokenizer::kZh}) {
    BleuScore summed;
    ChrfStatistics chrf_summed = {};
    std::vector<double> part_scores;
    for (size_t p = 0; p + 1 < cuts.size(); ++p) {
      const std::vector<std::string> h(hyps.begin() + cuts[p], hyps.begin() + cuts[p + 1]);
      const std::vector<std::string> r(refs.begin() + cuts[p], refs.begin() + cuts[p + 1]);
      const BleuScore part = corpus_bleu(h, r, tokenizer);
      part_scores.push_back(part.score);
      for (int n = 0; n < 4; ++n)
        summed.counts[n] += part.counts[n], summed.totals[n] += part.totals[n];
      summed.sys_len += part.sys_len, summed.ref_len += part.ref_len;
      const ChrfStatistics stats = chrf_statistics(h, r);
      for (int n = 0; n < kChrfOrder; ++n) {
        for (int k = 0; k < 3; ++k) chrf_summed[n][k] += stats[n][k];
      }
    }
    const BleuScore whole = corpus_bleu(hyps, refs, tokenizer);
    const BleuScore from_sums = bleu_from_statistics(summed);
    EXPECT_GT(whole.score, 0.0);
    EXPECT_EQ(from_sums.score, whole.score);
    EXPECT_EQ(from_sums.bp, whole.bp);
    EXPECT_EQ(from_sums.precisions, whole.precisions);
    EXPECT_EQ(from_sums.counts, whole.counts);
    EXPECT_EQ(chrf_from_statistics(chrf_summed), corpus_chrf(hyps, refs));
    EXPECT_EQ(chrf_statistics(hyps, refs), chrf_summed);
    double mean = 0;
    for (double s : part_scores) mean += s / static_cast<double>(part_scores.size());
    EXPECT_GT(std::abs(mean - whole.score), 1e-6)
        << "the test's parts should show a mean is not corpus BLEU";
  }
  // Only the statistics count: a score or precisions left in the input are recomputed.
  BleuScore stale = corpus_bleu(hyps, refs);
  const double want = stale.score;
  stale.score = 99, stale.precisions = {1, 2, 3, 4}, stale.bp = 7;
  EXPECT_EQ(bleu_from_statistics(stale).score, want);
}

}  // namespace
}  // namespace dtrain::data
