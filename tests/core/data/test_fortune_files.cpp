// The fortune-files classification data on a small fortunes directory written here (labels by file,
// fortunes in several files dropped, a stable split, padded and cut batches, a missing file as a
// one-line error) and the bag-of-words naive Bayes baseline against values computed by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "core/data/bag_of_words.h"
#include "core/data/fortune_files.h"
#include "data_test_util.h"

using namespace dtrain;
using namespace dtrain::data;
using namespace dtrain::data::testing;
using dtrain::testing::error_of;

namespace {

FortuneFilesOptions small_options(const TempDir& dir) {
  FortuneFilesOptions options;
  options.dir = dir.path.string();
  options.files = {"cats", "dogs"};
  options.min_word_count = 1;
  return options;
}

// Two files sharing one fortune ("Shared fortune."), one fortune repeated within a file, and an ASCII
// art fortune without words.
void write_small_dir(const TempDir& dir) {
  write_bytes(dir.file("cats"), "A cat purrs.\n%\nCats nap a lot.\n%\nShared fortune.\n%\nA cat purrs.\n%\n");
  write_bytes(dir.file("dogs"), "Dogs bark loudly.\n%\n-- ** --\n%\nShared fortune.\n%\nA dog digs.\n%\n");
}

}  // namespace

TEST(FortuneFiles, LabelsByFileAndDropsFortunesOfSeveralFiles) {
  TempDir dir;
  write_small_dir(dir);
  FortuneFilesOptions options = small_options(dir);
  options.val_fraction = 0.0;
  const FortuneFiles f = load_fortune_files(options);
  EXPECT_EQ(f.class_names, (std::vector<std::string>{"cats", "dogs"}));
  EXPECT_EQ(f.ambiguous, 1);
  EXPECT_EQ(f.without_words, 1);
  // File order, the repeat within "cats" kept once.
  EXPECT_EQ(f.train.texts, (std::vector<std::string>{"A cat purrs.\n", "Cats nap a lot.\n", "Dogs bark loudly.\n",
                                                      "A dog digs.\n"}));
  EXPECT_EQ(f.train.labels, (std::vector<int32_t>{0, 0, 1, 1}));
}

TEST(FortuneFiles, SplitIsStableAndDependsOnTheTextOnly) {
  TempDir dir;
  std::string a, b;
  for (int i = 0; i < 200; ++i) (i % 2 ? a : b) += "fortune number " + std::to_string(i) + "\n%\n";
  write_bytes(dir.file("cats"), a);
  write_bytes(dir.file("dogs"), b);
  const FortuneFiles first = load_fortune_files(small_options(dir));
  const FortuneFiles again = load_fortune_files(small_options(dir));
  EXPECT_EQ(first.valid.texts, again.valid.texts);
  EXPECT_EQ(first.train.size() + first.valid.size(), 200);
  EXPECT_NEAR(static_cast<double>(first.valid.size()) / 200, 0.2, 0.08);
  // The same fortunes under swapped file names land on the same side, with swapped labels.
  write_bytes(dir.file("cats"), b);
  write_bytes(dir.file("dogs"), a);
  const FortuneFiles swapped = load_fortune_files(small_options(dir));
  ASSERT_EQ(swapped.valid.size(), first.valid.size());
  for (int64_t i = 0; i < first.valid.size(); ++i) {
    const auto at = std::find(swapped.valid.texts.begin(), swapped.valid.texts.end(), first.valid.texts[i]);
    ASSERT_NE(at, swapped.valid.texts.end()) << first.valid.texts[i];
    EXPECT_EQ(swapped.valid.labels[at - swapped.valid.texts.begin()], 1 - first.valid.labels[i]);
  }
  // Another seed, another split.
  FortuneFilesOptions reseeded = small_options(dir);
  reseeded.split_seed = 1;
  EXPECT_NE(load_fortune_files(reseeded).valid.texts, swapped.valid.texts);
}

