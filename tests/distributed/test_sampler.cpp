// DistributedSampler: the same global batches at every world size, uneven tails, loss weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "distributed/sampler.h"

namespace dtrain::dist {
namespace {

DistributedSampler make(int64_t n, int64_t global, int rank, int world, bool drop_last = true,
                        uint64_t seed = 42) {
  return DistributedSampler({.dataset_size = n,
                             .global_batch_size = global,
                             .rank = rank,
                             .world_size = world,
                             .seed = seed,
                             .shuffle = true,
                             .drop_last = drop_last});
}

TEST(DistributedSampler, ShardRangesTileAndDifferByAtMostOne) {
  for (int64_t n : {0, 1, 7, 12, 13}) {
    for (int world = 1; world <= 5; ++world) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        auto [b, e] = DistributedSampler::shard_range(n, r, world);
        EXPECT_EQ(b, next);
        EXPECT_TRUE(e - b == n / world || e - b == n / world + 1);
        next = e;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(DistributedSampler, GlobalBatchIsTheSameAtAnyWorldSize) {
  const int64_t n = 50, global = 12;
  DistributedSampler alone = make(n, global, 0, 1);
  for (int world : {1, 2, 3, 4}) {
    for (int64_t epoch : {0, 3}) {
      for (int64_t k = 0; k < alone.num_batches(); ++k) {
        std::vector<int64_t> joined;
        for (int r = 0; r < world; ++r) {
          std::vector<int64_t> part = make(n, global, r, world).local_batch(epoch, k);
          EXPECT_EQ(static_cast<int64_t>(part.size()), global / world);
          joined.insert(joined.end(), part.begin(), part.end());
        }
        EXPECT_EQ(joined, alone.global_batch(epoch, k)) << "world " << world << " batch " << k;
      }
    }
  }
}

TEST(DistributedSampler, EpochIndicesAreTheLocalBatchesInOrder) {
  for (int world : {1, 3}) {
    for (int r = 0; r < world; ++r) {
      DistributedSampler s = make(50, 12, r, world, /*drop_last=*/false);
      std::vector<int64_t> expected;
      for (int64_t k = 0; k < s.num_batches(); ++k) {
        std::vector<int64_t> part = s.local_batch(1, k);
        expected.insert(expected.end(), part.begin(), part.end());
      }
      EXPECT_EQ(s.epoch_indices(1), expected);
    }
  }
}

TEST(DistributedSampler, PermutationIsSeededPerEpoch) {
  DistributedSampler s = make(100, 10, 0, 1);
  EXPECT_EQ(s.epoch_indices(0), s.epoch_indices(0));
  EXPECT_NE(s.epoch_indices(0), s.epoch_indices(1));
  EXPECT_NE(s.epoch_indices(0), make(100, 10, 0, 1, true, 43).epoch_indices(0));
  std::vector<int64_t> all = s.epoch_indices(5);
  std::sort(all.begin(), all.end());
  std::vector<int64_t> iota(100);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(all, iota);
}

TEST(DistributedSampler, ShortLastBatch) {
  // 51 = 4 * 12 + 3: drop_last leaves the 3 out; otherwise they are split over the ranks, unless
  // there are more ranks than samples.
  EXPECT_EQ(make(51, 12, 0, 2, true).num_batches(), 4);
  EXPECT_EQ(make(51, 12, 0, 1, false).num_batches(), 5);
  EXPECT_EQ(make(51, 12, 0, 2, false).num_batches(), 5);
  EXPECT_EQ(make(51, 12, 0, 3, false).num_batches(), 5);
  EXPECT_EQ(make(51, 12, 0, 4, false).num_batches(), 4);
  EXPECT_EQ(make(51, 12, 0, 2, false).global_batch_samples(4), 3);
  EXPECT_EQ(make(51, 12, 0, 2, false).local_batch(0, 4).size(), 2u);
  EXPECT_EQ(make(51, 12, 1, 2, false).local_batch(0, 4).size(), 1u);
  EXPECT_THROW(make(51, 12, 0, 2, true).local_batch(0, 4), Error);
}

TEST(DistributedSampler, LossWeightsMakeTheRankAverageTheGlobalMean) {
  // Tail of 3 over 2 ranks: shares of 2 and 1. Per-sample losses 1, 2 | 6: global mean 3.
  DistributedSampler r0 = make(51, 12, 0, 2, false), r1 = make(51, 12, 1, 2, false);
  EXPECT_DOUBLE_EQ(r0.loss_weight(4), 2.0 * 2 / 3);
  EXPECT_DOUBLE_EQ(r1.loss_weight(4), 1.0 * 2 / 3);
  const double mean0 = (1.0 + 2.0) / 2, mean1 = 6.0;
  EXPECT_DOUBLE_EQ((r0.loss_weight(4) * mean0 + r1.loss_weight(4) * mean1) / 2, 3.0);
  EXPECT_DOUBLE_EQ(r0.loss_weight(0), 1.0);
}

TEST(DistributedSampler, BadOptionsAreErrors) {
  EXPECT_THROW(make(50, 10, 0, 3), Error);  // 10 does not split over 3
  EXPECT_THROW(make(50, 12, 4, 4), Error);
  EXPECT_THROW(make(50, 0, 0, 1), Error);
  try {
    make(50, 10, 0, 4);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("multiple"), std::string::npos) << e.what();
  }
}

TEST(EvalShardSampler, EverySampleOnceOverAllRanks) {
  for (int world : {1, 2, 3, 4}) {
    std::vector<int64_t> all;
    for (int r = 0; r < world; ++r) {
      std::vector<int64_t> part = EvalShardSampler(10, r, world).epoch_indices(0);
      all.insert(all.end(), part.begin(), part.end());
    }
    std::vector<int64_t> iota(10);
    std::iota(iota.begin(), iota.end(), 0);
    EXPECT_EQ(all, iota);
  }
}

// A partial eval scores a subset spread over the whole split, the same at every world size, each sample
// once: not the split's first samples (splits are often ordered by file or by letter).
TEST(EvalShardSampler, PartialEvalIsASpreadSampleTheSameAtEveryWorldSize) {
  const int64_t n = 1000, sample = 100;
  const std::vector<int64_t> scored = EvalShardSampler::scored(n, sample);
  ASSERT_EQ(scored.size(), 100u);
  EXPECT_TRUE(std::is_sorted(scored.begin(), scored.end()));
  EXPECT_EQ(std::adjacent_find(scored.begin(), scored.end()), scored.end());
  // Spread: every tenth of the split holds some of the sample (the first 100 would fill one).
  for (int64_t tenth = 0; tenth < 10; ++tenth) {
    const auto in =
        std::count_if(scored.begin(), scored.end(), [&](int64_t i) { return i / 100 == tenth; });
    EXPECT_GE(in, 3) << "tenth " << tenth;
  }
  for (int world : {1, 2, 3, 4}) {
    std::vector<int64_t> all;
    for (int r = 0; r < world; ++r) {
      std::vector<int64_t> part = EvalShardSampler(n, r, world, sample).epoch_indices(0);
      all.insert(all.end(), part.begin(), part.end());
    }
    EXPECT_EQ(all, scored) << "world " << world;
  }
  // A sample as large as the split is the whole split.
  EXPECT_EQ(EvalShardSampler::scored(10, 10).size(), 10u);
  EXPECT_EQ(EvalShardSampler::scored(10, 0).front(), 0);
}

}  // namespace
}  // namespace dtrain::dist
