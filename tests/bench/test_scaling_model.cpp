// The alpha-beta scaling model's arithmetic on hand-computed cases (no processes needed). Each expected
// number has its hand computation beside it.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "distributed/ddp.h"
#include "bench/scaling_model.h"

namespace dtrain::bench {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
const Link kLink{1e-6, 1e9};  // alpha 1 us, 1 GB/s

TEST(ScalingModel, RingAllReduceByHand) {
  const double s = 1e6;  // 1 MB: S/bw = 1e-3 s
  EXPECT_EQ(ring_allreduce_seconds(kLink, 1, s), 0.0);
  EXPECT_NEAR(ring_allreduce_seconds(kLink, 2, s), 1.002e-3, 1e-15);  // 2*1*1e-6 + 2*1/2*1e-3
  EXPECT_NEAR(ring_allreduce_seconds(kLink, 4, s), 1.506e-3, 1e-15);  // 2*3*1e-6 + 2*3/4*1e-3
  EXPECT_NEAR(ring_allreduce_seconds(kLink, 8, s), 1.764e-3, 1e-15);  // 2*7*1e-6 + 2*7/8*1e-3
}

TEST(ScalingModel, TreeAllReduceByHand) {
  const double s = 1e6;
  EXPECT_EQ(tree_allreduce_seconds(kLink, 1, s), 0.0);
  EXPECT_NEAR(tree_allreduce_seconds(kLink, 2, s), 2.002e-3,
              1e-15);  // 2*ceil(log2 2)=2 * 1e-6 + 2*1e-3
  EXPECT_NEAR(tree_allreduce_seconds(kLink, 4, s), 2.004e-3, 1e-15);  // 2*2*1e-6 + 2e-3
  EXPECT_NEAR(tree_allreduce_seconds(kLink, 8, s), 2.006e-3, 1e-15);  // 2*3*1e-6 + 2e-3
  EXPECT_NEAR(tree_allreduce_seconds(kLink, 5, s), 2.006e-3, 1e-15);  // ceil(log2 5) = 3
  // Latency-bound: an empty message costs 14 alpha on a ring of 8 but 6 alpha on the tree.
  EXPECT_NEAR(ring_allreduce_seconds(kLink, 8, 0), 14e-6, 1e-18);
  EXPECT_NEAR(tree_allreduce_seconds(kLink, 8, 0), 6e-6, 1e-18);
}

TEST(ScalingModel, OtherCollectivesByHand) {
  const double s = 1e6;
  EXPECT_NEAR(reduce_scatter_seconds(kLink, 4, s), 0.753e-3, 1e-15);  // 3*1e-6 + 3/4*1e-3
  EXPECT_NEAR(all_gather_seconds(kLink, 4, s), 0.753e-3, 1e-15);      // the same
  EXPECT_NEAR(all_gather_seconds(kLink, 8, s), 0.882e-3, 1e-15);      // 7*1e-6 + 7/8*1e-3
  EXPECT_NEAR(broadcast_seconds(kLink, 4, s), 1.003e-3, 1e-15);       // 3*1e-6 + 1e-3
  EXPECT_EQ(reduce_scatter_seconds(kLink, 1, s), 0.0);
  EXPECT_EQ(broadcast_seconds(kLink, 1, s), 0.0);
  // A ring all-reduce is a reduce-scatter followed by an all-gather.
  EXPECT_NEAR(ring_allreduce_seconds(kLink, 8, s),
              reduce_scatter_seconds(kLink, 8, s) + all_gather_seconds(kLink, 8, s), 1e-15);
  EXPECT_THROW(ring_allreduce_seconds(kLink, 0, s), Error);
  EXPECT_THROW(ring_allreduce_seconds(kLink, 2, -1), Error);
  EXPECT_THROW(ring_allreduce_seconds(Link{1e-6, 0}, 2, s), Error);
  EXPECT_EQ(ring_allreduce_seconds(Link{}, 1, s), 0.0);  // one rank needs no link
}

ClusterSpec test_cluster() {
  ClusterSpec c;
  c.name = "test";
  c.gpus_per_node = 8;
  c.intra = {1e-6, 100e9};
  c.inter = {5e-6, 10e9};
  return c;
}

TEST(ScalingModel, HierarchicalAllReduceByHand) {
  const ClusterSpec c = test_cluster();
  // W = 16, g = 8, 2 nodes, S = 80 MB.
  //   reduce-scatter over 8 (intra): 7*1e-6 + 7/8 * 80e6/100e9 = 7e-6 + 0.7e-3 = 0.707e-3
  //   inter all-reduce of 80e6/8 = 10e6 bytes over 2 nodes:
  //     ring 2*1*5e-6 + 2*1/2 * 10e6/10e9 = 1.010e-3; tree 2*1*5e-6 + 2 * 1e-3 = 2.010e-3 -> ring
  //   all-gather over 8 (intra): 0.707e-3
  //   total 0.707e-3 + 1.010e-3 + 0.707e-3 = 2.424e-3
  const AllReduceEstimate e = estimate_allreduce(c, 16, 80e6);
  EXPECT_NEAR(e.seconds, 2.424e-3, 1e-12);
  EXPECT_EQ(e.algorithm, "hier(ring)");
  EXPECT_DOUBLE_EQ(allreduce_seconds(c, 16, 80e6), e.seconds);

  // W = 64 (8 nodes), S = 8e3 bytes: latency-bound, so the tree wins between nodes.
  //   reduce-scatter: 7e-6 + 7/8 * 8e3/100e9 = 7e-6 + 0.07e-6 = 7.07e-6 (all-gather the same)
  //   inter, 1e3 bytes over 8: ring 14*5e-6 + 1.75*1e3/1e10 = 70.175e-6; tree 6*5e-6 + 2e3/1e10 = 30.2e-6
  //   total 2*7.07e-6 + 30.2e-6 = 44.34e-6
  const AllReduceEstimate small = estimate_allreduce(c, 64, 8e3);
  EXPECT_NEAR(small.seconds, 44.34e-6, 1e-15);
  EXPECT_EQ(small.algorithm, "hier(tree)");
}

TEST(ScalingModel, OneNodeUsesTheIntraLink) {
  const ClusterSpec c = test_cluster();
  // W = 4 fits one node: ring over 4 on intra, 2*3*1e-6 + 2*3/4 * 1e8/1e11 = 6e-6 + 1.5e-3
  const AllReduceEstimate e = estimate_allreduce(c, 4, 1e8);
  EXPECT_NEAR(e.seconds, 1.506e-3, 1e-15);
  EXPECT_EQ(e.algorithm, "ring");
  // An empty message over 8: ring 14e-6, tree 6e-6.
  const AllReduceEstimate tiny = estimate_allreduce(c, 8, 0);
  EXPECT_NEAR(tiny.seconds, 6e-6, 1e-18);
  EXPECT_EQ(tiny.algorithm, "tree");
  const AllReduceEstimate one = estimate_allreduce(c, 1, 1e8);
  EXPECT_EQ(one.seconds, 0.0);
  EXPECT_EQ(one.algorithm, "none");
  EXPECT_THROW(estimate_allreduce(c, 0, 1e8), Error);
}

TEST(ScalingModel, PresetsAndUnknownNameListsThem) {
  EXPECT_EQ(cluster_presets().size(), 3u);
  const ClusterSpec& h100 = cluster_preset("h100-nvlink-ib400");
  EXPECT_EQ(h100.gpus_per_node, 8);
  EXPECT_DOUBLE_EQ(h100.inter.bytes_per_s, 50e9);  // 400 Gb/s / 8
  EXPECT_DOUBLE_EQ(h100.peak_flops, 989e12);
  EXPECT_DOUBLE_EQ(cluster_preset("a100-nvlink-ib200").inter.bytes_per_s, 25e9);  // 200 Gb/s / 8
  EXPECT_DOUBLE_EQ(cluster_preset("h100-nvlink-eth100").inter.bytes_per_s,
                   1.5625e9);  // 12.5 GB/s / 8
  for (const ClusterSpec& c : cluster_presets()) EXPECT_FALSE(c.source.empty()) << c.name;
  try {
    cluster_preset("nope");
    ADD_FAILURE() << "no error for 'nope'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'nope'"), std::string::npos) << e.what();
    EXPECT_NE(
        std::string(e.what()).find("h100-nvlink-ib400, a100-nvlink-ib200, h100-nvlink-eth100"),
        std::string::npos)
        << e.what();
  }
}

