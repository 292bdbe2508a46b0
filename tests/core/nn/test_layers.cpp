// The layers on their own: initialisation statistics (as torch initialises), seeded
// reproducibility, dropout modes, positional encodings, argument errors, and finite-difference
// gradients of the Transformer blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/nn/nn.h"
#include "core/ops/ops.h"
#include "gradcheck.h"

namespace dtrain::nn {
namespace {

struct Stats {
  double mean = 0, var = 0, min = 0, max = 0;
  size_t n = 0;
};

Stats stats_of(const Tensor& t) {
  std::vector<double> v = t.to_vector<double>();
  Stats s;
  s.n = v.size();
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(s.n);
  for (double x : v) s.var += (x - s.mean) * (x - s.mean);
  s.var /= static_cast<double>(s.n);
  return s;
}

// U(-b, b): mean 0, variance b^2 / 3, every value inside the bounds. The tolerances are several
// standard errors wide for n >= 10^4, so the checks fail only for a wrong distribution.
void expect_uniform(const Tensor& t, double bound) {
  Stats s = stats_of(t);
  double n = static_cast<double>(s.n);
  EXPECT_GE(s.min, -bound);
  EXPECT_LE(s.max, bound);
  EXPECT_GT(s.max, bound * 0.99);  // the range is filled
  EXPECT_LT(s.min, -bound * 0.99);
  double var = bound * bound / 3.0;
  EXPECT_NEAR(s.mean, 0.0, 5.0 * std::sqrt(var / n));
  EXPECT_NEAR(s.var, var, var * 5.0 * std::sqrt(0.8 / n));  // Var(s^2) = 0.8 var^2 / n for uniform
}

TEST(NnInit, LinearIsUniformWithTorchBounds) {
  manual_seed(11);
  Linear fc(256, 512);
  EXPECT_EQ(fc.weight.shape(), (Shape{512, 256}));
  EXPECT_EQ(fc.bias.shape(), (Shape{512}));
  // kaiming_uniform_(a = sqrt(5)): b = sqrt(2 / 6) * sqrt(3 / 256) = 1/16; the bias also 1/16.
  expect_uniform(fc.weight, 1.0 / 16.0);
  Stats b = stats_of(fc.bias);
  EXPECT_LE(b.max, 1.0 / 16.0);
  EXPECT_GE(b.min, -1.0 / 16.0);
  EXPECT_NEAR(b.var, 1.0 / 768.0, 1.0 / 768.0 * 0.25);

  Linear no_bias(4, 3, false);
  EXPECT_FALSE(no_bias.bias.defined());
  EXPECT_EQ(no_bias.named_parameters().size(), 1u);
}

TEST(NnInit, LayerNormStartsAsIdentityAffine) {
  LayerNorm ln(6, 1e-6);
  EXPECT_EQ(ln.weight.to_vector<float>(), std::vector<float>(6, 1.0f));
  EXPECT_EQ(ln.bias.to_vector<float>(), std::vector<float>(6, 0.0f));
  EXPECT_EQ(ln.eps(), 1e-6);
  // Normalises each row to mean 0, variance 1 (biased), as torch does.
  Tensor y = ln.forward(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {1, 6}));
  Stats s = stats_of(y);
  EXPECT_NEAR(s.mean, 0.0, 1e-6);
  EXPECT_NEAR(s.var, 1.0, 1e-5);
  LayerNorm bare(6, 1e-5, false);
  EXPECT_TRUE(bare.named_parameters().empty());
}

TEST(NnInit, SeedMakesInitReproducible) {
  manual_seed(42);
  MultiHeadAttention a(16, 4);
  manual_seed(42);
  MultiHeadAttention b(16, 4);
  manual_seed(43);
  MultiHeadAttention c(16, 4);
  auto pa = a.named_parameters(), pb = b.named_parameters(), pc = c.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].second.to_vector<float>(), pb[i].second.to_vector<float>()) << pa[i].first;
    EXPECT_NE(pa[i].second.to_vector<float>(), pc[i].second.to_vector<float>()) << pa[i].first;
  }
  // An explicit generator gives the same values in any dtype.
  Tensor f32 = Tensor::empty({100}), f64 = Tensor::empty({100}, DType::f64);
  Generator g1(5), g2(5);
  init::normal_(f32, 0.0, 1.0, &g1);
  init::normal_(f64, 0.0, 1.0, &g2);
  std::vector<double> v64 = f64.to_vector<double>();
  std::vector<float> v32 = f32.to_vector<float>();
  for (size_t i = 0; i < v32.size(); ++i) EXPECT_EQ(v32[i], static_cast<float>(v64[i]));
}

