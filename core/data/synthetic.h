// Datasets of seeded random samples in a model's input shape, for benchmarks (`--dataset synthetic`):
// what a training step costs does not depend on what the pixels or tokens say. Sample i is drawn
// from combine_seed(seed, i), so it is the same in every run and on every rank.
#pragma once
#include <cstdint>
#include <vector>

#include "core/data/dataset.h"

namespace dtrain::data {

// Images f32 [B, C, S, S] uniform in [-1, 1), labels i64 [B] uniform in [0, classes).
class SyntheticImages : public Dataset {
 public:
  SyntheticImages(int64_t size, int64_t channels, int64_t image_size, int64_t classes,
                  uint64_t seed);
  int64_t size() const override { return size_; }
  // Ignores `seed` (there is no augmentation).
  Batch get_batch(const std::vector<int64_t>& indices, uint64_t seed) const override;

 private:
  int64_t size_, channels_, image_size_, classes_;
  uint64_t seed_;
};

// Token windows: input i64 [B, T] uniform in [0, vocab), target the same window shifted by one token
// (the next token of a longer drawn sequence), as a language model's text windows are.
class SyntheticTokens : public Dataset {
 public:
  SyntheticTokens(int64_t size, int64_t seq_len, int64_t vocab, uint64_t seed);
  int64_t size() const override { return size_; }
  // Ignores `seed`.
  Batch get_batch(const std::vector<int64_t>& indices, uint64_t seed) const override;

 private:
  int64_t size_, seq_len_, vocab_;
  uint64_t seed_;
};

}  // namespace dtrain::data
