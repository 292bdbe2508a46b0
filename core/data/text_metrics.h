// Corpus BLEU and chrF with sacreBLEU's definitions (sacrebleu 2.x defaults), so a translation score
// printed by dtrain can be compared with a paper's "sacreBLEU" number. One reference per hypothesis.
//
// BLEU = bp * exp(sum_n log(p_n) / N), N = 4, p_n = clipped n-gram matches / hypothesis n-grams (in %),
// bp = exp(1 - r/c) when c < r (c, r: total hypothesis and reference lengths in tokens), else 1.
// Smoothing 'exp' (mteval-v13a's): the k-th order with no match gets p_n = 100 / (2^k * total_n).
// chrF = F_beta (beta 2) of the character n-gram precision and recall averaged over n = 1..6, with
// whitespace removed before counting.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dtrain::data {

// sacreBLEU's tokenizers: '13a' (mteval-v13a, its default), 'zh' (each CJK character a token, the rest
// as 13a's regular expressions), 'char' (every character a token) and 'none' (split on whitespace).
enum class BleuTokenizer { k13a, kZh, kChar, kNone };

// The tokenizer of a sacreBLEU name ("13a", "zh", "char", "none"); anything else is a dtrain::Error.
BleuTokenizer bleu_tokenizer_from_name(std::string_view name);

// What sacreBLEU's tokenizer returns for one UTF-8 line: tokens joined by single spaces. (BLEU strips
// trailing whitespace from a line before tokenizing it; this function does not.)
std::string bleu_tokenize(std::string_view line, BleuTokenizer tokenizer);

struct BleuScore {
  double score = 0;                       // 0-100
  std::array<double, 4> precisions = {};  // p_1..p_4 in %, after smoothing
  std::array<int64_t, 4> counts = {};     // clipped matches per order
  std::array<int64_t, 4> totals = {};     // hypothesis n-grams per order
  double bp = 0;                          // brevity penalty
  int64_t sys_len = 0;                    // hypothesis tokens, all segments
  int64_t ref_len = 0;                    // reference tokens, all segments
};

// sacrebleu.corpus_bleu(hypotheses, [references], tokenize=...): statistics summed over all segments,
// then one score. effective_order (off for corpus BLEU, as in sacreBLEU) averages only over the orders
// for which the hypotheses have n-grams at all. Different counts of hypotheses and references are an
// error.
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses,
                      const std::vector<std::string>& references,
                      BleuTokenizer tokenizer = BleuTokenizer::k13a, bool effective_order = false);

// sacrebleu.sentence_bleu(hypothesis, [reference], tokenize=...): one segment, effective order on.
BleuScore sentence_bleu(const std::string& hypothesis, const std::string& reference,
                        BleuTokenizer tokenizer = BleuTokenizer::k13a);

// sacrebleu.corpus_chrf(hypotheses, [references]): char order 6, word order 0, beta 2, whitespace
// removed; 0-100.
double corpus_chrf(const std::vector<std::string>& hypotheses,
                   const std::vector<std::string>& references);

// sacrebleu.sentence_chrf(hypothesis, [reference]).
double sentence_chrf(const std::string& hypothesis, const std::string& reference);

// Both scores from statistics summed over segments, so that a corpus scored in parts (batches, ranks)
// gets the score of the whole: BLEU and chrF are not means of the parts' scores, but the parts'
// statistics add up.
//
// BLEU from `statistics`' counts, totals, sys_len and ref_len (the rest is ignored and recomputed):
// corpus_bleu of a corpus equals bleu_from_statistics of its parts' corpus_bleu statistics, summed.
BleuScore bleu_from_statistics(const BleuScore& statistics, bool effective_order = false);

// chrF's statistics per character n-gram order 1..6: {hypothesis n-grams, reference n-grams, matches}.
inline constexpr int kChrfOrder = 6;
using ChrfStatistics = std::array<std::array<int64_t, 3>, kChrfOrder>;
// The statistics of a corpus (summed over its segments), and the chrF of summed statistics:
// corpus_chrf(h, r) == chrf_from_statistics(chrf_statistics(h, r)).
ChrfStatistics chrf_statistics(const std::vector<std::string>& hypotheses,
                               const std::vector<std::string>& references);
double chrf_from_statistics(const ChrfStatistics& statistics);

}  // namespace dtrain::data
