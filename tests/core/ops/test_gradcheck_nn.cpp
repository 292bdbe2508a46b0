// Finite-difference gradient checks (f64) of the neural-network ops: layer norm, dropout, the fused
// residual ops (add_layer_norm, dropout_add), embedding, cross entropy, attention, convolution and
// pooling.
#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

using testing::expect_gradcheck;

Tensor randn64(const Shape& s) { return Tensor::randn(s, DType::f64); }
Tensor indices(const std::vector<int64_t>& v, const Shape& s) {
  return Tensor::from_vector(v, s, DType::i64);
}

TEST(GradCheck, layer_norm) {
  manual_seed(1);
  expect_gradcheck(
      [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-5); },
      {randn64({2, 3, 5}), randn64({5}), randn64({5})});
  // Without the affine part, and with a larger eps (it enters rstd).
  expect_gradcheck(
      [](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor(), 0.1); },
      {randn64({4, 6})});
  // Weight only: the bias slot stays empty.
  expect_gradcheck([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor()); },
                   {randn64({3, 4}), randn64({4})});
}

TEST(GradCheck, dropout) {
  manual_seed(2);
  Generator gen;
  expect_gradcheck(
      [&gen](const std::vector<Tensor>& in) {
        gen.manual_seed(77);  // the same mask on every evaluation
        return dropout(in[0], 0.4, true, &gen);
      },
      {randn64({5, 7})});
  // A non-contiguous input.
  expect_gradcheck(
      [&gen](const std::vector<Tensor>& in) {
        gen.manual_seed(78);
        return dropout(in[0].transpose(0, 1), 0.5, true, &gen);
      },
      {randn64({4, 3})});
}

// Both outputs enter the checked function (stacked), so the gradient through h and through y, and
// their sum in the one backward kernel, are all checked; then y alone (the post-LN use).
TEST(GradCheck, add_layer_norm) {
  manual_seed(3);
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        auto [h, y] = add_layer_norm(in[0], in[1], in[2], in[3], 1e-5);
        return stack({h, y}, 0);
      },
      {randn64({2, 3, 5}), randn64({2, 3, 5}), randn64({5}), randn64({5})});
  expect_gradcheck(
      [](const std::vector<Tensor>& in) {
        return add_layer_norm(in[0], in[1], Tensor(), Tensor(), 0.1).y;
      },
      {randn64({4, 7}), randn64({4, 7})});
}

TEST(GradCheck, dropout_add) {
  manual_seed(4);
  Generator gen;
  expect_gradcheck(
      [&gen](const std::vector<Tensor>& in) {
        gen.manual_seed(79);  // the same seed, so the same mask, on every evaluation
        return dropout_add(in[0], in[1], 0.4, true, &gen);
      },
      {randn64({5, 7}), randn64({5, 7})});
  // A non-contiguous branch.
  expect_gradcheck(
      [&gen](const std::vector<Tensor>& in) {
        gen.manual_seed(80);
        return dropout_add(in[0].transpose(0, 1), in[1], 0.5, true, &gen);
      },
      {randn64({4, 3}), randn64({3, 4})});
}

TEST(GradCheck, embedding) {
  manual_seed(3);
  // Repeated indices sum their gradients; padding_idx 4 is not looked up here, so every row's
  // gradient is what finite differences give.
  const Tensor idx = indices({0, 2, 2, 5, 1, 2}, {2, 3});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], idx, 4); },
                   {randn64({6, 3})});
  expect_gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], idx); },
                   {randn64({6, 3})});
}

TEST(GradCheck, embedding_padding_row_gets_no_gradient) {
  manual_seed(4);
  Tensor w = randn64({5, 3});
  w.set_requires_grad(true);
  const Tensor idx = indices({1, 3, 1, 0, 3}, {5});
  Tensor out = embedding(w, idx, 3);
  // The padding row is still read in the forward ...
  std::vector<double> o = out.to_vector<double>();
  std::vector<double> wv = w.to_vector<double>();
  for (int j = 0; j < 3; ++j) EXPECT_EQ(o[3 + j], wv[9 + j]);
  sum(out).backward();
  // ... but receives no gradient; the other rows count their uses.
  std::vector<double> g = w.grad().to_vector<double>();
  const double uses[5] = {1, 2, 0, 0, 0};
  for (int r = 0; r < 5; ++r) {
    for (int j = 0; j < 3; ++j) EXPECT_EQ(g[r * 3 + j], uses[r]) << "row " << r;
  }
}

TEST(GradCheck, cross_entropy) {
  manual_seed(5);
  // Row 2 is ignored (-100); row 4 uses a custom ignore_index further down.
  const Tensor targets = indices({1, 0, -100, 3, 2}, {5});
  for (Reduction red : {Reduction::mean, Reduction::sum, Reduction::none}) {
    for (double smoothing : {0.0, 0.15}) {
      SCOPED_TRACE(::testing::Message()
                   << "reduction " << static_cast<int>(red) << " smoothing " << smoothing);
      expect_gradcheck(
          [&](const std::vector<Tensor>& in) {
            return cross_entropy(in[0], targets, -100, smoothing, red);
          },
          {randn64({5, 4})});
    }
  }
  // [..., C] logits with a custom ignore_index.
  const Tensor t2 = indices({2, 7, 0, 1, 7, 2}, {2, 3});
  expect_gradcheck(
      [&](const std::vector<Tensor>& in) {
        return cross_entropy(in[0], t2, 7, 0.1, Reduction::mean);
      },
      {randn64({2, 3, 3})});
}

