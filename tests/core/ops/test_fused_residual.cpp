// The fused residual ops against their composition, on the CPU backend (the reference):
//   add_layer_norm(x, r, w, b) == (x + r, layer_norm(x + r, w, b)), forward and backward
//   dropout_add(x, r, p) == r + x * m / (1 - p) with m rebuilt on the host from Philox
// plus dropout_add's statistics, its eval / p = 0 / p = 1 cases, autocast, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/amp/autocast.h"
#include "core/autograd/grad_mode.h"
#include "core/backend/dropout_add_mask.h"
#include "core/ops/ops.h"
#include "core/tensor/random.h"

namespace dtrain {
namespace {

// Leaves of dtype t with values from gen (standard normal, then scaled and shifted).
Tensor leaf(const Shape& s, DType t, Generator& gen, double scale = 1.0, double shift = 0.0) {
  std::vector<double> v(static_cast<size_t>(shape_numel(s)));
  for (double& e : v) e = shift + scale * gen.next_normal();
  Tensor x = Tensor::from_vector(v, s, t);
  x.set_requires_grad(true);
  return x;
}

// |a - b| <= tol (1 + |b|) elementwise.
void expect_close(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  ASSERT_TRUE(a.defined() && b.defined()) << what;
  ASSERT_EQ(a.shape(), b.shape()) << what;
  const std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  for (size_t i = 0; i < av.size(); ++i) {
    ASSERT_NEAR(av[i], bv[i], tol * (1.0 + std::fabs(bv[i]))) << what << " element " << i;
  }
}

// ---- add_layer_norm -----------------------------------------------------------------------------

// Fused and composed, with upstream gradients on both h and y (the pre-LN block's use) or on y
// only (post-LN). In f32/f64 the two run the same arithmetic, so they agree to the last bits; in
// f16/bf16 the fused dx = dh + dx_ln is rounded once instead of twice, a difference of up to half
// an ulp of dx_ln (|dx_ln| < ~4 here: 2^-11 * 4 for f16, 2^-8 * 4 for bf16, plus margin).
TEST(AddLayerNorm, MatchesAddThenLayerNorm) {
  struct Case {
    DType t;
    double tol;
  };
  for (const Case c : {Case{DType::f64, 1e-12}, Case{DType::f32, 1e-6}, Case{DType::f16, 4e-3},
                       Case{DType::bf16, 3e-2}}) {
    for (const Shape& s : {Shape{3, 77}, Shape{2, 4, 768}, Shape{5, 1000}}) {
      for (bool affine : {true, false}) {
        for (bool grad_h : {true, false}) {
          const std::string what = std::string(dtype_name(c.t)) + " " + shape_str(s) +
                                   (affine ? "" : " no affine") + (grad_h ? "" : " y only");
          Generator gen(7);
          const int64_t cols = s.back();
          Tensor x = leaf(s, c.t, gen), r = leaf(s, c.t, gen, 2.0, 1.0);
          Tensor w = affine ? leaf({cols}, c.t, gen, 0.3, 1.0) : Tensor();
          Tensor b = affine ? leaf({cols}, c.t, gen) : Tensor();
          const Tensor gh = leaf(s, c.t, gen).detach(), gy = leaf(s, c.t, gen).detach();

          auto [h, y] = add_layer_norm(x, r, w, b, 1e-5);
          Tensor loss = sum(y * gy);
          if (grad_h) loss = loss + sum(h * gh);
          loss.backward();
          const Tensor dx = x.grad(), dr = r.grad();
          const Tensor dw = affine ? w.grad() : Tensor(), db = affine ? b.grad() : Tensor();
          for (Tensor* p : {&x, &r, &w, &b}) {
            if (p->defined()) p->set_grad(Tensor());
          }

          Tensor h2 = x + r;
          Tensor y2 = layer_norm(h2, w, b, 1e-5);
          Tensor loss2 = sum(y2 * gy);
          if (grad_h) loss2 = loss2 + sum(h2 * gh);
          loss2.backward();

          expect_close(h, h2, 0.0, what + " h");  // the same rounded sum
          expect_close(y, y2, c.tol, what + " y");
          expect_close(dx, x.grad(), c.tol, what + " dx");
          expect_close(dr, r.grad(), c.tol, what + " dresidual");
          if (affine) {
            expect_close(dw, w.grad(), c.tol, what + " dweight");
            expect_close(db, b.grad(), c.tol, what + " dbias");
          }
        }
      }
    }
  }
}

TEST(AddLayerNorm, OnlyHUsedPassesItsGradientThrough) {
  Generator gen(8);
  Tensor x = leaf({2, 5}, DType::f64, gen), r = leaf({2, 5}, DType::f64, gen);
  Tensor w = leaf({5}, DType::f64, gen);
  sum(add_layer_norm(x, r, w, Tensor()).h * 3.0).backward();
  for (double v : x.grad().to_vector<double>()) EXPECT_EQ(v, 3.0);
  for (double v : r.grad().to_vector<double>()) EXPECT_EQ(v, 3.0);
  EXPECT_FALSE(w.grad().defined());  // y took no part in the loss
}

TEST(AddLayerNorm, RetainedGraphRunsTwice) {
  Generator gen(9);
  Tensor x = leaf({3, 6}, DType::f64, gen), r = leaf({3, 6}, DType::f64, gen);
  auto [h, y] = add_layer_norm(x, r, Tensor(), Tensor());
  Tensor loss = sum(h * h) + sum(y * y.detach());
  loss.backward(Tensor(), /*retain_graph=*/true);
  const std::vector<double> once = x.grad().to_vector<double>();
  loss.backward();
  const std::vector<double> twice = x.grad().to_vector<double>();
  for (size_t i = 0; i < once.size(); ++i) EXPECT_NEAR(twice[i], 2.0 * once[i], 1e-12);
}

TEST(AddLayerNorm, NoGradModeRecordsNothing) {
  Generator gen(10);
  Tensor x = leaf({2, 3}, DType::f32, gen), r = leaf({2, 3}, DType::f32, gen);
  NoGradGuard no_grad;
  auto [h, y] = add_layer_norm(x, r, Tensor(), Tensor());
  EXPECT_FALSE(h.requires_grad());
  EXPECT_FALSE(y.requires_grad());
}

// Under autocast the sum runs in f32, as add would: a bf16 branch plus an f32 stream gives f32.
TEST(AddLayerNorm, AutocastSumsInF32) {
  Generator gen(11);
  Tensor x = leaf({2, 8}, DType::bf16, gen), r = leaf({2, 8}, DType::f32, gen);
  amp::AutocastGuard guard(DType::bf16);
  auto [h, y] = add_layer_norm(x, r, Tensor(), Tensor());
  EXPECT_EQ(h.dtype(), DType::f32);
  EXPECT_EQ(y.dtype(), DType::f32);
  expect_close(h, x.to(DType::f32) + r, 0.0, "autocast h");
}

TEST(AddLayerNorm, RejectsMismatchedInputs) {
  const Tensor x = Tensor::zeros({2, 4});
  auto expect_error = [](auto f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([&] { add_layer_norm(x, Tensor::zeros({4}), Tensor(), Tensor()); }, "shape");
  expect_error(
      [&] {
        add_layer_norm(x, Tensor::zeros({2, 4}, DType::f64), Tensor(), Tensor());
      },
      "one dtype");
  expect_error([&] { add_layer_norm(x, x, Tensor::ones({3}), Tensor()); }, "weight");
  expect_error([&] { dropout_add(x, Tensor::zeros({2, 1}), 0.5, true); }, "shape");
  expect_error([&] { dropout_add(x, x, 1.5, true); }, "[0, 1]");
}

// ---- dropout_add --------------------------------------------------------------------------------

// The op's output and gradients against residual + x * m / (1 - p), with m from dropout_add_keep
// and the seed the op draws (the generator's next u64), computed in f64: the kernel rounds once, so
// the bound is one ulp of the dtype (f32: 1e-6; f16: 2^-10; bf16: 2^-7, relative).
TEST(DropoutAdd, MatchesHostMask) {
  const double p = 0.37;
  for (DType t : {DType::f64, DType::f32, DType::f16, DType::bf16}) {
    for (int64_t n : {int64_t{77}, int64_t{1000}, int64_t{4099}}) {
      const std::string what = std::string(dtype_name(t)) + " n " + std::to_string(n);
      Generator data(12);
      Tensor x = leaf({n}, t, data), r = leaf({n}, t, data);
      const Tensor dy = leaf({n}, t, data).detach();
      Generator gen(99);
      Generator probe = gen;
      const uint64_t seed = probe.next_u64();
      Tensor out = dropout_add(x, r, p, true, &gen);
      EXPECT_EQ(gen.state(), probe.state()) << what << ": one u64 drawn per call";
      sum(out * dy).backward();

      std::vector<double> m(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        m[static_cast<size_t>(i)] =
            dropout_add_keep(seed, static_cast<uint64_t>(i), static_cast<float>(p)) ? 1.0 : 0.0;
      }
      // The reference in f64 from the (rounded) inputs: the kernel rounds its result once.
      const Tensor scaled = Tensor::from_vector(m, {n}, DType::f64) * dropout_add_scale(p);
      NoGradGuard no_grad;
      const double tol = t == DType::f16 ? 0x1.0p-10 : t == DType::bf16 ? 0x1.0p-7 : 1e-6;
      const Tensor x64 = x.detach().to(DType::f64), r64 = r.detach().to(DType::f64);
      expect_close(out, r64 + x64 * scaled, tol, what + " out");
      expect_close(x.grad(), dy.to(DType::f64) * scaled, tol, what + " dx");
      expect_close(r.grad(), dy, 0.0, what + " dresidual");
    }
  }
}

// Kept elements are Bernoulli(1 - p): over n = 2^20 the fraction has std sqrt(p (1 - p) / n) ~
// 4.5e-4 at p = 0.3, so 3e-3 is a 6-sigma bound; the mask's own bias (< 2^-24) is far below it.
TEST(DropoutAdd, KeptFractionAndScale) {
  for (double p : {0.1, 0.3, 0.5, 0.9}) {
    const int64_t n = int64_t{1} << 20;
    Generator gen(2025);
    const Tensor out = dropout_add(Tensor::ones({n}), Tensor::zeros({n}), p, true, &gen);
    const std::vector<float> v = out.to_vector<float>();
    const float scaled = static_cast<float>(1.0 / (1.0 - p));
    int64_t kept = 0;
    for (float e : v) {
      if (e != 0.0f) {
        ++kept;
        ASSERT_EQ(e, scaled) << "p " << p;
      }
    }
    EXPECT_NEAR(static_cast<double>(kept) / n, 1.0 - p, 3e-3) << "p " << p;
  }
}

TEST(DropoutAdd, EvalZeroAndOne) {
  Generator gen(13);
  Tensor x = leaf({3, 5}, DType::f32, gen), r = leaf({3, 5}, DType::f32, gen);
  const Tensor plain = (r + x).detach();
  Generator g(1);
  const auto before = g.state();
  expect_close(dropout_add(x, r, 0.5, false, &g), plain, 0.0, "eval");
  expect_close(dropout_add(x, r, 0.0, true, &g), plain, 0.0, "p = 0");
  EXPECT_EQ(g.state(), before) << "a plain add draws nothing";
  Tensor all = dropout_add(x, r, 1.0, true, &g);  // everything dropped: out = residual
  expect_close(all, r, 0.0, "p = 1");
  sum(all).backward();
  for (float v : x.grad().to_vector<float>()) EXPECT_EQ(v, 0.0f);
  for (float v : r.grad().to_vector<float>()) EXPECT_EQ(v, 1.0f);
}

TEST(DropoutAdd, SuccessiveCallsDrawNewMasks) {
  Generator gen(14);
  const Tensor ones = Tensor::ones({256}), zeros = Tensor::zeros({256});
  const std::vector<float> a = dropout_add(ones, zeros, 0.5, true, &gen).to_vector<float>();
  const std::vector<float> b = dropout_add(ones, zeros, 0.5, true, &gen).to_vector<float>();
  EXPECT_NE(a, b);
  Generator again(14);
  EXPECT_EQ(dropout_add(ones, zeros, 0.5, true, &again).to_vector<float>(), a);
}

}  // namespace
}  // namespace dtrain
