// core/data/sampler: the seeded per-epoch permutation and the sequential and random samplers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/data/sampler.h"

using namespace dtrain::data;

TEST(Sampler, EpochPermutationIsSeededPerEpoch) {
  const auto p0 = epoch_permutation(1000, 3, 0);
  const auto p1 = epoch_permutation(1000, 3, 1);
  EXPECT_EQ(p0, epoch_permutation(1000, 3, 0));
  EXPECT_NE(p0, p1);
  EXPECT_NE(p0, epoch_permutation(1000, 4, 0));
  auto sorted = p0;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
  // Shuffled: few elements stay in place (about one expected).
  int fixed = 0;
  for (int64_t i = 0; i < 1000; ++i) fixed += p0[i] == i;
  EXPECT_LT(fixed, 10);
  // Each position is uniform: element 0 lands in the first half about half the time.
  int first_half = 0;
  for (int64_t e = 0; e < 2000; ++e) {
    const auto p = epoch_permutation(10, 9, e);
    first_half += std::find(p.begin(), p.end(), 0) - p.begin() < 5;
  }
  EXPECT_NEAR(first_half, 1000, 120);
  EXPECT_EQ(SequentialSampler(4).epoch_indices(7), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(RandomSampler(50, 3).epoch_indices(2), epoch_permutation(50, 3, 2));
}
