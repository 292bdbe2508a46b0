// Bucket planning for DDP (no processes needed) and DDP on a one-rank group.
#include <gtest/gtest.h>

#include "core/optim/sgd.h"
#include "ddp_test_util.h"
#include "distributed/ddp.h"
#include "distributed/mpi/process_group_mpi.h"

namespace dtrain::dist {
namespace {

using Plan = std::vector<std::vector<size_t>>;

TEST(Buckets, ReverseOrderClosedAtTheCap) {
  // Reverse order: 400 (open), +300 = 700 >= 500 (closed), 200 (open), +100.
  Plan plan = assign_buckets({100, 200, 300, 400}, std::vector<DType>(4, DType::f32), 500);
  EXPECT_EQ(plan, (Plan{{3, 2}, {1, 0}}));
}

TEST(Buckets, ParameterLargerThanTheCapGetsItsOwnBucket) {
  Plan plan = assign_buckets({10, 1000, 10, 10}, std::vector<DType>(4, DType::f32), 100);
  EXPECT_EQ(plan, (Plan{{3, 2, 1}, {0}}));
  plan = assign_buckets({10, 1000, 10}, std::vector<DType>(3, DType::f32), 15);
  EXPECT_EQ(plan, (Plan{{2, 1}, {0}}));
  plan = assign_buckets({1000, 1000}, std::vector<DType>(2, DType::f32), 100);
  EXPECT_EQ(plan, (Plan{{1}, {0}}));
}

TEST(Buckets, OneDTypePerBucket) {
  Plan plan = assign_buckets({8, 8, 8, 8}, {DType::f32, DType::f64, DType::f32, DType::f64}, 1000);
  // Bucket 0 is opened by the last parameter (f64), bucket 1 by the f32 before it.
  EXPECT_EQ(plan, (Plan{{3, 1}, {2, 0}}));
}

TEST(Buckets, EverythingInOneBucketUnderALargeCap) {
  Plan plan = assign_buckets({4, 4, 4}, std::vector<DType>(3, DType::f32), 25u << 20);
  EXPECT_EQ(plan, (Plan{{2, 1, 0}}));
  EXPECT_TRUE(assign_buckets({}, {}, 100).empty());
  EXPECT_THROW(assign_buckets({1, 2}, {DType::f32}, 100), Error);
}

TEST(Buckets, DdpNamesBucketsInReverseRegistrationOrder) {
  auto pg = ProcessGroupMPI::create();
  auto model =
      test::make_mlp(1, 8, 16, 4);  // fc1.weight 128, fc1.bias 16, fc2.weight 64, fc2.bias 4
  DDPOptions options;
  options.bucket_cap_mb = 300.0 / (1024 * 1024);  // 300 bytes = 75 floats
  DistributedDataParallel ddp(model, pg, options);
  auto buckets = ddp.buckets();
  ASSERT_EQ(buckets.size(), 2u);
  EXPECT_EQ(buckets[0].names, (std::vector<std::string>{"fc2.bias", "fc2.weight", "fc1.bias"}));
  EXPECT_EQ(buckets[0].numel, 4 + 64 + 16);
  EXPECT_EQ(buckets[1].names, (std::vector<std::string>{"fc1.weight"}));
  EXPECT_EQ(buckets[1].dtype, DType::f32);
}

TEST(Buckets, DdpOnOneRankLeavesGradientsAsTheyAre) {
  auto pg = ProcessGroupMPI::create();
  auto plain = test::make_mlp(2);
  auto wrapped = test::make_mlp(2);
  DistributedDataParallel ddp(wrapped, pg);
  test::Batch b = test::make_batch(0, 6);
  cross_entropy(plain->forward(b.x), b.y).backward();
  cross_entropy(wrapped->forward(b.x), b.y).backward();
  ddp.finish_gradient_synchronization();
  EXPECT_EQ(test::max_abs_diff(test::flat_grads(plain->parameters()),
                               test::flat_grads(wrapped->parameters())),
            0.0);
  // Inside no_sync, finish does nothing and gradients accumulate.
  {
    auto guard = ddp.no_sync();
    EXPECT_FALSE(ddp.sync_enabled());
    cross_entropy(wrapped->forward(b.x), b.y).backward();
    ddp.finish_gradient_synchronization();
  }
  EXPECT_TRUE(ddp.sync_enabled());
  std::vector<float> twice = test::flat_grads(plain->parameters());
  for (float& v : twice) v *= 2;
  EXPECT_LT(test::max_abs_diff(twice, test::flat_grads(wrapped->parameters())), 1e-6);
}

}  // namespace
}  // namespace dtrain::dist
