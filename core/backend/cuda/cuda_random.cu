// CUDA random fills from Philox4x32-10 (philox.h). Each call draws one 64-bit key from the Generator,
// so the fill is reproducible from the generator's state, and successive calls are independent.
// Thread t evaluates counter (t, 0, 0, 0) and writes elements [4t, 4t + 4) (f32 and narrower) or
// [2t, 2t + 2) (f64, which takes two words per value):
//   uniform:   a + (b - a) u,               u in [0, 1); a value that rounds to b in the storage
//              dtype becomes the largest stored value below b, so the interval stays half-open
//              (the CPU backend's rule)
//   normal:    a + b z, with the Box-Muller pair z = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2), u1 in (0, 1]
//   bernoulli: 1 if u < a else 0
// The values differ from the CPU generator's (a different algorithm); tests compare distributions.
#include <cmath>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"
#include "core/backend/cuda/kernel_utils.cuh"
#include "core/backend/cuda/philox.h"
#include "core/tensor/random.h"

namespace dtrain {
namespace cuda {
namespace {

constexpr double kTwoPi = 6.283185307179586476925;

// The value v takes once stored in dtype t (f32 compute, so f32 and integer dtypes keep it).
__device__ __forceinline__ float stored_value(float v, DType t) {
  if (t == DType::f16) return __half2float(__float2half_rn(v));
  if (t == DType::bf16) return __bfloat162float(__float2bfloat16_rn(v));
  return v;
}

__global__ void random_f32_kernel(RandomKind kind, float a, float b, float top, uint32_t k0,
                                  uint32_t k1, void* dst, DType type, int64_t n) {
  const int64_t groups = (n + 3) / 4;
  DTRAIN_GRID_STRIDE(t, groups) {
    const Philox4 r = philox4x32_10(
        Philox4{{static_cast<uint32_t>(t), static_cast<uint32_t>(t >> 32), 0u, 0u}}, k0, k1);
    float v[4];
    if (kind == RandomKind::normal) {
      for (int p = 0; p < 2; ++p) {
        // 1 - u lies in (0, 1], so the log is finite.
        const float u1 = 1.0f - uniform_float(r.v[2 * p]);
        const float u2 = uniform_float(r.v[2 * p + 1]);
        const float radius = sqrtf(-2.0f * logf(u1));
        float s, c;
        sincosf(static_cast<float>(kTwoPi) * u2, &s, &c);
        v[2 * p] = a + b * radius * c;
        v[2 * p + 1] = a + b * radius * s;
      }
    } else {
      for (int p = 0; p < 4; ++p) {
        const float u = uniform_float(r.v[p]);
        if (kind == RandomKind::uniform) {
          v[p] = a + (b - a) * u;
          if (b > a && stored_value(v[p], type) >= b) v[p] = top;
        } else {
          v[p] = u < a ? 1.0f : 0.0f;
        }
      }
    }
    for (int p = 0; p < 4; ++p) {
      const int64_t i = 4 * t + p;
      if (i < n) store_as<float>(dst, i, type, v[p]);
    }
  }
}

__global__ void random_f64_kernel(RandomKind kind, double a, double b, double top, uint32_t k0,
                                  uint32_t k1, double* dst, int64_t n) {
  const int64_t groups = (n + 1) / 2;
  DTRAIN_GRID_STRIDE(t, groups) {
    const Philox4 r = philox4x32_10(
        Philox4{{static_cast<uint32_t>(t), static_cast<uint32_t>(t >> 32), 0u, 0u}}, k0, k1);
    const double u_first = uniform_double(r.v[0], r.v[1]);
    const double u_second = uniform_double(r.v[2], r.v[3]);
    double v[2];
    if (kind == RandomKind::normal) {
      const double radius = sqrt(-2.0 * log(1.0 - u_first));
      double s, c;
      sincos(kTwoPi * u_second, &s, &c);
      v[0] = a + b * radius * c;
      v[1] = a + b * radius * s;
    } else {
      const double us[2] = {u_first, u_second};
      for (int p = 0; p < 2; ++p) {
        if (kind == RandomKind::uniform) {
          v[p] = a + (b - a) * us[p];
          if (b > a && v[p] >= b) v[p] = top;
        } else {
          v[p] = us[p] < a ? 1.0 : 0.0;
        }
      }
    }
    for (int p = 0; p < 2; ++p) {
      const int64_t i = 2 * t + p;
      if (i < n) dst[i] = v[p];
    }
  }
}

// The next 16-bit float toward -inf. f16 and bf16 are both sign-magnitude with the sign in bit 15.
uint16_t step_down_bits(uint16_t bits) {
  if (bits == 0x0000u) return 0x8001u;  // +0 -> the negative subnormal nearest zero
  if (bits & 0x8000u) return static_cast<uint16_t>(bits + 1u);  // negative: the magnitude grows
  return static_cast<uint16_t>(bits - 1u);
}
Half step_down(Half h) { return Half{step_down_bits(h.bits)}; }
BFloat16 step_down(BFloat16 h) { return BFloat16{step_down_bits(h.bits)}; }

// The largest value of dtype t below b (the top of [a, b) once stored), as the kernels compute it.
double top_below(double b, DType t) {
  switch (t) {
    case DType::f64:
      return std::nextafter(b, -HUGE_VAL);
    case DType::f16: {
      Half h = float_to_half(static_cast<float>(b));
      while (static_cast<double>(half_to_float(h)) >= b) h = step_down(h);
      return half_to_float(h);
    }
    case DType::bf16: {
      BFloat16 h = float_to_bf16(static_cast<float>(b));
      while (static_cast<double>(bf16_to_float(h)) >= b) h = step_down(h);
      return bf16_to_float(h);
    }
    default: {
      float f = static_cast<float>(b);
      while (static_cast<double>(f) >= b) f = std::nextafter(f, -HUGE_VALF);
      return f;
    }
  }
}

}  // namespace
}  // namespace cuda

using namespace cuda;

void CudaBackend::random(RandomKind kind, double a, double b, Generator& gen, const Tensor& dst) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  check_cuda_tensor(dst, "random", "dst");
  const uint64_t key = gen.next_u64();
  const uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  const int dev = dst.device().index;
  DeviceGuard guard(dev);
  cudaStream_t stream = compute_stream(dev);
  if (dst.dtype() == DType::f64) {
    random_f64_kernel<<<grid_for((n + 1) / 2), kThreads, 0, stream>>>(
        kind, a, b, top_below(b, DType::f64), k0, k1, dst.data<double>(), n);
  } else {
    random_f32_kernel<<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(
        kind, static_cast<float>(a), static_cast<float>(b),
        static_cast<float>(top_below(b, is_floating(dst.dtype()) ? dst.dtype() : DType::f32)), k0,
        k1, mdata(dst), dst.dtype(), n);
  }
  check_launch("random_kernel");
}

}  // namespace dtrain
