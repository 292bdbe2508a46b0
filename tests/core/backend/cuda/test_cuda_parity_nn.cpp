// CUDA vs CPU parity for softmax, layer norm, embedding, cross entropy, convolution, pooling and
// attention, and one small training step through the ops on both devices. Every test skips with a
// reason where no GPU is visible.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/backend/backend.h"
#include "core/ops/ops.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
#include "tests/core/backend/cuda/parity.h"

namespace dtrain {
namespace {

using testing::cpu_be;
using testing::empty_on;
using testing::expect_parity;
using testing::float_dtypes;
using testing::gpu;
using testing::gpu_be;
using testing::index_tensor;
using testing::on_gpu;
using testing::uniform_tensor;

TEST(Cuda, softmax) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(21);
  for (DType t : float_dtypes()) {
    for (const Shape& s : {Shape{13, 1000}, Shape{5, 7}, Shape{2, 3, 257}}) {
      for (bool log : {false, true}) {
        const std::string what = std::string(log ? "log_softmax " : "softmax ") + shape_str(s);
        Tensor x = uniform_tensor(s, t, gen, -5.0, 5.0);
        Tensor y_c = Tensor::empty(s, t);
        cpu_be().softmax(x, y_c, log);
        Tensor y_g = empty_on(y_c, gpu());
        gpu_be().softmax(on_gpu(x), y_g, log);
        expect_parity(y_c, y_g, what);

        Tensor dy = uniform_tensor(s, t, gen);
        Tensor dx_c = Tensor::empty(s, t);
        cpu_be().softmax_backward(y_c, dy, dx_c, log);
        Tensor dx_g = empty_on(dx_c, gpu());
        gpu_be().softmax_backward(on_gpu(y_c), on_gpu(dy), dx_g, log);
        expect_parity(dx_c, dx_g, what + " backward");
      }
    }
  }
}

TEST(Cuda, layer_norm) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(22);
  for (DType t : float_dtypes()) {
    // 300 rows make the weight/bias gradient reduce in several chunks.
    for (const Shape& s : {Shape{10, 768}, Shape{3, 5}, Shape{300, 37}}) {
      for (bool affine : {true, false}) {
        const std::string what = "layer_norm " + shape_str(s) + (affine ? "" : " (no affine)");
        const int64_t rows = s[0], cols = s[1];
        // Offset from zero, so the variance is taken around a large mean.
        Tensor x = uniform_tensor(s, t, gen, 2.0, 4.0);
        Tensor w = affine ? uniform_tensor({cols}, t, gen, 0.5, 1.5) : Tensor();
        Tensor b = affine ? uniform_tensor({cols}, t, gen) : Tensor();
        Tensor y_c = Tensor::empty(s, t), mean_c = Tensor::empty({rows}, DType::f32),
               rstd_c = Tensor::empty({rows}, DType::f32);
        cpu_be().layer_norm(x, w, b, 1e-5, y_c, mean_c, rstd_c);
        Tensor y_g = empty_on(y_c, gpu()), mean_g = empty_on(mean_c, gpu()),
               rstd_g = empty_on(rstd_c, gpu());
        gpu_be().layer_norm(on_gpu(x), on_gpu(w), on_gpu(b), 1e-5, y_g, mean_g, rstd_g);
        expect_parity(y_c, y_g, what);
        expect_parity(mean_c, mean_g, what + " mean");
        expect_parity(rstd_c, rstd_g, what + " rstd");

        Tensor dy = uniform_tensor(s, t, gen);
        Tensor dx_c = Tensor::empty(s, t);
        Tensor dw_c = affine ? Tensor::empty({cols}, t) : Tensor();
        Tensor db_c = affine ? Tensor::empty({cols}, t) : Tensor();
        cpu_be().layer_norm_backward(dy, x, w, mean_c, rstd_c, dx_c, dw_c, db_c);
        Tensor dx_g = empty_on(dx_c, gpu()), dw_g = empty_on(dw_c, gpu()),
               db_g = empty_on(db_c, gpu());
        gpu_be().layer_norm_backward(on_gpu(dy), on_gpu(x), on_gpu(w), on_gpu(mean_c),
                                     on_gpu(rstd_c), dx_g, dw_g, db_g);
        expect_parity(dx_c, dx_g, what + " dx", 10.0);
        if (affine) {
          // Column sums over up to 300 rows: a different order, a slightly larger difference.
          expect_parity(dw_c, dw_g, what + " dweight", 100.0);
          expect_parity(db_c, db_g, what + " dbias", 100.0);
        }
      }
    }
  }
}

