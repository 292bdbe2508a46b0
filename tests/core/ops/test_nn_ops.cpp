// Unit tests of the neural-network ops: forward values against naive loops written here, input
// checks and their messages, dropout statistics, determinism and the f32 / f16 / bf16 paths of the
// CPU kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/ops/ops.h"

namespace dtrain {
namespace {

Tensor randn64(const Shape& s) { return Tensor::randn(s, DType::f64); }

// Runs f, which must throw dtrain::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg;
    return;
  }
  ADD_FAILURE() << "no dtrain::Error thrown";
}

void expect_all_near(const std::vector<double>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], want[i]) << "element " << i;
      continue;
    }
    EXPECT_NEAR(got[i], want[i], tol * (1.0 + std::fabs(want[i]))) << "element " << i;
  }
}

// ---- forward values --------------------------------------------------------------------------

TEST(LayerNorm, ForwardMatchesFormula) {
  const Tensor x =
      Tensor::from_vector(std::vector<double>{1, 2, 3, 4, -1, 0, 0, 5}, {2, 4}, DType::f64);
  const Tensor w = Tensor::from_vector(std::vector<double>{1, 2, 0.5, -1}, {4}, DType::f64);
  const Tensor b = Tensor::from_vector(std::vector<double>{0, 1, 0, 2}, {4}, DType::f64);
  const double eps = 1e-5;
  std::vector<double> xv = x.to_vector<double>(), want(8);
  for (int r = 0; r < 2; ++r) {
    double mu = 0, var = 0;
    for (int j = 0; j < 4; ++j) mu += xv[r * 4 + j] / 4;
    for (int j = 0; j < 4; ++j) var += (xv[r * 4 + j] - mu) * (xv[r * 4 + j] - mu) / 4;
    const double wv[4] = {1, 2, 0.5, -1}, bv[4] = {0, 1, 0, 2};
    for (int j = 0; j < 4; ++j) {
      want[r * 4 + j] = (xv[r * 4 + j] - mu) / std::sqrt(var + eps) * wv[j] + bv[j];
    }
  }
  expect_all_near(layer_norm(x, w, b, eps).to_vector<double>(), want, 1e-12);
}

TEST(CrossEntropy, ForwardMatchesFormula) {
  manual_seed(11);
  const Tensor logits = randn64({4, 5});
  const std::vector<int64_t> t{3, -100, 0, 4};
  const Tensor targets = Tensor::from_vector(t, {4}, DType::i64);
  const double s = 0.2;
  std::vector<double> x = logits.to_vector<double>(), rows(4, 0.0);
  double total = 0;
  for (int r = 0; r < 4; ++r) {
    if (t[r] == -100) continue;
    double z = 0;
    for (int j = 0; j < 5; ++j) z += std::exp(x[r * 5 + j]);
    double loss = 0;
    for (int j = 0; j < 5; ++j) {
      const double q = (j == t[r] ? 1.0 - s : 0.0) + s / 5;
      loss -= q * (x[r * 5 + j] - std::log(z));
    }
    rows[r] = loss;
    total += loss;
  }
  expect_all_near(cross_entropy(logits, targets, -100, s, Reduction::none).to_vector<double>(),
                  rows, 1e-12);
  EXPECT_NEAR(cross_entropy(logits, targets, -100, s, Reduction::sum).item(), total, 1e-12);
  // The mean divides by the 3 rows that were not ignored.
  EXPECT_NEAR(cross_entropy(logits, targets, -100, s, Reduction::mean).item(), total / 3, 1e-12);
  // The none reduction keeps the targets' shape.
  EXPECT_EQ(
      cross_entropy(logits.view({2, 2, 5}), targets.view({2, 2}), -100, s, Reduction::none).shape(),
      (Shape{2, 2}));
}

TEST(CrossEntropy, StableForHugeLogits) {
  const Tensor logits =
      Tensor::from_vector(std::vector<float>{1000.f, 0.f, -1000.f, 3000.f, 3000.f, 0.f}, {2, 3});
  const Tensor targets = Tensor::from_vector(std::vector<int64_t>{0, 1}, {2}, DType::i64);
  std::vector<double> l =
      cross_entropy(logits, targets, -100, 0.0, Reduction::none).to_vector<double>();
  EXPECT_NEAR(l[0], 0.0, 1e-6);
  EXPECT_NEAR(l[1], std::log(2.0), 1e-6);
}

