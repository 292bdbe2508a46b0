#include "core/data/subword_vocab.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace dtrain::data {

namespace {

bool letter(char32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '\'' || c >= 0x80;
}

// The pieces of `text` as code point ranges [begin, end).
std::vector<std::pair<size_t, size_t>> piece_ranges(const std::u32string& text) {
  std::vector<std::pair<size_t, size_t>> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t end = i + 1;
    const size_t word_start = text[i] == ' ' && end < text.size() && letter(text[end]) ? end : i;
    if (letter(text[word_start])) {
      end = word_start + 1;
      while (end < text.size() && letter(text[end])) ++end;
    }
    out.emplace_back(i, end);
    i = end;
  }
  return out;
}

}  // namespace

std::vector<std::string> SubwordVocab::pieces(std::string_view text) {
  const std::u32string cps = utf8_decode(text);
  std::vector<std::string> out;
  for (auto [begin, end] : piece_ranges(cps))
    out.push_back(utf8_encode(std::u32string_view(cps).substr(begin, end - begin)));
  return out;
}

int32_t SubwordVocab::character_id(char32_t c) const {
  auto it = char_ids_.find(c);
  return it == char_ids_.end() ? kUnk : it->second;
}

const std::string& SubwordVocab::token(int32_t id) const {
  DTRAIN_CHECK(id >= CharVocab::kNumSpecials && id < size(), "SubwordVocab: id ", id,
               " is not a token id (vocabulary of ", size(), ", tokens from id ",
               CharVocab::kNumSpecials, ")");
  return tokens_[id - CharVocab::kNumSpecials];
}

SubwordVocab SubwordVocab::learn(const std::vector<std::string>& texts, int64_t merges) {
  DTRAIN_CHECK(merges >= 0, "SubwordVocab: merges must be at least 0, got ", merges);
  std::map<std::u32string, int64_t> piece_counts;  // ordered: the same symbols for the same texts
  for (const std::string& text : texts) {
    const std::u32string cps = utf8_decode(text);
    for (auto [begin, end] : piece_ranges(cps)) ++piece_counts[cps.substr(begin, end - begin)];
  }
  SubwordVocab v;
  std::vector<char32_t> characters;  // ids kNumSpecials.. in code point order
  for (const auto& [piece, count] : piece_counts)
    characters.insert(characters.end(), piece.begin(), piece.end());
  std::sort(characters.begin(), characters.end());
  characters.erase(std::unique(characters.begin(), characters.end()), characters.end());
  for (char32_t c : characters) {
    v.char_ids_.emplace(c, static_cast<int32_t>(v.tokens_.size()) + CharVocab::kNumSpecials);
    std::string text;
    utf8_append(text, c);
    v.tokens_.push_back(std::move(text));
  }

  // Each distinct piece as token ids, its count, and the pair counts over all of them.
  std::vector<std::vector<int32_t>> symbols;
  std::vector<int64_t> weight;
  for (const auto& [piece, count] : piece_counts) {
    std::vector<int32_t> ids;
    for (char32_t c : piece) ids.push_back(v.character_id(c));
    symbols.push_back(std::move(ids));
    weight.push_back(count);
  }
  std::unordered_map<uint64_t, int64_t> pair_counts;
  std::unordered_map<uint64_t, std::vector<int32_t>>
      holders;  // pieces that held the pair at some point
  auto count_pairs = [&](int32_t piece, int64_t sign) {
    const std::vector<int32_t>& s = symbols[piece];
    for (size_t k = 0; k + 1 < s.size(); ++k) {
      const uint64_t key = pair_key(s[k], s[k + 1]);
      pair_counts[key] += sign * weight[piece];
      if (sign > 0) holders[key].push_back(piece);
    }
  };
  for (int32_t p = 0; p < static_cast<int32_t>(symbols.size()); ++p) count_pairs(p, +1);

  for (int64_t m = 0; m < merges; ++m) {
    uint64_t best = 0;
    int64_t best_count = 1;  // a pair must occur at least twice
    for (const auto& [key, count] : pair_counts) {
      if (count > best_count || (count == best_count && count > 1 && key < best)) {
        best = key, best_count = count;
      }
    }
    if (best_count < 2) break;
    const auto left = static_cast<int32_t>(best >> 32);
    const auto right = static_cast<int32_t>(best & 0xffffffffu);
    const int32_t merged = static_cast<int32_t>(v.tokens_.size()) + CharVocab::kNumSpecials;
    v.tokens_.push_back(v.token(left) + v.token(right));
    v.merge_.emplace(best, merged);

    std::vector<int32_t> affected = std::move(holders[best]);
    holders.erase(best);
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    for (int32_t p : affected) {
      std::vector<int32_t>& s = symbols[p];
      bool holds = false;
      for (size_t k = 0; k + 1 < s.size() && !holds; ++k) holds = s[k] == left && s[k + 1] == right;
      if (!holds) continue;  // it held the pair before an earlier merge took one of its tokens
      count_pairs(p, -1);
      std::vector<int32_t> out;
      for (size_t k = 0; k < s.size(); ++k) {
        if (k + 1 < s.size() && s[k] == left && s[k + 1] == right) {
          out.push_back(merged);
          ++k;
        } else {
          out.push_back(s[k]);
        }
      }
      s = std::move(out);
      count_pairs(p, +1);
    }
    pair_counts.erase(best);
    std::erase_if(pair_counts, [](const auto& entry) { return entry.second == 0; });
  }
  return v;
}

std::vector<int32_t> SubwordVocab::encode(std::string_view text) const {
  const std::u32string cps = utf8_decode(text);
  std::vector<int32_t> out;
  out.reserve(cps.size());
  std::vector<int32_t> s;
  for (auto [begin, end] : piece_ranges(cps)) {
    s.clear();
    for (size_t i = begin; i < end; ++i) s.push_back(character_id(cps[i]));
    // Merge the pair that was learnt first (the smallest merged id) until none is a merge.
    while (s.size() > 1 && !merge_.empty()) {
      size_t at = 0;
      int32_t first = -1;
      for (size_t k = 0; k + 1 < s.size(); ++k) {
        auto it = merge_.find(pair_key(s[k], s[k + 1]));
        if (it != merge_.end() && (first < 0 || it->second < first)) first = it->second, at = k;
      }
      if (first < 0) break;
      s[at] = first;
      s.erase(s.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    out.insert(out.end(), s.begin(), s.end());
  }
  return out;
}

}  // namespace dtrain::data