TEST(Cuda, embedding) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(23);
  for (DType t : float_dtypes()) {
    const int64_t vocab = 50, dim = 33;
    Tensor w = uniform_tensor({vocab, dim}, t, gen);
    Tensor idx = index_tensor({4, 9}, 0, vocab, gen);
    Tensor out_c = Tensor::empty({36, dim}, t);
    cpu_be().embedding(w, idx, out_c);
    Tensor out_g = empty_on(out_c, gpu());
    gpu_be().embedding(on_gpu(w), on_gpu(idx), out_g);
    expect_parity(out_c, out_g, "embedding");

    // Backward with many repeats (indices in [0, 10)), with and without a padding row.
    for (int64_t padding_idx : {int64_t{-1}, int64_t{3}}) {
      const std::string what = "embedding_backward padding_idx " + std::to_string(padding_idx);
      Tensor rep = index_tensor({300}, 0, 10, gen);
      Tensor grad = uniform_tensor({300, dim}, t, gen);
      Tensor dw_c = Tensor::zeros({vocab, dim}, t);
      cpu_be().embedding_backward(grad, rep, padding_idx, dw_c);
      Tensor dw_g = Tensor::zeros({vocab, dim}, t, gpu());
      gpu_be().embedding_backward(on_gpu(grad), on_gpu(rep), padding_idx, dw_g);
      expect_parity(dw_c, dw_g, what, 10.0);
      // Deterministic: the same call gives the same bits.
      Tensor again = Tensor::zeros({vocab, dim}, t, gpu());
      gpu_be().embedding_backward(on_gpu(grad), on_gpu(rep), padding_idx, again);
      EXPECT_EQ(dw_g.to_vector<double>(), again.to_vector<double>()) << what;
    }
  }
}

// Bitwise equality: a deterministic kernel that sums in the CPU's order gives the same bits.
void expect_same_bits(const Tensor& cpu, const Tensor& gpu_result, const std::string& what) {
  const std::vector<double> a = cpu.to_vector<double>(), b = gpu_result.to_vector<double>();
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t differing = 0, first = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i] && !(std::isnan(a[i]) && std::isnan(b[i]))) {
      if (differing++ == 0) first = i;
    }
  }
  EXPECT_EQ(differing, 0u) << what << ": first at " << first << " (cpu " << a[first] << ", cuda "
                           << b[first] << ")";
}

TEST(Cuda, embedding_backward_sums_in_position_order) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  // A table wider than a block (300 columns), 4000 positions of which half hit one hot row, and a
  // gradient that accumulates onto non-zero values: the sorted gather sums each row in ascending
  // position, as the CPU does, so the bits agree exactly, in every dtype.
  Generator gen(31);
  const int64_t vocab = 1000, dim = 300, n = 4000;
  for (DType t : float_dtypes()) {
    std::vector<int64_t> iv = index_tensor({n}, 0, vocab, gen).to_vector<int64_t>();
    for (size_t i = 0; i < iv.size(); i += 2) iv[i] = 7;
    Tensor idx = Tensor::from_vector(iv, {4, n / 4}, DType::i64);
    Tensor grad = uniform_tensor({n, dim}, t, gen);
    Tensor start = uniform_tensor({vocab, dim}, t, gen);
    for (int64_t padding_idx : {int64_t{-1}, int64_t{7}, int64_t{0}}) {
      const std::string what = std::string("embedding_backward ") + dtype_name(t) +
                               " padding_idx " + std::to_string(padding_idx);
      Tensor dw_c = start.clone();
      cpu_be().embedding_backward(grad, idx, padding_idx, dw_c);
      Tensor dw_g = on_gpu(start);
      gpu_be().embedding_backward(on_gpu(grad), on_gpu(idx), padding_idx, dw_g);
      expect_same_bits(dw_c, dw_g, what);
    }
  }
}

