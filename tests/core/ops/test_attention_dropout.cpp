// Attention dropout in the fused path (CPU backend): the keep mask of score (b, h, i, j) is
// sdpa_dropout_keep(seed, b, h, i, j, p) with the seed drawn once per call from the Generator, and
//   out = (softmax(S) Z) V,  Z = M / (1 - p).
// Checked by finite differences (f64), against the composed formula with the mask built on the
// host, through the kept fraction, and at p = 0 (bitwise no dropout) and p = 1 (zeros).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/backend/sdpa_dropout.h"
#include "core/ops/ops.h"
#include "gradcheck.h"

namespace dtrain {
namespace {

using testing::expect_gradcheck;

// The seed the op draws from a generator seeded with `gen_seed`.
uint64_t seed_from(uint64_t gen_seed) { return Generator(gen_seed).next_u64(); }

// Z = M / (1 - p) of every score, [B, H, Tq, Tk], from the host's copy of the mask function.
Tensor host_dropout_factor(int64_t batch, int64_t heads, int64_t tq, int64_t tk, double p,
                           uint64_t seed, DType dtype) {
  std::vector<double> z(static_cast<size_t>(batch * heads * tq * tk));
  size_t n = 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < tq; ++i)
        for (int64_t j = 0; j < tk; ++j, ++n)
          z[n] = sdpa_dropout_keep(seed, static_cast<uint32_t>(b), static_cast<uint32_t>(h),
                                   static_cast<uint32_t>(i), static_cast<uint32_t>(j),
                                   static_cast<float>(p))
                     ? sdpa_dropout_scale(p)
                     : 0.0;
  return Tensor::from_vector(z, {batch, heads, tq, tk}, dtype);
}

// The composed formula: (softmax(scale q k^T + mask + causal) Z) v.
Tensor composed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                const Tensor& z) {
  const int64_t tq = q.size(2), tk = k.size(2);
  Tensor s = mul(matmul(q, k.transpose(-2, -1)), 1.0 / std::sqrt(static_cast<double>(q.size(3))));
  if (mask.defined()) s = add(s, mask);
  if (causal) {
    std::vector<double> c(static_cast<size_t>(tq * tk), 0.0);
    for (int64_t i = 0; i < tq; ++i)
      for (int64_t j = i + 1; j < tk; ++j)
        c[static_cast<size_t>(i * tk + j)] = -std::numeric_limits<double>::infinity();
    s = add(s, Tensor::from_vector(c, {tq, tk}, q.dtype()));
  }
  return matmul(mul(softmax(s, -1), z), v);
}

void expect_near_all(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  ASSERT_EQ(x.size(), y.size()) << what;
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_NEAR(x[i], y[i], tol * (1.0 + std::fabs(y[i]))) << what << " element " << i;
  }
}

// A [B, 1, 1, Tk] padding mask: batch b pads its last b keys.
Tensor padding_mask(int64_t batch, int64_t tk, DType dtype) {
  std::vector<int64_t> pad(static_cast<size_t>(batch * tk), 0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t j = tk - b; j < tk; ++j) pad[static_cast<size_t>(b * tk + j)] = 1;
  return key_padding_to_attn_mask(Tensor::from_vector(pad, {batch, tk}, DType::i64), dtype);
}

// The fused path serves dropout: its output is laid out [B, Tq, H, D] (the composed one is not),
// and the gradient matches finite differences when every evaluation reseeds the generator (so the
// mask is fixed).
TEST(GradCheck, scaled_dot_product_attention_dropout) {
  manual_seed(31);
  const Shape qs{2, 2, 5, 4}, ks{2, 2, 6, 4};
  const Tensor mask = padding_mask(2, 6, DType::f64);
  Generator gen;
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "full");
    auto f = [&](const std::vector<Tensor>& in) {
      gen.manual_seed(1234);
      return scaled_dot_product_attention(in[0], in[1], in[2], mask, causal, 0.4, true, 0.0, &gen);
    };
    const Tensor q = Tensor::randn(qs, DType::f64), k = Tensor::randn(ks, DType::f64),
                 v = Tensor::randn(ks, DType::f64);
    EXPECT_TRUE(f({q, k, v}).transpose(1, 2).is_contiguous()) << "the fused path was not taken";
    expect_gradcheck(f, {q, k, v});
  }
}