TEST(CrossEntropy, AllIgnoredMeanIsNan) {
  const Tensor logits = randn64({2, 3});
  const Tensor targets = Tensor::from_vector(std::vector<int64_t>{-100, -100}, {2}, DType::i64);
  EXPECT_TRUE(std::isnan(cross_entropy(logits, targets).item()));
  EXPECT_EQ(cross_entropy(logits, targets, -100, 0.0, Reduction::sum).item(), 0.0);
}

// Direct 7-loop convolution, the definition the im2col kernel must reproduce.
std::vector<double> naive_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride,
                                 int64_t pad, int64_t groups) {
  const int64_t n = x.size(0), ci = x.size(1), h = x.size(2), wd = x.size(3);
  const int64_t co = w.size(0), kh = w.size(2), kw = w.size(3);
  const int64_t oh = (h + 2 * pad - kh) / stride + 1, ow = (wd + 2 * pad - kw) / stride + 1;
  const int64_t cg = ci / groups, cog = co / groups;
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(co, 0.0);
  std::vector<double> out(n * co * oh * ow);
  for (int64_t in = 0; in < n; ++in)
    for (int64_t o = 0; o < co; ++o)
      for (int64_t y = 0; y < oh; ++y)
        for (int64_t xx = 0; xx < ow; ++xx) {
          double acc = bv[o];
          const int64_t g = o / cog;
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t iy = y * stride - pad + i, ix = xx * stride - pad + j;
                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                acc += xv[((in * ci + g * cg + c) * h + iy) * wd + ix] *
                       wv[((o * cg + c) * kh + i) * kw + j];
              }
          out[((in * co + o) * oh + y) * ow + xx] = acc;
        }
  return out;
}

TEST(Conv2d, ForwardMatchesDirectLoops) {
  manual_seed(12);
  struct Case {
    Shape x, w;
    int64_t stride, pad, groups;
    bool bias;
  };
  for (const Case& c : {Case{{2, 4, 7, 6}, {6, 2, 3, 3}, 2, 1, 2, true},
                        Case{{1, 3, 5, 5}, {3, 1, 3, 3}, 1, 1, 3, false},
                        Case{{2, 3, 4, 4}, {5, 3, 1, 1}, 1, 0, 1, true},
                        Case{{1, 1, 8, 8}, {4, 1, 4, 4}, 4, 0, 1, true}}) {
    const Tensor x = randn64(c.x), w = randn64(c.w);
    const Tensor b = c.bias ? randn64({c.w[0]}) : Tensor();
    const std::vector<double> want = naive_conv2d(x, w, b, c.stride, c.pad, c.groups);
    expect_all_near(conv2d(x, w, b, c.stride, c.pad, c.groups).to_vector<double>(), want, 1e-12);
    // f32 through sgemm.
    const Tensor b32 = c.bias ? b.to(DType::f32) : Tensor();
    expect_all_near(conv2d(x.to(DType::f32), w.to(DType::f32), b32, c.stride, c.pad, c.groups)
                        .to_vector<double>(),
                    want, 1e-5);
  }
}

TEST(Pool2d, ForwardValues) {
  // One 4x4 plane 0..15; kernel 3, stride 2, padding 1 -> 2x2.
  std::vector<double> v(16);
  for (int i = 0; i < 16; ++i) v[i] = i;
  const Tensor x = Tensor::from_vector(v, {1, 1, 4, 4}, DType::f64);
  expect_all_near(max_pool2d(x, 3, 2, 1).to_vector<double>(), {5, 7, 13, 15}, 0);
  // Windows: rows {-1,0,1} x cols {-1,0,1} hold 0+1+4+5 = 10 over a divisor of 9 (padding counts).
  expect_all_near(avg_pool2d(x, 3, 2, 1).to_vector<double>(),
                  {10.0 / 9, (1 + 2 + 3 + 5 + 6 + 7) / 9.0, (4 + 5 + 8 + 9 + 12 + 13) / 9.0,
                   (5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15) / 9.0},
                  1e-15);
  expect_all_near(avg_pool2d(x, 2).to_vector<double>(), {2.5, 4.5, 10.5, 12.5}, 1e-15);
  // A window entirely of -inf keeps -inf and still points at a real element.
  const Tensor ninf =
      Tensor::full({1, 1, 2, 2}, -std::numeric_limits<double>::infinity(), DType::f64);
  EXPECT_EQ(max_pool2d(ninf, 2).item(), -std::numeric_limits<double>::infinity());
}