TEST(Cuda, embedding_out_of_range_index_gives_nan_row_and_no_gradient) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  // The op no longer checks indices on the host; the kernels must stay in bounds and show the bad
  // value: NaN rows forward (zeros for an integer table), nothing added backward.
  Generator gen(32);
  const int64_t vocab = 20, dim = 5;
  const std::vector<int64_t> iv = {3, -1, 20, 7, 1000000, 0};
  const std::vector<bool> bad = {false, true, true, false, true, false};
  Tensor idx = Tensor::from_vector(iv, {6}, DType::i64);
  std::vector<DType> types = float_dtypes();
  types.push_back(DType::i64);
  for (DType t : types) {
    const std::string what = std::string("embedding ") + dtype_name(t);
    Tensor w = is_floating(t) ? uniform_tensor({vocab, dim}, t, gen)
                              : index_tensor({vocab, dim}, -50, 50, gen);
    Tensor out = Tensor::empty({6, dim}, t, gpu());
    gpu_be().embedding(on_gpu(w), on_gpu(idx), out);
    const std::vector<double> got = out.to_vector<double>(), wv = w.to_vector<double>();
    for (size_t i = 0; i < iv.size(); ++i) {
      for (int64_t j = 0; j < dim; ++j) {
        const double v = got[i * static_cast<size_t>(dim) + static_cast<size_t>(j)];
        if (!bad[i]) {
          EXPECT_EQ(v, wv[static_cast<size_t>(iv[i] * dim + j)]) << what << " row " << i;
        } else if (is_floating(t)) {
          EXPECT_TRUE(std::isnan(v)) << what << " row " << i << " (index " << iv[i] << ")";
        } else {
          EXPECT_EQ(v, 0.0) << what << " row " << i << " (index " << iv[i] << ")";
        }
      }
    }
    if (!is_floating(t)) continue;
    // Backward skips the bad positions, as the CPU kernel does.
    Tensor grad = uniform_tensor({6, dim}, t, gen);
    Tensor dw_c = Tensor::zeros({vocab, dim}, t);
    cpu_be().embedding_backward(grad, idx, -1, dw_c);
    Tensor dw_g = Tensor::zeros({vocab, dim}, t, gpu());
    gpu_be().embedding_backward(on_gpu(grad), on_gpu(idx), -1, dw_g);
    expect_same_bits(dw_c, dw_g, what + " backward");
  }
}

TEST(Cuda, cross_entropy_out_of_range_target_gives_nan) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  // Targets are not checked on the host any more: a target outside [0, classes) that is not
  // ignore_index gives a NaN loss and a NaN gradient row; ignored rows stay 0; the others match the
  // CPU (whose kernel writes 0 for the bad rows, the op having refused them before).
  Generator gen(33);
  const int64_t classes = 10;
  const std::vector<int64_t> tv = {2, 10, -100, -3, 9, 1000000};
  const std::vector<bool> bad = {false, true, false, true, false, true};
  const int64_t rows = static_cast<int64_t>(tv.size());
  Tensor targets = Tensor::from_vector(tv, {rows}, DType::i64);
  for (DType t : float_dtypes()) {
    for (double smoothing : {0.0, 0.1}) {
      const std::string what =
          std::string("cross_entropy ") + dtype_name(t) + " smoothing " + std::to_string(smoothing);
      Tensor logits = uniform_tensor({rows, classes}, t, gen, -4.0, 4.0);
      Tensor loss_c = Tensor::empty({rows}, t);
      cpu_be().cross_entropy(logits, targets, -100, smoothing, loss_c);
      Tensor loss_g = Tensor::empty({rows}, t, gpu());
      gpu_be().cross_entropy(on_gpu(logits), on_gpu(targets), -100, smoothing, loss_g);
      const std::vector<double> lc = loss_c.to_vector<double>(), lg = loss_g.to_vector<double>();
      Tensor g = uniform_tensor({rows}, t, gen, 0.5, 1.5);
      Tensor d_c = Tensor::empty({rows, classes}, t);
      cpu_be().cross_entropy_backward(logits, targets, -100, smoothing, g, d_c);
      Tensor d_g = Tensor::empty({rows, classes}, t, gpu());
      gpu_be().cross_entropy_backward(on_gpu(logits), on_gpu(targets), -100, smoothing, on_gpu(g),
                                      d_g);
      const std::vector<double> dc = d_c.to_vector<double>(), dg = d_g.to_vector<double>();
      const double tol = t == DType::f64 ? 1e-12 : (t == DType::f32 ? 1e-5 : 2e-2);
      for (size_t r = 0; r < tv.size(); ++r) {
        if (bad[r]) {
          EXPECT_TRUE(std::isnan(lg[r])) << what << " row " << r << " (target " << tv[r] << ")";
        } else {
          EXPECT_NEAR(lg[r], lc[r], tol * (1.0 + std::abs(lc[r]))) << what << " row " << r;
        }
        for (int64_t j = 0; j < classes; ++j) {
          const size_t k = r * static_cast<size_t>(classes) + static_cast<size_t>(j);
          if (bad[r]) {
            EXPECT_TRUE(std::isnan(dg[k])) << what << " backward row " << r << " col " << j;
          } else {
            EXPECT_NEAR(dg[k], dc[k], tol) << what << " backward row " << r << " col " << j;
          }
        }
      }
    }
  }
}

