// Vocabularies for the text datasets.
// CharVocab: a character is a Unicode code point (text is UTF-8), so "ä" is one token, not two bytes.
// Ids are dense: the specials first (when the vocabulary has them), then the characters in code point
// order, so the same set of characters always gives the same ids.
// WordVocab: lowercase words (lowercase_words), the training texts' words seen at least min_count
// times, in byte order after the specials.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dtrain::data {

// Code points of UTF-8 text; a malformed byte becomes U+FFFD (the replacement character).
std::u32string utf8_decode(std::string_view text);
std::string utf8_encode(std::u32string_view text);
void utf8_append(std::string& out, char32_t c);
// The number of code points (bytes that are not continuation bytes 10xxxxxx).
int64_t utf8_length(std::string_view text);

class CharVocab {
 public:
  // Special ids, present when the vocabulary is built with_specials. pad fills a batch's short rows
  // (losses ignore it), bos/eos open and close a sequence, unk stands for a character not in the
  // vocabulary.
  static constexpr int32_t kPad = 0, kBos = 1, kEos = 2, kUnk = 3;
  static constexpr int32_t kNumSpecials = 4;

  CharVocab() = default;
  // Every character that occurs in `texts`.
  static CharVocab build(const std::vector<std::string>& texts, bool with_specials);
  // The vocabulary whose characters are those of `chars` (UTF-8, order and repeats ignored); the
  // inverse of chars_utf8(), for storing a vocabulary next to a checkpoint.
  static CharVocab from_utf8(std::string_view chars, bool with_specials);

  int64_t size() const {
    return static_cast<int64_t>(chars_.size()) + (with_specials_ ? kNumSpecials : 0);
  }
  bool has_specials() const { return with_specials_; }
  bool contains(char32_t c) const;
  // The id of `c`: unk when it is unknown and the vocabulary has specials, else a dtrain::Error.
  int32_t id(char32_t c) const;
  // The character of a non-special id.
  char32_t char_of(int32_t id) const;
  std::string chars_utf8() const;  // the characters in id order, as UTF-8

  std::vector<int32_t> encode(std::string_view utf8) const;
  // Text of `ids`: stops at the first eos, skips pad and bos, and writes unk as U+FFFD.
  std::string decode(const std::vector<int64_t>& ids) const;

 private:
  void index();

  bool with_specials_ = false;
  std::vector<char32_t> chars_;  // sorted, unique
  std::unordered_map<char32_t, int32_t> ids_;
  int32_t ascii_ids_[128] = {};  // fast path for ASCII; -1 when absent
};

// The words of `text`, lowercased: maximal runs of ASCII letters, digits and apostrophes, and of
// non-ASCII bytes (so a UTF-8 word such as "café" stays one word). Everything else separates words.
std::vector<std::string> lowercase_words(std::string_view text);

// Lowercase words to ids: pad 0, unk 1 (a word outside the vocabulary), then the words in byte order.
class WordVocab {
 public:
  static constexpr int32_t kPad = 0, kUnk = 1;
  static constexpr int32_t kNumSpecials = 2;

  WordVocab() = default;
  // The words of `texts` (lowercase_words) that occur at least `min_count` times.
  static WordVocab build(const std::vector<std::string>& texts, int64_t min_count);
  int64_t size() const { return static_cast<int64_t>(words_.size()) + kNumSpecials; }
  int32_t id(const std::string& word) const;
  // The ids of the words of `text`, unknown words as unk.
  std::vector<int32_t> encode(std::string_view text) const;

 private:
  std::vector<std::string> words_;  // sorted
  std::unordered_map<std::string, int32_t> ids_;
};

}  // namespace dtrain::data
