// Finite-difference gradient checks (f64) of the elementwise, reduction, shape, activation and
// matrix-product ops, with broadcasting and transposed (non-contiguous) operands. The unary ops'
// checks are generated from core/backend/unary_ops.def (at the end of this file).
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/ops.h"
#include "gradcheck.h"
#include "tests/core/ops/unary_cases.h"

namespace dtrain {
namespace {

using testing::expect_gradcheck;
using Inputs = std::vector<Tensor>;

Tensor randn64(const Shape& s) { return Tensor::randn(s, DType::f64); }

// Values in [lo, hi), for ops defined on part of the line (log, sqrt, division).
Tensor uniform64(const Shape& s, double lo, double hi) {
  return add(mul(Tensor::rand(s, DType::f64), hi - lo), lo);
}

// Normal values pushed at least `gap` away from 0, where relu and abs have their kink.
Tensor away_from_zero(const Shape& s, double gap = 0.1) {
  std::vector<double> v = Tensor::randn(s, DType::f64).to_vector<double>();
  for (double& x : v) x = x >= 0 ? x + gap : x - gap;
  return Tensor::from_vector(v, s, DType::f64);
}

TEST(GradCheck, add) {
  manual_seed(10);
  auto f = [](const Inputs& in) { return add(in[0], in[1]); };
  expect_gradcheck(f, {randn64({2, 3}), randn64({2, 3})});
  expect_gradcheck(f, {randn64({2, 3}), randn64({3})});        // row broadcast
  expect_gradcheck(f, {randn64({2, 1, 3}), randn64({4, 1})});  // both sides broadcast
  expect_gradcheck(f, {randn64({}), randn64({2, 2})});         // a 0-dim operand
  // A transposed (non-contiguous) operand.
  expect_gradcheck([](const Inputs& in) { return add(in[0].transpose(0, 1), in[1]); },
                   {randn64({3, 2}), randn64({2, 3})});
  // The same tensor on both sides: its gradient is the sum of both uses.
  expect_gradcheck([](const Inputs& in) { return add(in[0], in[0]); }, {randn64({4})});
}

TEST(GradCheck, sub) {
  manual_seed(11);
  auto f = [](const Inputs& in) { return sub(in[0], in[1]); };
  expect_gradcheck(f, {randn64({2, 3}), randn64({2, 3})});
  expect_gradcheck(f, {randn64({3, 1}), randn64({1, 4})});
  expect_gradcheck([](const Inputs& in) { return in[0] - in[1].transpose(0, 1); },
                   {randn64({2, 3}), randn64({3, 2})});
}

TEST(GradCheck, mul) {
  manual_seed(12);
  auto f = [](const Inputs& in) { return mul(in[0], in[1]); };
  expect_gradcheck(f, {randn64({2, 3}), randn64({2, 3})});
  expect_gradcheck(f, {randn64({2, 3, 4}), randn64({3, 1})});
  expect_gradcheck([](const Inputs& in) { return mul(in[0], in[0]); }, {randn64({5})});
  expect_gradcheck([](const Inputs& in) { return in[0].transpose(0, 1) * in[1]; },
                   {randn64({4, 2}), randn64({4})});
}

TEST(GradCheck, div) {
  manual_seed(13);
  auto f = [](const Inputs& in) { return div(in[0], in[1]); };
  expect_gradcheck(f, {randn64({2, 3}), uniform64({2, 3}, 0.5, 2.0)});
  expect_gradcheck(f, {randn64({2, 3}), uniform64({3}, 0.5, 2.0)});
  expect_gradcheck(f, {randn64({1, 3}), uniform64({2, 1}, -2.0, -0.5)});
}

TEST(GradCheck, scalar_ops) {
  manual_seed(15);
  expect_gradcheck([](const Inputs& in) { return add(in[0], 2.5); }, {randn64({2, 3})});
  expect_gradcheck([](const Inputs& in) { return mul(in[0], -1.5); }, {randn64({2, 3})});
  expect_gradcheck([](const Inputs& in) { return rsub(3.0, in[0]); }, {randn64({2, 3})});
  expect_gradcheck([](const Inputs& in) { return rdiv(2.0, in[0]); },
                   {uniform64({2, 3}, 0.5, 2.0)});
  // The operators, chained, on a transposed view.
  expect_gradcheck(
      [](const Inputs& in) {
        Tensor t = in[0].transpose(0, 1);
        return (1.0 - t) * 3.0 + t / 4.0 - 2.0 + 1.0 / (t + 5.0);
      },
      {uniform64({3, 2}, -1.0, 1.0)});
}

TEST(GradCheck, pow) {
  manual_seed(16);
  for (double e : {2.0, 3.0, 0.5, -1.5, 1.0}) {
    SCOPED_TRACE(e);
    expect_gradcheck([e](const Inputs& in) { return pow(in[0], e); },
                     {uniform64({2, 3}, 0.5, 2.0)});
  }
  // Exponent 0: constant 1, zero gradient.
  expect_gradcheck([](const Inputs& in) { return add(pow(in[0], 0.0), in[0]); }, {randn64({3})});
}

TEST(GradCheck, clamp) {
  manual_seed(20);
  // Values kept away from the clamp bounds (the kinks at -0.5 and 0.5).
  expect_gradcheck(
      [](const Inputs& in) { return clamp(in[0], -0.5, 0.5); },
      {Tensor::from_vector(std::vector<double>{-1.0, -0.3, 0.0, 0.2, 0.45, 0.9}, {6}, DType::f64)});
}

TEST(GradCheck, maximum_minimum) {
  manual_seed(21);
  expect_gradcheck([](const Inputs& in) { return maximum(in[0], in[1]); },
                   {randn64({2, 3}), randn64({3})});
  expect_gradcheck([](const Inputs& in) { return minimum(in[0], in[1]); },
                   {randn64({2, 1}), randn64({2, 4})});
}

TEST(GradCheck, sum) {
  manual_seed(22);
  expect_gradcheck([](const Inputs& in) { return sum(in[0]); }, {randn64({2, 3})});
  expect_gradcheck([](const Inputs& in) { return sum(in[0], {1}); }, {randn64({2, 3, 4})});
  expect_gradcheck([](const Inputs& in) { return sum(in[0], {-1}, true); }, {randn64({2, 3, 4})});
  // Non-adjacent dims (the input is permuted and copied before the reduction).
  expect_gradcheck([](const Inputs& in) { return sum(in[0], {0, 2}, true); }, {randn64({2, 3, 4})});
  expect_gradcheck(
      [](const Inputs& in) {
        return sum(in[0].transpose(0, 2), {0, 1});
      },
      {randn64({2, 3, 4})});
}

TEST(GradCheck, mean) {
  manual_seed(23);
  expect_gradcheck([](const Inputs& in) { return mean(in[0]); }, {randn64({2, 3})});
  expect_gradcheck([](const Inputs& in) { return mean(in[0], {0}, true); }, {randn64({3, 4})});
  expect_gradcheck([](const Inputs& in) { return mean(in[0], {2, 0}); }, {randn64({2, 3, 4})});
}

TEST(GradCheck, max) {
  manual_seed(24);
  // Random normals have no ties, so the arg max is stable under the finite-difference steps.
  expect_gradcheck([](const Inputs& in) { return max(in[0], 1); }, {randn64({3, 5})});
  expect_gradcheck([](const Inputs& in) { return max(in[0], 0, true); }, {randn64({4, 2, 3})});
  expect_gradcheck([](const Inputs& in) { return max(in[0], -1); }, {randn64({2, 3, 4})});
  expect_gradcheck([](const Inputs& in) { return max(in[0]); }, {randn64({3, 4})});
  expect_gradcheck([](const Inputs& in) { return max(in[0].transpose(0, 1), 1); },
                   {randn64({4, 3})});
}

TEST(GradCheck, cat) {
  manual_seed(25);
  expect_gradcheck(
      [](const Inputs& in) {
        return cat({in[0], in[1], in[2]}, 0);
      },
      {randn64({2, 3}), randn64({1, 3}), randn64({3, 3})});
  expect_gradcheck(
      [](const Inputs& in) {
        return cat({in[0], in[1].transpose(0, 1)}, -1);
      },
      {randn64({2, 2}), randn64({3, 2})});
  // The same tensor used many times, and many inputs recorded on one graph node.
  expect_gradcheck(
      [](const Inputs& in) {
        std::vector<Tensor> parts;
        for (int i = 0; i < 20; ++i) parts.push_back(i % 2 ? in[0] : mul(in[1], double(i)));
        return cat(parts, 1);
      },
      {randn64({2, 1}), randn64({2, 2})});
}

TEST(GradCheck, split) {
  manual_seed(26);
  // Pieces of 2, 2, 1 along dim 1, each used differently; one piece unused gets zero gradient.
  expect_gradcheck(
      [](const Inputs& in) {
        std::vector<Tensor> p = split(in[0], 2, 1);
        EXPECT_EQ(p.size(), 3u);
        return cat({mul(p[0], 2.0), exp(p[2])}, 1);
      },
      {randn64({3, 5})});
  expect_gradcheck(
      [](const Inputs& in) {
        std::vector<Tensor> p = chunk(in[0], 3, 0);
        return add(mul(p[0], p[1]), p[2]);
      },
      {randn64({6, 2})});
}

TEST(GradCheck, stack) {
  manual_seed(27);
  expect_gradcheck(
      [](const Inputs& in) {
        return stack({in[0], in[1]}, 0);
      },
      {randn64({2, 3}), randn64({2, 3})});
  expect_gradcheck(
      [](const Inputs& in) {
        return stack({in[0], in[1], in[0]}, -1);
      },
      {randn64({2, 3}), randn64({2, 3})});
}

TEST(GradCheck, softmax) {
  manual_seed(32);
  expect_gradcheck([](const Inputs& in) { return softmax(in[0], -1); }, {randn64({3, 5})});
  expect_gradcheck([](const Inputs& in) { return softmax(in[0], 0); }, {randn64({3, 4})});
  expect_gradcheck([](const Inputs& in) { return softmax(in[0], 1); }, {randn64({2, 3, 4})});
  expect_gradcheck([](const Inputs& in) { return softmax(in[0].transpose(0, 1), -1); },
                   {randn64({4, 3})});
}

TEST(GradCheck, log_softmax) {
  manual_seed(33);
  expect_gradcheck([](const Inputs& in) { return log_softmax(in[0], -1); }, {randn64({3, 5})});
  expect_gradcheck([](const Inputs& in) { return log_softmax(in[0], 1); }, {randn64({2, 3, 4})});
}

TEST(GradCheck, matmul) {
  manual_seed(34);
  auto f = [](const Inputs& in) { return matmul(in[0], in[1]); };
  expect_gradcheck(f, {randn64({3, 4}), randn64({4, 2})});
  // Transposed operands travel as transpose flags.
  expect_gradcheck([](const Inputs& in) { return matmul(in[0].transpose(0, 1), in[1]); },
                   {randn64({4, 3}), randn64({4, 2})});
  expect_gradcheck([](const Inputs& in) { return matmul(in[0], in[1].transpose(0, 1)); },
                   {randn64({3, 4}), randn64({2, 4})});
  expect_gradcheck(
      [](const Inputs& in) { return matmul(in[0].transpose(0, 1), in[1].transpose(0, 1)); },
      {randn64({4, 3}), randn64({2, 4})});
  // 1-D operands, as torch.matmul.
  expect_gradcheck(f, {randn64({4}), randn64({4})});
  expect_gradcheck(f, {randn64({4}), randn64({4, 3})});
  expect_gradcheck(f, {randn64({2, 4}), randn64({4})});
  expect_gradcheck(f, {randn64({4}), randn64({2, 4, 3})});
  expect_gradcheck(f, {randn64({2, 3, 4}), randn64({4})});
  // Broadcast batch dims, including one that needs a copy (broadcast in different operands).
  expect_gradcheck(f, {randn64({2, 1, 3, 4}), randn64({3, 4, 2})});
  expect_gradcheck(f, {randn64({2, 1, 3, 4}), randn64({1, 3, 4, 2})});
  // Rows and columns of size 1 (their strides are irrelevant to BLAS).
  expect_gradcheck(f, {randn64({1, 4}), randn64({4, 1})});
  expect_gradcheck(f, {randn64({3, 1}), randn64({1, 2})});
}

TEST(GradCheck, bmm) {
  manual_seed(35);
  auto f = [](const Inputs& in) { return matmul(in[0], in[1]); };
  expect_gradcheck(f, {randn64({3, 2, 4}), randn64({3, 4, 5})});
  // A shared right operand: the batch folds into one GEMM forward and backward.
  expect_gradcheck(f, {randn64({3, 2, 4}), randn64({4, 5})});
  expect_gradcheck(f, {randn64({3, 1, 4}), randn64({4, 5})});
  // A shared left operand.
  expect_gradcheck(f, {randn64({2, 4}), randn64({3, 4, 5})});
  // Transposed batches, as attention's q k^T.
  expect_gradcheck([](const Inputs& in) { return matmul(in[0], in[1].transpose(-1, -2)); },
                   {randn64({2, 3, 4}), randn64({2, 5, 4})});
  expect_gradcheck([](const Inputs& in) { return matmul(in[0].transpose(1, 2), in[1]); },
                   {randn64({2, 4, 3}), randn64({2, 4, 5})});
  // A batch of permuted heads: [B, T, H, D] -> [B, H, T, D] has non-uniform batch strides.
  expect_gradcheck(
      [](const Inputs& in) {
        Tensor q = in[0].permute({0, 2, 1, 3});
        return matmul(q, in[1]);
      },
      {randn64({2, 3, 2, 4}), randn64({2, 2, 4, 3})});
}

TEST(GradCheck, linear) {
  manual_seed(36);
  expect_gradcheck([](const Inputs& in) { return linear(in[0], in[1], in[2]); },
                   {randn64({4, 3}), randn64({5, 3}), randn64({5})});
  expect_gradcheck([](const Inputs& in) { return linear(in[0], in[1]); },
                   {randn64({2, 3, 4}), randn64({2, 4})});
  expect_gradcheck([](const Inputs& in) { return linear(in[0], in[1], in[2]); },
                   {randn64({3}), randn64({2, 3}), randn64({2})});
  // A weight stored transposed, and a transposed input.
  expect_gradcheck(
      [](const Inputs& in) { return linear(in[0].transpose(0, 1), in[1].transpose(0, 1), in[2]); },
      {randn64({3, 4}), randn64({3, 5}), randn64({5})});
}

// ---- the unary ops: GradCheck.<name> for every row of core/backend/unary_ops.def that has a
// public op, on a contiguous input and on a transposed view. Inputs are drawn where the op is defined
// (positive: [0.2, 3)) and away from 0 for an op with a kink there; the others span a few units.

void expect_unary_gradcheck(UnaryOp op) {
  const testing::UnaryCase& c = testing::unary_case(op);
  manual_seed(100 + static_cast<uint64_t>(op));
  auto input = [&](const Shape& s) {
    if (c.domain == testing::UnaryDomain::positive) return uniform64(s, 0.2, 3.0);
    if (c.derivative == testing::UnaryDerivative::kink) return away_from_zero(s);
    return mul(randn64(s), 2.0);
  };
  auto call = c.call;
  expect_gradcheck([call](const Inputs& in) { return call(in[0]); }, {input({3, 4})});
  expect_gradcheck([call](const Inputs& in) { return call(in[0].transpose(0, 1)); },
                   {input({4, 3})});
}

#define DTRAIN_UNARY_OP(name, ...) \
  TEST(GradCheck, name) { expect_unary_gradcheck(UnaryOp::name); }
#define DTRAIN_UNARY_OP_INTERNAL(...)
#include "core/backend/unary_ops.def"

}  // namespace
}  // namespace dtrain
