// Unit tests of the elementwise, reduction, shape, activation and matmul ops and their CPU kernels:
// error messages, half-precision paths against f32, strided copies, in-place updates, and results
// that must not depend on the number of threads.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/ops/ops.h"
#include "error_message.h"

namespace dtrain {
namespace {

using dtrain::testing::error_of;

void expect_close(const Tensor& got, const Tensor& want, double rtol, double atol) {
  ASSERT_EQ(got.shape(), want.shape());
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_NEAR(g[i], w[i], atol + rtol * std::fabs(w[i])) << "element " << i;
  }
}

void expect_equal(const Tensor& got, const std::vector<double>& want) {
  std::vector<double> g = got.to_vector<double>();
  ASSERT_EQ(g.size(), want.size());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(g[i], want[i]) << "element " << i;
}

Tensor vec(const std::vector<double>& v, const Shape& s, DType t = DType::f32) {
  return Tensor::from_vector(v, s, t);
}

// Restores the single-threaded default of the test binary.
struct ThreadScope {
  explicit ThreadScope(int n) { set_num_threads(n); }
  ~ThreadScope() { set_num_threads(1); }
};

// ---- bad inputs: messages name the op and both shapes or both dtypes

TEST(ElementwiseErrors, ShapeMismatchNamesBothShapes) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  std::string msg = error_of([&] { add(a, b); });
  EXPECT_NE(msg.find("add"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  msg = error_of([&] { mul(Tensor::zeros({3, 2}), Tensor::zeros({3, 3})); });
  EXPECT_NE(msg.find("mul"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 2]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 3]"), std::string::npos) << msg;
}

TEST(ElementwiseErrors, DtypeMismatchNamesBothDtypes) {
  std::string msg = error_of([] { sub(Tensor::zeros({2}), Tensor::zeros({2}, DType::f64)); });
  EXPECT_NE(msg.find("sub"), std::string::npos) << msg;
  EXPECT_NE(msg.find("f32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("f64"), std::string::npos) << msg;
  msg = error_of([] { matmul(Tensor::zeros({2, 2}), Tensor::zeros({2, 2}, DType::bf16)); });
  EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
  EXPECT_NE(msg.find("f32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bf16"), std::string::npos) << msg;
}

TEST(ElementwiseErrors, MatmulLinearCatShapes) {
  std::string msg = error_of([] { matmul(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})); });
  EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 5]"), std::string::npos) << msg;
  msg = error_of([] { matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 1})); });
  EXPECT_NE(msg.find("[2, 2, 3]"), std::string::npos) << msg;  // batch dims 2 vs 3
  EXPECT_NE(msg.find("[3, 3, 1]"), std::string::npos) << msg;
  msg = error_of([] { linear(Tensor::zeros({4, 3}), Tensor::zeros({5, 2})); });
  EXPECT_NE(msg.find("linear"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[5, 2]"), std::string::npos) << msg;
  msg = error_of([] { linear(Tensor::zeros({4, 3}), Tensor::zeros({5, 3}), Tensor::zeros({4})); });
  EXPECT_NE(msg.find("bias"), std::string::npos) << msg;
  msg = error_of([] { cat({Tensor::zeros({2, 3}), Tensor::zeros({2, 4})}, 0); });
  EXPECT_NE(msg.find("cat"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 4]"), std::string::npos) << msg;
  msg = error_of([] { cat({Tensor::zeros({2}), Tensor::zeros({2}, DType::f64)}, 0); });
  EXPECT_NE(msg.find("f32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("f64"), std::string::npos) << msg;
  msg = error_of([] { stack({Tensor::zeros({2}), Tensor::zeros({3})}, 0); });
  EXPECT_NE(msg.find("[2]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3]"), std::string::npos) << msg;
  msg = error_of([] { sum(Tensor::zeros({2, 3}), {2}); });
  EXPECT_NE(msg.find("sum"), std::string::npos) << msg;
  msg = error_of([] { softmax(Tensor::zeros({2}, DType::i64), 0); });
  EXPECT_NE(msg.find("softmax"), std::string::npos) << msg;
  EXPECT_NE(msg.find("i64"), std::string::npos) << msg;
}

TEST(ElementwiseErrors, InPlaceOnTensorThatRequiresGrad) {
  Tensor w = Tensor::zeros({3});
  w.set_requires_grad(true);
  Tensor g = Tensor::ones({3});
  std::string msg = error_of([&] { add_(w, g); });
  EXPECT_NE(msg.find("add_"), std::string::npos) << msg;
  EXPECT_NE(msg.find("NoGradGuard"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { mul_(w, 2.0); }), "(no error)");
  EXPECT_NE(error_of([&] { addcmul_(w, g, g, 1.0); }), "(no error)");
  {
    NoGradGuard no_grad;
    add_(w, g, -0.5);  // allowed: an optimizer step
  }
  expect_equal(w, {-0.5, -0.5, -0.5});
  // The destination's shape is fixed: b broadcasts to it, not the other way round.
  Tensor d = Tensor::zeros({3});
  msg = error_of([&] { add_(d, Tensor::ones({2, 3})); });
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3]"), std::string::npos) << msg;
}

// ---- forward values

TEST(ElementwiseOps, BroadcastValues) {
  Tensor a = vec({1, 2, 3, 4, 5, 6}, {2, 3});
  expect_equal(add(a, vec({10, 20, 30}, {3})), {11, 22, 33, 14, 25, 36});
  expect_equal(sub(a, vec({1, 2}, {2, 1})), {0, 1, 2, 2, 3, 4});
  expect_equal(mul(vec({2}, {}), a), {2, 4, 6, 8, 10, 12});
  expect_equal(div(a, vec({1, 2, 4}, {3})), {1, 1, 0.75, 4, 2.5, 1.5});
  expect_equal(maximum(a, vec({3}, {1})), {3, 3, 3, 4, 5, 6});
  expect_equal(minimum(a, vec({3}, {1})), {1, 2, 3, 3, 3, 3});
  expect_equal(clamp(a, 2, 5), {2, 2, 3, 4, 5, 5});
  expect_equal(gt(a, vec({3}, {1})), {0, 0, 0, 1, 1, 1});
  expect_equal(lt(a, vec({3}, {1})), {1, 1, 0, 0, 0, 0});
  expect_equal(eq(a, vec({3}, {1})), {0, 0, 1, 0, 0, 0});
  // A transposed, broadcast operand on the left.
  expect_equal(add(a.transpose(0, 1), vec({100, 200}, {2})), {101, 204, 102, 205, 103, 206});
  expect_equal(pow(vec({1, 2, 3}, {3}), 2.0), {1, 4, 9});
  expect_equal(pow(vec({4, 9}, {2}), 0.5), {2, 3});
  expect_equal(rsub(1.0, a), {0, -1, -2, -3, -4, -5});
  expect_equal(rdiv(12.0, a), {12, 6, 4, 3, 2.4000000953674316, 2});
}

TEST(ElementwiseOps, IntegerIndicesArithmetic) {
  Tensor i = Tensor::from_vector(std::vector<int64_t>{3, 1, 4, 1}, {4}, DType::i64);
  Tensor j = Tensor::from_vector(std::vector<int64_t>{3, 2, 4, 0}, {4}, DType::i64);
  EXPECT_EQ(add(i, j).to_vector<int64_t>(), (std::vector<int64_t>{6, 3, 8, 1}));
  EXPECT_EQ(eq(i, j).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1, 0}));
  EXPECT_EQ(add(i, 1.0).to_vector<int64_t>(), (std::vector<int64_t>{4, 2, 5, 2}));
  EXPECT_EQ(sum(i).to_vector<int64_t>(), (std::vector<int64_t>{9}));
  // Large values survive (no trip through f32/f64).
  Tensor big = Tensor::from_vector(std::vector<int64_t>{(int64_t{1} << 60) + 1}, {1}, DType::i64);
  EXPECT_EQ(add(big, big).to_vector<int64_t>()[0], (int64_t{1} << 61) + 2);
  EXPECT_NE(error_of([&] { div(i, j); }).find("integer"), std::string::npos);
}

TEST(ElementwiseOps, UnaryAndActivationValues) {
  Tensor x = vec({-2, -0.5, 0, 0.5, 2}, {5}, DType::f64);
  std::vector<double> v = x.to_vector<double>();
  auto check = [&](const Tensor& got, auto fn) {
    std::vector<double> g = got.to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(g[i], fn(v[i]), 1e-12) << "x = " << v[i];
  };
  check(relu(x), [](double t) { return t > 0 ? t : 0.0; });
  check(gelu(x), [](double t) { return 0.5 * t * (1 + std::erf(t / std::sqrt(2.0))); });
  check(gelu(x, GeluApprox::tanh), [](double t) {
    return 0.5 * t * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (t + 0.044715 * t * t * t)));
  });
  check(tanh(x), [](double t) { return std::tanh(t); });
  check(sigmoid(x), [](double t) { return 1.0 / (1.0 + std::exp(-t)); });
  check(abs(x), [](double t) { return std::fabs(t); });
  check(exp(x), [](double t) { return std::exp(t); });
  // Sigmoid of large magnitudes stays finite and exact at the ends.
  expect_equal(sigmoid(vec({-1000, 1000}, {2})), {0, 1});
  // relu keeps NaN, like PyTorch.
  EXPECT_TRUE(std::isnan(relu(vec({NAN}, {1})).item()));
}

