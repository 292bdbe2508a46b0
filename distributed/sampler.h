// DistributedSampler: each rank's share of a seeded per-epoch permutation, arranged so that for a fixed
// seed and global batch size, global batch k holds the same samples whatever the world size.
//
// The epoch's permutation (data::epoch_permutation(n, seed, epoch), the same on every rank) is cut into
// global batches of global_batch_size; rank r takes the r-th of world_size equal, contiguous slices of
// each. So with world_size = 1 the single rank sees global batch k whole, and with 4 ranks each sees a
// quarter of the same samples: averaging the ranks' gradients gives the 1-rank gradient (up to float
// summation order), and a loss curve does not depend on how many processes share the run.
//
// The DataLoader takes it as its Sampler with batch_size = local_batch_size(); every rank then has the
// same number of batches per epoch, which DDP needs (each step is one collective per bucket).
//
// The last global batch of an epoch may be short (dataset size not a multiple of the global batch).
// drop_last leaves it out. Otherwise it is split as evenly as possible (rank shares differ by at most
// one sample), and loss_weight(k) gives the factor that makes the average of the ranks' mean losses
// equal the mean over the global batch. A short batch with fewer samples than ranks is still dropped:
// a rank with nothing to compute would fall out of step with the others.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "core/data/sampler.h"

namespace dtrain::dist {

struct DistributedSamplerOptions {
  int64_t dataset_size = 0;
  int64_t global_batch_size = 1;  // a multiple of world_size
  int rank = 0;
  int world_size = 1;
  uint64_t seed = 0;
  bool shuffle = true;    // false: 0, 1, 2, ... in order every epoch
  bool drop_last = true;  // leave out a short final global batch
};

class DistributedSampler : public data::Sampler {
 public:
  explicit DistributedSampler(DistributedSamplerOptions options);

  // This rank's indices for `epoch`: its slice of global batch 0, then of batch 1, ...
  std::vector<int64_t> epoch_indices(int64_t epoch) const override;

  int64_t local_batch_size() const { return options_.global_batch_size / options_.world_size; }
  // Global batches per epoch (the same on every rank).
  int64_t num_batches() const;
  // Samples in global batch k (global_batch_size except perhaps the last).
  int64_t global_batch_samples(int64_t k) const;
  // All samples of global batch k of `epoch`, in order (what one rank would see alone).
  std::vector<int64_t> global_batch(int64_t epoch, int64_t k) const;
  // This rank's share of it.
  std::vector<int64_t> local_batch(int64_t epoch, int64_t k) const;
  // local samples * world_size / global samples of batch k: scale this rank's mean loss by it so
  // that DDP's average over ranks is the mean over the whole global batch (1 for full batches).
  double loss_weight(int64_t k) const;

  const DistributedSamplerOptions& options() const { return options_; }

  // [begin, end) of `rank`'s part of n items split into `world` contiguous parts whose sizes differ
  // by at most one (the first n % world parts get the extra item).
  static std::pair<int64_t, int64_t> shard_range(int64_t n, int rank, int world);

 private:
  std::vector<int64_t> permutation(int64_t epoch) const;
  DistributedSamplerOptions options_;
};

// Evaluation: every sample exactly once over all ranks, rank r taking a contiguous part of 0..n-1
// (sizes differ by at most one; ranks may see different numbers of batches, so reduce metrics as sums
// once at the end, e.g. all_reduce_value(pg, loss_sum, ReduceOp::sum)).
//
// With `sample` > 0 (and below n) a partial evaluation scores that many samples spread over the whole
// split, not its first ones (a split is often ordered: by file, by letter): the first `sample` entries of
// a permutation seeded by a constant, sorted, then shared out as above. The subset does not depend on
// the world size, the run's seed or the batch size, so partial evals of any two runs compare.
class EvalShardSampler : public data::Sampler {
 public:
  EvalShardSampler(int64_t dataset_size, int rank, int world_size, int64_t sample = 0);
  std::vector<int64_t> epoch_indices(int64_t epoch) const override;
  // The indices scored over all ranks, in order (0..n-1 without a sample).
  static std::vector<int64_t> scored(int64_t dataset_size, int64_t sample);

 private:
  std::vector<int64_t> mine_;
};

}  // namespace dtrain::dist
