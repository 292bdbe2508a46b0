#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "core/data/data_loader.h"
#include "core/data/sampler.h"
#include "core/error.h"

using namespace dtrain;
using namespace dtrain::data;

namespace {

// A dataset that records what it was asked for: input holds the indices, target the batch's
// augmentation seed (as the bits of an i64), and it can be slow or fail on a chosen sample.
class ProbeDataset : public Dataset {
 public:
  explicit ProbeDataset(int64_t n, int64_t fail_on = -1, int sleep_ms = 0)
      : n_(n), fail_on_(fail_on), sleep_ms_(sleep_ms) {}
  int64_t size() const override { return n_; }
  Batch get_batch(const std::vector<int64_t>& indices, uint64_t seed) const override {
    ++calls;
    if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
    for (int64_t i : indices)
      DTRAIN_CHECK(i != fail_on_, "ProbeDataset: sample ", i, " is unreadable");
    Batch b;
    b.input = Tensor::from_vector(indices, {static_cast<int64_t>(indices.size())}, DType::i64);
    b.target =
        Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(seed)}, {1}, DType::i64);
    b.indices = indices;
    return b;
  }
  mutable std::atomic<int> calls{0};

 private:
  int64_t n_, fail_on_;
  int sleep_ms_;
};

struct Seen {
  int64_t epoch, batch;
  std::vector<int64_t> indices;
  int64_t seed;
  bool operator==(const Seen&) const = default;
};

std::vector<Seen> run_epochs(DataLoader& loader, int64_t first_epoch, int64_t first_batch,
                             int64_t end_epoch) {
  std::vector<Seen> out;
  for (int64_t e = first_epoch; e < end_epoch; ++e) {
    loader.start_epoch(e, e == first_epoch ? first_batch : 0);
    for (;;) {
      const LoaderPosition pos = loader.position();
      auto b = loader.next();
      if (!b) break;
      out.push_back(
          {pos.epoch, pos.batch, b->input.to_vector<int64_t>(), b->target.to_vector<int64_t>()[0]});
    }
  }
  return out;
}

}  // namespace

TEST(DataLoader, DeterministicForASeedWithOrWithoutPrefetch) {
  auto ds = std::make_shared<ProbeDataset>(103);
  auto sampler = std::make_shared<RandomSampler>(103, 17);
  DataLoader a(ds, sampler, {.batch_size = 10, .seed = 5, .prefetch = 3});
  DataLoader b(ds, sampler, {.batch_size = 10, .seed = 5, .prefetch = 3});
  DataLoader sync(ds, sampler, {.batch_size = 10, .seed = 5, .prefetch = 0});
  DataLoader other_seed(ds, sampler, {.batch_size = 10, .seed = 6, .prefetch = 1});
  const auto ra = run_epochs(a, 0, 0, 3);
  EXPECT_EQ(ra, run_epochs(b, 0, 0, 3));
  EXPECT_EQ(ra, run_epochs(sync, 0, 0, 3));
  const auto ro = run_epochs(other_seed, 0, 0, 3);
  ASSERT_EQ(ra.size(), 33u);  // 11 batches per epoch, the last one of 3
  ASSERT_EQ(ro.size(), ra.size());
  EXPECT_EQ(ra[10].indices.size(), 3u);
  // The loader seed changes the augmentation seeds but not the order (that is the sampler's).
  for (size_t k = 0; k < ra.size(); ++k) {
    EXPECT_EQ(ra[k].indices, ro[k].indices);
    EXPECT_NE(ra[k].seed, ro[k].seed);
  }
  // Each epoch visits every sample once, in an order of its own.
  for (int e = 0; e < 3; ++e) {
    std::vector<int64_t> all;
    for (int k = 0; k < 11; ++k)
      all.insert(all.end(), ra[e * 11 + k].indices.begin(), ra[e * 11 + k].indices.end());
    EXPECT_EQ(all, sampler->epoch_indices(e));
  }
  EXPECT_NE(ra[0].indices, ra[11].indices);
  // The augmentation seed is one per epoch (datasets mix in the sample index), new each epoch.
  EXPECT_EQ(ra[0].seed, ra[10].seed);
  EXPECT_NE(ra[0].seed, ra[11].seed);
}