TEST(NnInit, TruncNormalStaysWithinTwoStd) {
  Tensor t = Tensor::empty({200, 500});
  init::trunc_normal_(t, 0.02);
  Stats s = stats_of(t);
  EXPECT_GE(s.min, -0.04);
  EXPECT_LE(s.max, 0.04);
  EXPECT_LT(s.min, -0.039);
  EXPECT_GT(s.max, 0.039);
  EXPECT_NEAR(s.mean, 0.0, 5.0 * 0.02 / std::sqrt(1e5));
  // Var of N(0, 1) truncated to [-2, 2]: 1 - 2 * 2 phi(2) / (2 Phi(2) - 1) = 0.773741.
  double var = 0.02 * 0.02 * 0.773741;
  EXPECT_NEAR(s.var, var, var * 0.02);

  Tensor shifted = Tensor::empty({1000}, DType::f64);
  init::trunc_normal_(shifted, 1.0, 3.0, -1.0, 0.5);
  Stats k = stats_of(shifted);
  EXPECT_GE(k.min, 2.0);
  EXPECT_LE(k.max, 3.5);
  EXPECT_THROW(init::trunc_normal_(Tensor::empty({2}, DType::i64)), Error);
}

TEST(NnInit, KaimingAndXavierBounds) {
  Tensor w = Tensor::empty({64, 16, 3, 3});  // fan_in 144, fan_out 576
  auto [fan_in, fan_out] = init::fan_in_and_fan_out(w);
  EXPECT_EQ(fan_in, 144);
  EXPECT_EQ(fan_out, 576);
  init::kaiming_uniform_(w);  // a = 0: b = sqrt(2) * sqrt(3 / 144)
  expect_uniform(w, std::sqrt(6.0 / 144.0));
  init::xavier_uniform_(w, 0.5);
  expect_uniform(w, 0.5 * std::sqrt(6.0 / 720.0));
  EXPECT_THROW(init::fan_in_and_fan_out(Tensor::empty({3})), Error);
}

TEST(NnInit, EmbeddingIsStandardNormalWithZeroPaddingRow) {
  manual_seed(3);
  Embedding emb(400, 64, /*padding_idx=*/3);
  EXPECT_EQ(emb.weight.select(0, 3).to_vector<float>(), std::vector<float>(64, 0.0f));
  Tensor others = emb.weight.narrow(0, 4, 396);
  Stats s = stats_of(others);
  double n = static_cast<double>(s.n);
  EXPECT_NEAR(s.mean, 0.0, 5.0 / std::sqrt(n));
  EXPECT_NEAR(s.var, 1.0, 5.0 * std::sqrt(2.0 / n));

  // Lookup and gradient: the padding row gets none.
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{3, 7, 7, 3}, {2, 2}, DType::i64);
  Tensor y = emb.forward(ids);
  EXPECT_EQ(y.shape(), (Shape{2, 2, 64}));
  EXPECT_EQ(y.select(0, 0).select(0, 1).to_vector<float>(),
            emb.weight.select(0, 7).to_vector<float>());
  sum(y).backward();
  EXPECT_EQ(emb.weight.grad().select(0, 3).to_vector<float>(), std::vector<float>(64, 0.0f));
  EXPECT_EQ(emb.weight.grad().select(0, 7).to_vector<float>(), std::vector<float>(64, 2.0f));
  EXPECT_THROW(Embedding(4, 2, 4), Error);
}

TEST(NnLayers, DropoutOnlyInTraining) {
  Dropout drop(0.5);
  Tensor x = Tensor::ones({1000});
  std::vector<float> y = drop.forward(x).to_vector<float>();
  size_t zeros = static_cast<size_t>(std::count(y.begin(), y.end(), 0.0f));
  EXPECT_GT(zeros, 400u);
  EXPECT_LT(zeros, 600u);
  for (float v : y) EXPECT_TRUE(v == 0.0f || v == 2.0f);
  drop.eval();
  EXPECT_EQ(drop.forward(x).to_vector<float>(), x.to_vector<float>());
  EXPECT_THROW(Dropout(1.0), Error);

  // The Transformer blocks are deterministic in eval mode even with dropout configured.
  EncoderLayer layer(8, 2, 16, {.dropout = 0.3, .attn_dropout = 0.3});
  layer.eval();
  Tensor in = Tensor::randn({2, 3, 8});
  EXPECT_EQ(layer.forward(in).to_vector<float>(), layer.forward(in).to_vector<float>());
  layer.train();
  EXPECT_NE(layer.forward(in).to_vector<float>(), layer.forward(in).to_vector<float>());
}

