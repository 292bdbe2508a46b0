// Shared by the optim tests: the reference values of tests/reference/generate_optim.py and an
// elementwise comparison that reports the worst element.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/tensor/tensor.h"

namespace dtrain::testing {

inline const SafetensorsFile& optim_fixture() {
  static const SafetensorsFile file =
      load_safetensors(DTRAIN_SOURCE_DIR "/tests/reference/fixtures/optim.safetensors");
  return file;
}

// |got - want| <= rtol * max(|want|, scale) for every element, where scale is the largest |want| in
// the tensor. f32 rounding errors are relative to the operands of each operation, which are on the
// tensor's scale, so an element that passes near zero (trajectories cross it; PyTorch's CPU kernels
// fuse a + alpha * b into one rounding where ours may round twice) is held to the tensor's scale.
inline ::testing::AssertionResult all_close(const Tensor& got, const Tensor& want, double rtol) {
  if (got.shape() != want.shape()) {
    return ::testing::AssertionFailure()
           << "shape " << shape_str(got.shape()) << " vs " << shape_str(want.shape());
  }
  std::vector<double> a = got.to_vector<double>();
  std::vector<double> b = want.to_vector<double>();
  double floor = 0.0;
  for (double v : b) floor = std::max(floor, std::fabs(v));
  double worst = 0.0;
  size_t worst_i = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double err = std::fabs(a[i] - b[i]) / std::max(std::fabs(b[i]), floor);
    if (!(err <= worst)) {  // also catches NaN
      worst = err;
      worst_i = i;
      if (std::isnan(err)) break;
    }
  }
  if (worst <= rtol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "element " << worst_i << ": got " << a[worst_i] << ", want " << b[worst_i]
         << " (relative error " << worst << " > " << rtol << ")";
}

// Bitwise equality of two tensors' values.
inline ::testing::AssertionResult all_equal(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape()) {
    return ::testing::AssertionFailure()
           << "shape " << shape_str(got.shape()) << " vs " << shape_str(want.shape());
  }
  std::vector<double> a = got.to_vector<double>();
  std::vector<double> b = want.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) {
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace dtrain::testing