TEST(ElementwiseOps, SoftmaxValuesAndStability) {
  Tensor x = vec({1, 2, 3, 1000, 1001, 1002}, {2, 3}, DType::f64);
  Tensor y = softmax(x, -1);
  double e1 = std::exp(-2.0), e2 = std::exp(-1.0), s = e1 + e2 + 1.0;
  expect_close(y, vec({e1 / s, e2 / s, 1 / s, e1 / s, e2 / s, 1 / s}, {2, 3}, DType::f64), 1e-12,
               0);
  expect_close(log_softmax(x, 1), log(y), 1e-12, 1e-12);
  // Along dim 0 of [2, 2].
  Tensor z = softmax(vec({0, 0, std::log(3.0), 0}, {2, 2}, DType::f64), 0);
  expect_close(z, vec({0.25, 0.5, 0.75, 0.5}, {2, 2}, DType::f64), 1e-12, 1e-15);
  // A masked (-inf) entry gets probability 0.
  double inf = std::numeric_limits<double>::infinity();
  expect_close(softmax(vec({0, -inf, 0}, {3}, DType::f64), 0), vec({0.5, 0, 0.5}, {3}, DType::f64),
               0, 1e-15);
}

TEST(ElementwiseOps, ReductionValues) {
  Tensor x = vec({1, 5, 3, 4, 2, 6}, {2, 3});
  expect_equal(sum(x), {21});
  expect_equal(sum(x, {0}), {5, 7, 9});
  expect_equal(sum(x, {1}, true), {9, 12});
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{2, 1}));
  expect_equal(mean(x, {-1}), {3, 4});
  expect_equal(max(x, 1), {5, 6});
  expect_equal(max(x, 0, true), {4, 5, 6});
  expect_equal(max(x), {6});
  EXPECT_EQ(argmax(x, 1).to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  // Ties go to the first position, NaN wins (as PyTorch).
  EXPECT_EQ(argmax(vec({2, 7, 7, 1}, {4}), 0).to_vector<int64_t>()[0], 1);
  EXPECT_EQ(argmax(vec({2, NAN, 7}, {3}), 0).to_vector<int64_t>()[0], 1);
  EXPECT_TRUE(std::isnan(max(vec({2, NAN, 7}, {3})).item()));
  // Non-adjacent dims of a 3-D tensor.
  Tensor y = Tensor::arange(24, DType::f64).reshape({2, 3, 4});
  expect_equal(sum(y, {0, 2}), {60, 92, 124});
  // An empty dim sums to 0.
  expect_equal(sum(Tensor::zeros({2, 0}), {1}), {0, 0});
}