TEST(DataLoader, ResumeFromPositionMatchesUninterruptedRun) {
  auto ds = std::make_shared<ProbeDataset>(57);
  auto sampler = std::make_shared<RandomSampler>(57, 99);
  const DataLoaderOptions options{.batch_size = 8, .drop_last = true, .seed = 1234, .prefetch = 2};
  DataLoader full(ds, sampler, options);
  const auto whole = run_epochs(full, 0, 0, 4);
  ASSERT_EQ(whole.size(), 4u * 7u);  // drop_last: 57 / 8 = 7 batches per epoch

  // Interrupt after 10 batches (epoch 1, batch 3), as a checkpoint would, and resume in a new loader.
  DataLoader first(ds, sampler, options);
  std::vector<Seen> before;
  LoaderPosition saved;
  for (int64_t e = 0; before.size() < 10; ++e) {
    first.start_epoch(e);
    while (before.size() < 10) {
      auto b = first.next();
      if (!b) break;
      before.push_back({e, static_cast<int64_t>(before.size()) % 7, b->input.to_vector<int64_t>(),
                        b->target.to_vector<int64_t>()[0]});
      saved = first.position();
    }
  }
  EXPECT_EQ(saved.epoch, 1);
  EXPECT_EQ(saved.batch, 3);
  DataLoader resumed(ds, sampler, options);
  std::vector<Seen> rest = run_epochs(resumed, saved.epoch, saved.batch, 4);
  before.insert(before.end(), rest.begin(), rest.end());
  EXPECT_EQ(before, whole);

  // Resuming at the very end of an epoch gives an empty epoch; past it is an error.
  resumed.start_epoch(2, 7);
  EXPECT_FALSE(resumed.next().has_value());
  EXPECT_THROW(resumed.start_epoch(2, 8), Error);
}

TEST(DataLoader, ExceptionsReachTheConsumerInOrder) {
  auto ds = std::make_shared<ProbeDataset>(40, /*fail_on=*/25);
  DataLoader loader(ds, std::make_shared<SequentialSampler>(40), {.batch_size = 10, .prefetch = 3});
  loader.start_epoch(0);
  ASSERT_TRUE(loader.next().has_value());  // 0..9
  ASSERT_TRUE(loader.next().has_value());  // 10..19
  try {
    loader.next();  // 20..29 holds the bad sample
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sample 25 is unreadable"), std::string::npos) << e.what();
  }
  EXPECT_THROW(loader.next(), Error);  // stays failed
  EXPECT_EQ(loader.position().batch, 2);
  // A new epoch clears it; the failure happens again at the same place.
  loader.start_epoch(1);
  EXPECT_TRUE(loader.next().has_value());
}

TEST(DataLoader, PrefetchQueueIsBounded) {
  auto ds = std::make_shared<ProbeDataset>(1000);
  DataLoader loader(ds, std::make_shared<SequentialSampler>(1000),
                    {.batch_size = 1, .prefetch = 3});
  loader.start_epoch(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(ds->calls.load(), 3);  // the producer waits once 3 batches are ready
  ASSERT_TRUE(loader.next().has_value());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(ds->calls.load(), 4);
}

TEST(DataLoader, ShutdownIsPromptAndClean) {
  auto ds = std::make_shared<ProbeDataset>(10000, -1, /*sleep_ms=*/20);
  const auto t0 = std::chrono::steady_clock::now();
  {
    DataLoader loader(ds, std::make_shared<SequentialSampler>(10000),
                      {.batch_size = 4, .prefetch = 2});
    loader.start_epoch(0);
    ASSERT_TRUE(loader.next().has_value());
    // Restarting mid-epoch stops the old producer and starts over.
    loader.start_epoch(3, 100);
    auto b = loader.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->indices.front(), 400);
    loader.stop();
    EXPECT_FALSE(loader.next().has_value());
    loader.start_epoch(4);
  }  // destroyed with the producer mid-epoch, possibly inside get_batch
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 2.0);
  const int calls = ds->calls.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  EXPECT_EQ(ds->calls.load(), calls) << "a producer outlived its loader";
  EXPECT_LE(calls, 12);
}

TEST(DataLoader, CustomSamplerSuppliesIndices) {
  auto ds = std::make_shared<ProbeDataset>(100);
  // Stands in for a distributed sampler: this rank's share of the epoch.
  auto shard = std::make_shared<FunctionSampler>([](int64_t epoch) {
    std::vector<int64_t> idx;
    for (int64_t i = epoch; i < 100; i += 4) idx.push_back(i);
    return idx;
  });
  DataLoader loader(ds, shard, {.batch_size = 5, .prefetch = 1});
  const auto seen = run_epochs(loader, 1, 0, 2);
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[0].indices, (std::vector<int64_t>{1, 5, 9, 13, 17}));
  EXPECT_EQ(seen[4].indices.back(), 97);

  auto bad = std::make_shared<FunctionSampler>([](int64_t) {
    return std::vector<int64_t>{0, 100};
  });
  DataLoader out_of_range(ds, bad, {.batch_size = 2});
  EXPECT_THROW(out_of_range.start_epoch(0), Error);
}