// softmax(q k^T * scale + mask) v by loops.
std::vector<double> naive_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const std::vector<double>& mask /* [B, Tk] or empty */,
                                    bool causal, double scale) {
  const int64_t bsz = q.size(0), h = q.size(1), tq = q.size(2), tk = k.size(2), d = q.size(3);
  std::vector<double> qv = q.to_vector<double>(), kv = k.to_vector<double>(),
                      vv = v.to_vector<double>();
  std::vector<double> out(bsz * h * tq * d, 0.0);
  for (int64_t b = 0; b < bsz; ++b)
    for (int64_t hh = 0; hh < h; ++hh)
      for (int64_t i = 0; i < tq; ++i) {
        const int64_t base = b * h + hh;
        std::vector<double> s(tk);
        double m = -INFINITY;
        for (int64_t j = 0; j < tk; ++j) {
          double acc = 0;
          for (int64_t c = 0; c < d; ++c)
            acc += qv[(base * tq + i) * d + c] * kv[(base * tk + j) * d + c];
          s[j] = acc * scale + (mask.empty() ? 0.0 : mask[b * tk + j]);
          if (causal && j > i) s[j] = -INFINITY;
          m = std::max(m, s[j]);
        }
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - m));
        for (int64_t j = 0; j < tk; ++j)
          for (int64_t c = 0; c < d; ++c)
            out[(base * tq + i) * d + c] += s[j] / z * vv[(base * tk + j) * d + c];
      }
  return out;
}

TEST(Attention, ForwardMatchesLoops) {
  manual_seed(13);
  const Tensor q = randn64({2, 3, 4, 8}), k = randn64({2, 3, 4, 8}), v = randn64({2, 3, 4, 8});
  expect_all_near(scaled_dot_product_attention(q, k, v).to_vector<double>(),
                  naive_attention(q, k, v, {}, false, 1.0 / std::sqrt(8.0)), 1e-12);
  expect_all_near(scaled_dot_product_attention(q, k, v, Tensor(), true).to_vector<double>(),
                  naive_attention(q, k, v, {}, true, 1.0 / std::sqrt(8.0)), 1e-12);
  const Tensor pad =
      Tensor::from_vector(std::vector<int64_t>{0, 0, 0, 1, 0, 1, 0, 0}, {2, 4}, DType::i64);
  const double ninf = -std::numeric_limits<double>::infinity();
  const Tensor mask = key_padding_to_attn_mask(pad, DType::f64);
  EXPECT_EQ(mask.shape(), (Shape{2, 1, 1, 4}));
  expect_all_near(mask.to_vector<double>(), {0, 0, 0, ninf, 0, ninf, 0, 0}, 0);
  expect_all_near(
      scaled_dot_product_attention(q, k, v, mask, false, 0.0, false, 0.5).to_vector<double>(),
      naive_attention(q, k, v, mask.to_vector<double>(), false, 0.5), 1e-12);
  // Dropout is off outside training.
  expect_all_near(
      scaled_dot_product_attention(q, k, v, Tensor(), false, 0.9, false).to_vector<double>(),
      naive_attention(q, k, v, {}, false, 1.0 / std::sqrt(8.0)), 1e-12);
}

