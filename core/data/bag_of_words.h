// A bag-of-words baseline for text classification: multinomial naive Bayes with Laplace smoothing on
// lowercase word counts. It is what a learned classifier has to beat: a model that ignores word order
// entirely and fits in one pass over the training texts.
//   score(c | d) = log P(c) + sum over the words w of d that the training texts hold of
//                  count(w in d) * log P(w | c)
//   P(c) = N_c / N                                (N_c: training texts of class c)
//   P(w | c) = (n_wc + alpha) / (n_c + alpha |V|) (n_wc: occurrences of w in class c's texts,
//                                                  n_c = sum over w of n_wc, V: the training words)
// A word outside V says nothing about the class and is skipped.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/data/vocab.h"

namespace dtrain::data {

class NaiveBayes {
 public:
  // Counts the words of `texts` (lowercase_words), text i of class labels[i] in [0, num_classes).
  // alpha > 0 is the Laplace smoothing count.
  NaiveBayes(const std::vector<std::string>& texts, const std::vector<int32_t>& labels,
             int32_t num_classes, double alpha = 1.0);
  // score(c | text) for every class (unnormalised log probabilities).
  std::vector<double> log_scores(std::string_view text) const;
  // The class with the highest score; the lowest class among equal scores.
  int32_t predict(std::string_view text) const;
  // The fraction of `texts` whose prediction is their label (0 for no texts).
  double accuracy(const std::vector<std::string>& texts, const std::vector<int32_t>& labels) const;

  int32_t num_classes() const { return num_classes_; }
  int64_t vocabulary_size() const { return static_cast<int64_t>(word_ids_.size()); }

 private:
  int32_t num_classes_;
  std::unordered_map<std::string, int64_t> word_ids_;
  std::vector<double> log_prior_;       // [class]
  std::vector<double> log_likelihood_;  // [word * num_classes + class]
};

}  // namespace dtrain::data