TEST(Cuda, cross_entropy) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(24);
  for (DType t : float_dtypes()) {
    for (int64_t classes : {int64_t{10}, int64_t{1000}}) {
      for (double smoothing : {0.0, 0.1}) {
        const std::string what = "cross_entropy C=" + std::to_string(classes) +
                                 " smoothing=" + std::to_string(smoothing);
        const int64_t rows = 37;
        Tensor logits = uniform_tensor({rows, classes}, t, gen, -4.0, 4.0);
        std::vector<int64_t> tv = index_tensor({rows}, 0, classes, gen).to_vector<int64_t>();
        tv[3] = tv[20] = -100;  // ignored rows
        Tensor targets = Tensor::from_vector(tv, {rows}, DType::i64);
        Tensor loss_c = Tensor::empty({rows}, t);
        cpu_be().cross_entropy(logits, targets, -100, smoothing, loss_c);
        Tensor loss_g = empty_on(loss_c, gpu());
        gpu_be().cross_entropy(on_gpu(logits), on_gpu(targets), -100, smoothing, loss_g);
        expect_parity(loss_c, loss_g, what);

        Tensor g = uniform_tensor({rows}, t, gen, 0.5, 1.5);
        Tensor d_c = Tensor::empty({rows, classes}, t);
        cpu_be().cross_entropy_backward(logits, targets, -100, smoothing, g, d_c);
        Tensor d_g = empty_on(d_c, gpu());
        gpu_be().cross_entropy_backward(on_gpu(logits), on_gpu(targets), -100, smoothing, on_gpu(g),
                                        d_g);
        expect_parity(d_c, d_g, what + " backward");
      }
    }
  }
}

TEST(Cuda, conv2d) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(25);
  struct Case {
    Shape x, w;
    Conv2dArgs args;
    bool bias;
  };
  const Case cases[] = {
      {{2, 4, 9, 11}, {6, 4, 3, 3}, {1, 1, 1, 1, 1}, true},   // same padding
      {{2, 4, 9, 11}, {5, 4, 3, 3}, {2, 2, 0, 0, 1}, false},  // stride 2, no padding
      {{2, 4, 8, 8}, {6, 2, 3, 3}, {1, 1, 1, 1, 2}, true},    // two groups
      {{3, 8, 5, 5}, {4, 8, 1, 1}, {1, 1, 0, 0, 1}, true},    // 1x1
      {{2, 3, 16, 16}, {8, 3, 4, 4}, {4, 4, 0, 0, 1}, true},  // patch embedding (kernel = stride)
  };
  for (DType t : float_dtypes()) {
    for (const Case& c : cases) {
      const std::string what = "conv2d x " + shape_str(c.x) + " w " + shape_str(c.w) + " groups " +
                               std::to_string(c.args.groups);
      const int64_t oh = (c.x[2] + 2 * c.args.pad_h - c.w[2]) / c.args.stride_h + 1;
      const int64_t ow = (c.x[3] + 2 * c.args.pad_w - c.w[3]) / c.args.stride_w + 1;
      const Shape ys = {c.x[0], c.w[0], oh, ow};
      Tensor x = uniform_tensor(c.x, t, gen), w = uniform_tensor(c.w, t, gen);
      Tensor b = c.bias ? uniform_tensor({c.w[0]}, t, gen) : Tensor();
      Tensor y_c = Tensor::empty(ys, t);
      cpu_be().conv2d(x, w, b, c.args, y_c);
      Tensor y_g = empty_on(y_c, gpu());
      gpu_be().conv2d(on_gpu(x), on_gpu(w), on_gpu(b), c.args, y_g);
      expect_parity(y_c, y_g, what, 10.0);

      Tensor dy = uniform_tensor(ys, t, gen);
      Tensor dx_c = Tensor::empty(c.x, t), dw_c = Tensor::empty(c.w, t);
      Tensor db_c = c.bias ? Tensor::empty({c.w[0]}, t) : Tensor();
      cpu_be().conv2d_backward(dy, x, w, c.args, dx_c, dw_c, db_c);
      Tensor dx_g = empty_on(dx_c, gpu()), dw_g = empty_on(dw_c, gpu()),
             db_g = empty_on(db_c, gpu());
      gpu_be().conv2d_backward(on_gpu(dy), on_gpu(x), on_gpu(w), c.args, dx_g, dw_g, db_g);
      expect_parity(dx_c, dx_g, what + " dx", 10.0);
      expect_parity(dw_c, dw_g, what + " dweight", 100.0);
      if (c.bias) expect_parity(db_c, db_g, what + " dbias", 100.0);
    }
  }
}

