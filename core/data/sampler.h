// Samplers decide which dataset samples a process visits in an epoch, and in what order. The DataLoader
// cuts that order into batches. A distributed run plugs in its own Sampler (each rank's share of a
// global permutation) by subclassing, or by wrapping a function in FunctionSampler; the loader does not
// care where the indices come from.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace dtrain::data {

class Sampler {
 public:
  virtual ~Sampler() = default;
  // The dataset indices to visit in `epoch`, in order. Must depend only on `epoch` (and the sampler's
  // construction arguments): a resumed run calls it again and must get the same order.
  virtual std::vector<int64_t> epoch_indices(int64_t epoch) const = 0;
};

// 0, 1, ..., n - 1 every epoch (evaluation).
class SequentialSampler : public Sampler {
 public:
  explicit SequentialSampler(int64_t n);
  std::vector<int64_t> epoch_indices(int64_t epoch) const override;

 private:
  int64_t n_;
};

// A fresh permutation of 0..n-1 each epoch, a function of (seed, epoch) only.
class RandomSampler : public Sampler {
 public:
  RandomSampler(int64_t n, uint64_t seed);
  std::vector<int64_t> epoch_indices(int64_t epoch) const override;

 private:
  int64_t n_;
  uint64_t seed_;
};

// Indices from a function of the epoch, e.g. a distributed sampler's shard.
class FunctionSampler : public Sampler {
 public:
  explicit FunctionSampler(std::function<std::vector<int64_t>(int64_t epoch)> fn)
      : fn_(std::move(fn)) {}
  std::vector<int64_t> epoch_indices(int64_t epoch) const override { return fn_(epoch); }

 private:
  std::function<std::vector<int64_t>(int64_t)> fn_;
};

// The permutation of 0..n-1 for (seed, epoch): Fisher-Yates driven by a Generator seeded with
// combine_seed(seed, epoch). Every rank of a distributed run computes the same one, so it can be
// sharded without communication.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace dtrain::data
