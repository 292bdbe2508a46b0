#include "core/tensor/random.h"

#include <cmath>
#include <cstring>

namespace dtrain {

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Generator::manual_seed(uint64_t seed) {
  uint64_t x = seed;
  for (auto& w : s_) w = splitmix64(x);
  has_cached_normal_ = false;
}

// xoshiro256**: result = rotl(s1 * 5, 7) * 9, then the xor/shift state transition.
uint64_t Generator::next_u64() {
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

// Box-Muller: two uniforms u1 in (0,1], u2 in [0,1) give two independent standard normals
// r cos(theta), r sin(theta) with r = sqrt(-2 ln u1), theta = 2 pi u2.
double Generator::next_normal() {
  if (has_cached_normal_) {
    has_cached_normal_ = false;
    return cached_normal_;
  }
  double u1 = 1.0 - next_double();
  double u2 = next_double();
  double r = std::sqrt(-2.0 * std::log(u1));
  double theta = 2.0 * M_PI * u2;
  cached_normal_ = r * std::sin(theta);
  has_cached_normal_ = true;
  return r * std::cos(theta);
}

std::array<uint64_t, 6> Generator::state() const {
  uint64_t cached = 0;
  std::memcpy(&cached, &cached_normal_, 8);
  return {s_[0], s_[1], s_[2], s_[3], has_cached_normal_ ? 1u : 0u, cached};
}

void Generator::set_state(const std::array<uint64_t, 6>& s) {
  for (int i = 0; i < 4; ++i) s_[i] = s[i];
  has_cached_normal_ = s[4] != 0;
  std::memcpy(&cached_normal_, &s[5], 8);
}

Generator& default_generator() {
  static Generator gen;
  return gen;
}

}  // namespace dtrain
