// Every op against PyTorch: forward values and input gradients for the cases that
// tests/reference/generate_ops.py stored in tests/reference/fixtures/ops.safetensors. The op parameters
// (dims, strides, eps, ...) below must match that script's.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "tests/core/ops/unary_cases.h"

namespace dtrain {
namespace {

const SafetensorsFile& reference() {
  static const SafetensorsFile file = load_safetensors(std::string(DTRAIN_SOURCE_DIR) +
                                                       "/tests/reference/fixtures/ops.safetensors");
  return file;
}

// A fresh copy, so nothing a test does (requires_grad, in-place updates) reaches the cached fixture.
Tensor fixture(const std::string& name) { return reference().at(name).clone(); }

// The reference is f64 math rounded to f32 once; ours is f32 throughout, so allow f32 rounding
// accumulated over a few dozen terms.
struct Tol {
  double rtol = 1e-5;
  double atol = 1e-6;
};

// |got - want| <= atol + rtol * |want| elementwise; infinities (masks) must match exactly.
void expect_close(const Tensor& got, const std::string& name, Tol tol = {}) {
  ASSERT_TRUE(got.defined()) << name << ": not computed";
  const Tensor& want_t = reference().at(name);
  ASSERT_EQ(shape_str(got.shape()), shape_str(want_t.shape())) << name;
  std::vector<double> g = got.to_vector<double>();
  std::vector<double> w = want_t.to_vector<double>();
  size_t n_bad = 0, first = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    bool ok = std::isinf(w[i]) ? g[i] == w[i]
                               : std::fabs(g[i] - w[i]) <= tol.atol + tol.rtol * std::fabs(w[i]);
    if (!ok && n_bad++ == 0) first = i;
  }
  if (n_bad > 0) {
    ADD_FAILURE() << name << ": " << n_bad << " of " << w.size()
                  << " elements differ from PyTorch; first at " << first << ": got " << g[first]
                  << ", want " << w[first];
  }
}

using In = const std::vector<Tensor>&;
using MultiFn = std::function<std::vector<Tensor>(In)>;
using SingleFn = std::function<Tensor(In)>;

// Runs case `c`: loads `<c>.<input>` for each input (a leaf requiring grad where the fixture holds
// `<c>.grad_<input>`), compares the outputs with `<c>.out` (or `<c>.out.<i>`), back-propagates the
// stored upstream gradients and compares each input's gradient.
void check_multi(const std::string& c, const std::vector<std::string>& names, const MultiFn& f,
                 Tol tol = {}) {
  SCOPED_TRACE(c);
  const SafetensorsFile& file = reference();
  std::vector<Tensor> inputs;
  for (const auto& name : names) {
    Tensor x = fixture(c + "." + name);
    if (file.contains(c + ".grad_" + name)) x.set_requires_grad(true);
    inputs.push_back(x);
  }
  std::vector<Tensor> outs = f(inputs);
  const bool single = file.contains(c + ".out");
  ASSERT_EQ(single, outs.size() == 1) << "number of outputs";
  ASSERT_FALSE(file.contains(c + ".out." + std::to_string(outs.size())))
      << "the fixture has more outputs";

  std::vector<Tensor> upstream;
  for (size_t i = 0; i < outs.size(); ++i) {
    std::string suffix = single ? "" : "." + std::to_string(i);
    expect_close(outs[i], c + ".out" + suffix, tol);
    if (file.contains(c + ".grad_out" + suffix))
      upstream.push_back(fixture(c + ".grad_out" + suffix));
  }
  if (upstream.empty()) return;
  ASSERT_EQ(upstream.size(), outs.size());
  if (single) {
    outs[0].backward(upstream[0]);
  } else {
    // Several outputs: one scalar L = sum_i sum(out_i * grad_out_i), whose gradient is the same.
    Tensor loss = sum(mul(outs[0], upstream[0]));
    for (size_t i = 1; i < outs.size(); ++i) loss = add(loss, sum(mul(outs[i], upstream[i])));
    loss.backward();
  }
  for (size_t j = 0; j < names.size(); ++j) {
    if (inputs[j].requires_grad()) expect_close(inputs[j].grad(), c + ".grad_" + names[j], tol);
  }
}

void check(const std::string& c, const std::vector<std::string>& names, const SingleFn& f,
           Tol tol = {}) {
  check_multi(
      c, names, [&](In in) { return std::vector<Tensor>{f(in)}; }, tol);
}

// ---------------------------------------------------------------------------------------- elementwise

TEST(Reference, add) {
  check("add.broadcast", {"a", "b"}, [](In in) { return add(in[0], in[1]); });
  check("add.same_shape", {"a", "b"}, [](In in) { return in[0] + in[1]; });
}

TEST(Reference, sub) {
  check("sub.broadcast", {"a", "b"}, [](In in) { return sub(in[0], in[1]); });
}

TEST(Reference, mul) {
  check("mul.broadcast", {"a", "b"}, [](In in) { return mul(in[0], in[1]); });
}

TEST(Reference, div) {
  check("div.broadcast", {"a", "b"}, [](In in) { return div(in[0], in[1]); });
}

TEST(Reference, scalar_ops) {
  check("add_scalar", {"x"}, [](In in) { return add(in[0], 1.5); });
  check("mul_scalar", {"x"}, [](In in) { return mul(in[0], -2.5); });
  check("rsub", {"x"}, [](In in) { return rsub(3.0, in[0]); });
  check("rdiv", {"x"}, [](In in) { return rdiv(2.0, in[0]); });
}

TEST(Reference, pow) {
  check("pow.cube", {"x"}, [](In in) { return pow(in[0], 3.0); });
  check("pow.fractional", {"x"}, [](In in) { return pow(in[0], -1.5); });
}

TEST(Reference, maximum_minimum) {
  check("maximum", {"a", "b"}, [](In in) { return maximum(in[0], in[1]); });
  check("minimum", {"a", "b"}, [](In in) { return minimum(in[0], in[1]); });
}

TEST(Reference, clamp) {
  check("clamp", {"x"}, [](In in) { return clamp(in[0], -0.5, 0.5); });
}

TEST(Reference, comparisons) {
  check("eq", {"a", "b"}, [](In in) { return eq(in[0], in[1]); });
  check("gt", {"a", "b"}, [](In in) { return gt(in[0], in[1]); });
  check("lt", {"a", "b"}, [](In in) { return lt(in[0], in[1]); });
}

TEST(Reference, in_place) {
  Tensor dst = fixture("add_.dst");
  add_(dst, fixture("add_.b"), 0.5);
  expect_close(dst, "add_.out");
  dst = fixture("addcmul_.dst");
  addcmul_(dst, fixture("addcmul_.a"), fixture("addcmul_.b"), -0.3);
  expect_close(dst, "addcmul_.out");
  dst = fixture("addcdiv_.dst");
  addcdiv_(dst, fixture("addcdiv_.a"), fixture("addcdiv_.b"), 0.7);
  expect_close(dst, "addcdiv_.out");
}

// ------------------------------------------------------------------------------------- unary ops
// Reference.<name> for every row of core/backend/unary_ops.def that has a public op; its fixture
// case is <name>, with input x.

void check_unary(UnaryOp op) {
  const testing::UnaryCase& c = testing::unary_case(op);
  ASSERT_TRUE(reference().contains(std::string(c.name) + ".x"))
      << "UnaryOp::" << c.name << " is a row of core/backend/unary_ops.def, but "
      << "tests/reference/fixtures/ops.safetensors has no case \"" << c.name
      << "\": add one to tests/reference/generate_ops.py and run it";
  auto call = c.call;
  check(c.name, {"x"}, [call](In in) { return call(in[0]); });
}

#define DTRAIN_UNARY_OP(name, ...) \
  TEST(Reference, name) { check_unary(UnaryOp::name); }
#define DTRAIN_UNARY_OP_INTERNAL(...)
#include "core/backend/unary_ops.def"

// ---------------------------------------------------------------------------------------- reductions

TEST(Reference, sum) {
  check("sum.all", {"x"}, [](In in) { return sum(in[0]); });
  check("sum.dims", {"x"}, [](In in) { return sum(in[0], {0, 2}); });
  check("sum.keepdim", {"x"}, [](In in) { return sum(in[0], {-1}, true); });
}

TEST(Reference, mean) {
  check("mean.all", {"x"}, [](In in) { return mean(in[0]); });
  check("mean.dims", {"x"}, [](In in) { return mean(in[0], {1, 2}, true); });
}

TEST(Reference, max) {
  check("max.dim", {"x"}, [](In in) { return max(in[0], 1); });
  check("max.keepdim", {"x"}, [](In in) { return max(in[0], -1, true); });
  check("max.all", {"x"}, [](In in) { return max(in[0]); });
}

TEST(Reference, argmax) {
  check("argmax", {"x"}, [](In in) { return argmax(in[0], 1); });
}

// ---------------------------------------------------------------------------------------- shape

TEST(Reference, cat) {
  check("cat", {"a", "b", "c"}, [](In in) { return cat({in[0], in[1], in[2]}, 1); });
}

TEST(Reference, stack) {
  check("stack", {"a", "b", "c"}, [](In in) { return stack({in[0], in[1], in[2]}, 1); });
}

TEST(Reference, split) {
  check_multi("split", {"x"}, [](In in) { return split(in[0], 2, 1); });
  check_multi("chunk", {"x"}, [](In in) { return chunk(in[0], 2, 0); });
}

// ---------------------------------------------------------------------------------------- activations

TEST(Reference, softmax) {
  check("softmax.last", {"x"}, [](In in) { return softmax(in[0], -1); });
  check("softmax.middle", {"x"}, [](In in) { return softmax(in[0], 1); });
}

TEST(Reference, log_softmax) {
  check("log_softmax.last", {"x"}, [](In in) { return log_softmax(in[0], -1); });
  check("log_softmax.first", {"x"}, [](In in) { return log_softmax(in[0], 0); });
}

// ---------------------------------------------------------------------------------------- layers

TEST(Reference, layer_norm) {
  check("layer_norm.affine", {"x", "weight", "bias"},
        [](In in) { return layer_norm(in[0], in[1], in[2], 1e-5); });
  check("layer_norm.plain", {"x"},
        [](In in) { return layer_norm(in[0], Tensor(), Tensor(), 1e-6); });
}

TEST(Reference, add_layer_norm) {
  check_multi("add_layer_norm", {"x", "residual", "weight", "bias"}, [](In in) {
    auto [h, y] = add_layer_norm(in[0], in[1], in[2], in[3], 1e-5);
    return std::vector<Tensor>{h, y};
  });
}

TEST(Reference, embedding) {
  check("embedding.basic", {"weight", "indices"}, [](In in) { return embedding(in[0], in[1]); });
  check("embedding.padding_idx", {"weight", "indices"},
        [](In in) { return embedding(in[0], in[1], 2); });
}

TEST(Reference, cross_entropy) {
  const std::vector<std::string> io = {"logits", "targets"};
  check("cross_entropy.mean", io, [](In in) { return cross_entropy(in[0], in[1]); });
  check("cross_entropy.sum", io,
        [](In in) { return cross_entropy(in[0], in[1], -100, 0.0, Reduction::sum); });
  check("cross_entropy.none", io,
        [](In in) { return cross_entropy(in[0], in[1], -100, 0.0, Reduction::none); });
  check("cross_entropy.ignore_index", io, [](In in) { return cross_entropy(in[0], in[1], -100); });
  check("cross_entropy.label_smoothing", io,
        [](In in) { return cross_entropy(in[0], in[1], -100, 0.1); });
  check("cross_entropy.smoothing_ignore_sum", io,
        [](In in) { return cross_entropy(in[0], in[1], 1, 0.2, Reduction::sum); });
  check("cross_entropy.batched", io, [](In in) { return cross_entropy(in[0], in[1]); });
}

TEST(Reference, scaled_dot_product_attention) {
  const std::vector<std::string> qkv = {"q", "k", "v"};
  const std::vector<std::string> qkv_pad = {"q", "k", "v", "key_padding"};
  check("sdpa.plain", qkv, [](In in) { return scaled_dot_product_attention(in[0], in[1], in[2]); });
  check("sdpa.causal", qkv,
        [](In in) { return scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), true); });
  expect_close(key_padding_to_attn_mask(fixture("sdpa.padding.key_padding"), DType::f32),
               "sdpa.padding.attn_mask");
  check("sdpa.padding", qkv_pad, [](In in) {
    return scaled_dot_product_attention(in[0], in[1], in[2],
                                        key_padding_to_attn_mask(in[3], DType::f32));
  });
  check("sdpa.causal_padding_scale", qkv_pad, [](In in) {
    return scaled_dot_product_attention(
        in[0], in[1], in[2], key_padding_to_attn_mask(in[3], DType::f32), true, 0.0, false, 0.3);
  });
}

