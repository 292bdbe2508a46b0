// BLEU and chrF as sacreBLEU 2.x computes them. Text is handled as Unicode code points, as Python's
// str is, so that "whitespace", "a character" and the regular expressions mean what they mean there.
#include "core/data/text_metrics.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "core/data/vocab.h"
#include "core/error.h"

namespace dtrain::data {
namespace {

// Python's str.isspace(), which str.split() and str.strip() use: far more than ASCII whitespace.
bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

bool is_digit(char32_t c) { return c >= U'0' && c <= U'9'; }  // the regex class [0-9]: ASCII only

// str.split() with no argument: runs of whitespace separate tokens, none is empty.
std::vector<std::u32string> split_words(const std::u32string& text) {
  std::vector<std::u32string> words;
  std::u32string word;
  for (char32_t c : text) {
    if (is_space(c)) {
      if (!word.empty()) words.push_back(std::move(word));
      word.clear();
    } else {
      word += c;
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

std::u32string join_words(const std::vector<std::u32string>& words) {
  std::u32string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += U' ';
    out += words[i];
  }
  return out;
}

std::u32string strip(const std::u32string& text, bool left) {
  size_t begin = 0, end = text.size();
  while (end > begin && is_space(text[end - 1])) --end;
  while (left && begin < end && is_space(text[begin])) ++begin;
  return text.substr(begin, end - begin);
}

// str.replace(from, to): every non-overlapping occurrence, left to right.
std::u32string replace_all(const std::u32string& text, std::u32string_view from,
                           std::u32string_view to) {
  std::u32string out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::u32string::npos; pos = hit + from.size()) {
    out.append(text, pos, hit - pos);
    out += to;
  }
  out.append(text, pos, std::u32string::npos);
  return out;
}

// The ASCII punctuation that mteval-v13a always separates: all of it except ' , - and . (and the
// space, which the regex includes so that it becomes three spaces, harmlessly).
bool is_split_punct(char32_t c) {
  return (c >= U'{' && c <= U'~') || (c >= U'[' && c <= U'`') || (c >= U' ' && c <= U'&') ||
         (c >= U'(' && c <= U'+') || (c >= U':' && c <= U'@') || c == U'/';
}

bool is_period_or_comma(char32_t c) { return c == U'.' || c == U','; }

// The regular expressions 13a and zh share (sacreBLEU's TokenizerRegexp), each applied to the whole
// line in turn the way re.sub applies a two-character pattern: scan left to right, and after a match
// continue behind it.
std::u32string regexp_tokenize(const std::u32string& line) {
  // ([{-~[-` -&(-+:-@/])  ->  ' \1 '
  std::u32string a;
  for (char32_t c : line) {
    if (is_split_punct(c)) {
      a += {U' ', c, U' '};
    } else {
      a += c;
    }
  }
  // A two-character rule: `match(x, y)` at each position, replaced by `emit`.
  auto apply = [](const std::u32string& in, auto match, auto emit) {
    std::u32string out;
    size_t i = 0;
    while (i < in.size()) {
      if (i + 1 < in.size() && match(in[i], in[i + 1])) {
        emit(out, in[i], in[i + 1]);
        i += 2;
      } else {
        out += in[i++];
      }
    }
    return out;
  };
  // ([^0-9])([.,])  ->  '\1 \2 ': period and comma unless preceded by a digit
  std::u32string b = apply(
      a, [](char32_t x, char32_t y) { return !is_digit(x) && is_period_or_comma(y); },
      [](std::u32string& out, char32_t x, char32_t y) {
        out += {x, U' ', y, U' '};
      });
  // ([.,])([^0-9])  ->  ' \1 \2': period and comma unless followed by a digit
  std::u32string c = apply(
      b, [](char32_t x, char32_t y) { return is_period_or_comma(x) && !is_digit(y); },
      [](std::u32string& out, char32_t x, char32_t y) {
        out += {U' ', x, U' ', y};
      });
  // ([0-9])(-)  ->  '\1 \2 ': a dash after a digit
  std::u32string d = apply(
      c, [](char32_t x, char32_t y) { return is_digit(x) && y == U'-'; },
      [](std::u32string& out, char32_t x, char32_t y) {
        out += {x, U' ', y, U' '};
      });
  return join_words(split_words(d));
}

std::u32string tokenize_13a(std::u32string line) {
  line = replace_all(line, U"<skipped>", U"");
  line = replace_all(line, U"-\n", U"");
  line = replace_all(line, U"\n", U" ");
  if (line.find(U'&') != std::u32string::npos) {
    // In this order, so "&amp;lt;" becomes "<", as in sacreBLEU.
    line = replace_all(line, U"&quot;", U"\"");
    line = replace_all(line, U"&amp;", U"&");
    line = replace_all(line, U"&lt;", U"<");
    line = replace_all(line, U"&gt;", U">");
  }
  return regexp_tokenize(U" " + line + U" ");
}

// The characters sacreBLEU's zh tokenizer makes tokens of their own. Its table lists CJK ideographs,
// radicals, strokes, CJK and full-width punctuation, Bopomofo, enclosed CJK, and symbol blocks; but two
// of its entries, written '\u20000'..'\u2a6d6' and '\u2f800'..'\u2fa1d', are two-character Python
// strings ('\u2000' + '0', ...), and a one-character string compares between them exactly when it is in
// U+2001..U+2A6D or U+2F81..U+2FA1. So sacreBLEU splits off general punctuation (dashes, curly quotes,
// the ellipsis), currency signs, arrows and math operators, and does NOT split CJK Extension B
// (U+20000 and up). These are the ranges that result, merged; matching sacreBLEU's scores needs them.
bool is_zh_char(char32_t c) {
  static constexpr char32_t kRanges[][2] = {
      {0x2001, 0x2a6d},  // the '\u20000'..'\u2a6d6' entry, as Python compares it (see above)
      {0x2e80, 0x2fdf},  // CJK radicals supplement, Kangxi radicals (holds the '\u2f800' entry)
      {0x2ff0, 0x303f},  // ideographic description characters, CJK symbols and punctuation
      {0x3100, 0x312f},  // Bopomofo
      {0x31a0, 0x31ef},  // Bopomofo extended, CJK strokes
      {0x3200, 0x4db5},  // enclosed CJK, CJK compatibility, CJK extension A
      {0x4e00, 0x9fbb},  // CJK unified ideographs (to Unicode 4.1)
      {0xf900, 0xfa2d},  // CJK compatibility ideographs
      {0xfa30, 0xfa6a}, {0xfa70, 0xfad9}, {0xfe10, 0xfe1f},  // vertical forms
      {0xfe30, 0xfe4f},                                      // CJK compatibility forms
      {0xff00, 0xffef},  // half- and full-width forms (full-width ASCII and punctuation)
  };
  for (const auto& range : kRanges) {
    if (c >= range[0] && c <= range[1]) return true;
  }
  return false;
}

std::u32string tokenize_zh(const std::u32string& raw) {
  std::u32string line;
  for (char32_t c : strip(raw, /*left=*/true)) {
    if (is_zh_char(c)) {
      line += {U' ', c, U' '};
    } else {
      line += c;
    }
  }
  // Only the regular expressions: unlike 13a, zh neither unescapes &quot; nor removes <skipped>.
  return regexp_tokenize(line);
}

std::u32string tokenize(const std::u32string& line, BleuTokenizer tokenizer) {
  switch (tokenizer) {
    case BleuTokenizer::k13a:
      return tokenize_13a(line);
    case BleuTokenizer::kZh:
      return tokenize_zh(line);
    case BleuTokenizer::kChar: {
      std::u32string out;  // " ".join(line): whitespace characters too, which splitting drops later
      for (size_t i = 0; i < line.size(); ++i) {
        if (i > 0) out += U' ';
        out += line[i];
      }
      return out;
    }
    case BleuTokenizer::kNone:
      return line;
  }
  return line;
}

void check_same_count(const char* metric, size_t hypotheses, size_t references) {
  DTRAIN_CHECK(hypotheses == references, metric, ": ", hypotheses, " hypotheses but ", references,
               " references; give exactly one reference per hypothesis, in the same order");
}

using Counts = std::unordered_map<std::u32string, int64_t>;

// Word n-grams of order 1..4 in one table (an n-gram is its words joined by spaces; words never
// contain whitespace, so the key is unambiguous and its order is recoverable from the count).
struct WordNgrams {
  std::array<Counts, 4> by_order;
  int64_t length = 0;
};

WordNgrams word_ngrams(const std::string& segment, BleuTokenizer tokenizer) {
  // BLEU strips trailing whitespace before tokenizing (sacrebleu's BLEU._preprocess_segment).
  const std::vector<std::u32string> words =
      split_words(tokenize(strip(utf8_decode(segment), false), tokenizer));
  WordNgrams out;
  out.length = static_cast<int64_t>(words.size());
  for (size_t n = 1; n <= 4; ++n) {
    for (size_t i = 0; i + n <= words.size(); ++i) {
      std::u32string key = words[i];
      for (size_t k = 1; k < n; ++k) (key += U' ') += words[i + k];
      ++out.by_order[n - 1][key];
    }
  }
  return out;
}

// sacreBLEU's log with log(0) floored to -9999999999, so that a zero precision gives a score of 0.
double floored_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

// Character n-grams of orders 1..6 of a segment with its whitespace removed, and for each order the
// [hypothesis, reference, match] counts that chrF sums over a corpus.
constexpr double kChrfBeta = 2;

std::array<Counts, kChrfOrder> char_ngrams(const std::string& segment) {
  std::u32string text;
  for (char32_t c : utf8_decode(segment)) {
    if (!is_space(c)) text += c;
  }
  std::array<Counts, kChrfOrder> out;
  for (size_t n = 1; n <= kChrfOrder; ++n) {
    for (size_t i = 0; i + n <= text.size(); ++i) ++out[n - 1][text.substr(i, n)];
  }
  return out;
}

void add_chrf_statistics(ChrfStatistics& stats, const std::string& hypothesis,
                         const std::string& reference) {
  const auto hyp = char_ngrams(hypothesis);
  const auto ref = char_ngrams(reference);
  for (int n = 0; n < kChrfOrder; ++n) {
    int64_t hyp_count = 0, ref_count = 0, match = 0;
    for (const auto& [ngram, count] : hyp[n]) {
      hyp_count += count;
      auto it = ref[n].find(ngram);
      if (it != ref[n].end()) match += std::min(count, it->second);
    }
    for (const auto& [ngram, count] : ref[n]) ref_count += count;
    // sacreBLEU counts a segment's hypothesis n-grams only when its reference has n-grams of that order.
    stats[n][0] += ref[n].empty() ? 0 : hyp_count;
    stats[n][1] += ref_count;
    stats[n][2] += match;
  }
}

}  // namespace

BleuTokenizer bleu_tokenizer_from_name(std::string_view name) {
  if (name == "13a") return BleuTokenizer::k13a;
  if (name == "zh") return BleuTokenizer::kZh;
  if (name == "char") return BleuTokenizer::kChar;
  if (name == "none") return BleuTokenizer::kNone;
  throw Error(detail::concat("unknown BLEU tokenizer '", name, "'; use 13a, zh, char or none"));
}

std::string bleu_tokenize(std::string_view line, BleuTokenizer tokenizer) {
  return utf8_encode(tokenize(utf8_decode(line), tokenizer));
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::string>& references, BleuTokenizer tokenizer,
                      bool effective_order) {
  check_same_count("corpus_bleu", hypotheses.size(), references.size());
  BleuScore s;
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    const WordNgrams hyp = word_ngrams(hypotheses[i], tokenizer);
    const WordNgrams ref = word_ngrams(references[i], tokenizer);
    s.sys_len += hyp.length;
    s.ref_len += ref.length;
    for (int n = 0; n < 4; ++n) {
      for (const auto& [ngram, count] : hyp.by_order[n]) {
        s.totals[n] += count;
        auto it = ref.by_order[n].find(ngram);
        if (it != ref.by_order[n].end()) s.counts[n] += std::min(count, it->second);  // clipped
      }
    }
  }
  return bleu_from_statistics(s, effective_order);
}

BleuScore sentence_bleu(const std::string& hypothesis, const std::string& reference,
                        BleuTokenizer tokenizer) {
  return corpus_bleu({hypothesis}, {reference}, tokenizer, /*effective_order=*/true);
}

double corpus_chrf(const std::vector<std::string>& hypotheses,
                   const std::vector<std::string>& references) {
  check_same_count("corpus_chrf", hypotheses.size(), references.size());
  return chrf_from_statistics(chrf_statistics(hypotheses, references));
}

BleuScore bleu_from_statistics(const BleuScore& statistics, bool effective_order) {
  BleuScore s;
  s.counts = statistics.counts;
  s.totals = statistics.totals;
  s.sys_len = statistics.sys_len;
  s.ref_len = statistics.ref_len;
  s.bp = 1.0;
  if (s.sys_len < s.ref_len) {
    s.bp = s.sys_len > 0
               ? std::exp(1.0 - static_cast<double>(s.ref_len) / static_cast<double>(s.sys_len))
               : 0.0;
  }
  s.precisions = {};
  s.score = 0.0;
  bool any_match = false;
  for (int64_t c : s.counts) any_match = any_match || c != 0;
  if (!any_match) return s;
  // Smoothing 'exp': each successive order without a match halves what its precision would be with
  // one match. An order with no hypothesis n-grams at all stops the loop and keeps precision 0.
  double smooth = 1.0;
  int effective = 4;
  for (int n = 0; n < 4; ++n) {
    if (s.totals[n] == 0) break;
    if (effective_order) effective = n + 1;
    if (s.counts[n] == 0) {
      smooth *= 2;
      s.precisions[n] = 100.0 / (smooth * static_cast<double>(s.totals[n]));
    } else {
      s.precisions[n] = 100.0 * static_cast<double>(s.counts[n]) / static_cast<double>(s.totals[n]);
    }
  }
  double log_sum = 0.0;
  for (int n = 0; n < effective; ++n) log_sum += floored_log(s.precisions[n]);
  s.score = s.bp * std::exp(log_sum / effective);
  return s;
}

// Precision and recall are averaged over the orders where both the hypotheses and the references
// have n-grams; F_beta of those averages, 0 when both are 0.
double chrf_from_statistics(const ChrfStatistics& stats) {
  const double factor = kChrfBeta * kChrfBeta;
  double precision = 0.0, recall = 0.0;
  int effective = 0;
  for (const auto& [n_hyp, n_ref, n_match] : stats) {
    if (n_hyp > 0 && n_ref > 0) {
      precision += static_cast<double>(n_match) / static_cast<double>(n_hyp);
      recall += static_cast<double>(n_match) / static_cast<double>(n_ref);
      ++effective;
    }
  }
  if (effective == 0) return 0.0;
  precision /= effective;
  recall /= effective;
  if (precision + recall == 0.0) return 0.0;
  double score = (1 + factor) * precision * recall;
  score /= factor * precision + recall;
  return 100 * score;
}

ChrfStatistics chrf_statistics(const std::vector<std::string>& hypotheses,
                               const std::vector<std::string>& references) {
  check_same_count("chrf_statistics", hypotheses.size(), references.size());
  ChrfStatistics stats = {};
  for (size_t i = 0; i < hypotheses.size(); ++i)
    add_chrf_statistics(stats, hypotheses[i], references[i]);
  return stats;
}

double sentence_chrf(const std::string& hypothesis, const std::string& reference) {
  return corpus_chrf({hypothesis}, {reference});
}

}  // namespace dtrain::data
