// Internal to the CPU backend: f32 exp and erf written as straight-line polynomial arithmetic, so
// that a `#pragma omp simd` loop calling them vectorises (a call to libm's scalar expf/erff cannot,
// and makes GELU cost about ten times what its arithmetic needs). f64 kernels keep libm.
//
// Both are accurate to about one f32 ulp over the whole line (relative error <= ~2e-7 against the
// exact function, the same order as rounding the exact value to f32). The polynomial coefficients
// are minimax fits (weighted least squares iterated to equal ripple) made for these ranges.
#pragma once
#include <bit>
#include <cstdint>

namespace dtrain::cpu_detail {

// exp(t) for t <= 88 (GELU needs t <= 0); 0 below -87.3, where the f32 result would be subnormal.
//   t = n ln2 + r with n = round(t / ln2), |r| <= ln2 / 2; exp(t) = 2^n exp(r).
// ln2 is split into a head with 9 significant bits (so n * head is exact for |n| < 2^15) and a
// tail, which keeps r accurate. exp(r) = 1 + r + r^2 R(r), R of degree 4 (relative error 3e-9).
inline float exp_poly(float t) {
  constexpr float kLog2e = 1.44269504f;
  constexpr float kLn2Head = 0.693359375f;      // 355 / 512
  constexpr float kLn2Tail = -2.12194440e-4f;  // ln 2 - 355 / 512
  constexpr float kRound = 12582912.0f;         // 1.5 * 2^23: x + kRound - kRound rounds x
  const bool underflow = !(t >= -87.3f);        // also true for NaN
  const float tc = underflow ? -87.3f : t;
  const float n = (tc * kLog2e + kRound) - kRound;
  const float r = (tc - n * kLn2Head) - n * kLn2Tail;
  float p = 1.38146128e-3f;
  p = p * r + 8.36871006e-3f;
  p = p * r + 4.16683890e-2f;
  p = p * r + 1.66665211e-1f;
  p = p * r + 4.99999940e-1f;
  p = (p * r) * r + r + 1.0f;
  // 2^n from its exponent bits (n is in [-126, 128) here).
  const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  const float e = p * scale;
  return t != t ? t : (underflow ? 0.0f : e);
}

// erf(x), odd, in two pieces of |x| = a:
//   a < 1:  erf(x) = x P(x^2) = x + x (P(x^2) - 1), P of degree 6 (relative error 1.2e-9);
//   a >= 1: erf(x) = sign(x) (1 - exp(Q(a - 1))), Q ~ log erfc of degree 6 (its error moves erf by
//           at most 1.1e-9 relative). Past a = 4, erfc(a) < 1.6e-8 is below half an f32 ulp of 1,
//           so a is clamped there and the result is +-1 exactly.
inline float erf_poly(float x) {
  const float a = x < 0.0f ? -x : x;
  const float s = x * x;
  float p = 7.85386146e-5f;
  p = p * s - 8.01019371e-4f;
  p = p * s + 5.18832775e-3f;
  p = p * s - 2.68538129e-2f;
  p = p * s + 1.12835854e-1f;
  p = p * s - 3.76126260e-1f;
  p = p * s + 1.28379166e-1f;  // P(s) - 1: the leading 1 is added exactly below
  const float small = x + x * p;

  const float t = (a < 4.0f ? a : 4.0f) - 1.0f;  // NaN -> 3, replaced below
  float q = 1.86379359e-4f;
  q = q * t - 1.82938389e-3f;
  q = q * t + 9.89546161e-3f;
  q = q * t - 4.15035002e-2f;
  q = q * t - 8.43117595e-1f;
  q = q * t - 2.63896680e+0f;
  q = q * t - 1.84960556e+0f;
  const float large = 1.0f - exp_poly(q);
  const float signed_large = x < 0.0f ? -large : large;
  return x != x ? x : (a < 1.0f ? small : signed_large);
}

}  // namespace dtrain::cpu_detail
