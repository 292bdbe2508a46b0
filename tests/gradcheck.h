// Gradient check by central finite differences in f64. For f: inputs -> output and a fixed random
// upstream gradient w, the analytic gradient of L = sum(f(x) * w) from backward() is compared with
// (L(x + eps e_i) - L(x - eps e_i)) / (2 eps) for every element i of every floating input.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"

namespace dtrain::testing {

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

inline double weighted_sum(const Tensor& out, const std::vector<double>& w) {
  std::vector<double> v = out.to_vector<double>();
  double s = 0.0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
  return s;
}

// Inputs must be f64 CPU tensors; floating ones are checked (integer inputs such as indices are
// passed through). `tol` bounds |analytic - numeric| <= tol * (1 + |numeric|).
inline void expect_gradcheck(const TensorFn& f, std::vector<Tensor> inputs, double eps = 1e-6,
                             double tol = 1e-6) {
  for (auto& x : inputs) {
    if (is_floating(x.dtype())) {
      ASSERT_EQ(x.dtype(), DType::f64) << "gradcheck needs f64 inputs";
      x = x.contiguous().detach().clone();
      x.set_requires_grad(true);
    }
  }
  Tensor out = f(inputs);
  ASSERT_TRUE(out.requires_grad()) << "the output does not depend on any input";
  Generator gen(1234);
  std::vector<double> w(static_cast<size_t>(out.numel()));
  for (auto& wi : w) wi = gen.next_double() * 2.0 - 1.0;
  out.backward(Tensor::from_vector(w, out.shape(), DType::f64));

  NoGradGuard no_grad;
  for (size_t j = 0; j < inputs.size(); ++j) {
    Tensor x = inputs[j];
    if (!is_floating(x.dtype())) continue;
    ASSERT_TRUE(x.grad().defined()) << "input " << j << " got no gradient";
    std::vector<double> analytic = x.grad().to_vector<double>();
    double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      double saved = p[i];
      p[i] = saved + eps;
      double plus = weighted_sum(f(inputs), w);
      p[i] = saved - eps;
      double minus = weighted_sum(f(inputs), w);
      p[i] = saved;
      double numeric = (plus - minus) / (2 * eps);
      EXPECT_NEAR(analytic[static_cast<size_t>(i)], numeric, tol * (1.0 + std::fabs(numeric)))
          << "input " << j << " element " << i;
    }
  }
}

}  // namespace dtrain::testing
