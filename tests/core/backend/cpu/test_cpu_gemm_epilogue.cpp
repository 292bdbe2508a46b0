// The CPU GEMM's epilogues (backend_kernels.def, gemm row) against their composition, with the
// operands laid out as linear() passes them: the forward y = x W^T + b (W^T a transpose flag) and
// the weight gradient dW = g^T x with db = sum_r g[r] (g^T a transpose flag), plus a strided,
// untransposed A. The CPU epilogue is defined as the composition, so the results are bitwise equal;
// a plain-loop reference checks the math itself.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/ops/reduce.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
#include "tests/error_message.h"

namespace dtrain {
namespace {

Backend& cpu() { return backend_for(Device::cpu()); }

Tensor uniform(const Shape& shape, DType dtype, Generator& gen) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = 2.0 * gen.next_double() - 1.0;
  return Tensor::from_vector(v, shape, dtype);
}

void expect_bitwise(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  EXPECT_EQ(got.contiguous().to_vector<double>(), want.contiguous().to_vector<double>()) << what;
}

// op(A)[i, p] of a row-major A stored with leading dimension lda.
double op_a(const std::vector<double>& a, const GemmArgs& g, int64_t i, int64_t p) {
  return g.trans_a ? a[static_cast<size_t>(p * g.lda + i)] : a[static_cast<size_t>(i * g.lda + p)];
}
double op_b(const std::vector<double>& b, const GemmArgs& g, int64_t p, int64_t j) {
  return g.trans_b ? b[static_cast<size_t>(j * g.ldb + p)] : b[static_cast<size_t>(p * g.ldb + j)];
}

// The plain-loop product and epilogue vector, in double.
void reference(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& bias,
               std::vector<double>& c, std::vector<double>& vec) {
  const std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  const std::vector<double> biasv = bias.to_vector<double>();
  c.assign(static_cast<size_t>(g.m * g.n), 0.0);
  vec.assign(static_cast<size_t>(g.m), 0.0);
  for (int64_t i = 0; i < g.m; ++i) {
    for (int64_t j = 0; j < g.n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < g.k; ++p) s += op_a(av, g, i, p) * op_b(bv, g, p, j);
      c[static_cast<size_t>(i * g.n + j)] =
          g.alpha * s + (g.epilogue == GemmEpilogue::bias ? biasv[static_cast<size_t>(j)] : 0.0);
    }
    for (int64_t p = 0; p < g.k; ++p) vec[static_cast<size_t>(i)] += op_a(av, g, i, p);
  }
}

void expect_near_all(const Tensor& got, const std::vector<double>& want, double tol,
                     const std::string& what) {
  const std::vector<double> v = got.contiguous().to_vector<double>();
  ASSERT_EQ(v.size(), want.size()) << what;
  for (size_t i = 0; i < v.size(); ++i) {
    ASSERT_NEAR(v[i], want[i], tol * (1.0 + std::abs(want[i]))) << what << " at " << i;
  }
}

struct Dims {
  int64_t m, n, k;
};
const Dims kDims[] = {{1, 5, 7}, {7, 5, 11}, {33, 17, 64}, {5, 1, 9}, {1, 1, 1}};

// y [rows, out] = x [rows, in] W^T + b: A = x, B = W stored [out, in] (trans_b), bias [out].
TEST(CpuGemmEpilogue, bias_equals_bias_rows_then_gemm_with_beta_one) {
  Generator gen(11);
  for (DType t : {DType::f32, DType::f64}) {
    for (const Dims& d : kDims) {
      GemmArgs g;
      g.m = d.m, g.n = d.n, g.k = d.k, g.trans_b = true, g.lda = d.k, g.ldb = d.k, g.ldc = d.n;
      Tensor x = uniform({d.m, d.k}, t, gen), w = uniform({d.n, d.k}, t, gen);
      Tensor bias = uniform({d.n}, t, gen);
      const std::string what = std::string(dtype_name(t)) + " m=" + std::to_string(d.m) +
                               " n=" + std::to_string(d.n) + " k=" + std::to_string(d.k);

      Tensor got = Tensor::empty({d.m, d.n}, t, Device::cpu());
      GemmArgs ge = g;
      ge.epilogue = GemmEpilogue::bias;
      ge.bias = bias;
      cpu().gemm(ge, x, w, got);

      Tensor want = Tensor::empty({d.m, d.n}, t, Device::cpu());
      cpu().copy(make_view(bias, {d.m, d.n}, {0, 1}, 0), want);
      GemmArgs composed = g;
      composed.beta = 1.0;
      cpu().gemm(composed, x, w, want);
      expect_bitwise(got, want, "bias " + what);

      std::vector<double> c, vec;
      reference(ge, x, w, bias, c, vec);
      expect_near_all(got, c, t == DType::f64 ? 1e-12 : 1e-5, "bias vs loops " + what);
    }
  }
}

