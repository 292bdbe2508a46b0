#include <gtest/gtest.h>

#include <filesystem>

#include "core/data/text_corpus.h"
#include "core/error.h"
#include "data_test_util.h"

namespace fs = std::filesystem;
using namespace dtrain;
using namespace dtrain::data;
using namespace dtrain::data::testing;

namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}
}  // namespace

TEST(TextCorpus, CleanTextResolvesOverstrikes) {
  EXPECT_EQ(clean_text("_\bx and y\by"), "x and y");
  EXPECT_EQ(clean_text("with what ____\b\b\b\bdoes exist"), "with what does exist");
  EXPECT_EQ(clean_text("Ren\xc3\xa9\be"), "Rene");  // a two-byte character overstruck
  EXPECT_EQ(clean_text("bell\a, tab\tkept\nnewline\x7f"), "bell, tab\tkept\nnewline");
}

TEST(TextCorpus, SplitFortunes) {
  const auto f = split_fortunes("first\n%\nsecond\nline two\n%\n  \n%\nlast without newline");
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0], "first\n");
  EXPECT_EQ(f[1], "second\nline two\n");
  EXPECT_EQ(f[2], "last without newline\n");
}

TEST(TextCorpus, DatFilesAndU8LinksAreSkipped) {
  TempDir dir;
  write_bytes(dir.file("jokes"), "one\n%\ntwo\n%\nthree\n%\n");
  write_bytes(dir.file("jokes.dat"), std::string("\0\0\0\2binary", 10));
  fs::create_symlink("jokes", dir.path / "jokes.u8");
  write_bytes(dir.file("more"), "four\n%\n");
  TextCorpusOptions options;
  options.dir = dir.path.string();
  options.val_fraction = 0.0;
  const TextCorpus c = load_fortunes(options);
  EXPECT_EQ(c.files, (std::vector<std::string>{dir.file("jokes"), dir.file("more")}));
  EXPECT_EQ(c.train_text, "one\n%\ntwo\n%\nthree\n%\nfour\n%\n");
  EXPECT_EQ(c.train_fortunes, 4);
  EXPECT_TRUE(c.val_text.empty());
}

TEST(TextCorpus, MissingDirectorySaysWhatToInstall) {
  TextCorpusOptions options;
  options.dir = "/nonexistent/fortunes";
  try {
    load_fortunes(options);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("install fortunes"), std::string::npos) << e.what();
  }
}

// The files of the fortunes and fortunes-min packages (scripts/bootstrap installs them).
TEST(TextCorpus, RealFortunesLoadAndBatch) {
  const TextCorpus c = load_fortunes();
  EXPECT_GE(c.files.size(), 30u);
  for (const auto& f : c.files) {
    EXPECT_FALSE(f.ends_with(".dat") || f.ends_with(".u8")) << f;
  }
  EXPECT_GT(c.train_fortunes, 10000);
  const double val_share =
      static_cast<double>(c.val_fortunes) / (c.train_fortunes + c.val_fortunes);
  EXPECT_NEAR(val_share, 0.1, 0.02);
  EXPECT_GT(c.train_text.size(), 1000000u);
  EXPECT_EQ(c.train_text.find('\b'), std::string::npos);
  // A fortune is on one side only.
  EXPECT_EQ(count(c.train_text, "%\n"), static_cast<size_t>(c.train_fortunes));
  EXPECT_GE(c.vocab.size(), 80);
  EXPECT_LE(c.vocab.size(), 200);
  EXPECT_TRUE(c.vocab.contains(U'e') && c.vocab.contains(U'\n') && c.vocab.contains(U'%'));

  TextDataset train(c.train_text, c.vocab, 64);
  TextDataset val(c.val_text, c.vocab, 64);
  EXPECT_EQ(train.size(), (static_cast<int64_t>(train.tokens().size()) - 65) / 64 + 1);
  EXPECT_GT(val.size(), 100);
  const Batch b = train.get_batch({0, 5, train.size() - 1}, 0);
  ASSERT_EQ(b.input.shape(), (Shape{3, 64}));
  ASSERT_EQ(b.target.shape(), (Shape{3, 64}));
  const int64_t* x = b.input.data<int64_t>();
  const int64_t* y = b.target.data<int64_t>();
  for (int r = 0; r < 3; ++r) {
    for (int t = 0; t + 1 < 64; ++t) EXPECT_EQ(y[r * 64 + t], x[r * 64 + t + 1]);
  }
  // Window 5 starts at character 320 of the training text.
  std::vector<int64_t> row(x + 64, x + 128);
  EXPECT_EQ(c.vocab.decode(row), c.vocab.decode(std::vector<int64_t>(
                                     train.tokens().begin() + 320, train.tokens().begin() + 384)));
  EXPECT_EQ(y[2 * 64 + 63], train.tokens()[(train.size() - 1) * 64 + 64]);
}

TEST(TextDataset, OverlappingWindowsWithStride) {
  const CharVocab v = CharVocab::build({"abcdefghij"}, false);
  TextDataset ds("abcdefghij", v, 4, 2);
  EXPECT_EQ(ds.size(), 3);  // starts 0, 2, 4 (a window needs 5 characters)
  const Batch b = ds.get_batch({2}, 0);
  EXPECT_EQ(b.input.to_vector<int64_t>(), (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(b.target.to_vector<int64_t>(), (std::vector<int64_t>{5, 6, 7, 8}));
  EXPECT_THROW(TextDataset("abc", v, 4), Error);
}