TEST(Cuda, pool2d) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(26);
  const Pool2dArgs cases[] = {{3, 3, 2, 2, 1, 1}, {2, 2, 2, 2, 0, 0}, {3, 2, 1, 2, 1, 0}};
  for (DType t : float_dtypes()) {
    for (const Pool2dArgs& a : cases) {
      const std::string what = "pool2d kernel " + std::to_string(a.kernel_h) + "x" +
                               std::to_string(a.kernel_w) + " stride " +
                               std::to_string(a.stride_h) + " pad " + std::to_string(a.pad_h);
      const Shape xs = {2, 3, 9, 10};
      const int64_t oh = (xs[2] + 2 * a.pad_h - a.kernel_h) / a.stride_h + 1;
      const int64_t ow = (xs[3] + 2 * a.pad_w - a.kernel_w) / a.stride_w + 1;
      const Shape ys = {2, 3, oh, ow};
      Tensor x = uniform_tensor(xs, t, gen);

      Tensor y_c = Tensor::empty(ys, t), idx_c = Tensor::empty(ys, DType::i64);
      cpu_be().max_pool2d(x, a, y_c, idx_c);
      Tensor y_g = empty_on(y_c, gpu()), idx_g = empty_on(idx_c, gpu());
      gpu_be().max_pool2d(on_gpu(x), a, y_g, idx_g);
      expect_parity(y_c, y_g, "max_" + what);
      if (t == DType::f32 || t == DType::f64)
        expect_parity(idx_c, idx_g, "max_" + what + " indices");

      // Backward from the CPU's indices on both, so ties in half precision cannot differ.
      Tensor dy = uniform_tensor(ys, t, gen);
      Tensor dx_c = Tensor::empty(xs, t);
      cpu_be().max_pool2d_backward(dy, idx_c, dx_c);
      Tensor dx_g = empty_on(dx_c, gpu());
      gpu_be().max_pool2d_backward(on_gpu(dy), on_gpu(idx_c), dx_g);
      expect_parity(dx_c, dx_g, "max_" + what + " backward");

      Tensor a_c = Tensor::empty(ys, t);
      cpu_be().avg_pool2d(x, a, a_c);
      Tensor a_g = empty_on(a_c, gpu());
      gpu_be().avg_pool2d(on_gpu(x), a, a_g);
      expect_parity(a_c, a_g, "avg_" + what);

      Tensor adx_c = Tensor::empty(xs, t);
      cpu_be().avg_pool2d_backward(dy, a, adx_c);
      Tensor adx_g = empty_on(adx_c, gpu());
      gpu_be().avg_pool2d_backward(on_gpu(dy), a, adx_g);
      expect_parity(adx_c, adx_g, "avg_" + what + " backward", 10.0);
    }
  }
}