// The CPU backend's fused kernel against the composed path (matmul, softmax, matmul), forward and
// backward, on heads sliced from one qkv tensor as a self-attention layer makes them: strided views,
// more query rows than one block of the kernel (64), causal with a padding mask, in f32 and f64. A
// mask that needs a gradient sends the op down the composed path (the fused one gives the mask none);
// it holds the same values, so both paths compute the same function.
TEST(Attention, FusedKernelMatchesComposition) {
  for (DType dt : {DType::f32, DType::f64}) {
    for (bool causal : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + (causal ? " causal" : " full"));
      manual_seed(21);
      const int64_t b = 2, t = 150, h = 3, d = 16;
      const Tensor qkv0 = Tensor::randn({b, t, 3, h, d}, dt);
      const Tensor weight = Tensor::randn({b, h, t, d}, dt);
      std::vector<int64_t> pad(static_cast<size_t>(b * t), 0);
      for (int64_t j = t - 20; j < t; ++j)
        pad[static_cast<size_t>(t + j)] = 1;  // batch 1 pads 20 keys
      const Tensor mask =
          key_padding_to_attn_mask(Tensor::from_vector(pad, {b, t}, DType::i64), dt);

      auto run = [&](bool composed, Tensor& out, Tensor& grad) {
        Tensor qkv = qkv0.clone().set_requires_grad(true);
        Tensor parts = qkv.permute({2, 0, 3, 1, 4});
        Tensor m = composed ? mask.clone().set_requires_grad(true) : mask;
        out = scaled_dot_product_attention(parts.select(0, 0), parts.select(0, 1),
                                           parts.select(0, 2), m, causal);
        sum(mul(out, weight)).backward();
        grad = qkv.grad();
      };
      Tensor fused, fused_grad, composed, composed_grad;
      run(false, fused, fused_grad);
      run(true, composed, composed_grad);
      // The fused output is laid out [B, T, H, D]: merging its heads is a view, not a copy.
      EXPECT_TRUE(fused.transpose(1, 2).is_contiguous());
      EXPECT_FALSE(composed.transpose(1, 2).is_contiguous());
      const double tol = dt == DType::f32 ? 2e-5 : 1e-12;
      expect_all_near(fused.to_vector<double>(), composed.to_vector<double>(), tol);
      expect_all_near(fused_grad.to_vector<double>(), composed_grad.to_vector<double>(), tol);
    }
  }
}

// ---- dropout -----------------------------------------------------------------------------------

TEST(Dropout, KeptFractionAndScale) {
  const double p = 0.3;
  const int64_t n = 200000;
  Generator gen(2024);
  const Tensor x = Tensor::full({n}, 2.0);
  std::vector<float> y = dropout(x, p, true, &gen).to_vector<float>();
  int64_t kept = 0;
  const float scaled = static_cast<float>(2.0 / (1.0 - p));
  for (float v : y) {
    if (v != 0.0f) {
      ++kept;
      ASSERT_NEAR(v, scaled, 1e-6f);
    }
  }
  // The kept fraction is binomial: std sqrt(p(1-p)/n) ~ 0.001, so 0.006 is a 6-sigma bound.
  EXPECT_NEAR(static_cast<double>(kept) / n, 1.0 - p, 0.006);
}

TEST(Dropout, EvalIdentityAndEdgeCases) {
  const Tensor x = Tensor::randn({3, 4});
  EXPECT_TRUE(dropout(x, 0.5, false).same(x));
  EXPECT_TRUE(dropout(x, 0.0, true).same(x));
  for (float v : dropout(x, 1.0, true).to_vector<float>()) EXPECT_EQ(v, 0.0f);
}

TEST(Dropout, SameSeedSameMaskAndGradientIsMask) {
  Generator g1(5), g2(5);
  Tensor x = Tensor::ones({64}, DType::f64);
  x.set_requires_grad(true);
  Tensor y1 = dropout(x, 0.5, true, &g1);
  const Tensor y2 = dropout(x, 0.5, true, &g2);
  EXPECT_EQ(y1.to_vector<double>(), y2.to_vector<double>());
  sum(y1).backward();
  // With x = 1, y is the mask itself, and so is dy/dx.
  EXPECT_EQ(x.grad().to_vector<double>(), y1.to_vector<double>());
}

// ---- determinism and threads -------------------------------------------------------------------

