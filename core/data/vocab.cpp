#include "core/data/vocab.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace dtrain::data {

std::u32string utf8_decode(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char b = p[i];
    // The lead byte says how many continuation bytes (10xxxxxx) follow and the smallest code point
    // that length may encode (shorter "overlong" forms are malformed).
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int extra = 0;
    char32_t c = 0, min = 0;
    if ((b & 0xe0) == 0xc0) {
      extra = 1, c = b & 0x1f, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
      extra = 2, c = b & 0x0f, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
      extra = 3, c = b & 0x07, min = 0x10000;
    } else {
      out.push_back(0xfffd);
      ++i;
      continue;
    }
    bool ok = i + extra < n;
    for (int k = 1; ok && k <= extra; ++k) {
      if ((p[i + k] & 0xc0) != 0x80)
        ok = false;
      else
        c = (c << 6) | (p[i + k] & 0x3f);
    }
    if (!ok || c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
      out.push_back(0xfffd);
      ++i;
      continue;
    }
    out.push_back(c);
    i += extra + 1;
  }
  return out;
}

void utf8_append(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
  }
}

int64_t utf8_length(std::string_view text) {
  int64_t n = 0;
  for (char c : text) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

std::string utf8_encode(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) utf8_append(out, c);
  return out;
}

CharVocab CharVocab::build(const std::vector<std::string>& texts, bool with_specials) {
  CharVocab v;
  v.with_specials_ = with_specials;
  bool ascii[128] = {};
  std::vector<char32_t> other;
  for (const auto& t : texts) {
    for (char32_t c : utf8_decode(t)) {
      if (c < 128)
        ascii[c] = true;
      else
        other.push_back(c);
    }
  }
  for (char32_t c = 0; c < 128; ++c)
    if (ascii[c]) v.chars_.push_back(c);
  std::sort(other.begin(), other.end());
  other.erase(std::unique(other.begin(), other.end()), other.end());
  v.chars_.insert(v.chars_.end(), other.begin(), other.end());
  v.index();
  return v;
}

CharVocab CharVocab::from_utf8(std::string_view chars, bool with_specials) {
  return build({std::string(chars)}, with_specials);
}

void CharVocab::index() {
  std::fill(std::begin(ascii_ids_), std::end(ascii_ids_), -1);
  ids_.clear();
  const int32_t first = with_specials_ ? kNumSpecials : 0;
  for (size_t i = 0; i < chars_.size(); ++i) {
    const int32_t id = first + static_cast<int32_t>(i);
    ids_[chars_[i]] = id;
    if (chars_[i] < 128) ascii_ids_[chars_[i]] = id;
  }
}

bool CharVocab::contains(char32_t c) const {
  return c < 128 ? ascii_ids_[c] >= 0 : ids_.count(c) != 0;
}

int32_t CharVocab::id(char32_t c) const {
  if (c < 128 && ascii_ids_[c] >= 0) return ascii_ids_[c];
  if (c >= 128) {
    auto it = ids_.find(c);
    if (it != ids_.end()) return it->second;
  }
  DTRAIN_CHECK(
      with_specials_, "CharVocab: character U+", std::hex, static_cast<uint32_t>(c),
      " is not in the vocabulary of ", std::dec, size(),
      " characters and it has no unk token; build the vocabulary from text that contains it");
  return kUnk;
}

char32_t CharVocab::char_of(int32_t id) const {
  const int32_t first = with_specials_ ? kNumSpecials : 0;
  DTRAIN_CHECK(id >= first && id < size(), "CharVocab: id ", id,
               " is not a character id (vocabulary of ", size(), ", characters from id ", first,
               ")");
  return chars_[id - first];
}

std::string CharVocab::chars_utf8() const {
  return utf8_encode(std::u32string(chars_.begin(), chars_.end()));
}

std::vector<int32_t> CharVocab::encode(std::string_view utf8) const {
  const std::u32string cps = utf8_decode(utf8);
  std::vector<int32_t> out(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) out[i] = id(cps[i]);
  return out;
}

std::string CharVocab::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) {
    if (with_specials_) {
      if (id == kEos) break;
      if (id == kPad || id == kBos) continue;
      if (id == kUnk) {
        utf8_append(out, 0xfffd);
        continue;
      }
    }
    utf8_append(out, char_of(static_cast<int32_t>(id)));
  }
  return out;
}

std::vector<std::string> lowercase_words(std::string_view text) {
  std::vector<std::string> words;
  std::string current;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    const bool ascii_word =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\'';
    if (ascii_word || c >= 0x80) {
      current.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : ch);
    } else if (!current.empty()) {
      words.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

WordVocab WordVocab::build(const std::vector<std::string>& texts, int64_t min_count) {
  std::map<std::string, int64_t> counts;  // ordered: ids follow byte order
  for (const std::string& text : texts) {
    for (std::string& w : lowercase_words(text)) ++counts[std::move(w)];
  }
  WordVocab vocab;
  for (const auto& [word, count] : counts) {
    if (count < min_count) continue;
    vocab.ids_.emplace(word, static_cast<int32_t>(vocab.words_.size()) + kNumSpecials);
    vocab.words_.push_back(word);
  }
  return vocab;
}

int32_t WordVocab::id(const std::string& word) const {
  auto it = ids_.find(word);
  return it == ids_.end() ? kUnk : it->second;
}

std::vector<int32_t> WordVocab::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  for (const std::string& w : lowercase_words(text)) ids.push_back(id(w));
  return ids;
}

}  // namespace dtrain::data