// Fused with dropout against the composed formula with the same mask made on the host: forward and
// the gradients of q, k and v, in f32 and f64, with Tq != Tk, more query rows than one block of the
// CPU kernel (64), causal or not, and a padding mask.
TEST(SdpaDropout, FusedMatchesComposedWithHostMask) {
  const int64_t batch = 2, heads = 3, tq = 70, tk = 83, d = 8;
  const double p = 0.25;
  for (DType dt : {DType::f32, DType::f64}) {
    for (bool causal : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + (causal ? " causal" : " full"));
      manual_seed(32);
      const Tensor q0 = Tensor::randn({batch, heads, tq, d}, dt);
      const Tensor k0 = Tensor::randn({batch, heads, tk, d}, dt);
      const Tensor v0 = Tensor::randn({batch, heads, tk, d}, dt);
      const Tensor w = Tensor::randn({batch, heads, tq, d}, dt);
      const Tensor mask = padding_mask(batch, tk, dt);
      const Tensor z = host_dropout_factor(batch, heads, tq, tk, p, seed_from(77), dt);

      auto run = [&](bool fused, std::vector<Tensor>& grads) {
        Tensor q = q0.clone().set_requires_grad(true), k = k0.clone().set_requires_grad(true),
               v = v0.clone().set_requires_grad(true);
        Generator gen(77);
        Tensor out = fused ? scaled_dot_product_attention(q, k, v, mask, causal, p, true, 0.0, &gen)
                           : composed(q, k, v, mask, causal, z);
        sum(mul(out, w)).backward();
        grads = {q.grad(), k.grad(), v.grad()};
        return out;
      };
      std::vector<Tensor> gf, gc;
      const Tensor of = run(true, gf), oc = run(false, gc);
      EXPECT_TRUE(of.transpose(1, 2).is_contiguous()) << "the fused path was not taken";
      const double tol = dt == DType::f32 ? 2e-5 : 1e-12;
      expect_near_all(of, oc, tol, "out");
      expect_near_all(gf[0], gc[0], tol, "dq");
      expect_near_all(gf[1], gc[1], tol, "dk");
      expect_near_all(gf[2], gc[2], tol, "dv");
    }
  }
}

// The mask function over 2^20 scores keeps 1 - p of them: the kept count is binomial, std
// sqrt(p (1 - p) / n) ~ 4.5e-4 at p = 0.3, so 3e-3 is a 6.5-sigma bound. The kernel's mask is that
// function: with q = k = 0 every weight is 1 / Tk, and with v = I (Tk = D) out_ij = Z_ij / Tk, so
// out Tk (1 - p) reads the kernel's mask back exactly.
TEST(SdpaDropout, KeptFractionAndKernelMask) {
  const double p = 0.3;
  const uint64_t seed = 0x1234abcdULL;
  int64_t kept = 0, n = 0;
  for (uint32_t bh = 0; bh < 16; ++bh)
    for (uint32_t i = 0; i < 256; ++i)
      for (uint32_t j = 0; j < 256; ++j, ++n)
        kept += sdpa_dropout_keep(seed, bh / 4, bh % 4, i, j, static_cast<float>(p)) ? 1 : 0;
  EXPECT_NEAR(static_cast<double>(kept) / static_cast<double>(n), 1.0 - p, 3e-3);

  const int64_t batch = 2, heads = 3, tq = 70, tk = 16;
  const Tensor q = Tensor::zeros({batch, heads, tq, tk}, DType::f64);
  const Tensor k = Tensor::zeros({batch, heads, tk, tk}, DType::f64);
  std::vector<double> eye(static_cast<size_t>(batch * heads * tk * tk), 0.0);
  for (int64_t m = 0; m < batch * heads; ++m)
    for (int64_t j = 0; j < tk; ++j) eye[static_cast<size_t>((m * tk + j) * tk + j)] = 1.0;
  const Tensor v = Tensor::from_vector(eye, {batch, heads, tk, tk}, DType::f64);
  Generator gen(5);
  const Tensor out = scaled_dot_product_attention(q, k, v, Tensor(), false, p, true, 0.0, &gen);
  const std::vector<double> got = out.to_vector<double>();
  const std::vector<double> want =
      host_dropout_factor(batch, heads, tq, tk, p, seed_from(5), DType::f64).to_vector<double>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t e = 0; e < got.size(); ++e) {
    ASSERT_NEAR(got[e] * static_cast<double>(tk), want[e], 1e-12) << "score " << e;
  }
}

