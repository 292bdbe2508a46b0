// MultiHeadAttention, EncoderLayer and DecoderLayer against torch.nn (fixtures from
// tests/reference/generate_nn.py): the same weights and inputs give the same outputs, parameter
// gradients and input gradients. Loading the fixture's weights by name also checks that the
// parameter names are the ones the script mapped torch's to.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <string>

#include "core/io/safetensors.h"
#include "core/nn/nn.h"
#include "core/ops/ops.h"

namespace dtrain::nn {
namespace {

SafetensorsFile load_fixture(const std::string& name) {
  return load_safetensors(std::string(DTRAIN_SOURCE_DIR) + "/tests/reference/fixtures/nn_" + name +
                          ".safetensors");
}

// The fixture's tensors whose names start with `prefix`, with the prefix removed.
NamedTensors with_prefix(const SafetensorsFile& f, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, t] : f.tensors())
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), t);
  return out;
}

void expect_close(const Tensor& actual, const Tensor& expected, double tol,
                  const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << " is undefined";
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double err = std::fabs(a[i] - e[i]) / (1.0 + std::fabs(e[i]));
    if (!(err <= worst)) {  // also catches NaN
      worst = err;
      at = i;
    }
  }
  EXPECT_LE(worst, tol) << what << ": element " << at << " is " << a[at] << ", torch has " << e[at];
}

using Inputs = std::map<std::string, Tensor>;
using Forward = std::function<Tensor(const Inputs& inputs)>;

// Loads the weights into `module` (converted to `dtype`), runs `forward` on the fixture's floating
// inputs (requiring grad) and the masks, backpropagates grad_output and compares everything.
void check_against_torch(Module& module, const std::string& fixture, DType dtype, double tol,
                         const Forward& forward) {
  SafetensorsFile f = load_fixture(fixture);
  module.eval();
  module.to(dtype);
  module.load_state_dict(with_prefix(f, "param."));

  Inputs inputs;
  for (const auto& [name, t] : with_prefix(f, "input.")) {
    if (is_floating(t.dtype()) && f.contains("grad.input." + name)) {
      Tensor leaf = t.to(dtype).clone();
      leaf.set_requires_grad(true);
      inputs[name] = leaf;
    } else {
      inputs[name] = t;  // masks
    }
  }
  Tensor out = forward(inputs);
  EXPECT_EQ(out.dtype(), dtype);
  expect_close(out, f.at("output"), tol, fixture + " output");
  out.backward(f.at("grad_output").to(dtype));

  size_t grads = 0;
  for (const auto& [name, p] : module.named_parameters()) {
    expect_close(p.grad(), f.at("grad." + name), tol, fixture + " grad of " + name);
    ++grads;
  }
  for (const auto& [name, t] : inputs) {
    if (!t.requires_grad()) continue;
    expect_close(t.grad(), f.at("grad.input." + name), tol, fixture + " grad of input " + name);
    ++grads;
  }
  EXPECT_EQ(grads, with_prefix(f, "grad.").size()) << fixture << ": a gradient went unchecked";
}

constexpr double kTolF64 = 1e-10;
constexpr double kTolF32 = 2e-5;

TEST(NnReference, SelfAttentionWithMaskAndPadding) {
  MultiHeadAttention mha(8, 2);
  check_against_torch(mha, "mha_self_padding", DType::f64, kTolF64, [&](const Inputs& in) {
    return mha.forward(in.at("x"), {.attn_mask = in.at("attn_mask"),
                                    .key_padding_mask = in.at("key_padding_mask")});
  });
}

TEST(NnReference, SelfAttentionCausal) {
  MultiHeadAttention mha(8, 2);
  check_against_torch(mha, "mha_self_causal", DType::f64, kTolF64,
                      [&](const Inputs& in) { return mha.forward(in.at("x"), {.causal = true}); });
}

TEST(NnReference, CrossAttentionWithMemoryPadding) {
  MultiHeadAttention mha(8, 2, {.cross = true, .kv_dim = 6});
  check_against_torch(mha, "mha_cross", DType::f64, kTolF64, [&](const Inputs& in) {
    return mha.forward(in.at("x"), in.at("memory"),
                       {.key_padding_mask = in.at("key_padding_mask")});
  });
}

// The timm ViT block: pre-LN, GELU (erf), LayerNorm eps 1e-6.
TEST(NnReference, EncoderLayerPreNorm) {
  for (DType dtype : {DType::f64, DType::f32}) {
    EncoderLayer layer(8, 2, 16, {.pre_norm = true, .eps = 1e-6, .activation = Activation::gelu});
    check_against_torch(layer, "encoder_pre", dtype, dtype == DType::f64 ? kTolF64 : kTolF32,
                        [&](const Inputs& in) {
                          return layer.forward(in.at("x"),
                                               {.key_padding_mask = in.at("key_padding_mask")});
                        });
  }
}

TEST(NnReference, EncoderLayerPostNorm) {
  EncoderLayer layer(8, 2, 16, {.pre_norm = false, .eps = 1e-5, .activation = Activation::relu});
  check_against_torch(layer, "encoder_post", DType::f64, kTolF64, [&](const Inputs& in) {
    return layer.forward(in.at("x"), {.causal = true});
  });
}

TEST(NnReference, DecoderLayerPreNorm) {
  DecoderLayer layer(8, 2, 16, {.pre_norm = true, .activation = Activation::gelu});
  check_against_torch(layer, "decoder_pre", DType::f64, kTolF64, [&](const Inputs& in) {
    return layer.forward(in.at("x"), in.at("memory"), {.causal = true},
                         {.key_padding_mask = in.at("memory_key_padding_mask")});
  });
}

TEST(NnReference, DecoderLayerPostNorm) {
  for (DType dtype : {DType::f64, DType::f32}) {
    DecoderLayer layer(8, 2, 16, {.pre_norm = false, .activation = Activation::relu});
    check_against_torch(layer, "decoder_post", dtype, dtype == DType::f64 ? kTolF64 : kTolF32,
                        [&](const Inputs& in) {
                          return layer.forward(
                              in.at("x"), in.at("memory"),
                              {.key_padding_mask = in.at("key_padding_mask"), .causal = true},
                              {.key_padding_mask = in.at("memory_key_padding_mask")});
                        });
  }
}

}  // namespace
}  // namespace dtrain::nn
