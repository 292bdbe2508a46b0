// Seeded, reproducible random numbers: xoshiro256** seeded through splitmix64. The state is four
// words, so checkpoints save and restore it exactly.
#pragma once
#include <array>
#include <cstdint>

namespace dtrain {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0x5eed) { manual_seed(seed); }
  void manual_seed(uint64_t seed);
  uint64_t next_u64();
  double next_double() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }  // [0, 1)
  double next_normal();  // standard normal (Box-Muller, the second value cached)
  // 4 state words, whether a normal is cached, and its bits: restoring it continues the stream exactly.
  std::array<uint64_t, 6> state() const;
  void set_state(const std::array<uint64_t, 6>& s);

 private:
  std::array<uint64_t, 4> s_{};
  bool has_cached_normal_ = false;
  double cached_normal_ = 0.0;
};

// The process-wide default generator (used by Tensor::rand/randn, dropout, init).
Generator& default_generator();
inline void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace dtrain