// p = 0 in training is no dropout, bit for bit (forward and gradients), and draws nothing; p = 1
// drops every weight: zeros out and zero gradients.
TEST(SdpaDropout, ZeroAndOne) {
  manual_seed(33);
  const Tensor q0 = Tensor::randn({2, 2, 9, 8}), k0 = Tensor::randn({2, 2, 11, 8}),
               v0 = Tensor::randn({2, 2, 11, 8});
  const Tensor mask = padding_mask(2, 11, DType::f32);
  auto run = [&](double p, bool training, Generator& gen, std::vector<Tensor>& grads) {
    Tensor q = q0.clone().set_requires_grad(true), k = k0.clone().set_requires_grad(true),
           v = v0.clone().set_requires_grad(true);
    Tensor out = scaled_dot_product_attention(q, k, v, mask, true, p, training, 0.0, &gen);
    sum(out).backward();
    grads = {q.grad(), k.grad(), v.grad()};
    return out;
  };
  Generator g1(9), g2(9), g3(9);
  std::vector<Tensor> grads_p0, grads_eval, grads_p1;
  const Tensor p0 = run(0.0, true, g1, grads_p0), eval = run(0.3, false, g2, grads_eval);
  EXPECT_EQ(p0.to_vector<float>(), eval.to_vector<float>());
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(grads_p0[i].to_vector<float>(), grads_eval[i].to_vector<float>()) << "input " << i;
  }
  EXPECT_EQ(g1.next_u64(), Generator(9).next_u64()) << "p = 0 drew from the generator";

  const Tensor p1 = run(1.0, true, g3, grads_p1);
  for (float x : p1.to_vector<float>()) ASSERT_EQ(x, 0.0f);
  for (size_t i = 0; i < 3; ++i) {
    for (float x : grads_p1[i].to_vector<float>()) ASSERT_EQ(x, 0.0f) << "input " << i;
  }

  // At the backend: p = 0 ignores the seed.
  Backend& be = backend_for(Device::cpu());
  Tensor out_a = Tensor::empty(q0.shape()), out_b = Tensor::empty(q0.shape());
  Tensor stats_a = Tensor::empty({2, 2, 9}), stats_b = Tensor::empty({2, 2, 9});
  ASSERT_TRUE(be.sdpa(q0, k0, v0, Tensor(), false, 0.5, 0.0, 1, out_a, stats_a));
  ASSERT_TRUE(be.sdpa(q0, k0, v0, Tensor(), false, 0.5, 0.0, 2, out_b, stats_b));
  EXPECT_EQ(out_a.to_vector<float>(), out_b.to_vector<float>());
}

// When the fused kernel declines (the CPU's takes f32 and f64, so f16 is composed), the generator
// is restored before the composed dropout draws: the composed path draws exactly what it drew
// before the fused path took dropout.
TEST(SdpaDropout, DeclinedFusedPathLeavesGeneratorToComposedDropout) {
  manual_seed(34);
  const Tensor q = Tensor::randn({1, 2, 6, 4}, DType::f16),
               k = Tensor::randn({1, 2, 7, 4}, DType::f16),
               v = Tensor::randn({1, 2, 7, 4}, DType::f16);
  const Tensor mask = Tensor::randn({1, 1, 6, 7}, DType::f16);
  Generator g1(11), g2(11);
  const Tensor got = scaled_dot_product_attention(q, k, v, mask, false, 0.5, true, 0.0, &g1);
  const Tensor s = add(mul(matmul(q, k.transpose(-2, -1)), 0.5), mask);
  const Tensor want = matmul(dropout(softmax(s, -1), 0.5, true, &g2), v);
  EXPECT_FALSE(got.transpose(1, 2).is_contiguous()) << "expected the composed path";
  EXPECT_EQ(got.to_vector<double>(), want.to_vector<double>());
  EXPECT_EQ(g1.next_u64(), g2.next_u64());
}

}  // namespace
}  // namespace dtrain
