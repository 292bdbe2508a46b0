// The fortune-files classification data on a small fortunes directory written here (labels by file,
// fortunes in several files dropped, a stable split, padded and cut batches, a missing file as a
// one-line error). The bag-of-words baseline is in test_bag_of_words.cpp.
#include <gtest/gtest.h>

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
  write_bytes(dir.file("cats"),
              "A cat purrs.\n%\nCats nap a lot.\n%\nShared fortune.\n%\nA cat purrs.\n%\n");
  write_bytes(dir.file("dogs"),
              "Dogs bark loudly.\n%\n-- ** --\n%\nShared fortune.\n%\nA dog digs.\n%\n");
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
  EXPECT_EQ(f.train.texts, (std::vector<std::string>{"A cat purrs.\n", "Cats nap a lot.\n",
                                                     "Dogs bark loudly.\n", "A dog digs.\n"}));
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
    const auto at =
        std::find(swapped.valid.texts.begin(), swapped.valid.texts.end(), first.valid.texts[i]);
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