TEST(Embedding, BackwardBitwiseSameForAnyThreadCount) {
  manual_seed(14);
  const int64_t vocab = 50, dim = 300, n = 2000;
  std::vector<int64_t> idx(n);
  for (int64_t i = 0; i < n; ++i) idx[i] = (i * 7919) % vocab;
  const Tensor indices = Tensor::from_vector(idx, {n}, DType::i64);
  const Tensor grad = Tensor::randn({n, dim});
  const int threads = get_num_threads();
  std::vector<std::vector<float>> results;
  for (int t : {1, 2, 3}) {
    set_num_threads(t);
    Tensor dw = Tensor::zeros({vocab, dim});
    backend_for(Device::cpu()).embedding_backward(grad, indices, 3, dw);
    results.push_back(dw.to_vector<float>());
  }
  set_num_threads(threads);
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[0], results[2]);
  for (int64_t j = 0; j < dim; ++j) EXPECT_EQ(results[0][3 * dim + j], 0.0f);
}

// Big enough that im2col, col2im, the bias sum and pooling take their OpenMP paths.
TEST(Conv2d, ParallelPathsMatchLoopsAndThreadCounts) {
  manual_seed(18);
  const Tensor x = randn64({2, 8, 24, 24}), w = randn64({8, 4, 3, 3}), b = randn64({8});
  const Tensor dy = randn64({2, 8, 24, 24}), dpool = randn64({2, 8, 12, 12});
  const int threads = get_num_threads();
  std::vector<std::vector<std::vector<double>>> runs;
  for (int t : {1, 2}) {
    set_num_threads(t);
    Tensor xq = x.detach().clone().set_requires_grad(true);
    Tensor wq = w.detach().clone().set_requires_grad(true);
    Tensor bq = b.detach().clone().set_requires_grad(true);
    const Tensor y = conv2d(xq, wq, bq, 1, 1, 2);
    expect_all_near(y.to_vector<double>(), naive_conv2d(x, w, b, 1, 1, 2), 1e-12);
    y.backward(dy);
    Tensor xp = x.detach().clone().set_requires_grad(true);
    max_pool2d(xp, 3, 2, 1).backward(dpool);
    Tensor xa = x.detach().clone().set_requires_grad(true);
    avg_pool2d(xa, 2).backward(dpool);
    runs.push_back({xq.grad().to_vector<double>(), wq.grad().to_vector<double>(),
                    bq.grad().to_vector<double>(), xp.grad().to_vector<double>(),
                    xa.grad().to_vector<double>()});
  }
  set_num_threads(threads);
  for (size_t i = 0; i < runs[0].size(); ++i) EXPECT_EQ(runs[0][i], runs[1][i]) << "gradient " << i;
}

TEST(LayerNorm, ParameterGradientsBitwiseSameForAnyThreadCount) {
  manual_seed(15);
  const Tensor x = Tensor::randn({512, 96}), w = Tensor::randn({96}), b = Tensor::randn({96});
  const Tensor dy = Tensor::randn({512, 96});
  const int threads = get_num_threads();
  std::vector<std::vector<float>> dws, dbs;
  for (int t : {1, 2}) {
    set_num_threads(t);
    Tensor wq = w.clone().set_requires_grad(true), bq = b.clone().set_requires_grad(true);
    layer_norm(x, wq, bq).backward(dy);
    dws.push_back(wq.grad().to_vector<float>());
    dbs.push_back(bq.grad().to_vector<float>());
  }
  set_num_threads(threads);
  EXPECT_EQ(dws[0], dws[1]);
  EXPECT_EQ(dbs[0], dbs[1]);
}

// ---- f32 and half precision paths agree with f64
// -------------------------------------------------

