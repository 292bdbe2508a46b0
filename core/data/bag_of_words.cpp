#include "core/data/bag_of_words.h"

#include <cmath>

#include "core/error.h"

namespace dtrain::data {

NaiveBayes::NaiveBayes(const std::vector<std::string>& texts, const std::vector<int32_t>& labels,
                       int32_t num_classes, double alpha)
    : num_classes_(num_classes) {
  DTRAIN_CHECK(texts.size() == labels.size(), "naive Bayes: ", texts.size(), " texts but ",
               labels.size(), " labels");
  DTRAIN_CHECK(!texts.empty(), "naive Bayes: no training texts");
  DTRAIN_CHECK(num_classes > 0 && alpha > 0, "naive Bayes: num_classes ", num_classes,
               " and alpha ", alpha, " must be positive");
  std::vector<int64_t> texts_of(num_classes, 0), words_of(num_classes, 0);
  std::vector<int64_t> counts;  // [word * num_classes + class]
  for (size_t i = 0; i < texts.size(); ++i) {
    const int32_t c = labels[i];
    DTRAIN_CHECK(c >= 0 && c < num_classes, "naive Bayes: label ", c, " of text ", i,
                 " is outside [0, ", num_classes, ")");
    ++texts_of[c];
    for (const std::string& w : lowercase_words(texts[i])) {
      auto [it, added] = word_ids_.emplace(w, static_cast<int64_t>(word_ids_.size()));
      if (added) counts.resize(counts.size() + num_classes, 0);
      ++counts[it->second * num_classes + c];
      ++words_of[c];
    }
  }
  const double n = static_cast<double>(texts.size()), v = static_cast<double>(word_ids_.size());
  log_prior_.resize(num_classes);
  for (int32_t c = 0; c < num_classes; ++c) {
    // A class without training texts can never be predicted: log 0 = -inf.
    log_prior_[c] = std::log(static_cast<double>(texts_of[c]) / n);
  }
  log_likelihood_.resize(counts.size());
  for (size_t k = 0; k < counts.size(); ++k) {
    const int32_t c = static_cast<int32_t>(k % num_classes);
    log_likelihood_[k] =
        std::log((static_cast<double>(counts[k]) + alpha) / (words_of[c] + alpha * v));
  }
}

std::vector<double> NaiveBayes::log_scores(std::string_view text) const {
  std::vector<double> scores = log_prior_;
  for (const std::string& w : lowercase_words(text)) {
    auto it = word_ids_.find(w);
    if (it == word_ids_.end()) continue;
    for (int32_t c = 0; c < num_classes_; ++c)
      scores[c] += log_likelihood_[it->second * num_classes_ + c];
  }
  return scores;
}

int32_t NaiveBayes::predict(std::string_view text) const {
  const std::vector<double> scores = log_scores(text);
  int32_t best = 0;
  for (int32_t c = 1; c < num_classes_; ++c) {
    if (scores[c] > scores[best]) best = c;
  }
  return best;
}

double NaiveBayes::accuracy(const std::vector<std::string>& texts,
                            const std::vector<int32_t>& labels) const {
  DTRAIN_CHECK(texts.size() == labels.size(), "naive Bayes: ", texts.size(), " texts but ",
               labels.size(), " labels");
  if (texts.empty()) return 0.0;
  int64_t correct = 0;
  for (size_t i = 0; i < texts.size(); ++i) correct += predict(texts[i]) == labels[i];
  return static_cast<double>(correct) / static_cast<double>(texts.size());
}

}  // namespace dtrain::data
