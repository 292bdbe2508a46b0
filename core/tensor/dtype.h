// Element types and the conversions between them. f16 and bf16 are stored as 16-bit patterns and
// converted to f32 with round-to-nearest-even, the rounding IEEE 754 and PyTorch use.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace dtrain {

enum class DType : uint8_t { f32, f64, f16, bf16, i32, i64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);                 // "f32", "f64", ...
DType dtype_from_name(const std::string& name);  // throws dtrain::Error on an unknown name
inline bool is_floating(DType t) { return t != DType::i32 && t != DType::i64; }
inline bool is_half(DType t) { return t == DType::f16 || t == DType::bf16; }

struct Half {
  uint16_t bits = 0;
};
struct BFloat16 {
  uint16_t bits = 0;
};

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// bf16 is the upper half of an f32. Rounding adds 0x7fff plus the lowest kept bit (ties to even);
// NaN is kept quiet rather than rounded into infinity.
inline BFloat16 float_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return BFloat16{static_cast<uint16_t>((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return BFloat16{static_cast<uint16_t>(u >> 16)};
}
inline float bf16_to_float(BFloat16 h) { return bits_f32(static_cast<uint32_t>(h.bits) << 16); }

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
inline float half_to_float(Half h) {
  uint32_t sign = (h.bits & 0x8000u) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1fu;
  uint32_t man = h.bits & 0x3ffu;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp == 0) {
    if (man == 0) return bits_f32(sign);
    // subnormal: value = man * 2^-24
    float v = static_cast<float>(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

inline Half float_to_half(float f) {
  uint32_t u = f32_bits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return Half{static_cast<uint16_t>(sign | 0x7e00u)};   // nan
  if (abs >= 0x477ff000u) return Half{static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to inf
  if (abs < 0x38800000u) {
    // below the smallest normal (2^-14): subnormal result man = round(|f| * 2^24), ties to even.
    // Adding 0.5 (2^-1) as a float puts the integer part in the mantissa with hardware RNE.
    float r = bits_f32(abs) + 0.5f;
    return Half{static_cast<uint16_t>(sign | (f32_bits(r) - 0x3f000000u))};
  }
  uint32_t mant_odd = (abs >> 13) & 1u;
  abs += 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round to nearest even
  return Half{static_cast<uint16_t>(sign | (abs >> 13))};
}

}  // namespace dtrain