TEST(NnKernels, LowerPrecisionMatchesF64) {
  manual_seed(16);
  const Tensor x = randn64({6, 16}), w = randn64({16}), b = randn64({16});
  const Tensor logits = randn64({6, 16});
  const Tensor targets =
      Tensor::from_vector(std::vector<int64_t>{1, 15, -100, 0, 7, 7}, {6}, DType::i64);
  const Tensor img = randn64({2, 2, 6, 6}), filt = randn64({4, 2, 3, 3});
  const std::vector<double> ln = layer_norm(x, w, b).to_vector<double>();
  const std::vector<double> ce =
      cross_entropy(logits, targets, -100, 0.1, Reduction::none).to_vector<double>();
  const std::vector<double> cv = conv2d(img, filt, Tensor(), 1, 1).to_vector<double>();
  const std::vector<double> mp = max_pool2d(img, 2).to_vector<double>();
  const std::vector<double> ap = avg_pool2d(img, 3, 1, 1).to_vector<double>();
  for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dt));
    const double tol = dt == DType::f32 ? 1e-5 : dt == DType::f16 ? 1e-2 : 6e-2;
    expect_all_near(layer_norm(x.to(dt), w.to(dt), b.to(dt)).to_vector<double>(), ln, tol);
    expect_all_near(
        cross_entropy(logits.to(dt), targets, -100, 0.1, Reduction::none).to_vector<double>(), ce,
        tol);
    expect_all_near(conv2d(img.to(dt), filt.to(dt), Tensor(), 1, 1).to_vector<double>(), cv,
                    4 * tol);
    expect_all_near(max_pool2d(img.to(dt), 2).to_vector<double>(), mp, tol);
    expect_all_near(avg_pool2d(img.to(dt), 3, 1, 1).to_vector<double>(), ap, tol);
  }
}

TEST(NnKernels, LowerPrecisionBackwardMatchesF64) {
  manual_seed(17);
  const Tensor x = randn64({4, 8}), w = randn64({8}), dy = randn64({4, 8});
  const Tensor img = randn64({1, 2, 5, 5}), filt = randn64({2, 1, 3, 3}),
               dimg = randn64({1, 2, 5, 5});
  auto grads = [&](DType dt) {
    Tensor xq = x.to(dt).detach().set_requires_grad(true);
    Tensor wq = w.to(dt).detach().set_requires_grad(true);
    layer_norm(xq, wq, Tensor()).backward(dy.to(dt));
    Tensor iq = img.to(dt).detach().set_requires_grad(true);
    Tensor fq = filt.to(dt).detach().set_requires_grad(true);
    conv2d(iq, fq, Tensor(), 1, 1, 2).backward(dimg.to(dt));
    return std::vector<std::vector<double>>{
        xq.grad().to_vector<double>(), wq.grad().to_vector<double>(), iq.grad().to_vector<double>(),
        fq.grad().to_vector<double>()};
  };
  const auto ref = grads(DType::f64);
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    const auto got = grads(dt);
    const double tol = dt == DType::f32 ? 1e-5 : 1e-1;
    for (size_t i = 0; i < ref.size(); ++i) expect_all_near(got[i], ref[i], tol);
  }
}

// ---- bad inputs and their messages
// ---------------------------------------------------------------

TEST(NnErrors, Conv2d) {
  const Tensor x = Tensor::randn({1, 3, 5, 5});
  expect_error(
      [&] {
        conv2d(x, Tensor::randn({4, 1, 3, 3}), Tensor(), 1, 0, 2);
      },
      {"conv2d", "[1, 3, 5, 5]", "3 input channels", "divisible by groups = 2"});
  expect_error(
      [&] {
        conv2d(x, Tensor::randn({4, 2, 3, 3}));
      },
      {"conv2d", "[4, 2, 3, 3]", "expects 2 input channels", "has 3"});
  expect_error(
      [&] {
        conv2d(x, Tensor::randn({4, 3, 3, 3}), Tensor::randn({5}));
      },
      {"conv2d", "bias", "[5]", "needs [4]"});
  expect_error(
      [&] {
        conv2d(x, Tensor::randn({4, 3, 7, 7}));
      },
      {"conv2d", "larger than the padded input"});
  expect_error(
      [&] {
        conv2d(Tensor::randn({3, 5, 5}), Tensor::randn({4, 3, 3, 3}));
      },
      {"conv2d", "[3, 5, 5]", "[N, C_in, H, W]"});
  expect_error(
      [&] {
        conv2d(x, Tensor::randn({4, 3, 3, 3}, DType::f64));
      },
      {"conv2d", "f32", "f64"});
}