TEST(ElementwiseOps, SumToUndoesBroadcast) {
  Tensor g = Tensor::ones({2, 3, 4});
  expect_equal(sum_to(g, {4}), {6, 6, 6, 6});
  expect_equal(sum_to(g, {3, 1}), {8, 8, 8});
  EXPECT_EQ(sum_to(g, {1, 3, 1}).shape(), (Shape{1, 3, 1}));
  EXPECT_EQ(sum_to(g, {2, 3, 4}).shape(), (Shape{2, 3, 4}));
}

TEST(ElementwiseOps, CatStackSplit) {
  Tensor a = vec({1, 2, 3, 4}, {2, 2}), b = vec({5, 6}, {2, 1});
  expect_equal(cat({a, b}, 1), {1, 2, 5, 3, 4, 6});
  expect_equal(cat({a, a.transpose(0, 1)}, 0), {1, 2, 3, 4, 1, 3, 2, 4});
  expect_equal(stack({vec({1, 2}, {2}), vec({3, 4}, {2})}, 1), {1, 3, 2, 4});
  std::vector<Tensor> parts = split(Tensor::arange(7, DType::f32), 3, 0);
  ASSERT_EQ(parts.size(), 3u);
  expect_equal(parts[2], {6});
  EXPECT_EQ(chunk(Tensor::zeros({5, 2}), 2, 0)[1].shape(), (Shape{2, 2}));
  // Many inputs, all recorded on one graph node.
  std::vector<Tensor> many;
  for (int i = 0; i < 40; ++i) many.push_back(vec({double(i)}, {1}));
  Tensor joined = cat(many, 0);
  EXPECT_EQ(joined.shape(), (Shape{40}));
  EXPECT_EQ(joined.to_vector<float>()[39], 39.0f);
  for (Tensor& t : many) t.set_requires_grad(true);
  Tensor tracked = cat(many, 0);
  ASSERT_NE(tracked.grad_fn(), nullptr);
  EXPECT_EQ(tracked.grad_fn()->next.size(), 40u);
}

