#include "core/data/sampler.h"

#include <numeric>
#include <utility>

#include "core/data/seeding.h"
#include "core/error.h"
#include "core/tensor/random.h"

namespace dtrain::data {

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  DTRAIN_CHECK(n >= 0, "epoch_permutation: n = ", n, " must be >= 0");
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  Generator gen(combine_seed(seed, static_cast<uint64_t>(epoch)));
  // Fisher-Yates: position i takes a uniform pick among the first i + 1 remaining elements.
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(uniform_below(gen, static_cast<uint64_t>(i + 1)));
    std::swap(p[i], p[j]);
  }
  return p;
}

SequentialSampler::SequentialSampler(int64_t n) : n_(n) {
  DTRAIN_CHECK(n >= 0, "SequentialSampler: n = ", n, " must be >= 0");
}

std::vector<int64_t> SequentialSampler::epoch_indices(int64_t /*epoch*/) const {
  std::vector<int64_t> p(static_cast<size_t>(n_));
  std::iota(p.begin(), p.end(), 0);
  return p;
}

RandomSampler::RandomSampler(int64_t n, uint64_t seed) : n_(n), seed_(seed) {
  DTRAIN_CHECK(n >= 0, "RandomSampler: n = ", n, " must be >= 0");
}

std::vector<int64_t> RandomSampler::epoch_indices(int64_t epoch) const {
  return epoch_permutation(n_, seed_, epoch);
}

}  // namespace dtrain::data
