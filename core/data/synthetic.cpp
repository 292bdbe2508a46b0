#include "core/data/synthetic.h"

#include "core/data/seeding.h"

namespace dtrain::data {

namespace {

// The k-th 64-bit word of sample i's stream.
uint64_t draw(uint64_t seed, int64_t i, int64_t k) {
  return combine_seed(combine_seed(seed, static_cast<uint64_t>(i)), static_cast<uint64_t>(k));
}

void check_sizes(const char* what, std::initializer_list<int64_t> sizes) {
  for (int64_t s : sizes) {
    DTRAIN_CHECK(s > 0, what, ": every size must be positive, got ", s);
  }
}

}  // namespace

SyntheticImages::SyntheticImages(int64_t size, int64_t channels, int64_t image_size,
                                 int64_t classes, uint64_t seed)
    : size_(size), channels_(channels), image_size_(image_size), classes_(classes), seed_(seed) {
  check_sizes("synthetic images", {size, channels, image_size, classes});
}

Batch SyntheticImages::get_batch(const std::vector<int64_t>& indices, uint64_t) const {
  check_batch_indices(indices, size_, "synthetic images");
  const int64_t pixels = channels_ * image_size_ * image_size_;
  std::vector<float> x(indices.size() * static_cast<size_t>(pixels));
  std::vector<int64_t> y(indices.size());
  for (size_t b = 0; b < indices.size(); ++b) {
    for (int64_t p = 0; p < pixels; ++p) {
      // The top 24 bits as a fraction in [0, 1), mapped to [-1, 1).
      const double u = static_cast<double>(draw(seed_, indices[b], p + 1) >> 40) / 16777216.0;
      x[b * static_cast<size_t>(pixels) + static_cast<size_t>(p)] =
          static_cast<float>(2.0 * u - 1.0);
    }
    y[b] = static_cast<int64_t>(draw(seed_, indices[b], 0) % static_cast<uint64_t>(classes_));
  }
  Batch batch;
  const auto n = static_cast<int64_t>(indices.size());
  batch.input = Tensor::from_vector(x, {n, channels_, image_size_, image_size_});
  batch.target = Tensor::from_vector(y, {n}, DType::i64);
  batch.indices = indices;
  return batch;
}

SyntheticTokens::SyntheticTokens(int64_t size, int64_t seq_len, int64_t vocab, uint64_t seed)
    : size_(size), seq_len_(seq_len), vocab_(vocab), seed_(seed) {
  check_sizes("synthetic tokens", {size, seq_len, vocab});
}

Batch SyntheticTokens::get_batch(const std::vector<int64_t>& indices, uint64_t) const {
  check_batch_indices(indices, size_, "synthetic tokens");
  const auto t = static_cast<size_t>(seq_len_);
  std::vector<int64_t> input(indices.size() * t), target(indices.size() * t);
  for (size_t b = 0; b < indices.size(); ++b) {
    // A window of seq_len + 1 tokens: the input is its first seq_len, the target its last seq_len.
    for (size_t k = 0; k <= t; ++k) {
      const auto token = static_cast<int64_t>(draw(seed_, indices[b], static_cast<int64_t>(k)) %
                                              static_cast<uint64_t>(vocab_));
      if (k < t) input[b * t + k] = token;
      if (k > 0) target[b * t + k - 1] = token;
    }
  }
  Batch batch;
  const auto n = static_cast<int64_t>(indices.size());
  batch.input = Tensor::from_vector(input, {n, seq_len_}, DType::i64);
  batch.target = Tensor::from_vector(target, {n, seq_len_}, DType::i64);
  batch.indices = indices;
  return batch;
}

}  // namespace dtrain::data