TEST(ElementwiseOps, InPlaceUpdates) {
  NoGradGuard no_grad;
  Tensor d = vec({1, 2, 3, 4}, {2, 2});
  add_(d, vec({1, 1}, {2}), 2.0);
  expect_equal(d, {3, 4, 5, 6});
  mul_(d, 0.5);
  expect_equal(d, {1.5, 2, 2.5, 3});
  mul_(d, vec({2, 0}, {2}));
  expect_equal(d, {3, 0, 5, 0});
  div_(d, vec({3, 1, 5, 1}, {2, 2}));
  expect_equal(d, {1, 0, 1, 0});
  addcmul_(d, vec({1, 2}, {2}), vec({3}, {1}), 0.5);  // += 0.5 * [3, 6]
  expect_equal(d, {2.5, 3, 2.5, 3});
  addcdiv_(d, vec({1, 1, 1, 1}, {2, 2}), vec({2, 4}, {2}), -1.0);
  expect_equal(d, {2, 2.75, 2, 2.75});
  // A non-contiguous destination (a transposed view) is updated through its strides.
  Tensor base = vec({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor t = base.transpose(0, 1);  // [3, 2]
  add_(t, vec({10, 100}, {2}));
  expect_equal(base, {11, 12, 13, 104, 105, 106});
  // A bf16 gradient into an f32 tensor converts.
  Tensor master = vec({1, 1}, {2});
  add_(master, vec({0.5, 0.25}, {2}, DType::bf16));
  expect_equal(master, {1.5, 1.25});
}

// ---- half precision: the same ops in f16 and bf16 agree with f32 on the rounded inputs

class HalfPrecision : public ::testing::TestWithParam<DType> {};

TEST_P(HalfPrecision, MatchesF32) {
  const DType h = GetParam();
  const double tol = h == DType::bf16 ? 2e-2 : 4e-3;
  manual_seed(50);
  // Round the inputs to the half type first, so only the computation's rounding differs.
  auto round = [&](const Tensor& t) { return t.to(h).to(DType::f32); };
  Tensor a = round(Tensor::randn({4, 6})), b = round(Tensor::randn({6}));
  Tensor pos = round(add(Tensor::rand({4, 6}), 0.5));
  auto cmp = [&](const Tensor& got, const Tensor& want, const char* what) {
    SCOPED_TRACE(what);
    EXPECT_EQ(got.dtype(), h);
    expect_close(got.to(DType::f32), want, tol, tol);
  };
  Tensor ah = a.to(h), bh = b.to(h), ph = pos.to(h);
  cmp(add(ah, bh), add(a, b), "add");
  cmp(mul(ah, bh), mul(a, b), "mul");
  cmp(div(ah, ph), div(a, pos), "div");
  cmp(mul(ah, 3.0), mul(a, 3.0), "mul scalar");
  cmp(exp(ah), exp(a), "exp");
  cmp(log(ph), log(pos), "log");
  cmp(sqrt(ph), sqrt(pos), "sqrt");
  cmp(gelu(ah), gelu(a), "gelu");
  cmp(gelu(ah, GeluApprox::tanh), gelu(a, GeluApprox::tanh), "gelu tanh");
  cmp(tanh(ah), tanh(a), "tanh");
  cmp(sigmoid(ah), sigmoid(a), "sigmoid");
  cmp(relu(ah), relu(a), "relu");
  cmp(softmax(ah, -1), softmax(a, -1), "softmax");
  cmp(log_softmax(ah, 0), log_softmax(a, 0), "log_softmax");
  cmp(sum(ah, {1}), sum(a, {1}), "sum");
  cmp(mean(ah), mean(a), "mean");
  cmp(max(ah, 0), max(a, 0), "max");
  cmp(cat({ah, ah}, 0), cat({a, a}, 0), "cat");
  Tensor w = round(Tensor::randn({5, 6})), bias = round(Tensor::randn({5}));
  Tensor m = round(Tensor::randn({6, 3}));
  cmp(matmul(ah, m.to(h)), matmul(a, m), "matmul");
  cmp(matmul(ah.transpose(0, 1).contiguous().transpose(0, 1), m.to(h)), matmul(a, m),
      "matmul transposed a");
  cmp(matmul(ah.reshape({2, 2, 6}), m.to(h)), matmul(a.reshape({2, 2, 6}), m), "batched matmul");
  cmp(linear(ah, w.to(h), bias.to(h)), linear(a, w, bias), "linear");
  // Gradients flow in the half type too.
  Tensor x = ah.detach();
  x.set_requires_grad(true);
  sum(mul(gelu(x), x)).backward();
  Tensor xf = a.detach();
  xf.set_requires_grad(true);
  sum(mul(gelu(xf), xf)).backward();
  EXPECT_EQ(x.grad().dtype(), h);
  expect_close(x.grad().to(DType::f32), xf.grad(), 2 * tol, 2 * tol);
}

INSTANTIATE_TEST_SUITE_P(ElementwiseOps, HalfPrecision, ::testing::Values(DType::f16, DType::bf16),
                         [](const ::testing::TestParamInfo<DType>& p) {
                           return std::string(dtype_name(p.param));
                         });

// ---- matmul layouts

TEST(Matmul, TransposedViewEqualsContiguousCopy) {
  manual_seed(60);
  for (DType t : {DType::f32, DType::f64}) {
    Tensor a = Tensor::randn({5, 4}, t), b = Tensor::randn({5, 3}, t);
    Tensor at = a.transpose(0, 1);  // [4, 5], strides (1, 4): a transposed contiguous matrix
    ASSERT_FALSE(at.is_contiguous());
    expect_close(matmul(at, b), matmul(at.contiguous(), b), 1e-6, 1e-6);
    Tensor bt = Tensor::randn({3, 5}, t).transpose(0, 1);  // [5, 3]
    expect_close(matmul(at, bt), matmul(at.contiguous(), bt.contiguous()), 1e-6, 1e-6);
    // Batched: k^T in attention.
    Tensor q = Tensor::randn({2, 3, 6, 4}, t), k = Tensor::randn({2, 3, 5, 4}, t);
    Tensor kt = k.transpose(-1, -2);
    expect_close(matmul(q, kt), matmul(q, kt.contiguous()), 1e-6, 1e-6);
    // A strided (narrowed) row stride, and a permuted batch.
    Tensor wide = Tensor::randn({4, 9}, t);
    Tensor narrow = wide.narrow(1, 2, 5);  // [4, 5], row stride 9
    expect_close(matmul(narrow, b), matmul(narrow.contiguous(), b), 1e-6, 1e-6);
    Tensor p = Tensor::randn({2, 6, 3, 4}, t).permute({0, 2, 1, 3});  // [2, 3, 6, 4]
    expect_close(matmul(p, kt), matmul(p.contiguous(), kt.contiguous()), 1e-6, 1e-6);
  }
}

TEST(Matmul, AgainstLoops) {
  manual_seed(61);
  Tensor a = Tensor::randn({2, 3, 4}, DType::f64), b = Tensor::randn({4, 5}, DType::f64);
  Tensor c = matmul(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 5}));
  std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  std::vector<double> vc = c.to_vector<double>();
  for (int i = 0; i < 6; ++i) {
    for (int j = 0; j < 5; ++j) {
      double s = 0;
      for (int k = 0; k < 4; ++k) {
        s += va[static_cast<size_t>(i * 4 + k)] * vb[static_cast<size_t>(k * 5 + j)];
      }
      EXPECT_NEAR(vc[static_cast<size_t>(i * 5 + j)], s, 1e-12);
    }
  }
  // linear = x W^T + b.
  Tensor w = Tensor::randn({5, 4}, DType::f64), bias = Tensor::randn({5}, DType::f64);
  expect_close(linear(a, w, bias), add(matmul(a, w.transpose(0, 1).contiguous()), bias), 1e-12,
               1e-12);
  // Empty contraction: zeros.
  expect_equal(matmul(Tensor::ones({2, 0}), Tensor::ones({0, 2})), {0, 0, 0, 0});
  EXPECT_EQ(matmul(Tensor::ones({3}), Tensor::ones({3})).shape(), (Shape{}));
}

