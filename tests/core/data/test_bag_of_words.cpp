// core/data/bag_of_words: lower-cased word splitting and the naive Bayes baseline against values
// computed by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/data/bag_of_words.h"

using namespace dtrain::data;

TEST(BagOfWords, LowercaseWords) {
  EXPECT_EQ(lowercase_words("Don't PANIC, 42 times!\n-- caf\xc3\xa9"),
            (std::vector<std::string>{"don't", "panic", "42", "times", "caf\xc3\xa9"}));
  EXPECT_TRUE(lowercase_words(" -- ** -- ").empty());
}

// Two classes, three training texts, vocabulary V = {a, b, c} (|V| = 3), alpha = 1:
//   class 0: "a a b", "a"  -> n_a = 3, n_b = 1, n_c = 0, n = 4, P(0) = 2/3
//   class 1: "b c"         -> n_a = 0, n_b = 1, n_c = 1, n = 2, P(1) = 1/3
//   P(w | 0) = (n_w + 1) / 7:  a 4/7, b 2/7, c 1/7
//   P(w | 1) = (n_w + 1) / 5:  a 1/5, b 2/5, c 2/5
TEST(BagOfWords, NaiveBayesMatchesHandComputedScores) {
  const NaiveBayes bayes({"a a b", "b c", "A"}, {0, 1, 0}, 2);
  EXPECT_EQ(bayes.vocabulary_size(), 3);
  // "c c z": z is outside V and skipped.
  const std::vector<double> s = bayes.log_scores("c c z");
  EXPECT_NEAR(s[0], std::log(2.0 / 3) + 2 * std::log(1.0 / 7), 1e-12);
  EXPECT_NEAR(s[1], std::log(1.0 / 3) + 2 * std::log(2.0 / 5), 1e-12);
  EXPECT_EQ(bayes.predict("c c z"), 1);  // -1.099 - 1.833 = -2.931 beats -0.405 - 3.892 = -4.297
  // "a": log(2/3) + log(4/7) = -0.965 beats log(1/3) + log(1/5) = -2.708.
  EXPECT_EQ(bayes.predict("a"), 0);
  // "b": log(2/3 * 2/7) = -1.658 beats log(1/3 * 2/5) = -2.015; nothing known: the prior, class 0.
  EXPECT_EQ(bayes.predict("b"), 0);
  EXPECT_EQ(bayes.predict("zzz"), 0);
  EXPECT_DOUBLE_EQ(bayes.accuracy({"a", "c c", "b"}, {0, 1, 1}), 2.0 / 3);
}