TEST(Reference, conv2d) {
  check("conv2d.plain", {"x", "weight", "bias"}, [](In in) { return conv2d(in[0], in[1], in[2]); });
  check("conv2d.stride_padding", {"x", "weight"},
        [](In in) { return conv2d(in[0], in[1], Tensor(), 2, 1); });
  check("conv2d.groups", {"x", "weight", "bias"},
        [](In in) { return conv2d(in[0], in[1], in[2], 1, 1, 2); });
}

TEST(Reference, max_pool2d) {
  check("max_pool2d.plain", {"x"}, [](In in) { return max_pool2d(in[0], 2); });
  check("max_pool2d.stride_padding", {"x"}, [](In in) { return max_pool2d(in[0], 3, 2, 1); });
}

TEST(Reference, avg_pool2d) {
  check("avg_pool2d.plain", {"x"}, [](In in) { return avg_pool2d(in[0], 2); });
  check("avg_pool2d.stride_padding", {"x"}, [](In in) { return avg_pool2d(in[0], 3, 2, 1); });
}

TEST(Reference, matmul) {
  for (const char* c :
       {"matmul.2d", "matmul.batched", "matmul.broadcast", "matmul.vec_mat", "matmul.mat_vec"}) {
    check(c, {"a", "b"}, [](In in) { return matmul(in[0], in[1]); });
  }
}

