// Internal to the CPU backend: f32 exp and erf written as straight-line polynomial arithmetic, so
// that a `#pragma omp simd` loop calling them vectorises (a loop that calls libm's scalar expf or
// erff per element cannot; GELU's kernels run 3-4x faster this way). f64 kernels keep libm.
//
// Checked against libm's f64 functions at every f32 input: erf_poly is within 9.4e-8 relative
// (1.32 ulp; libm's erff: 0.97 ulp), exp_poly within 8.3e-8 on [-87, 0] (0.99 ulp). The
// coefficients are minimax fits (weighted least squares iterated to equal ripple) for these ranges.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

// Builds a hot loop three times, for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline the
// rest of the project targets, and lets the loader pick the widest the CPU runs (an ifunc). The
// function's body must inline its callees (always_inline) so that each copy vectorises for its ISA.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define DTRAIN_CPU_CLONES [[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]]
#else
#define DTRAIN_CPU_CLONES
#endif

namespace dtrain::cpu_detail {

// c ? a : b as a bitwise blend. A `?:` between computed floats becomes a branch that GCC keeps
// (without -fno-trapping-math it may not evaluate both sides unconditionally), and a branch stops
// the loop from vectorising; the blend evaluates both sides by construction.
[[gnu::always_inline]] inline float blend(bool c, float a, float b) {
  const uint32_t mask = 0u - static_cast<uint32_t>(c);
  return std::bit_cast<float>((std::bit_cast<uint32_t>(a) & mask) |
                              (std::bit_cast<uint32_t>(b) & ~mask));
}

// exp(t) for t <= 88 (GELU needs t <= 0); 0 below -87.3, where the f32 result would be subnormal.
//   t = n ln2 + r with n = round(t / ln2), |r| <= ln2 / 2; exp(t) = 2^n exp(r).
// ln2 is split into a head with 9 significant bits (so n * head is exact for |n| < 2^15) and a
// tail, which keeps r accurate. exp(r) = 1 + r + r^2 R(r), R of degree 4 (relative error 3e-9).
[[gnu::always_inline]] inline float exp_poly(float t) {
  constexpr float kLog2e = 1.44269504f;
  constexpr float kLn2Head = 0.693359375f;     // 355 / 512
  constexpr float kLn2Tail = -2.12194440e-4f;  // ln 2 - 355 / 512
  constexpr float kRound = 12582912.0f;        // 1.5 * 2^23: (x + kRound) - kRound = round(x)
  const bool is_nan = t != t;
  const bool in_range = t >= -87.3f;
  const float tc = blend(in_range, t, -87.3f);
  const float n = (tc * kLog2e + kRound) - kRound;
  const float r = (tc - n * kLn2Head) - n * kLn2Tail;
  float p = 1.38146128e-3f;
  p = p * r + 8.36871006e-3f;
  p = p * r + 4.16683890e-2f;
  p = p * r + 1.66665211e-1f;
  p = p * r + 4.99999940e-1f;
  p = (p * r) * r + r + 1.0f;
  // 2^n from its exponent bits (n is in [-126, 127] here).
  const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
  const float e = blend(in_range, p * scale, 0.0f);
  return blend(is_nan, t, e);
}

// erf(x), odd, in two pieces of |x| = a:
//   a < 1:  erf(x) = x P(x^2) = x + x (P(x^2) - 1), P of degree 6 (relative error 1.2e-9);
//   a >= 1: erf(x) = sign(x) (1 - exp(Q(a - 1))), Q ~ log erfc of degree 6 (its error moves erf by
//           at most 1.1e-9 relative). Past a = 4, erfc(a) < 1.6e-8 is below half an f32 ulp of 1,
//           so a is clamped there and the result is +-1 exactly.
[[gnu::always_inline]] inline float erf_poly(float x) {
  const bool is_nan = x != x;
  const float a = std::fabs(x);
  const bool is_small = a < 1.0f;
  const float s = x * x;
  float p = 7.85386146e-5f;
  p = p * s - 8.01019371e-4f;
  p = p * s + 5.18832775e-3f;
  p = p * s - 2.68538129e-2f;
  p = p * s + 1.12835854e-1f;
  p = p * s - 3.76126260e-1f;
  p = p * s + 1.28379166e-1f;  // P(s) - 1, so that x itself is added last, with one rounding
  const float small = x + x * p;

  const bool is_clamped = !(a < 4.0f);  // also true for NaN, which is replaced below
  const float t = blend(is_clamped, 4.0f, a) - 1.0f;
  float q = 1.86379359e-4f;
  q = q * t - 1.82938389e-3f;
  q = q * t + 9.89546161e-3f;
  q = q * t - 4.15035002e-2f;
  q = q * t - 8.43117595e-1f;
  q = q * t - 2.63896680e+0f;
  q = q * t - 1.84960556e+0f;
  const float large = std::copysign(1.0f - exp_poly(q), x);
  return blend(is_nan, x, blend(is_small, small, large));
}

}  // namespace dtrain::cpu_detail