// ---- kernels: copies, threads, random

TEST(CpuKernels, CopyAcrossDtypesAndStrides) {
  Tensor x = vec({1.5, -2.25, 3, 4, 5, 6}, {2, 3});
  for (DType t : {DType::f64, DType::f16, DType::bf16}) {
    expect_equal(x.to(t).to(DType::f32), {1.5, -2.25, 3, 4, 5, 6});
  }
  EXPECT_EQ(x.to(DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3, 4, 5, 6}));
  expect_equal(x.transpose(0, 1).contiguous(), {1.5, 4, -2.25, 5, 3, 6});
  expect_equal(x.transpose(0, 1).to(DType::bf16).to(DType::f64), {1.5, 4, -2.25, 5, 3, 6});
  // A stride-0 (broadcast) source.
  Tensor row = vec({7, 8, 9}, {3});
  Tensor dst = Tensor::zeros({2, 3}, DType::f16);
  dst.copy_(row);
  expect_equal(dst, {7, 8, 9, 7, 8, 9});
  // Into a strided destination (a column of a bigger matrix).
  Tensor big = Tensor::zeros({3, 3});
  big.narrow(1, 1, 1).copy_(vec({1, 2, 3}, {3, 1}));
  expect_equal(big, {0, 1, 0, 0, 2, 0, 0, 3, 0});
  // Half-precision rounding: bf16 keeps 8 significant bits.
  EXPECT_EQ(vec({1.0 + 1.0 / 512}, {1}).to(DType::bf16).item(), 1.0);
  EXPECT_EQ(vec({65520}, {1}).to(DType::f16).item(), std::numeric_limits<double>::infinity());
}

