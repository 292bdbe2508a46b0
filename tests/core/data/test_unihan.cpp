// The Unihan reader and dataset on files the tests write (core/data/unihan_test_writer.h): which code
// points become samples, the kRSUnicode forms, the bzip2 reading, the split, the batch layout, and
// one-line errors for missing, corrupt and malformed files.
#include "core/data/unihan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "core/data/unihan_test_writer.h"
#include "data_test_util.h"

namespace dtrain::data {
namespace {

using test::bzip2_bytes;
using test::write_file;
using testing::error_of;
using testing::TempDir;

// Three ideographs with all three fields, and code points that each lack one of them.
void write_small_dir(const TempDir& dir) {
  write_file(
      dir.file("unifont.hex"),
      "0041:0000000018242442427E424242420000\n"                                  // narrow
      "4E00:00000000000000000000FFFE0000000000000000000000000000000000000000\n"  // 一
      "4E01:0000FFFE01000100010001000100010001000100010001000100050002000000\n"
      "6CB3:0000200017FE1008800843C84248124812482248E3C822482008200820280010\n"    // 河
      "4E02:00000000000000000000FFFE0000000000000000000000000000000000000000\n");  // no definition
  write_file(dir.file("Unihan_IRGSources.txt.bz2"),
             bzip2_bytes("# comment\n#\tkRSUnicode\n\n"
                         "U+4E00\tkIRG_GSource\tG0-523B\n"
                         "U+4E00\tkRSUnicode\t1.0\n"
                         "U+4E01\tkRSUnicode\t1.1 2.3\n"
                         "U+4E02\tkRSUnicode\t1.2\n"
                         "U+6CB3\tkRSUnicode\t85'.5\n"
                         "U+4E03\tkRSUnicode\t1.1\n"));  // no glyph
  write_file(dir.file("Unihan_Readings.txt.bz2"),
             bzip2_bytes("# comment\n"
                         "U+4E00\tkDefinition\tOne; A, An; Alone\n"
                         "U+4E00\tkMandarin\tyi\n"
                         "U+4E01\tkDefinition\tMale adult; robust, vigorous\n"
                         "U+4E03\tkDefinition\tSeven\n"
                         "U+6CB3\tkDefinition\tRiver, Stream\n"));
}

TEST(Unihan, ReadsCodePointsWithGlyphRadicalAndDefinition) {
  TempDir dir;
  write_small_dir(dir);
  const std::vector<UnihanEntry> entries = read_unihan(UnihanFiles::in(dir.path.string()));
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].codepoint, U'\u4E00');
  EXPECT_EQ(entries[0].radical, 1);
  EXPECT_EQ(entries[0].definition, "one; a, an; alone");
  EXPECT_EQ(entries[1].codepoint, U'\u4E01');
  EXPECT_EQ(entries[1].radical, 1);  // "1.1 2.3": the first value
  EXPECT_EQ(entries[2].codepoint, U'\u6CB3');
  EXPECT_EQ(entries[2].radical, 85);  // "85'.5": the simplified form of radical 85
  EXPECT_EQ(entries[2].definition, "river, stream");
  // 一 is row 5 inked from column 0 to 14 (FFFE).
  for (int64_t r = 0; r < kGlyphSize; ++r) {
    for (int64_t c = 0; c < kGlyphSize; ++c)
      EXPECT_EQ(entries[0].ink(r, c), r == 5 && c < 15) << r << "," << c;
  }
}

TEST(Unihan, ReadsConcatenatedBzip2Streams) {
  TempDir dir;
  write_file(dir.file("two.bz2"), bzip2_bytes("first\n") + bzip2_bytes("second\n"));
  EXPECT_EQ(read_bzip2_file(dir.file("two.bz2"), "hint"), "first\nsecond\n");
}

