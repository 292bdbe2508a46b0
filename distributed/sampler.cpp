#include "distributed/sampler.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace dtrain::dist {

std::pair<int64_t, int64_t> DistributedSampler::shard_range(int64_t n, int rank, int world) {
  DTRAIN_CHECK(world > 0 && rank >= 0 && rank < world, "shard_range: rank ", rank,
               " is not in a world of ", world);
  const int64_t base = n / world, extra = n % world;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

DistributedSampler::DistributedSampler(DistributedSamplerOptions options) : options_(options) {
  const auto& o = options_;
  DTRAIN_CHECK(o.world_size > 0 && o.rank >= 0 && o.rank < o.world_size,
               "DistributedSampler: rank ", o.rank, " is not in a world of ", o.world_size);
  DTRAIN_CHECK(o.dataset_size >= 0, "DistributedSampler: dataset_size ", o.dataset_size,
               " is negative");
  DTRAIN_CHECK(o.global_batch_size > 0 && o.global_batch_size % o.world_size == 0,
               "DistributedSampler: the global batch of ", o.global_batch_size,
               " samples does not split evenly over ", o.world_size,
               " ranks; pick a global batch size that is a multiple of the number of ranks");
}

int64_t DistributedSampler::num_batches() const {
  const int64_t full = options_.dataset_size / options_.global_batch_size;
  const int64_t tail = options_.dataset_size % options_.global_batch_size;
  // A short batch is kept only when every rank gets at least one of its samples.
  return full + (!options_.drop_last && tail >= options_.world_size ? 1 : 0);
}

int64_t DistributedSampler::global_batch_samples(int64_t k) const {
  DTRAIN_CHECK(k >= 0 && k < num_batches(), "DistributedSampler: batch ", k, " out of range (",
               num_batches(), " batches per epoch)");
  return std::min(options_.global_batch_size,
                  options_.dataset_size - k * options_.global_batch_size);
}

std::vector<int64_t> DistributedSampler::permutation(int64_t epoch) const {
  if (options_.shuffle) return data::epoch_permutation(options_.dataset_size, options_.seed, epoch);
  std::vector<int64_t> order(static_cast<size_t>(options_.dataset_size));
  std::iota(order.begin(), order.end(), int64_t{0});
  return order;
}

std::vector<int64_t> DistributedSampler::global_batch(int64_t epoch, int64_t k) const {
  const int64_t n = global_batch_samples(k);
  std::vector<int64_t> perm = permutation(epoch);
  auto first = perm.begin() + k * options_.global_batch_size;
  return std::vector<int64_t>(first, first + n);
}

std::vector<int64_t> DistributedSampler::local_batch(int64_t epoch, int64_t k) const {
  std::vector<int64_t> batch = global_batch(epoch, k);
  auto [b, e] = shard_range(static_cast<int64_t>(batch.size()), options_.rank, options_.world_size);
  return std::vector<int64_t>(batch.begin() + b, batch.begin() + e);
}

std::vector<int64_t> DistributedSampler::epoch_indices(int64_t epoch) const {
  std::vector<int64_t> perm = permutation(epoch);
  std::vector<int64_t> mine;
  const int64_t batches = num_batches();
  mine.reserve(static_cast<size_t>(batches * local_batch_size()));
  for (int64_t k = 0; k < batches; ++k) {
    const int64_t first = k * options_.global_batch_size;
    auto [b, e] = shard_range(global_batch_samples(k), options_.rank, options_.world_size);
    mine.insert(mine.end(), perm.begin() + first + b, perm.begin() + first + e);
  }
  return mine;
}

double DistributedSampler::loss_weight(int64_t k) const {
  const int64_t n = global_batch_samples(k);
  auto [b, e] = shard_range(n, options_.rank, options_.world_size);
  return static_cast<double>(e - b) * options_.world_size / static_cast<double>(n);
}

std::vector<int64_t> EvalShardSampler::scored(int64_t dataset_size, int64_t sample) {
  if (sample <= 0 || sample >= dataset_size) {
    std::vector<int64_t> all(static_cast<size_t>(dataset_size));
    std::iota(all.begin(), all.end(), int64_t{0});
    return all;
  }
  constexpr uint64_t kEvalSampleSeed = 0x65766131;  // a constant: the same subset for every run
  std::vector<int64_t> order = data::epoch_permutation(dataset_size, kEvalSampleSeed, 0);
  order.resize(static_cast<size_t>(sample));
  std::sort(order.begin(), order.end());
  return order;
}

EvalShardSampler::EvalShardSampler(int64_t dataset_size, int rank, int world_size, int64_t sample) {
  const std::vector<int64_t> all = scored(dataset_size, sample);
  const auto [begin, end] =
      DistributedSampler::shard_range(static_cast<int64_t>(all.size()), rank, world_size);
  mine_.assign(all.begin() + begin, all.begin() + end);
}

std::vector<int64_t> EvalShardSampler::epoch_indices(int64_t) const { return mine_; }

}  // namespace dtrain::dist