TEST(FortuneFiles, BatchesPadAndCutWordIds) {
  LabelledTexts texts;
  texts.texts = {"the cat sat on the mat", "a dog"};
  texts.labels = {1, 0};
  const WordVocab vocab = WordVocab::build({"the cat the dog sat", "mat"}, 2);  // "the" only
  EXPECT_EQ(vocab.size(), WordVocab::kNumSpecials + 1);
  const int32_t the = vocab.id("the");
  EXPECT_EQ(the, 2);
  FortuneFilesDataset dataset(texts, vocab, 4);
  EXPECT_DOUBLE_EQ(dataset.truncated_fraction(), 0.5);
  const Batch batch = dataset.get_batch({0, 1}, 0);
  EXPECT_EQ(batch.input.shape(), (Shape{2, 4}));
  EXPECT_EQ(batch.input.dtype(), DType::i64);
  EXPECT_EQ(batch.input.to_vector<int64_t>(), (std::vector<int64_t>{the, 1, 1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(batch.target.shape(), (Shape{2}));
  EXPECT_EQ(batch.target.to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
}

TEST(FortuneFiles, MissingFileIsAOneLineErrorNamingIt) {
  TempDir dir;
  write_bytes(dir.file("cats"), "A cat purrs.\n%\n");
  const std::string message = error_of([&] { load_fortune_files(small_options(dir)); });
  EXPECT_NE(message.find(dir.file("dogs")), std::string::npos) << message;
  EXPECT_NE(message.find("--data-dir"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

// The files of the fortunes package (scripts/bootstrap installs them): every topic file is there and
// big enough to be a class.
TEST(FortuneFiles, RealTopicFilesLoad) {
  const FortuneFiles f = load_fortune_files();
  EXPECT_EQ(f.class_names, fortune_topic_files());
  EXPECT_GT(f.train.size() + f.valid.size(), 3000);
  std::vector<int64_t> per_class(f.class_names.size(), 0);
  for (int32_t label : f.train.labels) ++per_class[label];
  for (size_t c = 0; c < per_class.size(); ++c) EXPECT_GE(per_class[c], 50) << f.class_names[c];
  EXPECT_GT(f.vocab.size(), 5000);
}

TEST(BagOfWords, LowercaseWords) {
  EXPECT_EQ(lowercase_words("Don't PANIC, 42 times!\n-- caf\xc3\xa9"),
            (std::vector<std::string>{"don't", "panic", "42", "times", "caf\xc3\xa9"}));
  EXPECT_TRUE(lowercase_words(" -- ** -- ").empty());
}

// Two classes, three training texts, vocabulary V = {a, b, c} (|V| = 3), alpha = 1:
//   class 0: "a a b", "a"  -> n_a = 3, n_b = 1, n_c = 0, n = 4, P(0) = 2/3
//   class 1: "b c"         -> n_a = 0, n_b = 1, n_c = 1, n = 2, P(1) = 1/3
//   P(w | 0) = (n_w + 1) / 7:  a 4/7, b 2/7, c 1/7
//   P(w | 1) = (n_w + 1) / 5:  a 1/5, b 2/5, c 2/5
TEST(BagOfWords, NaiveBayesMatchesHandComputedScores) {
  const NaiveBayes bayes({"a a b", "b c", "A"}, {0, 1, 0}, 2);
  EXPECT_EQ(bayes.vocabulary_size(), 3);
  // "c c z": z is outside V and skipped.
  const std::vector<double> s = bayes.log_scores("c c z");
  EXPECT_NEAR(s[0], std::log(2.0 / 3) + 2 * std::log(1.0 / 7), 1e-12);
  EXPECT_NEAR(s[1], std::log(1.0 / 3) + 2 * std::log(2.0 / 5), 1e-12);
  EXPECT_EQ(bayes.predict("c c z"), 1);  // -1.099 - 1.833 = -2.931 beats -0.405 - 3.892 = -4.297
  // "a": log(2/3) + log(4/7) = -0.965 beats log(1/3) + log(1/5) = -2.708.
  EXPECT_EQ(bayes.predict("a"), 0);
  // "b": log(2/3 * 2/7) = -1.658 beats log(1/3 * 2/5) = -2.015; nothing known: the prior, class 0.
  EXPECT_EQ(bayes.predict("b"), 0);
  EXPECT_EQ(bayes.predict("zzz"), 0);
  EXPECT_DOUBLE_EQ(bayes.accuracy({"a", "c c", "b"}, {0, 1, 1}), 2.0 / 3);
}