TEST(Cuda, max_pool_backward_gathers_in_output_order) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  // Overlapping windows (3x3, stride 1: up to 9 outputs per input) over values with many ties, so
  // one input collects several gradients; indices out of [0, hw) are skipped. Summed in ascending
  // output order, as on the CPU, the bits agree exactly.
  Generator gen(34);
  const Pool2dArgs a{3, 3, 1, 1, 1, 1};
  const Shape xs = {3, 4, 20, 23};
  const Shape ys = {3, 4, 20, 23};
  for (DType t : float_dtypes()) {
    const std::string what = std::string("max_pool2d_backward ") + dtype_name(t);
    std::vector<double> xv(static_cast<size_t>(shape_numel(xs)));
    for (double& v : xv) v = static_cast<double>(gen.next_u64() % 3);  // ties everywhere
    Tensor x = Tensor::from_vector(xv, xs, t);
    Tensor y_c = Tensor::empty(ys, t), idx_c = Tensor::empty(ys, DType::i64);
    cpu_be().max_pool2d(x, a, y_c, idx_c);
    std::vector<int64_t> iv = idx_c.to_vector<int64_t>();
    iv[5] = -1;
    iv[17] = 20 * 23;
    iv[40] = int64_t{1} << 40;
    Tensor idx = Tensor::from_vector(iv, ys, DType::i64);
    Tensor dy = uniform_tensor(ys, t, gen);
    Tensor dx_c = Tensor::empty(xs, t);
    cpu_be().max_pool2d_backward(dy, idx, dx_c);
    Tensor dx_g = Tensor::full(xs, 9.0, t, gpu());  // every element must be written
    gpu_be().max_pool2d_backward(on_gpu(dy), on_gpu(idx), dx_g);
    expect_same_bits(dx_c, dx_g, what);
  }
  // No outputs: dx is all zeros.
  Tensor dx_g = Tensor::full({1, 2, 3, 3}, 9.0, DType::f32, gpu());
  gpu_be().max_pool2d_backward(Tensor::empty({1, 2, 0, 0}, DType::f32, gpu()),
                               Tensor::empty({1, 2, 0, 0}, DType::i64, gpu()), dx_g);
  EXPECT_EQ(dx_g.to_vector<double>(), std::vector<double>(18, 0.0));
}

TEST(Cuda, sdpa_declines_so_attention_is_composed) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  // Head dim 8 is not one the fused kernel takes (32, 64, 128): the backend declines, and the op
  // composes gemm + softmax (test_cuda_parity_attention.cpp covers the fused kernel).
  Generator gen(27);
  Tensor q = on_gpu(uniform_tensor({1, 2, 5, 8}, DType::f32, gen));
  Tensor out = Tensor::empty({1, 2, 5, 8}, DType::f32, gpu());
  Tensor stats = Tensor::empty({1, 2, 5}, DType::f32, gpu());
  EXPECT_FALSE(gpu_be().sdpa(q, q, q, Tensor(), true, 0.0, 0.0, 0, out, stats));

  Tensor qc = uniform_tensor({2, 2, 6, 8}, DType::f32, gen);
  Tensor kc = uniform_tensor({2, 2, 7, 8}, DType::f32, gen);
  Tensor vc = uniform_tensor({2, 2, 7, 8}, DType::f32, gen);
  Tensor ref = scaled_dot_product_attention(qc, kc, vc);
  Tensor got = scaled_dot_product_attention(on_gpu(qc), on_gpu(kc), on_gpu(vc));
  expect_parity(ref, got, "scaled_dot_product_attention (composed)", 10.0);
}

TEST(Cuda, ops_training_step_matches_cpu) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  // linear -> gelu -> layer_norm -> linear -> cross_entropy, forward and backward through the ops on
  // both devices, in f32: the loss and every gradient agree.
  Generator gen(28);
  Tensor x = uniform_tensor({16, 24}, DType::f32, gen);
  Tensor w1 = uniform_tensor({32, 24}, DType::f32, gen, -0.3, 0.3);
  Tensor b1 = uniform_tensor({32}, DType::f32, gen, -0.1, 0.1);
  Tensor w2 = uniform_tensor({10, 32}, DType::f32, gen, -0.3, 0.3);
  Tensor targets = index_tensor({16}, 0, 10, gen);
  auto run = [&](Device d) {
    std::vector<Tensor> params = {w1.to(d), b1.to(d), w2.to(d)};
    for (Tensor& p : params) p.set_requires_grad(true);
    Tensor h = gelu(linear(x.to(d), params[0], params[1]));
    h = layer_norm(h, Tensor(), Tensor(), 1e-5);
    Tensor loss = cross_entropy(linear(h, params[2]), targets.to(d));
    loss.backward();
    std::vector<Tensor> out = {loss.detach()};
    for (Tensor& p : params) out.push_back(p.grad());
    return out;
  };
  std::vector<Tensor> c = run(Device::cpu()), g = run(gpu());
  const char* names[] = {"loss", "dw1", "db1", "dw2"};
  for (size_t i = 0; i < c.size(); ++i) expect_parity(c[i], g[i], names[i], 10.0);
}

}  // namespace
}  // namespace dtrain
