// The keep mask of the fused dropout + residual add (backend_kernels.def: dropout_add), one
// function for every backend (host and device) and the tests, so that forward and backward, CPU and
// CUDA, drop the same elements. Element i of a call with key `seed` is kept iff
//   u_i >= p,  u_i = uniform_float(philox4x32_10(counter (i / 4 lo, i / 4 hi, 0, 0),
//                                                key (seed lo, seed hi)).v[i % 4])
// where u_i is a multiple of 2^-24 in [0, 1) and p is compared as an f32, for every dtype. So
// P(keep) = 1 - ceil(f32(p) 2^24) / 2^24, within 2^-23 of 1 - p. One Philox call serves 4 elements.
#pragma once
#include <cstdint>

#include "core/backend/cuda/philox.h"

namespace dtrain {

// The four Philox words of elements [4 group, 4 group + 4).
DTRAIN_PHILOX_HD cuda::Philox4 dropout_add_words(uint64_t seed, uint64_t group) {
  return cuda::philox4x32_10(
      cuda::Philox4{{static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32), 0u, 0u}},
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Whether the element whose Philox word is `word` is kept.
DTRAIN_PHILOX_HD bool dropout_add_keep_word(uint32_t word, float p) {
  return cuda::uniform_float(word) >= p;
}

// Whether element i is kept (one Philox call; the kernels share one call among 4 elements).
DTRAIN_PHILOX_HD bool dropout_add_keep(uint64_t seed, uint64_t i, float p) {
  return dropout_add_keep_word(dropout_add_words(seed, i / 4).v[i % 4], p);
}

// The scale of a kept element, 1 / (1 - p), and 0 for p = 1 (everything dropped: 0, not 0 * inf).
inline double dropout_add_scale(double p) { return p < 1.0 ? 1.0 / (1.0 - p) : 0.0; }

}  // namespace dtrain
