// core/data/synthetic: the seeded random samples `--dataset synthetic` feeds benchmarks. A sample is
// the same whichever batch it is drawn in, values stay in range, and token targets are the next token.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "core/data/synthetic.h"

using namespace dtrain;
using namespace dtrain::data;

TEST(SyntheticImages, ShapesRangesAndASampleIsItsOwn) {
  SyntheticImages set(10, 3, 8, 7, /*seed=*/5);
  EXPECT_EQ(set.size(), 10);
  const Batch b = set.get_batch({1, 4, 9}, 0);
  EXPECT_EQ(b.input.shape(), (Shape{3, 3, 8, 8}));
  EXPECT_EQ(b.target.shape(), (Shape{3}));
  EXPECT_EQ(b.indices, (std::vector<int64_t>{1, 4, 9}));
  const std::vector<float> x = b.input.to_vector<float>();
  for (float v : x) {
    ASSERT_GE(v, -1.0f);
    ASSERT_LT(v, 1.0f);
  }
  for (int64_t y : b.target.to_vector<int64_t>()) {
    EXPECT_GE(y, 0);
    EXPECT_LT(y, 7);
  }
  // Sample 4 alone is the batch's second row; samples differ; another seed draws other pixels.
  const Batch one = set.get_batch({4}, 123);
  const std::vector<float> x4 = one.input.to_vector<float>();
  EXPECT_EQ(x4, std::vector<float>(x.begin() + 192, x.begin() + 384));
  EXPECT_NE(x4, std::vector<float>(x.begin(), x.begin() + 192));
  EXPECT_NE(SyntheticImages(10, 3, 8, 7, 6).get_batch({4}, 0).input.to_vector<float>(), x4);
  EXPECT_THROW(set.get_batch({10}, 0), Error);
  EXPECT_THROW(SyntheticImages(10, 0, 8, 7, 5), Error);
}

TEST(SyntheticTokens, TargetIsTheNextTokenAndIdsFitTheVocabulary) {
  SyntheticTokens set(6, 5, 11, /*seed=*/2);
  const Batch b = set.get_batch({0, 5}, 0);
  EXPECT_EQ(b.input.shape(), (Shape{2, 5}));
  EXPECT_EQ(b.target.shape(), (Shape{2, 5}));
  const std::vector<int64_t> in = b.input.to_vector<int64_t>(), out = b.target.to_vector<int64_t>();
  for (size_t row = 0; row < 2; ++row) {
    for (size_t t = 0; t + 1 < 5; ++t) EXPECT_EQ(out[row * 5 + t], in[row * 5 + t + 1]);
  }
  for (int64_t id : in) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 11);
  }
  EXPECT_EQ(set.get_batch({5}, 9).input.to_vector<int64_t>(),
            std::vector<int64_t>(in.begin() + 5, in.end()));
  EXPECT_THROW(SyntheticTokens(6, 5, 0, 2), Error);
}