TEST(CpuKernels, ReduceMinAndUnaryKernels) {
  Backend& cpu = backend_for(Device::cpu());
  // x as [outer 2, n 3, inner 2]: min over the middle dim with its position.
  Tensor x = vec({4, 1, 2, 5, 0, 9, 3, 3, 7, 3, 8, 1}, {2, 3, 2});
  Tensor out = Tensor::empty({2, 2}), idx = Tensor::empty({2, 2}, DType::i64);
  cpu.reduce(ReduceOp::min, x, 2, 3, 2, out, idx);
  expect_equal(out, {0, 1, 3, 1});
  EXPECT_EQ(idx.to_vector<int64_t>(), (std::vector<int64_t>{2, 0, 0, 2}));
  cpu.reduce(ReduceOp::max, x, 2, 3, 2, out, idx);
  expect_equal(out, {4, 9, 8, 3});
  EXPECT_EQ(idx.to_vector<int64_t>(), (std::vector<int64_t>{0, 2, 2, 0}));
  Tensor v = vec({4, 0.25}, {2});
  Tensor y = Tensor::empty({2});
  cpu.unary(UnaryOp::rsqrt, v, y);
  expect_equal(y, {0.5, 2});
  cpu.unary(UnaryOp::reciprocal, v, y);
  expect_equal(y, {0.25, 4});
  cpu.unary_backward(UnaryOp::reciprocal, v, vec({1, 1}, {2}), y);
  expect_equal(y, {-1.0 / 16, -16});
  // An integer op with no meaning for integers is refused, naming it.
  Tensor i = Tensor::zeros({2}, DType::i32);
  std::string msg = error_of([&] { cpu.binary_scalar(BinaryOp::pow, i, 2.0, false, i); });
  EXPECT_NE(msg.find("pow"), std::string::npos) << msg;
}