TEST(ScalingModel, FitRingLinkRecoversTheLink) {
  const Link truth{3e-6, 20e9};
  std::vector<CollectiveSample> samples;
  for (int n : {2, 4, 8}) {
    for (double bytes : {1e3, 1e6, 1e8}) {
      samples.push_back({n, bytes, ring_allreduce_seconds(truth, n, bytes)});
    }
  }
  const Link fit = fit_ring_link(samples);
  EXPECT_NEAR(fit.alpha_s, 3e-6, 3e-6 * 1e-9);
  EXPECT_NEAR(fit.bytes_per_s, 20e9, 20e9 * 1e-9);

  // Two sizes at one ring size are enough.
  const Link two = fit_ring_link({{4, 1e3, ring_allreduce_seconds(truth, 4, 1e3)},
                                  {4, 1e7, ring_allreduce_seconds(truth, 4, 1e7)}});
  EXPECT_NEAR(two.alpha_s, 3e-6, 3e-6 * 1e-9);
  EXPECT_NEAR(two.bytes_per_s, 20e9, 20e9 * 1e-9);
}

TEST(ScalingModel, FitRingLinkErrors) {
  EXPECT_THROW(fit_ring_link({}), Error);
  EXPECT_THROW(fit_ring_link({{4, 1e6, 1e-3}}), Error);                    // one sample
  EXPECT_THROW(fit_ring_link({{4, 1e6, 1e-3}, {4, 1e6, 1.1e-3}}), Error);  // one regressor pair
  EXPECT_THROW(fit_ring_link({{1, 1e6, 1e-3}, {4, 1e7, 1e-2}}), Error);    // one rank is no ring
  EXPECT_THROW(fit_ring_link({{2, 1e3, 1e-3}, {2, 1e6, 1e-6}}), Error);    // time falls with size
  // A negative latency is clamped to 0 and the bandwidth refitted alone: seconds = bytes/1e9 - 1e-6
  // at n = 2 (x1 = 2, x2 = bytes). With alpha = 0, 1/bw = sum(x2 y)/sum(x2^2); y = x2/1e9 - 1e-6.
  const std::vector<CollectiveSample> s = {{2, 1e5, 1e5 / 1e9 - 1e-6}, {2, 1e6, 1e6 / 1e9 - 1e-6}};
  const Link fit = fit_ring_link(s);
  EXPECT_EQ(fit.alpha_s, 0.0);
  // sum(x2 y) = (1e10 + 1e12)/1e9 - 1e-6*(1e5 + 1e6) = 1010 - 1.1 = 1008.9; sum(x2^2) = 1.01e12
  EXPECT_NEAR(1.0 / fit.bytes_per_s, 1008.9 / 1.01e12, 1e-21);
}

