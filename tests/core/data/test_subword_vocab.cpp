// SubwordVocab: its pieces, its ids with no merges (CharVocab's), and its merges and encodings against
// a slow reference that recounts every pair at every step.
#include "core/data/subword_vocab.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "core/error.h"

namespace dtrain::data {
namespace {

TEST(SubwordVocab, PiecesSplitWordsWithTheirSpaceAndKeepEverythingElseApart) {
  const std::string text = "the cat's %s  42.Ärger";
  const std::vector<std::string> pieces = SubwordVocab::pieces(text);
  EXPECT_EQ(pieces, (std::vector<std::string>{"the", " cat's", " ", "%", "s", " ", " ", "4", "2",
                                              ".", "Ärger"}));
  std::string joined;
  for (const std::string& p : pieces) joined += p;
  EXPECT_EQ(joined, text);
  EXPECT_TRUE(SubwordVocab::pieces("").empty());
}

TEST(SubwordVocab, WithoutMergesIsTheCharacterVocabulary) {
  const std::vector<std::string> texts = {"Open the file", "Save as…", "ärger 42%"};
  const SubwordVocab sub = SubwordVocab::learn(texts, 0);
  const CharVocab chars = CharVocab::build(texts, true);
  EXPECT_EQ(sub.size(), chars.size());
  EXPECT_EQ(sub.merges(), 0);
  for (const std::string& t : {std::string("Save the file"), std::string("zoë…")})
    EXPECT_EQ(sub.encode(t), chars.encode(t)) << t;
  EXPECT_EQ(sub.encode("z")[0], SubwordVocab::kUnk);
  EXPECT_EQ(sub.token(chars.id(U'…')), "…");
}

// The definition itself, slowly: every pair recounted at every step.
struct Reference {
  std::vector<std::string> tokens;                              // text of id 4 + i
  std::map<std::u32string, std::vector<int32_t>> segmentation;  // each distinct piece
};

Reference reference_learn(const std::vector<std::string>& texts, int64_t merges) {
  std::map<std::u32string, int64_t> counts;
  for (const std::string& t : texts) {
    for (const std::string& p : SubwordVocab::pieces(t)) ++counts[utf8_decode(p)];
  }
  std::map<char32_t, int32_t> ids;
  for (const auto& [piece, n] : counts) {
    for (char32_t c : piece) ids[c] = 0;
  }
  Reference r;
  for (auto& [c, id] : ids) {
    id = static_cast<int32_t>(r.tokens.size()) + 4;
    r.tokens.push_back(utf8_encode(std::u32string(1, c)));
  }
  for (const auto& [piece, n] : counts) {
    for (char32_t c : piece) r.segmentation[piece].push_back(ids[c]);
  }
  for (int64_t m = 0; m < merges; ++m) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pairs;  // ordered by (left, right)
    for (const auto& [piece, seg] : r.segmentation) {
      for (size_t k = 0; k + 1 < seg.size(); ++k) pairs[{seg[k], seg[k + 1]}] += counts[piece];
    }
    std::pair<int32_t, int32_t> best;
    int64_t best_count = 1;
    for (const auto& [pair, n] : pairs) {
      if (n > best_count) best = pair, best_count = n;  // the first of equal counts is the smallest
    }
    if (best_count < 2) break;
    const int32_t merged = static_cast<int32_t>(r.tokens.size()) + 4;
    r.tokens.push_back(r.tokens[best.first - 4] + r.tokens[best.second - 4]);
    for (auto& [piece, seg] : r.segmentation) {
      std::vector<int32_t> out;
      for (size_t k = 0; k < seg.size(); ++k) {
        if (k + 1 < seg.size() && seg[k] == best.first && seg[k + 1] == best.second) {
          out.push_back(merged);
          ++k;
        } else {
          out.push_back(seg[k]);
        }
      }
      seg = out;
    }
  }
  return r;
}

std::vector<std::string> random_texts(uint32_t seed, int count) {
  const std::vector<std::string> words = {"file", "files", "open", "opened", "opening", "the",
                                          "then", "a",     "aaa",  "ab",     "ba",      "é",
                                          "%s",   "42",    ":",    "can't",  "cannot",  "no"};
  std::mt19937 rng(seed);
  std::vector<std::string> texts;
  for (int i = 0; i < count; ++i) {
    std::string t;
    const int n = 1 + static_cast<int>(rng() % 6);
    for (int k = 0; k < n; ++k) {
      if (k) t += rng() % 4 ? " " : "";
      t += words[rng() % words.size()];
    }
    texts.push_back(t);
  }
  return texts;
}

TEST(SubwordVocab, MergesAndEncodingsMatchTheSlowDefinition) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    const std::vector<std::string> texts = random_texts(seed, 300);
    for (int64_t merges : {1, 7, 40, 100000}) {
      SCOPED_TRACE(merges);
      const SubwordVocab v = SubwordVocab::learn(texts, merges);
      const Reference r = reference_learn(texts, merges);
      ASSERT_EQ(v.size(), static_cast<int64_t>(r.tokens.size()) + 4);
      for (int32_t id = 4; id < v.size(); ++id) EXPECT_EQ(v.token(id), r.tokens[id - 4]) << id;
      // Encoding a training piece gives learning's final segmentation of it.
      for (const auto& [piece, seg] : r.segmentation) EXPECT_EQ(v.encode(utf8_encode(piece)), seg);
      // Encoding loses nothing.
      for (const std::string& t : random_texts(seed + 10, 20)) {
        std::string back;
        for (int32_t id : v.encode(t)) back += v.token(id);
        EXPECT_EQ(back, t);
      }
    }
    // 100000 merges stop once no pair occurs twice; fewer tokens after all merges.
    const SubwordVocab all = SubwordVocab::learn(texts, 100000);
    EXPECT_LT(all.merges(), 1000);
    EXPECT_GT(all.merges(), 20);
    int64_t chars = 0, tokens = 0;
    for (const std::string& t : texts) {
      chars += utf8_length(t);
      tokens += static_cast<int64_t>(all.encode(t).size());
    }
    EXPECT_LT(tokens * 2, chars);
  }
}

TEST(SubwordVocab, SameTextsInAnyOrderLearnTheSameTokens) {
  std::vector<std::string> texts = random_texts(5, 200);
  const SubwordVocab a = SubwordVocab::learn(texts, 50);
  std::reverse(texts.begin(), texts.end());
  const SubwordVocab b = SubwordVocab::learn(texts, 50);
  ASSERT_EQ(a.size(), b.size());
  for (int32_t id = 4; id < a.size(); ++id) EXPECT_EQ(a.token(id), b.token(id));
  EXPECT_THROW(SubwordVocab::learn(texts, -1), Error);
  EXPECT_THROW(a.token(SubwordVocab::kUnk), Error);
}

}  // namespace
}  // namespace dtrain::data
