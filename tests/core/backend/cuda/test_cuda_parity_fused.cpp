// CUDA vs CPU parity for the fused residual kernels: add_layer_norm (forward and backward, with and
// without the direct gradient dh) and dropout_add (whose keep mask must be bitwise the CPU's). f32,
// f16 and bf16 at odd row lengths. Every test skips with a reason where no GPU is visible.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/backend/dropout_add_mask.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
#include "tests/core/backend/cuda/parity.h"

namespace dtrain {
namespace {

using testing::cpu_be;
using testing::empty_on;
using testing::expect_parity;
using testing::gpu;
using testing::gpu_be;
using testing::on_gpu;
using testing::uniform_tensor;

const std::vector<DType>& half_and_f32() {
  static const std::vector<DType> types{DType::f32, DType::f16, DType::bf16};
  return types;
}

TEST(Cuda, add_layer_norm) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(31);
  for (DType t : half_and_f32()) {
    // 300 rows make the weight/bias gradient reduce in several chunks.
    for (const Shape& s : {Shape{6, 77}, Shape{10, 768}, Shape{4, 1000}, Shape{300, 37}}) {
      for (bool affine : {true, false}) {
        const std::string what = std::string("add_layer_norm ") + dtype_name(t) + " " +
                                 shape_str(s) + (affine ? "" : " (no affine)");
        const int64_t rows = s[0], cols = s[1];
        // The stream offset from zero, so the variance is taken around a large mean.
        Tensor x = uniform_tensor(s, t, gen), r = uniform_tensor(s, t, gen, 2.0, 4.0);
        Tensor w = affine ? uniform_tensor({cols}, t, gen, 0.5, 1.5) : Tensor();
        Tensor b = affine ? uniform_tensor({cols}, t, gen) : Tensor();
        Tensor h_c = Tensor::empty(s, t), y_c = Tensor::empty(s, t);
        Tensor mean_c = Tensor::empty({rows}, DType::f32),
               rstd_c = Tensor::empty({rows}, DType::f32);
        cpu_be().add_layer_norm(x, r, w, b, 1e-5, h_c, y_c, mean_c, rstd_c);
        Tensor h_g = empty_on(h_c, gpu()), y_g = empty_on(y_c, gpu());
        Tensor mean_g = empty_on(mean_c, gpu()), rstd_g = empty_on(rstd_c, gpu());
        gpu_be().add_layer_norm(on_gpu(x), on_gpu(r), on_gpu(w), on_gpu(b), 1e-5, h_g, y_g, mean_g,
                                rstd_g);
        expect_parity(h_c, h_g, what + " h");
        expect_parity(y_c, y_g, what + " y");
        expect_parity(mean_c, mean_g, what + " mean");
        expect_parity(rstd_c, rstd_g, what + " rstd");

        for (bool with_dh : {true, false}) {
          const std::string bw = what + (with_dh ? " backward" : " backward (no dh)");
          Tensor dy = uniform_tensor(s, t, gen);
          Tensor dh = with_dh ? uniform_tensor(s, t, gen) : Tensor();
          Tensor dx_c = Tensor::empty(s, t);
          Tensor dw_c = affine ? Tensor::empty({cols}, t) : Tensor();
          Tensor db_c = affine ? Tensor::empty({cols}, t) : Tensor();
          cpu_be().add_layer_norm_backward(dy, dh, h_c, w, mean_c, rstd_c, dx_c, dw_c, db_c);
          Tensor dx_g = empty_on(dx_c, gpu()), dw_g = empty_on(dw_c, gpu()),
                 db_g = empty_on(db_c, gpu());
          gpu_be().add_layer_norm_backward(on_gpu(dy), on_gpu(dh), on_gpu(h_c), on_gpu(w),
                                           on_gpu(mean_c), on_gpu(rstd_c), dx_g, dw_g, db_g);
          expect_parity(dx_c, dx_g, bw + " dx", 10.0);
          if (affine) {
            // Column sums over up to 300 rows: a different order, a slightly larger difference.
            expect_parity(dw_c, dw_g, bw + " dweight", 100.0);
            expect_parity(db_c, db_g, bw + " dbias", 100.0);
          }
        }
      }
    }
  }
}

// With x = 1 and no residual the output is the scaled mask itself: the GPU must keep exactly the
// elements the CPU keeps, and both must match the host's dropout_add_keep.
TEST(Cuda, dropout_add_mask_is_the_cpus) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  for (DType t : half_and_f32()) {
    for (int64_t n : {int64_t{77}, int64_t{1000}, int64_t{4099}, int64_t{1} << 20}) {
      for (double p : {0.1, 0.5, 0.9}) {
        const std::string what = std::string("dropout_add mask ") + dtype_name(t) + " n " +
                                 std::to_string(n) + " p " + std::to_string(p);
        const uint64_t seed = 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(n);
        const Tensor x = Tensor::ones({n}, t);
        Tensor out_c = Tensor::empty({n}, t);
        cpu_be().dropout_add(x, Tensor(), p, seed, out_c);
        Tensor out_g = empty_on(out_c, gpu());
        gpu_be().dropout_add(on_gpu(x), Tensor(), p, seed, out_g);
        const std::vector<double> c = out_c.to_vector<double>(), g = out_g.to_vector<double>();
        ASSERT_EQ(c.size(), g.size()) << what;
        for (size_t i = 0; i < c.size(); ++i) {
          ASSERT_EQ(c[i], g[i]) << what << " element " << i;
          ASSERT_EQ(c[i] != 0.0, dropout_add_keep(seed, i, static_cast<float>(p)))
              << what << " element " << i;
        }
      }
    }
  }
}

TEST(Cuda, dropout_add) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(32);
  for (DType t : half_and_f32()) {
    for (const Shape& s : {Shape{3, 77}, Shape{5, 768}, Shape{2, 1000}, Shape{4099}}) {
      const std::string what = std::string("dropout_add ") + dtype_name(t) + " " + shape_str(s);
      const uint64_t seed = gen.next_u64();
      Tensor x = uniform_tensor(s, t, gen), r = uniform_tensor(s, t, gen);
      Tensor out_c = Tensor::empty(s, t);
      cpu_be().dropout_add(x, r, 0.3, seed, out_c);
      Tensor out_g = empty_on(out_c, gpu());
      gpu_be().dropout_add(on_gpu(x), on_gpu(r), 0.3, seed, out_g);
      expect_parity(out_c, out_g, what);
      // The backward form: no residual (dx = dy * m / (1 - p)).
      Tensor dx_c = Tensor::empty(s, t);
      cpu_be().dropout_add(x, Tensor(), 0.3, seed, dx_c);
      Tensor dx_g = empty_on(dx_c, gpu());
      gpu_be().dropout_add(on_gpu(x), Tensor(), 0.3, seed, dx_g);
      expect_parity(dx_c, dx_g, what + " (no residual)");
    }
  }
}

}  // namespace
}  // namespace dtrain