StepProfile grads_mib(const std::vector<double>& mib, const std::vector<double>& at,
                      double backward) {
  StepProfile p;
  p.backward_s = backward;
  for (size_t i = 0; i < mib.size(); ++i)
    p.grads.push_back({at[i], static_cast<int64_t>(mib[i] * kMiB)});
  return p;
}

TEST(ScalingModel, PlanBucketsGroupsLikeDDP) {
  const auto cap = static_cast<int64_t>(25 * kMiB);
  // Backward order 10, 10, 30 MiB: 10 + 10 = 20 < 25 stays open, + 30 = 50 closes it: one bucket.
  std::vector<BucketPlan> plan = plan_buckets(grads_mib({10, 10, 30}, {0.1, 0.2, 0.3}, 1), cap);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].bytes, static_cast<int64_t>(50 * kMiB));
  EXPECT_DOUBLE_EQ(plan[0].ready_s, 0.3);
  // 10 + 20 = 30 >= 25 closes bucket 0 (ready 0.2); 30 alone is bucket 1 (ready 0.3).
  plan = plan_buckets(grads_mib({10, 20, 30}, {0.1, 0.2, 0.3}, 1), cap);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].bytes, static_cast<int64_t>(30 * kMiB));
  EXPECT_DOUBLE_EQ(plan[0].ready_s, 0.2);
  EXPECT_EQ(plan[1].bytes, static_cast<int64_t>(30 * kMiB));
  EXPECT_DOUBLE_EQ(plan[1].ready_s, 0.3);
  // 30 >= 25 closes at once (ready 0.1); 10 + 10 stays open to the end (ready 0.3, max of its two).
  plan = plan_buckets(grads_mib({30, 10, 10}, {0.1, 0.3, 0.25}, 1), cap);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].bytes, static_cast<int64_t>(30 * kMiB));
  EXPECT_DOUBLE_EQ(plan[0].ready_s, 0.1);
  EXPECT_EQ(plan[1].bytes, static_cast<int64_t>(20 * kMiB));
  EXPECT_DOUBLE_EQ(plan[1].ready_s, 0.3);
  // The same grouping as assign_buckets on the registration-order sizes (30, 20, 10 reversed).
  const std::vector<std::vector<size_t>> ddp =
      dist::assign_buckets({30, 20, 10}, std::vector<DType>(3, DType::f32), 25);
  EXPECT_EQ(ddp, (std::vector<std::vector<size_t>>{{2, 1}, {0}}));
  EXPECT_TRUE(plan_buckets(StepProfile{}, cap).empty());
  EXPECT_THROW(plan_buckets(grads_mib({1}, {1.5}, 1), cap), Error);  // ready after backward ended
}

