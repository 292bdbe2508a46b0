// Subword tokens learnt from a training split by byte-pair encoding over characters (code points):
// start from the characters, then repeatedly merge the adjacent pair of tokens seen most often into
// a new token, `merges` times or until no pair occurs twice.
//
// Merges never cross a piece boundary. A piece is an optional single space followed by a maximal run
// of letters (ASCII letters, apostrophes and any non-ASCII character), or a run of one digit, or any
// other single character. So " the", "file" and "'s" may become tokens, a number stays digit by
// digit, and "%s" stays two tokens, the form a translation copies. The pieces concatenate back to the
// text: encoding loses nothing.
//
// Learning: count the pieces of `texts`, write each distinct piece as its characters, count the
// adjacent pairs weighted by the piece counts, and at each step merge the most frequent pair (ties:
// the smaller left id, then the smaller right id), updating the counts of the pieces that held it.
// Encoding a piece: its characters, then the adjacent pair with the earliest merge is merged, again
// and again, until no pair of the piece is a merge (the order learning applied them in).
//
// Ids: pad 0, bos 1, eos 2, unk 3 (CharVocab's specials), then the characters in code point order
// (with no merges the ids are CharVocab::build(texts, true)'s), then the merges in the order learnt.
// A character outside the training texts is unk.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/data/vocab.h"

namespace dtrain::data {

class SubwordVocab {
 public:
  static constexpr int32_t kPad = CharVocab::kPad, kBos = CharVocab::kBos, kEos = CharVocab::kEos,
                           kUnk = CharVocab::kUnk;

  SubwordVocab() = default;
  static SubwordVocab learn(const std::vector<std::string>& texts, int64_t merges);
  // The pieces of `text` (see above), as UTF-8.
  static std::vector<std::string> pieces(std::string_view text);

  int64_t size() const { return static_cast<int64_t>(tokens_.size()) + CharVocab::kNumSpecials; }
  int64_t merges() const { return static_cast<int64_t>(tokens_.size() - char_ids_.size()); }
  std::vector<int32_t> encode(std::string_view text) const;
  // The text of a non-special id.
  const std::string& token(int32_t id) const;

 private:
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  int32_t character_id(char32_t c) const;

  std::unordered_map<char32_t, int32_t> char_ids_;
  std::vector<std::string> tokens_;              // the text of id kNumSpecials + i
  std::unordered_map<uint64_t, int32_t> merge_;  // pair_key(left, right) -> the merged id
};

}  // namespace dtrain::data