// f32 GELU computes erf and exp with polynomials (so its loops vectorise) where f64 uses libm. At
// the same points over [-12, 12] (both erf pieces, and past the clamp at |x| / sqrt 2 = 4), forward
// and backward stay within a few f32 roundings of f64: relative 4e-7, plus 1.5e-7 |x| where
// 1 + erf cancels. A wrong coefficient or a piece boundary off by a step shows as 1e-5 or more.
TEST(CpuKernels, GeluErfF32AgainstF64) {
  Backend& cpu = backend_for(Device::cpu());
  std::vector<double> points;
  for (int i = -12000; i <= 12000; ++i) points.push_back(i / 1000.0);
  const Shape shape{static_cast<int64_t>(points.size())};
  Tensor x = vec(points, shape), x64 = x.to(DType::f64);
  Tensor ones = Tensor::ones(shape), ones64 = Tensor::ones(shape, DType::f64);
  Tensor y = Tensor::empty(shape), y64 = Tensor::empty(shape, DType::f64);
  Tensor dx = Tensor::empty(shape), dx64 = Tensor::empty(shape, DType::f64);
  cpu.unary(UnaryOp::gelu_erf, x, y);
  cpu.unary(UnaryOp::gelu_erf, x64, y64);
  cpu.unary_backward(UnaryOp::gelu_erf, x, ones, dx);
  cpu.unary_backward(UnaryOp::gelu_erf, x64, ones64, dx64);
  const std::vector<double> xv = x64.to_vector<double>();
  const std::vector<double> got = y.to_vector<double>(), want = y64.to_vector<double>();
  const std::vector<double> dgot = dx.to_vector<double>(), dwant = dx64.to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) {
    const double atol = 1.5e-7 * std::fabs(xv[i]);
    ASSERT_NEAR(got[i], want[i], 4e-7 * std::fabs(want[i]) + atol) << "gelu at x = " << xv[i];
    ASSERT_NEAR(dgot[i], dwant[i], 4e-7 * std::fabs(dwant[i]) + atol) << "gelu' at x = " << xv[i];
  }
  // Special values as in f64: gelu(+inf) = +inf; gelu(-inf) = -inf * 0 = NaN; NaN stays NaN.
  const double inf = std::numeric_limits<double>::infinity();
  Tensor s = vec({inf, -inf, std::nan(""), -0.0, 40, -40}, {6}), s64 = s.to(DType::f64);
  Tensor sy = Tensor::empty({6}), sy64 = Tensor::empty({6}, DType::f64);
  cpu.unary(UnaryOp::gelu_erf, s, sy);
  cpu.unary(UnaryOp::gelu_erf, s64, sy64);
  const std::vector<double> sg = sy.to_vector<double>(), sw = sy64.to_vector<double>();
  for (size_t i = 0; i < sg.size(); ++i) {
    if (std::isnan(sw[i])) {
      EXPECT_TRUE(std::isnan(sg[i])) << "element " << i << ": " << sg[i];
    } else {
      EXPECT_EQ(sg[i], sw[i]) << "element " << i;
    }
  }
}

TEST(CpuKernels, LargeStridedCopyAndFill) {
  ThreadScope threads(2);
  Tensor x = Tensor::randn({300, 257});
  Tensor y = x.transpose(0, 1).contiguous();
  std::vector<float> vx = x.to_vector<float>(), vy = y.to_vector<float>();
  for (int64_t i = 0; i < 300; i += 37) {
    for (int64_t j = 0; j < 257; j += 13) {
      ASSERT_EQ(vy[static_cast<size_t>(j * 300 + i)], vx[static_cast<size_t>(i * 257 + j)]);
    }
  }
  // Batched transposes, also converting the dtype on the way.
  Tensor b3 = Tensor::randn({3, 40, 50});
  std::vector<float> vb = b3.to_vector<float>();
  std::vector<double> vt = b3.transpose(1, 2).to(DType::f64).to_vector<double>();
  for (int64_t k = 0; k < 3; ++k) {
    for (int64_t i = 0; i < 40; ++i) {
      for (int64_t j = 0; j < 50; ++j) {
        ASSERT_EQ(vt[static_cast<size_t>((k * 50 + j) * 40 + i)],
                  vb[static_cast<size_t>((k * 40 + i) * 50 + j)]);
      }
    }
  }
  Tensor z = Tensor::zeros({300, 257});
  z.narrow(0, 10, 100).fill_(2.0);
  EXPECT_EQ(sum(z).item(), 2.0 * 100 * 257);
}