TEST(ScalingModel, PredictStepOneHiddenOnePartlyExposed) {
  StepProfile p;
  p.forward_s = 0.1;
  p.backward_s = 1.0;
  p.optimizer_s = 0.05;
  const auto one_gb_per_s = [](int64_t bytes) { return static_cast<double>(bytes) * 1e-9; };
  // Bucket 0: ready 0.3, 0.2 s -> runs 0.3..0.5, wholly before backward ends (hidden 0.2).
  // Bucket 1: ready 0.9, 0.4 s -> runs 0.9..1.3: hidden 0.1, exposed 0.3.
  // comm 0.6, hidden 0.3 -> fraction 0.5; step 0.1 + 1.0 + 0.3 + 0.05 = 1.45; compute 1.15.
  const StepPrediction s = predict_step(p, {{0.3, 200'000'000}, {0.9, 400'000'000}}, one_gb_per_s);
  EXPECT_EQ(s.buckets, 2);
  EXPECT_NEAR(s.comm_s, 0.6, 1e-12);
  EXPECT_NEAR(s.exposed_s, 0.3, 1e-12);
  EXPECT_NEAR(s.hidden_fraction, 0.5, 1e-12);
  EXPECT_NEAR(s.compute_s, 1.15, 1e-12);
  EXPECT_NEAR(s.step_s, 1.45, 1e-12);
  EXPECT_NEAR(s.efficiency, 1.15 / 1.45, 1e-12);
  // Queueing: bucket 1 ready at 0.4 waits for bucket 0 (ends 0.5), runs 0.5..0.9: all hidden.
  const StepPrediction q = predict_step(p, {{0.3, 200'000'000}, {0.4, 400'000'000}}, one_gb_per_s);
  EXPECT_NEAR(q.exposed_s, 0.0, 1e-12);
  EXPECT_NEAR(q.hidden_fraction, 1.0, 1e-12);
  EXPECT_NEAR(q.step_s, 1.15, 1e-12);
}

