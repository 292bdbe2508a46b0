#include "core/data/freedict.h"

#include <algorithm>
#include <filesystem>
#include <unordered_set>

#include "core/data/file_bytes.h"
#include "core/data/seeding.h"
#include "core/data/vocab.h"
#include "core/error.h"

namespace dtrain::data {

namespace {

const char* kHint = "install dict-freedict-eng-deu (scripts/bootstrap) or pass its .dict.dz path";

// dictd's base64 number: the digits below stand for 0..63, most significant first.
bool decode_b64_number(std::string_view s, uint64_t& value) {
  static constexpr std::string_view kDigits =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (s.empty() || s.size() > 10) return false;  // 10 digits are 60 bits
  value = 0;
  for (char ch : s) {
    const size_t d = kDigits.find(ch);
    if (d == std::string_view::npos) return false;
    value = value * 64 + d;
  }
  return true;
}

std::string index_path_for(const std::string& dict_path) {
  // name.dict.dz or name.dict -> name.index
  std::string base = dict_path;
  for (const std::string ext : {".dz", ".dict"}) {
    if (base.ends_with(ext)) base.resize(base.size() - ext.size());
  }
  return base + ".index";
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Collapses runs of spaces to one and trims; drops a space before , . ! ? left by a removed part.
std::string tidy_spaces(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (is_space(c)) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      if ((c == ',' || c == '.' || c == '!' || c == '?') && !out.empty() && out.back() == ' ')
        out.pop_back();
      out.push_back(c);
    }
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

std::string freedict_headword(std::string_view first_line) {
  // The pronunciation starts at the first " /"; a slash inside the headword ("he/she", "sb./sth.")
  // has no space before it.
  const size_t pron = first_line.find(" /");
  std::string_view head = first_line.substr(0, pron);
  // Entries without a pronunciation may still carry a grammar tag.
  const size_t tag = head.find(" <");
  if (tag != std::string_view::npos) head = head.substr(0, tag);
  return tidy_spaces(head);
}

std::string freedict_first_translation(std::string_view line) {
  size_t i = 0;
  // Leading usage labels: " [coll.]  [Am.] Wort ..."
  for (;;) {
    while (i < line.size() && is_space(line[i])) ++i;
    if (i < line.size() && line[i] == '[') {
      const size_t close = line.find(']', i);
      if (close == std::string_view::npos) return "";
      i = close + 1;
    } else {
      break;
    }
  }
  // The first translation runs to the first top-level separator (, or ;), grammar tag (<), label
  // ([) or pronunciation ("  /"); parenthesised parts inside it are optional words and are left out.
  std::string out;
  int depth = 0;
  for (; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '(' || c == '{') {
      ++depth;
      continue;
    }
    if ((c == ')' || c == '}') && depth > 0) {
      --depth;
      continue;
    }
    if (depth > 0) continue;
    if (c == ',' || c == ';' || c == '<' || c == '[') break;
    if (c == '/' && i > 1 && is_space(line[i - 1]) && is_space(line[i - 2])) break;
    out.push_back(c);
  }
  return tidy_spaces(out);
}

bool is_held_out(std::string_view headword, double held_out_fraction, uint64_t seed) {
  const uint64_t h = combine_seed(seed, fnv1a64(lower_ascii(headword)));
  return unit_interval(h) < held_out_fraction;
}

std::vector<TranslationPair> read_freedict(const std::string& dict_path) {
  DTRAIN_CHECK(entry_exists(dict_path), "FreeDict file ", dict_path, " not found; ", kHint);
  const std::string index_path = index_path_for(dict_path);
  DTRAIN_CHECK(entry_exists(index_path), "FreeDict index ", index_path, " not found beside ",
               dict_path, "; ", kHint);
  const std::string dict = read_file_bytes(dict_path, kHint);
  const std::string index = read_file_bytes(index_path, kHint);

  // (offset, length) of every entry, once each: several index lines may point at one entry.
  std::vector<std::pair<uint64_t, uint64_t>> entries;
  size_t line_no = 0;
  for (size_t pos = 0; pos < index.size();) {
    size_t end = index.find('\n', pos);
    if (end == std::string::npos) end = index.size();
    const std::string_view line(index.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.empty()) continue;
    const size_t t2 = line.rfind('\t');
    const size_t t1 =
        t2 == std::string_view::npos || t2 == 0 ? std::string_view::npos : line.rfind('\t', t2 - 1);
    uint64_t offset = 0, length = 0;
    DTRAIN_CHECK(t1 != std::string_view::npos &&
                     decode_b64_number(line.substr(t1 + 1, t2 - t1 - 1), offset) &&
                     decode_b64_number(line.substr(t2 + 1), length),
                 index_path, ":", line_no,
                 " is not a dictd index line (headword, offset, length); ", kHint);
    const std::string_view key = line.substr(0, t1);
    if (key.starts_with("00database") || key.starts_with("00-database"))
      continue;  // about the database
    DTRAIN_CHECK(offset + length <= dict.size(), index_path, ":", line_no, " points at bytes [",
                 offset, ", ", offset + length, ") beyond the ", dict.size(), "-byte dictionary ",
                 dict_path, "; the two files do not belong together, ", kHint);
    entries.emplace_back(offset, length);
  }
  std::sort(entries.begin(), entries.end());
  entries.erase(std::unique(entries.begin(), entries.end()), entries.end());

  std::vector<TranslationPair> pairs;
  pairs.reserve(entries.size());
  std::unordered_set<std::string> seen;
  seen.reserve(entries.size());
  for (const auto& [offset, length] : entries) {
    const std::string_view entry(dict.data() + offset, length);
    const size_t nl = entry.find('\n');
    if (nl == std::string_view::npos) continue;
    const size_t nl2 = entry.find('\n', nl + 1);
    const std::string_view second =
        entry.substr(nl + 1, nl2 == std::string_view::npos ? entry.npos : nl2 - nl - 1);
    TranslationPair p{freedict_headword(entry.substr(0, nl)), freedict_first_translation(second)};
    if (p.source.empty() || p.target.empty()) continue;
    if (!seen.insert(p.source).second) continue;
    pairs.push_back(std::move(p));
  }
  DTRAIN_CHECK(!pairs.empty(), dict_path, " holds no dictionary entries; ", kHint);
  return pairs;
}

FreeDictSplits load_freedict(const FreeDictOptions& options) {
  return split_freedict(read_freedict(options.path), options);
}

FreeDictSplits split_freedict(const std::vector<TranslationPair>& pairs,
                              const FreeDictOptions& options) {
  DTRAIN_CHECK(options.held_out_fraction >= 0.0 && options.held_out_fraction < 1.0,
               "FreeDict: held_out_fraction ", options.held_out_fraction, " must be in [0, 1)");
  FreeDictSplits splits;
  for (const auto& p : pairs) {
    if (options.max_source_chars > 0 && utf8_length(p.source) > options.max_source_chars) {
      continue;
    }
    if (options.max_target_chars > 0 && utf8_length(p.target) > options.max_target_chars) {
      continue;
    }
    auto& side = is_held_out(p.source, options.held_out_fraction, options.split_seed)
                     ? splits.held_out
                     : splits.train;
    side.push_back(p);
  }
  return splits;
}

}  // namespace dtrain::data