TEST(NnLayers, SinusoidalPositionsMatchTorchFormula) {
  SafetensorsFile f = load_safetensors(std::string(DTRAIN_SOURCE_DIR) +
                                       "/tests/reference/fixtures/nn_positional.safetensors");
  const Tensor& expected = f.at("pe");  // [7, 6] f64
  Tensor table = sinusoidal_table(7, 6, DType::f64);
  std::vector<double> a = table.to_vector<double>(), e = expected.to_vector<double>();
  ASSERT_EQ(a.size(), e.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], e[i], 1e-12) << i;

  PositionalEncoding pe(7, 6);
  EXPECT_TRUE(pe.state_dict().empty());  // non-persistent: rebuilt, never saved
  EXPECT_EQ(pe.named_buffers().size(), 1u);
  EXPECT_TRUE(pe.named_parameters().empty());
  Tensor x = Tensor::randn({2, 4, 6});
  Tensor y = pe.forward(x);
  Tensor expected_y = x + expected.narrow(0, 0, 4).to(DType::f32);
  std::vector<float> got = y.to_vector<float>(), want = expected_y.to_vector<float>();
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6);
  EXPECT_THROW(pe.forward(Tensor::randn({1, 8, 6})), Error);  // longer than max_len

  PositionalEncoding learned(7, 6, PositionKind::learned);
  ASSERT_EQ(learned.named_parameters().size(), 1u);
  EXPECT_EQ(learned.named_parameters()[0].first, "weight");
  EXPECT_EQ(learned.state_dict().size(), 1u);
  Stats s = stats_of(learned.table());
  EXPECT_LE(s.max, 0.04);
  EXPECT_GE(s.min, -0.04);
  sum(learned.forward(x)).backward();
  // Positions 0..3 were used twice (batch 2), positions 4..6 never.
  std::vector<float> g = learned.table().grad().to_vector<float>();
  EXPECT_EQ(g[0], 2.0f);
  EXPECT_EQ(g[4 * 6], 0.0f);
}

TEST(NnLayers, AttentionChecksItsArguments) {
  MultiHeadAttention self(8, 2);
  EXPECT_EQ(self.head_dim(), 4);
  EXPECT_TRUE(self.qkv != nullptr);
  EXPECT_TRUE(self.q == nullptr);
  Tensor x = Tensor::randn({2, 3, 8});
  EXPECT_EQ(self.forward(x).shape(), (Shape{2, 3, 8}));
  EXPECT_THROW(self.forward(Tensor::randn({2, 3, 6})), Error);
  EXPECT_THROW(self.forward(x, x), Error);  // not a cross-attention module
  EXPECT_THROW(self.forward(x, {.key_padding_mask = Tensor::zeros({2, 4}, DType::i64)}), Error);
  EXPECT_THROW(MultiHeadAttention(10, 3), Error);

  MultiHeadAttention cross(8, 2, {.qkv_bias = false, .cross = true, .kv_dim = 5});
  std::vector<std::string> names;
  for (const auto& [name, p] : cross.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"q.weight", "kv.weight", "proj.weight", "proj.bias"}));
  EXPECT_EQ(cross.kv->weight.shape(), (Shape{16, 5}));
  EXPECT_EQ(cross.forward(x, Tensor::randn({2, 4, 5})).shape(), (Shape{2, 3, 8}));
  EXPECT_THROW(cross.forward(x), Error);
  EXPECT_THROW(cross.forward(x, Tensor::randn({2, 4, 8})), Error);
}

TEST(NnLayers, TimmBlockNames) {
  EncoderLayer block(8, 2, 32, {.eps = 1e-6});
  std::vector<std::string> names;
  for (const auto& [name, p] : block.named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"norm1.weight", "norm1.bias", "attn.qkv.weight",
                                             "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                                             "norm2.weight", "norm2.bias", "mlp.fc1.weight",
                                             "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"}));
  EXPECT_EQ(block.attn->qkv->weight.shape(), (Shape{24, 8}));
  EXPECT_EQ(block.mlp->fc1->weight.shape(), (Shape{32, 8}));

  DecoderLayer dec(8, 2, 32);
  names.clear();
  for (const auto& [name, p] : dec.named_parameters())
    if (name.find(".weight") != std::string::npos) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"norm1.weight", "attn.qkv.weight", "attn.proj.weight",
                                             "norm2.weight", "cross_attn.q.weight",
                                             "cross_attn.kv.weight", "cross_attn.proj.weight",
                                             "norm3.weight", "mlp.fc1.weight", "mlp.fc2.weight"}));
}

// Finite differences through a whole block (every op composed), for the input gradients; the
// parameter gradients are compared with torch in test_nn_reference.cpp.
TEST(GradCheck, EncoderLayer) {
  manual_seed(8);
  for (bool pre_norm : {true, false}) {
    EncoderLayer layer(4, 2, 6, {.pre_norm = pre_norm});
    layer.to(DType::f64);
    Tensor pad = Tensor::from_vector(std::vector<int64_t>{0, 0, 1}, {1, 3}, DType::i64);
    testing::expect_gradcheck(
        [&](const std::vector<Tensor>& in) {
          return layer.forward(in[0], {.key_padding_mask = pad});
        },
        {Tensor::randn({1, 3, 4}, DType::f64)}, 1e-6, 1e-6);
  }
}

TEST(GradCheck, DecoderLayer) {
  manual_seed(9);
  for (bool pre_norm : {true, false}) {
    DecoderLayer layer(4, 2, 6, {.pre_norm = pre_norm, .activation = Activation::gelu_tanh}, 3);
    layer.to(DType::f64);
    testing::expect_gradcheck(
        [&](const std::vector<Tensor>& in) { return layer.forward(in[0], in[1]); },
        {Tensor::randn({1, 3, 4}, DType::f64), Tensor::randn({1, 2, 3}, DType::f64)}, 1e-6, 1e-6);
  }
}

}  // namespace
}  // namespace dtrain::nn