TEST(ScalingModel, BestBucketCapByHand) {
  // Backward 1 s; gradients of 1 MiB each at 0.6, 0.7, 0.8, 0.95; t = 0.2 s + 0.02 s per MiB.
  const StepProfile p = grads_mib({1, 1, 1, 1}, {0.6, 0.7, 0.8, 0.95}, 1.0);
  const auto t = [](int64_t bytes) { return 0.2 + 0.02 * static_cast<double>(bytes) / kMiB; };
  //   cap 1: four buckets of 0.22 s: 0.6-0.82, 0.82-1.04, 1.04-1.26, 1.26-1.48 -> exposed 0.48
  //   cap 2: two of 0.24 s, ready 0.7 and 0.95: 0.7-0.94, 0.95-1.19 -> exposed 0.19
  //   one bucket: 0.28 s, ready 0.95: 0.95-1.23 -> exposed 0.23
  const BucketChoice best = best_bucket_cap(p, {1, 2, kOneBucket}, t);
  EXPECT_EQ(best.cap_mb, 2.0);
  EXPECT_EQ(best.prediction.buckets, 2);
  EXPECT_NEAR(best.prediction.exposed_s, 0.19, 1e-12);
  EXPECT_NEAR(best.prediction.step_s, 1.19, 1e-12);
  EXPECT_NEAR(predict_step(p, plan_buckets(p, static_cast<int64_t>(kMiB)), t).step_s, 1.48, 1e-12);
  // Caps 50 and 25 both hold all 4 MiB in one bucket: a tie goes to the smaller cap, wherever listed.
  EXPECT_EQ(best_bucket_cap(p, {50, 25}, t).cap_mb, 25.0);
  EXPECT_EQ(default_bucket_caps_mb().size(), 9u);
  EXPECT_THROW(best_bucket_cap(p, {}, t), Error);
  EXPECT_THROW(best_bucket_cap(p, {0}, t), Error);
}

TEST(ScalingModel, EfficiencyIsOneAtWorldOne) {
  StepProfile p = grads_mib({10, 10, 30}, {0.1, 0.2, 0.3}, 0.3);
  p.forward_s = 0.15;
  p.optimizer_s = 0.02;
  const ClusterSpec& c = cluster_preset("h100-nvlink-eth100");
  const auto plan = plan_buckets(p, static_cast<int64_t>(25 * kMiB));
  const auto at_world = [&](int world) {
    return [&c, world](int64_t bytes) {
      return allreduce_seconds(c, world, static_cast<double>(bytes));
    };
  };
  const StepPrediction one = predict_step(p, plan, at_world(1));
  EXPECT_EQ(one.comm_s, 0.0);
  EXPECT_EQ(one.efficiency, 1.0);
  EXPECT_DOUBLE_EQ(one.step_s, 0.47);  // 0.15 + 0.3 + 0.02
  // 64 GPUs over 1.5625 GB/s per GPU: the 50 MiB bucket ready at the end of backward is exposed.
  const StepPrediction many = predict_step(p, plan, at_world(64));
  EXPECT_GT(many.exposed_s, 0.0);
  EXPECT_LT(many.efficiency, 1.0);
}

TEST(ScalingModel, RescaleProfileKeepsGradientsInPlace) {
  StepProfile p = grads_mib({1, 2}, {1.0, 2.0}, 2.0);
  p.forward_s = 1.0;
  p.optimizer_s = 0.5;
  const StepProfile r = rescale_profile(p, 0.1, 0.5, 0.05);
  EXPECT_DOUBLE_EQ(r.forward_s, 0.1);
  EXPECT_DOUBLE_EQ(r.backward_s, 0.5);
  EXPECT_DOUBLE_EQ(r.optimizer_s, 0.05);
  ASSERT_EQ(r.grads.size(), 2u);
  EXPECT_DOUBLE_EQ(r.grads[0].at_s, 0.25);  // 1.0 * 0.5/2.0
  EXPECT_DOUBLE_EQ(r.grads[1].at_s, 0.5);   // 2.0 * 0.5/2.0
  EXPECT_EQ(r.grads[1].bytes, p.grads[1].bytes);
  EXPECT_THROW(rescale_profile(p, 0.1, -1, 0.05), Error);
}

}  // namespace
}  // namespace dtrain::bench
