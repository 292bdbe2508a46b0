// Stable hashes and seeded draws for splitting, shuffling and augmenting. std::hash and
// std::uniform_int_distribution are free to differ between library versions, so a held-out split or a
// per-epoch shuffle that must be the same on every machine uses these instead.
#pragma once
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "core/tensor/random.h"

namespace dtrain::data {

// FNV-1a over the bytes: h = (h ^ byte) * 0x100000001b3, starting from the offset basis.
inline uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// The splitmix64 finaliser: a bijection on 64-bit words whose output bits each depend on all input
// bits, so nearby inputs (seed, seed + 1, ...) give unrelated results.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// One seed from several parts, order-sensitive: combine(a, b) != combine(b, a).
inline uint64_t combine_seed(uint64_t seed, uint64_t part) { return mix64(seed ^ mix64(part)); }

// A uniform integer in [0, n) without the bias of next_u64() % n: the 2^64 mod n lowest values of a
// draw would map to the bottom of the range once more often than the rest, so they are redrawn.
inline uint64_t uniform_below(Generator& gen, uint64_t n) {
  DTRAIN_CHECK(n > 0, "uniform_below: n must be positive");
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t r = gen.next_u64();
    if (r >= threshold) return r % n;
  }
}

// A uniform double in [0, 1) from the top 53 bits of a hash.
inline double unit_interval(uint64_t hash) { return static_cast<double>(hash >> 11) * 0x1.0p-53; }

}  // namespace dtrain::data