TEST(GradCheck, scaled_dot_product_attention) {
  manual_seed(6);
  const Shape qs{2, 2, 3, 4}, ks{2, 2, 5, 4};
  {
    SCOPED_TRACE("plain, Tq != Tk");
    expect_gradcheck(
        [](const std::vector<Tensor>& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2]);
        },
        {randn64(qs), randn64(ks), randn64(ks)});
  }
  {
    SCOPED_TRACE("causal, explicit scale");
    expect_gradcheck(
        [](const std::vector<Tensor>& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), true, 0.0, false, 0.3);
        },
        {randn64(qs), randn64(qs), randn64(qs)});
  }
  {
    SCOPED_TRACE("key padding mask and causal");
    // Batch 0 pads its last key, batch 1 its last two.
    const Tensor pad =
        Tensor::from_vector(std::vector<int64_t>{0, 0, 0, 0, 1, 0, 0, 0, 1, 1}, {2, 5}, DType::i64);
    const Tensor mask = key_padding_to_attn_mask(pad, DType::f64);
    expect_gradcheck(
        [&](const std::vector<Tensor>& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], mask);
        },
        {randn64(qs), randn64(ks), randn64(ks)});
    const Tensor pad3 =
        Tensor::from_vector(std::vector<int64_t>{0, 0, 1, 0, 0, 0}, {2, 3}, DType::i64);
    const Tensor mask3 = key_padding_to_attn_mask(pad3, DType::f64);
    expect_gradcheck(
        [&](const std::vector<Tensor>& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], mask3, true);
        },
        {randn64(qs), randn64(qs), randn64(qs)});
  }
  {
    SCOPED_TRACE("additive float mask that needs a gradient");
    expect_gradcheck(
        [](const std::vector<Tensor>& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], in[3]);
        },
        {randn64(qs), randn64(ks), randn64(ks), randn64({1, 1, 3, 5})});
  }
  {
    SCOPED_TRACE("dropout on the attention weights");
    Generator gen;
    expect_gradcheck(
        [&gen](const std::vector<Tensor>& in) {
          gen.manual_seed(99);
          return scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), true, 0.3, true, 0.0,
                                              &gen);
        },
        {randn64(qs), randn64(qs), randn64(qs)});
  }
}

TEST(GradCheck, conv2d) {
  manual_seed(7);
  {
    SCOPED_TRACE("stride 2, padding 1, groups 2, bias");
    expect_gradcheck(
        [](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], 2, 1, 2); },
        {randn64({2, 4, 5, 5}), randn64({6, 2, 3, 3}), randn64({6})});
  }
  {
    SCOPED_TRACE("depthwise, padding 1, no bias");
    expect_gradcheck(
        [](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), 1, 1, 3); },
        {randn64({1, 3, 4, 4}), randn64({3, 1, 3, 3})});
  }
  {
    SCOPED_TRACE("depthwise multiplier 2, stride 2, non-square input");
    expect_gradcheck(
        [](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], 2, 0, 2); },
        {randn64({2, 2, 5, 4}), randn64({4, 1, 2, 2}), randn64({4})});
  }
  {
    SCOPED_TRACE("1x1 (the direct GEMM path), groups 1 and 3");
    expect_gradcheck([](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2]); },
                     {randn64({2, 3, 3, 2}), randn64({4, 3, 1, 1}), randn64({4})});
    expect_gradcheck(
        [](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], Tensor(), 1, 0, 3); },
        {randn64({2, 6, 2, 3}), randn64({3, 2, 1, 1})});
  }
  {
    SCOPED_TRACE("patch embedding: kernel = stride");
    expect_gradcheck([](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], 2); },
                     {randn64({2, 1, 4, 6}), randn64({3, 1, 2, 2}), randn64({3})});
  }
}

TEST(GradCheck, max_pool2d) {
  manual_seed(8);
  expect_gradcheck([](const std::vector<Tensor>& in) { return max_pool2d(in[0], 3, 2, 1); },
                   {randn64({2, 2, 5, 5})});
  // Default stride (= kernel), odd size: the last row and column are dropped.
  expect_gradcheck([](const std::vector<Tensor>& in) { return max_pool2d(in[0], 2); },
                   {randn64({1, 3, 5, 5})});
  // Overlapping windows send several gradients to one input.
  expect_gradcheck([](const std::vector<Tensor>& in) { return max_pool2d(in[0], 2, 1); },
                   {randn64({1, 1, 4, 4})});
}

TEST(GradCheck, avg_pool2d) {
  manual_seed(9);
  expect_gradcheck([](const std::vector<Tensor>& in) { return avg_pool2d(in[0], 3, 2, 1); },
                   {randn64({2, 2, 5, 5})});
  expect_gradcheck([](const std::vector<Tensor>& in) { return avg_pool2d(in[0], 2); },
                   {randn64({1, 3, 5, 4})});
  expect_gradcheck([](const std::vector<Tensor>& in) { return avg_pool2d(in[0], 2, 1, 1); },
                   {randn64({1, 1, 3, 3})});
}

}  // namespace
}  // namespace dtrain