TEST(Reference, linear) {
  check("linear.bias", {"x", "weight", "bias"}, [](In in) { return linear(in[0], in[1], in[2]); });
  check("linear.no_bias", {"x", "weight"}, [](In in) { return linear(in[0], in[1]); });
}

// Every case in the fixture is exercised above: a case added to generate_ops.py without a test here
// fails this one.
TEST(Reference, every_fixture_case_is_tested) {
  // The unary ops' cases come from the table (Reference.<name> above).
  std::vector<std::string> tested = {"add.broadcast",
                                     "add.same_shape",
                                     "sub.broadcast",
                                     "mul.broadcast",
                                     "div.broadcast",
                                     "add_scalar",
                                     "mul_scalar",
                                     "rsub",
                                     "rdiv",
                                     "pow.cube",
                                     "pow.fractional",
                                     "maximum",
                                     "minimum",
                                     "clamp",
                                     "eq",
                                     "gt",
                                     "lt",
                                     "add_",
                                     "addcmul_",
                                     "addcdiv_",
                                     "sum.all",
                                     "sum.dims",
                                     "sum.keepdim",
                                     "mean.all",
                                     "mean.dims",
                                     "max.dim",
                                     "max.keepdim",
                                     "max.all",
                                     "argmax",
                                     "cat",
                                     "stack",
                                     "split",
                                     "chunk",
                                     "softmax.last",
                                     "softmax.middle",
                                     "log_softmax.last",
                                     "log_softmax.first",
                                     "layer_norm.affine",
                                     "layer_norm.plain",
                                     "embedding.basic",
                                     "embedding.padding_idx",
                                     "cross_entropy.mean",
                                     "cross_entropy.sum",
                                     "cross_entropy.none",
                                     "cross_entropy.ignore_index",
                                     "cross_entropy.label_smoothing",
                                     "cross_entropy.smoothing_ignore_sum",
                                     "cross_entropy.batched",
                                     "sdpa.plain",
                                     "sdpa.causal",
                                     "sdpa.padding",
                                     "sdpa.causal_padding_scale",
                                     "conv2d.plain",
                                     "conv2d.stride_padding",
                                     "conv2d.groups",
                                     "max_pool2d.plain",
                                     "max_pool2d.stride_padding",
                                     "avg_pool2d.plain",
                                     "avg_pool2d.stride_padding",
                                     "matmul.2d",
                                     "matmul.batched",
                                     "matmul.broadcast",
                                     "matmul.vec_mat",
                                     "matmul.mat_vec",
                                     "linear.bias",
                                     "linear.no_bias",
                                     "add_layer_norm"};
  for (const auto& c : testing::kUnaryCases) {
    if (c.call) tested.push_back(c.name);  // Reference.<name>, generated above
  }
  for (const auto& name : reference().names()) {
    // A case name is everything before the tensor's own suffix (".x", ".out", ".grad_x", ".out.0").
    bool covered = false;
    for (const auto& c : tested) covered |= name.rfind(c + ".", 0) == 0;
    EXPECT_TRUE(covered) << name << " belongs to no tested case";
  }
}

}  // namespace
}  // namespace dtrain
