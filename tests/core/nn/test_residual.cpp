// The fused residual connections inside the Transformer blocks (core/nn/residual.h) against the
// blocks' equations written out with plain ops. In training with residual dropout, each
// x + drop(f) is rebuilt from the seed the block draws (the default generator's next u64, taken in
// the same order) and the Philox mask of dropout_add_mask.h; the evaluation path (add_layer_norm)
// is also checked against PyTorch by NnReference.*.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/backend/dropout_add_mask.h"
#include "core/nn/nn.h"
#include "core/ops/ops.h"

namespace dtrain::nn {
namespace {

constexpr double kDropout = 0.25;

// x + branch * m / (1 - p), with m drawn from the next seed of the default generator (as
// dropout_add draws it).
Tensor host_dropout_add(const Tensor& branch, const Tensor& x) {
  const uint64_t seed = default_generator().next_u64();
  std::vector<double> m(static_cast<size_t>(branch.numel()));
  for (size_t i = 0; i < m.size(); ++i) {
    m[i] =
        dropout_add_keep(seed, i, static_cast<float>(kDropout)) ? dropout_add_scale(kDropout) : 0.0;
  }
  return x + branch * Tensor::from_vector(m, branch.shape(), branch.dtype());
}

void expect_close(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  for (size_t i = 0; i < av.size(); ++i) {
    ASSERT_NEAR(av[i], bv[i], 1e-5 * (1.0 + std::fabs(bv[i]))) << what << " element " << i;
  }
}

TEST(Residual, EncoderLayerTrainingWithDropout) {
  for (bool pre_norm : {true, false}) {
    manual_seed(21);
    EncoderLayer layer(16, 4, 32,
                       TransformerLayerOptions{.pre_norm = pre_norm, .dropout = kDropout});
    layer.train();
    const Tensor x = Tensor::randn({2, 5, 16});
    manual_seed(5);
    const Tensor fused = layer.forward(x);
    manual_seed(5);
    Tensor composed;
    if (pre_norm) {
      // x + drop(attn(norm1(x))), then h + drop(mlp(norm2(h))).
      Tensor h = host_dropout_add(layer.attn->forward(layer.norm1->forward(x)), x);
      composed = host_dropout_add(layer.mlp->forward(layer.norm2->forward(h)), h);
    } else {
      Tensor h = layer.norm1->forward(host_dropout_add(layer.attn->forward(x), x));
      composed = layer.norm2->forward(host_dropout_add(layer.mlp->forward(h), h));
    }
    expect_close(fused, composed, pre_norm ? "pre-LN" : "post-LN");
  }
}

TEST(Residual, DecoderLayerTrainingWithDropout) {
  manual_seed(22);
  DecoderLayer layer(16, 4, 32, TransformerLayerOptions{.dropout = kDropout});
  layer.train();
  const Tensor x = Tensor::randn({2, 5, 16}), memory = Tensor::randn({2, 3, 16});
  manual_seed(6);
  const Tensor fused = layer.forward(x, memory);
  manual_seed(6);
  const AttentionMask causal{.causal = true};
  Tensor h = host_dropout_add(layer.attn->forward(layer.norm1->forward(x), causal), x);
  h = host_dropout_add(layer.cross_attn->forward(layer.norm2->forward(h), memory), h);
  const Tensor composed = host_dropout_add(layer.mlp->forward(layer.norm3->forward(h)), h);
  expect_close(fused, composed, "decoder pre-LN");
}

}  // namespace
}  // namespace dtrain::nn
