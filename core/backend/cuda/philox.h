// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a counter-based
// generator. Each 128-bit counter gives four independent 32-bit words under a 64-bit key, so element
// block i of a random fill is a pure function of (key, i) and every GPU thread computes its own values
// with no shared state. One round, with multipliers M0, M1 and Weyl increments W0, W1:
//   (hi0, lo0) = M0 * c0,  (hi1, lo1) = M1 * c2            (32 x 32 -> 64-bit products)
//   c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);  k0 += W0;  k1 += W1
// Plain C++ so the host compiler (and the tests) see the same function as the kernels.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define DTRAIN_PHILOX_HD __host__ __device__ __forceinline__
#else
#define DTRAIN_PHILOX_HD inline
#endif

namespace dtrain::cuda {

struct Philox4 {
  uint32_t v[4];
};

DTRAIN_PHILOX_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * ctr.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * ctr.v[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// A uniform float in [0, 1) from the top 24 bits (every value a multiple of 2^-24).
DTRAIN_PHILOX_HD float uniform_float(uint32_t r) { return static_cast<float>(r >> 8) * 0x1.0p-24f; }
// A uniform double in [0, 1) from 53 bits of two words.
DTRAIN_PHILOX_HD double uniform_double(uint32_t hi, uint32_t lo) {
  const uint64_t bits = (static_cast<uint64_t>(hi) << 21) ^ (lo >> 11);
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * 0x1.0p-53;
}

}  // namespace dtrain::cuda
