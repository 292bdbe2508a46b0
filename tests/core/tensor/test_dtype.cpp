// core/tensor/dtype: names and sizes, and the f16/bf16 conversions every half-precision kernel and
// checkpoint goes through: round to nearest, ties to even; overflow to infinity; NaN stays NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/tensor/dtype.h"

namespace dtrain {
namespace {

TEST(DTypeNames, RoundTripAndSizes) {
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64};
  const size_t sizes[] = {4, 8, 2, 2, 4, 8};
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(dtype_from_name(dtype_name(all[i])), all[i]) << dtype_name(all[i]);
    EXPECT_EQ(dtype_size(all[i]), sizes[i]) << dtype_name(all[i]);
  }
  EXPECT_EQ(dtype_from_name("float16"), DType::f16);
  EXPECT_EQ(dtype_from_name("bfloat16"), DType::bf16);
  EXPECT_EQ(dtype_from_name("fp32"), DType::f32);
  EXPECT_THROW(dtype_from_name("f8"), Error);
  EXPECT_TRUE(is_floating(DType::bf16));
  EXPECT_FALSE(is_floating(DType::i32));
  EXPECT_TRUE(is_half(DType::f16));
  EXPECT_FALSE(is_half(DType::f32));
}

uint16_t half_bits(float f) { return float_to_half(f).bits; }
uint16_t bf16_bits(float f) { return float_to_bf16(f).bits; }

TEST(HalfConversion, RoundsToNearestEven) {
  EXPECT_EQ(half_bits(1.0f), 0x3c00);
  EXPECT_EQ(half_bits(-2.0f), 0xc000);
  EXPECT_EQ(half_bits(-0.0f), 0x8000);
  // The spacing at 1 is 2^-10: halfway up stays at the even 1.0, three halves go up to the even 0x3c02.
  EXPECT_EQ(half_bits(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(half_bits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(half_bits(65504.0f), 0x7bff);  // the largest finite half
  EXPECT_EQ(half_bits(65519.0f), 0x7bff);  // below the halfway point to 65536
  EXPECT_EQ(half_bits(65520.0f), 0x7c00);  // rounds to infinity
  EXPECT_EQ(half_bits(std::numeric_limits<float>::infinity()), 0x7c00);
  // Subnormals: multiples of 2^-24, with ties to even as well.
  EXPECT_EQ(half_bits(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(half_bits(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(half_bits(3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(half_bits(std::ldexp(1.0f, -14)), 0x0400);  // the smallest normal
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(HalfConversion, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    Half h{static_cast<uint16_t>(bits)};
    float f = half_to_float(h);
    if (std::isnan(f)) {
      EXPECT_TRUE((bits & 0x7c00) == 0x7c00 && (bits & 0x3ff) != 0) << bits;
      continue;
    }
    ASSERT_EQ(float_to_half(f).bits, bits) << "half bits 0x" << std::hex << bits << " -> " << f;
  }
}

TEST(BFloat16Conversion, RoundsToNearestEvenAndKeepsNaN) {
  EXPECT_EQ(bf16_bits(1.0f), 0x3f80);
  // The spacing at 1 is 2^-7: halfway up stays at 1.0, three halves go up to the even 0x3f82.
  EXPECT_EQ(bf16_bits(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(bf16_bits(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(bf16_bits(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to infinity
  // A NaN whose payload is all in the low bits must not round into infinity.
  float low_nan;
  uint32_t u = 0x7f800001u;
  std::memcpy(&low_nan, &u, 4);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(low_nan))));
  for (uint32_t bits = 0; bits <= 0xffff; ++bits) {
    float f = bf16_to_float(BFloat16{static_cast<uint16_t>(bits)});
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16(f).bits, bits) << "bf16 bits 0x" << std::hex << bits;
  }
}

}  // namespace
}  // namespace dtrain