// dW [out, in] = g^T [out, rows] x [rows, in], db[o] = sum_r g[r, o]: A = g stored [rows, out]
// (trans_a), B = x, bias [out] written.
TEST(CpuGemmEpilogue, bias_grad_equals_gemm_then_column_sums) {
  Generator gen(12);
  for (DType t : {DType::f32, DType::f64}) {
    for (const Dims& d : kDims) {
      GemmArgs g;
      g.m = d.m, g.n = d.n, g.k = d.k, g.trans_a = true, g.lda = d.m, g.ldb = d.n, g.ldc = d.n;
      Tensor grad = uniform({d.k, d.m}, t, gen), x = uniform({d.k, d.n}, t, gen);
      const std::string what = std::string(dtype_name(t)) + " m=" + std::to_string(d.m) +
                               " n=" + std::to_string(d.n) + " k=" + std::to_string(d.k);

      Tensor got = Tensor::empty({d.m, d.n}, t, Device::cpu());
      Tensor db = Tensor::full({d.m}, 99.0, t, Device::cpu());  // overwritten, not added to
      GemmArgs ge = g;
      ge.epilogue = GemmEpilogue::bias_grad;
      ge.bias = db;
      cpu().gemm(ge, grad, x, got);

      Tensor want = Tensor::empty({d.m, d.n}, t, Device::cpu());
      cpu().gemm(g, grad, x, want);
      expect_bitwise(got, want, "dW " + what);
      expect_bitwise(db, sum(grad, {0}), "db " + what);

      std::vector<double> c, vec;
      reference(ge, grad, x, db, c, vec);
      expect_near_all(got, c, t == DType::f64 ? 1e-12 : 1e-5, "dW vs loops " + what);
      expect_near_all(db, vec, t == DType::f64 ? 1e-12 : 1e-5, "db vs loops " + what);
    }
  }
}

// An untransposed A with a padded leading dimension and alpha != 1: the bias gradient is the row
// sums of A itself, unscaled.
TEST(CpuGemmEpilogue, bias_grad_of_a_strided_untransposed_a) {
  Generator gen(13);
  for (DType t : {DType::f32, DType::f64}) {
    GemmArgs g;
    g.m = 9, g.n = 6, g.k = 13, g.lda = 16, g.ldb = 6, g.ldc = 6, g.alpha = 0.5;
    g.epilogue = GemmEpilogue::bias_grad;
    Tensor a = uniform({9, 16}, t, gen), b = uniform({13, 6}, t, gen);
    g.bias = Tensor::empty({9}, t, Device::cpu());
    Tensor c = Tensor::empty({9, 6}, t, Device::cpu());
    cpu().gemm(g, a, b, c);
    std::vector<double> want_c, want_vec;
    reference(g, a, b, g.bias, want_c, want_vec);
    expect_near_all(c, want_c, t == DType::f64 ? 1e-12 : 1e-5, dtype_name(t));
    expect_near_all(g.bias, want_vec, t == DType::f64 ? 1e-12 : 1e-5, dtype_name(t));
  }
}

TEST(CpuGemmEpilogue, empty_contraction_gives_the_bias_and_a_zero_gradient) {
  for (DType t : {DType::f32, DType::f64}) {
    GemmArgs g;
    g.m = 3, g.n = 2, g.k = 0, g.trans_b = true, g.lda = 1, g.ldb = 1, g.ldc = 2;
    g.epilogue = GemmEpilogue::bias;
    g.bias = Tensor::from_vector(std::vector<double>{1.5, -2.0}, {2}, t);
    Tensor a = Tensor::empty({3, 0}, t, Device::cpu()), b = Tensor::empty({2, 0}, t, Device::cpu());
    Tensor c = Tensor::full({3, 2}, 7.0, t, Device::cpu());
    cpu().gemm(g, a, b, c);
    EXPECT_EQ(c.to_vector<double>(), (std::vector<double>{1.5, -2.0, 1.5, -2.0, 1.5, -2.0}));
    g.epilogue = GemmEpilogue::bias_grad;
    g.bias = Tensor::full({3}, 7.0, t, Device::cpu());
    cpu().gemm(g, a, b, c);
    EXPECT_EQ(c.to_vector<double>(), std::vector<double>(6, 0.0));
    EXPECT_EQ(g.bias.to_vector<double>(), std::vector<double>(3, 0.0));
  }
}

TEST(CpuGemmEpilogue, refuses_what_the_contract_excludes) {
  GemmArgs g;
  g.m = 2, g.n = 3, g.k = 4, g.lda = 4, g.ldb = 3, g.ldc = 3, g.beta = 1.0;
  g.epilogue = GemmEpilogue::bias;
  g.bias = Tensor::zeros({3});
  Tensor a = Tensor::zeros({2, 4}), b = Tensor::zeros({4, 3}), c = Tensor::zeros({2, 3});
  std::string msg = testing::error_of([&] { cpu().gemm(g, a, b, c); });
  EXPECT_NE(msg.find("beta 0"), std::string::npos) << msg;
  g.beta = 0.0;
  g.bias = Tensor::zeros({2});  // bias must have n elements
  msg = testing::error_of([&] { cpu().gemm(g, a, b, c); });
  EXPECT_NE(msg.find("vector of 3 elements"), std::string::npos) << msg;
  g.epilogue = GemmEpilogue::bias_grad;  // bias_grad has m
  EXPECT_EQ(testing::error_of([&] { cpu().gemm(g, a, b, c); }), "(no error)");
}

}  // namespace
}  // namespace dtrain