TEST(NnErrors, Pooling) {
  const Tensor x = Tensor::randn({1, 1, 4, 4});
  expect_error([&] { max_pool2d(x, 2, 2, 2); }, {"max_pool2d", "padding 2", "half the kernel"});
  expect_error([&] { avg_pool2d(Tensor::randn({4, 4}), 2); }, {"avg_pool2d", "[4, 4]"});
  expect_error([&] { max_pool2d(x, 6); }, {"max_pool2d", "larger than the padded input"});
}

TEST(NnErrors, CrossEntropy) {
  const Tensor logits = Tensor::randn({4, 3});
  expect_error(
      [&] {
        cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{0, 1, 2}, {3}, DType::i64));
      },
      {"cross_entropy", "[4, 3]", "4 rows", "[3]", "3 values"});
  expect_error(
      [&] {
        cross_entropy(logits,
                      Tensor::from_vector(std::vector<int64_t>{0, 1, 3, 0}, {4}, DType::i64));
      },
      {"cross_entropy", "target 3", "position 2", "[0, 3)"});
  expect_error([&] { cross_entropy(logits, Tensor::zeros({4})); },
               {"cross_entropy", "targets are f32"});
  expect_error([&] { cross_entropy(logits, Tensor::zeros({4}, DType::i64), -100, 1.5); },
               {"cross_entropy", "label_smoothing", "1.5"});
}

TEST(NnErrors, Embedding) {
  const Tensor w = Tensor::randn({5, 2});
  expect_error(
      [&] {
        embedding(w, Tensor::from_vector(std::vector<int64_t>{1, 5}, {2}, DType::i64));
      },
      {"embedding", "index 5", "position 1", "[0, 5)", "[5, 2]"});
  expect_error(
      [&] { embedding(w, Tensor::from_vector(std::vector<int64_t>{-1}, {1}, DType::i64)); },
      {"embedding", "index -1"});
  expect_error([&] { embedding(w, Tensor::zeros({2})); }, {"embedding", "f32", "i64"});
  expect_error([&] { embedding(Tensor::randn({5}), Tensor::zeros({2}, DType::i64)); },
               {"embedding", "[5]", "[num_embeddings, embedding_dim]"});
  expect_error([&] { embedding(w, Tensor::zeros({2}, DType::i64), 5); },
               {"embedding", "padding_idx 5"});
}

TEST(NnErrors, LayerNormDropoutAttention) {
  const Tensor x = Tensor::randn({2, 4});
  expect_error([&] { layer_norm(x, Tensor::randn({3}), Tensor()); },
               {"layer_norm", "weight", "[3]", "[2, 4]", "needs [4]"});
  expect_error([&] { layer_norm(x, Tensor(), Tensor::randn({4}, DType::f64)); },
               {"layer_norm", "bias", "f64", "f32"});
  expect_error([&] { dropout(x, 1.5, true); }, {"dropout", "1.5", "[0, 1]"});
  const Tensor q = Tensor::randn({1, 2, 3, 4});
  expect_error(
      [&] {
        scaled_dot_product_attention(q, Tensor::randn({1, 2, 3, 5}), q);
      },
      {"scaled_dot_product_attention", "[1, 2, 3, 5]", "[1, 2, 3, 4]"});
  expect_error(
      [&] {
        scaled_dot_product_attention(q, q, q, Tensor::zeros({1, 1, 3, 2}));
      },
      {"scaled_dot_product_attention", "attn_mask", "[1, 1, 3, 2]", "[1, 2, 3, 3]"});
  expect_error(
      [&] {
        scaled_dot_product_attention(q.view({2, 3, 4}), q, q);
      },
      {"scaled_dot_product_attention", "[2, 3, 4]", "[B, H, T, D]"});
  expect_error(
      [&] {
        key_padding_to_attn_mask(Tensor::zeros({2, 3, 4}), DType::f32);
      },
      {"key_padding_to_attn_mask", "[2, 3, 4]", "[B, Tk]"});
}

}  // namespace
}  // namespace dtrain