TEST(Unihan, CorruptTruncatedOrMissingFilesAreOneLineErrors) {
  TempDir dir;
  write_small_dir(dir);
  const UnihanFiles files = UnihanFiles::in(dir.path.string());
  std::string good = bzip2_bytes("U+4E00\tkDefinition\tone\n");

  write_file(files.readings, good.substr(0, good.size() / 2));
  std::string e = error_of([&] { read_unihan(files); });
  EXPECT_NE(e.find(files.readings), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  EXPECT_NE(e.find("unicode-data"), std::string::npos) << e;

  std::string corrupt = good;
  for (size_t i = 10; i < corrupt.size(); ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
  write_file(files.readings, corrupt);
  e = error_of([&] { read_unihan(files); });
  EXPECT_NE(e.find(files.readings), std::string::npos) << e;
  EXPECT_NE(e.find("unicode-data"), std::string::npos) << e;

  write_file(files.readings, "U+4E00\tkDefinition\tnot compressed\n");
  e = error_of([&] { read_unihan(files); });
  EXPECT_NE(e.find("is not a bzip2 file"), std::string::npos) << e;

  std::filesystem::remove(files.irg_sources);
  e = error_of([&] { read_unihan(files); });
  EXPECT_NE(e.find(files.irg_sources + " not found"), std::string::npos) << e;
  EXPECT_NE(e.find("unicode-data"), std::string::npos) << e;

  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

TEST(Unihan, MalformedLinesNameTheFileAndLine) {
  TempDir dir;
  write_small_dir(dir);
  const UnihanFiles files = UnihanFiles::in(dir.path.string());
  write_file(files.unifont_hex, "4E00:00FF\n");
  std::string e = error_of([&] { read_unihan(files); });
  EXPECT_NE(e.find(files.unifont_hex + " line 1"), std::string::npos) << e;
  EXPECT_NE(e.find("unifont"), std::string::npos) << e;

  write_small_dir(dir);
  write_file(files.irg_sources, bzip2_bytes("U+4E00\tkRSUnicode\t215.0\n"));
  e = error_of([&] { read_unihan(files); });
  EXPECT_NE(e.find(files.irg_sources + " line 1"), std::string::npos) << e;
  EXPECT_NE(e.find("1..214"), std::string::npos) << e;

  std::filesystem::remove(files.unifont_hex);
  e = error_of([&] { read_unihan(files); });
  EXPECT_NE(e.find(files.unifont_hex), std::string::npos) << e;
  EXPECT_NE(e.find("install unifont"), std::string::npos) << e;
}

TEST(Unihan, SplitIsStableAndRoughlyNinetyFiveFive) {
  std::map<UnihanSplit, int> counts;
  for (char32_t c = 0x4E00; c < 0x9FFF; ++c) counts[unihan_split_of(c)]++;
  const double n = 0x9FFF - 0x4E00;
  EXPECT_NEAR(counts[UnihanSplit::train] / n, 0.90, 0.01);
  EXPECT_NEAR(counts[UnihanSplit::valid] / n, 0.05, 0.01);
  EXPECT_NEAR(counts[UnihanSplit::test] / n, 0.05, 0.01);
  // A code point's split depends on nothing else: the same answer twice, and for a corpus of any size.
  for (char32_t c = 0x4E00; c < 0x4F00; ++c) EXPECT_EQ(unihan_split_of(c), unihan_split_of(c));
}

TEST(Unihan, BatchHoldsGlyphsDefinitionIdsAndRadicals) {
  TempDir dir;
  test::write_synthetic_unihan(dir.path, 200);
  auto corpus = std::make_shared<const UnihanCorpus>(load_unihan(dir.path.string()));
  ASSERT_EQ(corpus->entries.size(), 200u);
  EXPECT_EQ(corpus->train.size() + corpus->valid.size() + corpus->test.size(), 200u);
  for (int64_t i : corpus->valid)
    EXPECT_EQ(unihan_split_of(corpus->entries[i].codepoint), UnihanSplit::valid);

  const int64_t seq_len = 6;
  UnihanDataset train(corpus, corpus->train, seq_len);
  ASSERT_EQ(train.size(), static_cast<int64_t>(corpus->train.size()));
  Batch b = train.get_batch({0, 1}, 0);
  ASSERT_EQ(b.input.shape(), (Shape{2, 1, 16, 16}));
  ASSERT_EQ(b.decoder_input.shape(), (Shape{2, seq_len}));
  ASSERT_EQ(b.target.shape(), (Shape{2}));
  for (int64_t i = 0; i < 2; ++i) {
    const UnihanEntry& e = corpus->entries[corpus->train[i]];
    EXPECT_EQ(b.target.data<int64_t>()[i], e.radical - 1);
    for (int64_t p = 0; p < 256; ++p) {
      EXPECT_EQ(b.input.data<float>()[i * 256 + p], e.ink(p / 16, p % 16) ? 0.5f : -0.5f);
    }
    // The definition's words ("Person kalo" -> "person", "kalo"), then pad.
    const std::vector<int32_t> ids = corpus->vocab.encode(e.definition);
    ASSERT_EQ(ids.size(), 2u);
    const auto& radicals = test::synthetic_radicals();
    const size_t k = std::find(radicals.begin(), radicals.end(), e.radical) - radicals.begin();
    ASSERT_LT(k, radicals.size());
    EXPECT_EQ(ids[0], corpus->vocab.id(lowercase_words(test::synthetic_words()[k])[0]));
    EXPECT_NE(ids[0], WordVocab::kUnk);
    for (int64_t j = 0; j < seq_len; ++j) {
      EXPECT_EQ(b.decoder_input.data<int64_t>()[i * seq_len + j], j < 2 ? ids[j] : WordVocab::kPad);
    }
  }
  // Words seen twice or more in the train split have their own id; rarer ones are unk.
  EXPECT_NE(corpus->vocab.id("water"), WordVocab::kUnk);
  EXPECT_EQ(corpus->vocab.id("ox"), WordVocab::kUnk);  // in no synthetic definition
  // A long definition keeps its first seq_len words; a short one is padded with pad (0).
  UnihanEntry entry = corpus->entries[0];
  entry.definition = "Water; fire, water ox tree tree hand";
  Batch one = UnihanDataset::encode(entry, corpus->vocab, seq_len);
  const int64_t* t = one.decoder_input.data<int64_t>();
  const std::vector<int32_t> expected = {corpus->vocab.id("water"), corpus->vocab.id("fire"),
                                         corpus->vocab.id("water"), WordVocab::kUnk,
                                         corpus->vocab.id("tree"),  corpus->vocab.id("tree")};
  for (int64_t j = 0; j < seq_len; ++j) EXPECT_EQ(t[j], expected[j]) << j;
  entry.definition = "hand";
  one = UnihanDataset::encode(entry, corpus->vocab, seq_len);
  t = one.decoder_input.data<int64_t>();
  EXPECT_EQ(t[0], corpus->vocab.id("hand"));
  for (int64_t j = 1; j < seq_len; ++j) EXPECT_EQ(t[j], WordVocab::kPad);
}

TEST(Unihan, RadicalCharactersSkipSimplifiedForms) {
  TempDir dir;
  write_file(dir.file("CJKRadicals.txt"),
             "# comment\n1; 2F00; 4E00\n85; 2F54; 6C34\n85'; 2EA1; 6C35\n");
  const std::vector<std::string> chars = read_radical_characters(dir.file("CJKRadicals.txt"));
  ASSERT_EQ(chars.size(), 215u);
  EXPECT_EQ(chars[1], "一");
  EXPECT_EQ(chars[85], "水");
  EXPECT_TRUE(chars[2].empty());
  EXPECT_TRUE(read_radical_characters(dir.file("absent.txt")).empty());
}

}  // namespace
}  // namespace dtrain::data
