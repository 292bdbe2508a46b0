// The CUDA parity harness (ggml's test-backend-ops is the model): the same inputs go through the CPU
// backend (the reference) and the CUDA backend, and the results are compared by their normalised mean
// squared error, NMSE = sum (gpu - cpu)^2 / sum cpu^2, against a bound per dtype. A bound on NMSE
// tolerates a few last-bit differences from another summation order, but not a wrong element.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"

namespace dtrain::testing {

#ifdef DTRAIN_WITH_CUDA
#define DTRAIN_SKIP_WITHOUT_CUDA()                                                      \
  do {                                                                                  \
    if (!::dtrain::cuda_available())                                                    \
      GTEST_SKIP() << "no CUDA device is visible; this check is owed on a GPU machine"; \
  } while (0)
#else
#define DTRAIN_SKIP_WITHOUT_CUDA() \
  GTEST_SKIP() << "dtrain was built without CUDA (-DDTRAIN_CUDA=OFF)"
#endif

inline Backend& cpu_be() { return backend_for(Device::cpu()); }
inline Backend& gpu_be() { return backend_for(Device::cuda(0)); }
inline Device gpu() { return Device::cuda(0); }

// Uniform values in [lo, hi) from `gen`, rounded into dtype; a CPU tensor.
inline Tensor uniform_tensor(const Shape& shape, DType dtype, Generator& gen, double lo = -1.0,
                             double hi = 1.0) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = lo + (hi - lo) * gen.next_double();
  return Tensor::from_vector(v, shape, dtype);
}

inline Tensor index_tensor(const Shape& shape, int64_t lo, int64_t hi, Generator& gen) {
  std::vector<int64_t> v(static_cast<size_t>(shape_numel(shape)));
  for (int64_t& x : v)
    x = lo + static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(hi - lo));
  return Tensor::from_vector(v, shape, DType::i64);
}

inline Tensor on_gpu(const Tensor& t) { return t.defined() ? t.to(gpu()) : t; }
// An empty tensor like t on the other device (for outputs).
inline Tensor empty_on(const Tensor& like, Device d) {
  return like.defined() ? Tensor::empty(like.shape(), like.dtype(), d) : like;
}

// NMSE bound per dtype: a handful of last-bit differences pass, a wrong element does not.
inline double nmse_bound(DType t) {
  switch (t) {
    case DType::f64:
      return 1e-20;
    case DType::f32:
      return 1e-10;
    case DType::f16:
      return 1e-5;
    case DType::bf16:
      return 1e-4;
    default:
      return 0.0;
  }
}

// Compares a CUDA result with the CPU reference. `what` names the case in the failure message.
inline void expect_parity(const Tensor& cpu_result, const Tensor& gpu_result,
                          const std::string& what, double bound_scale = 1.0) {
  ASSERT_EQ(cpu_result.shape(), gpu_result.shape()) << what;
  ASSERT_EQ(cpu_result.dtype(), gpu_result.dtype()) << what;
  ASSERT_TRUE(gpu_result.device().is_cuda()) << what;
  if (!is_floating(cpu_result.dtype())) {
    EXPECT_EQ(cpu_result.to_vector<int64_t>(), gpu_result.to_vector<int64_t>()) << what;
    return;
  }
  const std::vector<double> a = cpu_result.to_vector<double>();
  const std::vector<double> b = gpu_result.to_vector<double>();
  double err = 0.0, ref = 0.0, max_diff = 0.0;
  size_t worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      EXPECT_EQ(std::isnan(a[i]), std::isnan(b[i])) << what << ": NaN mismatch at " << i;
      continue;
    }
    const double d = a[i] - b[i];
    err += d * d;
    ref += a[i] * a[i];
    if (std::abs(d) > max_diff) max_diff = std::abs(d), worst = i;
  }
  const double nmse = err / std::max(ref, 1e-30);
  EXPECT_LE(nmse, nmse_bound(cpu_result.dtype()) * bound_scale)
      << what << " (" << dtype_name(cpu_result.dtype()) << "): NMSE " << nmse << ", largest |diff| "
      << max_diff << " at element " << worst << " (cpu " << (a.empty() ? 0.0 : a[worst])
      << ", cuda " << (b.empty() ? 0.0 : b[worst]) << ")";
}

inline const std::vector<DType>& float_dtypes() {
  static const std::vector<DType> types = {DType::f32, DType::f64, DType::f16, DType::bf16};
  return types;
}

}  // namespace dtrain::testing