TEST(CpuKernels, ReductionsIndependentOfThreadCount) {
  manual_seed(70);
  Tensor x = Tensor::randn({3, 70001});
  Tensor y = Tensor::randn({1000, 301});
  std::vector<float> s1, s2, m1, c1, c2;
  {
    ThreadScope threads(1);
    s1 = sum(x, {1}).to_vector<float>();
    c1 = sum(y, {0}).to_vector<float>();
    m1 = mean(x).to_vector<float>();
  }
  {
    ThreadScope threads(2);
    s2 = sum(x, {1}).to_vector<float>();
    c2 = sum(y, {0}).to_vector<float>();
    EXPECT_EQ(mean(x).to_vector<float>(), m1);
  }
  EXPECT_EQ(s1, s2);
  EXPECT_EQ(c1, c2);
  // Sums accumulate in double: the f32 sum of 210003 normals matches the f64 one closely.
  double exact = sum(x.to(DType::f64)).item();
  EXPECT_NEAR(sum(x).item(), exact, 1e-3);
}

TEST(CpuKernels, RandomReproducibleAcrossThreads) {
  std::vector<float> u1, u2, n1, n2;
  {
    ThreadScope threads(1);
    manual_seed(5);
    u1 = Tensor::rand({50000}).to_vector<float>();
    n1 = Tensor::randn({50000}).to_vector<float>();
  }
  {
    ThreadScope threads(2);
    manual_seed(5);
    u2 = Tensor::rand({50000}).to_vector<float>();
    n2 = Tensor::randn({50000}).to_vector<float>();
  }
  EXPECT_EQ(u1, u2);
  EXPECT_EQ(n1, n2);
  double mu = 0, var = 0;
  for (float v : n1) mu += v;
  mu /= n1.size();
  for (float v : n1) var += (v - mu) * (v - mu);
  var /= n1.size();
  EXPECT_NEAR(mu, 0.0, 0.02);
  EXPECT_NEAR(var, 1.0, 0.03);
  for (float v : u1) {
    ASSERT_GE(v, 0.0f);
    ASSERT_LT(v, 1.0f);
  }
  // Bernoulli(p) and a uniform range through the backend interface.
  Generator gen(9);
  Tensor b = Tensor::empty({20000});
  backend_for(Device::cpu()).random(RandomKind::bernoulli, 0.3, 0.0, gen, b);
  EXPECT_NEAR(mean(b).item(), 0.3, 0.015);
  Tensor r = Tensor::empty({20000}, DType::bf16);
  backend_for(Device::cpu()).random(RandomKind::uniform, -2.0, 3.0, gen, r);
  EXPECT_GE(max(neg(r)).item(), -3.0);
  EXPECT_LT(max(r).item(), 3.0);
  EXPECT_GE(-max(neg(r)).item(), -2.0);
}

TEST(CpuKernels, LargeBinaryBroadcastThreaded) {
  ThreadScope threads(2);
  manual_seed(71);
  Tensor a = Tensor::randn({512, 300}), b = Tensor::randn({300});
  Tensor c = add(a, b);
  std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>();
  std::vector<float> vc = c.to_vector<float>();
  for (size_t i = 0; i < vc.size(); i += 97) ASSERT_EQ(vc[i], va[i] + vb[i % 300]);
  // A column broadcast and a transposed operand, through the strided path.
  Tensor col = Tensor::randn({512, 1});
  Tensor d = mul(a.transpose(0, 1), col.transpose(0, 1));  // [300, 512]
  std::vector<float> vd = d.to_vector<float>(), vcol = col.to_vector<float>();
  for (size_t j = 0; j < 300; j += 7) {
    for (size_t i = 0; i < 512; i += 11) ASSERT_EQ(vd[j * 512 + i], va[i * 300 + j] * vcol[i]);
  }
}

}  // namespace
}  // namespace dtrain
