// The GEMM epilogues on CUDA (cuBLASLt's BIAS and BGRADB, or their composition where cuBLASLt does
// not take the case) against the CPU, with the operands laid out as linear() passes them, and
// linear's forward and backward on both devices. The host-side check of the column-major mapping
// runs everywhere; the device checks skip with a reason where no GPU is visible.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/backend/backend.h"
#include "core/backend/cuda/gemm_layout.h"
#include "core/ops/ops.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
#include "tests/core/backend/cuda/parity.h"

namespace dtrain {
namespace {

using testing::cpu_be;
using testing::expect_parity;
using testing::gpu;
using testing::gpu_be;
using testing::on_gpu;
using testing::uniform_tensor;

// A linear layer's sizes: rows of x, in and out features.
struct LinearDims {
  int64_t rows, in, out;
};
const LinearDims kDims[] = {{77, 768, 3072}, {1, 5, 7}, {64, 1000, 128}};

std::string name(const char* what, DType t, const LinearDims& d) {
  return std::string(what) + " " + dtype_name(t) + " rows=" + std::to_string(d.rows) +
         " in=" + std::to_string(d.in) + " out=" + std::to_string(d.out);
}

// y = x W^T + b: A = x [rows, in], B = W [out, in] as a transpose flag, bias [out].
GemmArgs forward_args(const LinearDims& d) {
  GemmArgs g;
  g.m = d.rows, g.n = d.out, g.k = d.in, g.trans_b = true;
  g.lda = d.in, g.ldb = d.in, g.ldc = d.out;
  g.epilogue = GemmEpilogue::bias;
  return g;
}

// dW = g^T x, db = sum_r g[r]: A = g [rows, out] as a transpose flag, B = x [rows, in].
GemmArgs weight_grad_args(const LinearDims& d) {
  GemmArgs g;
  g.m = d.out, g.n = d.in, g.k = d.rows, g.trans_a = true;
  g.lda = d.out, g.ldb = d.in, g.ldc = d.in;
  g.epilogue = GemmEpilogue::bias_grad;
  return g;
}

// The column-major problem cuBLAS solves, by loops: D = op(first) op(second), and BGRADB's vector
// (sum over k of op(second), one element per column of D) must be the row sums of op(A).
TEST(CudaGemmEpilogueHost, bias_is_cublas_bias_and_bias_grad_is_bgradb) {
  Generator gen(31);
  for (bool trans_a : {true, false}) {
    GemmArgs g = weight_grad_args({6, 4, 5});  // m = 5, n = 4, k = 6
    g.trans_a = trans_a;
    g.lda = trans_a ? 5 + 2 : 6 + 1;  // padded
    const std::vector<double> a =
        uniform_tensor({trans_a ? 6 : 5, g.lda}, DType::f64, gen).to_vector<double>();
    const std::vector<double> b = uniform_tensor({6, 4}, DType::f64, gen).to_vector<double>();
    const cuda::ColMajorGemm p = cuda::to_col_major(g);
    ASSERT_EQ(cuda::epilogue_vector_length(p, GemmEpilogue::bias_grad), g.m);
    ASSERT_EQ(cuda::epilogue_vector_length(p, GemmEpilogue::bias), g.n);
    // Column-major element (r, c) of a stored matrix, through its op.
    auto op = [](const cuda::ColMajorMatrix& mat, const std::vector<double>& data, int64_t r,
                 int64_t c) {
      return mat.transposed ? data[static_cast<size_t>(c + r * mat.ld)]
                            : data[static_cast<size_t>(r + c * mat.ld)];
    };
    for (int64_t j = 0; j < p.n; ++j) {  // a column of D = a row i = j of C
      double bgradb = 0.0, row_sum = 0.0;
      for (int64_t q = 0; q < p.k; ++q) {
        bgradb += op(p.second, a, q, j);
        row_sum +=
            trans_a ? a[static_cast<size_t>(q * g.lda + j)] : a[static_cast<size_t>(j * g.lda + q)];
      }
      EXPECT_DOUBLE_EQ(bgradb, row_sum) << "trans_a=" << trans_a << " i=" << j;
      for (int64_t r = 0; r < p.m; ++r) {  // D[r, j] = C[j, r]
        double d = 0.0, c = 0.0;
        for (int64_t q = 0; q < p.k; ++q) {
          d += op(p.first, b, r, q) * op(p.second, a, q, j);
          const double a_jq = trans_a ? a[static_cast<size_t>(q * g.lda + j)]
                                      : a[static_cast<size_t>(j * g.lda + q)];
          c += a_jq * b[static_cast<size_t>(q * g.ldb + r)];
        }
        EXPECT_DOUBLE_EQ(d, c) << "trans_a=" << trans_a;
      }
    }
  }
}

// f64 and the cases after it take the composed path on CUDA; f32/f16/bf16 take cuBLASLt's
// epilogue where its heuristic offers one. Both must match the CPU.
TEST(CudaGemmEpilogue, bias_matches_cpu) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(32);
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    for (const LinearDims& d : kDims) {
      GemmArgs g = forward_args(d);
      Tensor x = uniform_tensor({d.rows, d.in}, t, gen), w = uniform_tensor({d.out, d.in}, t, gen);
      Tensor bias = uniform_tensor({d.out}, t, gen);
      Tensor c = Tensor::empty({d.rows, d.out}, t, Device::cpu());
      Tensor c_g = Tensor::empty({d.rows, d.out}, t, gpu());
      g.bias = bias;
      cpu_be().gemm(g, x, w, c);
      g.bias = on_gpu(bias);
      gpu_be().gemm(g, on_gpu(x), on_gpu(w), c_g);
      expect_parity(c, c_g, name("gemm bias", t, d));
    }
  }
}

TEST(CudaGemmEpilogue, bias_grad_matches_cpu) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(33);
  for (DType t : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    for (const LinearDims& d : kDims) {
      GemmArgs g = weight_grad_args(d);
      Tensor grad = uniform_tensor({d.rows, d.out}, t, gen);
      Tensor x = uniform_tensor({d.rows, d.in}, t, gen);
      Tensor c = Tensor::empty({d.out, d.in}, t, Device::cpu());
      Tensor c_g = Tensor::empty({d.out, d.in}, t, gpu());
      Tensor db = Tensor::empty({d.out}, t, Device::cpu());
      Tensor db_g = Tensor::full({d.out}, 99.0, t, gpu());  // overwritten, not added to
      g.bias = db;
      cpu_be().gemm(g, grad, x, c);
      g.bias = db_g;
      gpu_be().gemm(g, on_gpu(grad), on_gpu(x), c_g);
      expect_parity(c, c_g, name("gemm bias_grad dW", t, d));
      expect_parity(db, db_g, name("gemm bias_grad db", t, d));
    }
  }
}

// Cases the CUDA backend composes instead of fusing: alpha != 1, a strided C, k = 0, and an
// untransposed, padded A for the bias gradient (fused if cuBLASLt takes it, composed if not).
TEST(CudaGemmEpilogue, composed_cases_match_cpu) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(34);
  for (DType t : {DType::f32, DType::bf16}) {
    const LinearDims d{37, 29, 45};
    GemmArgs g = forward_args(d);
    g.alpha = 0.5;
    g.ldc = d.out + 3;
    Tensor x = uniform_tensor({d.rows, d.in}, t, gen), w = uniform_tensor({d.out, d.in}, t, gen);
    Tensor bias = uniform_tensor({d.out}, t, gen);
    Tensor c = uniform_tensor({d.rows, g.ldc}, t, gen), c_g = on_gpu(c);
    g.bias = bias;
    cpu_be().gemm(g, x, w, c);
    g.bias = on_gpu(bias);
    gpu_be().gemm(g, on_gpu(x), on_gpu(w), c_g);
    expect_parity(c, c_g, std::string("bias, alpha 0.5, ldc > n, ") + dtype_name(t));

    GemmArgs gr = weight_grad_args(d);
    gr.trans_a = false, gr.lda = d.rows + 5;  // A = g^T stored [out, rows + 5]
    Tensor a = uniform_tensor({d.out, gr.lda}, t, gen);
    Tensor dw = Tensor::empty({d.out, d.in}, t, Device::cpu()), dw_g = on_gpu(dw);
    Tensor db = Tensor::empty({d.out}, t, Device::cpu()), db_g = on_gpu(db);
    gr.bias = db;
    cpu_be().gemm(gr, a, x, dw);
    gr.bias = db_g;
    gpu_be().gemm(gr, on_gpu(a), on_gpu(x), dw_g);
    expect_parity(dw, dw_g, std::string("bias_grad, untransposed A, dW ") + dtype_name(t));
    expect_parity(db, db_g, std::string("bias_grad, untransposed A, db ") + dtype_name(t));

    GemmArgs g0 = forward_args({4, 0, 3});  // k = 0: C = bias rows
    g0.lda = 1, g0.ldb = 1;
    Tensor b0 = uniform_tensor({3}, t, gen);
    Tensor c0 = Tensor::empty({4, 3}, t, gpu());
    g0.bias = on_gpu(b0);
    gpu_be().gemm(g0, Tensor::empty({4, 0}, t, gpu()), Tensor::empty({3, 0}, t, gpu()), c0);
    Tensor want = Tensor::empty({4, 3}, t, Device::cpu());
    cpu_be().copy(make_view(b0, {4, 3}, {0, 1}, 0), want);
    expect_parity(want, c0, std::string("bias, k = 0, ") + dtype_name(t));
  }
}

// linear() forward and backward on CUDA against the CPU: the forward's bias epilogue and the
// backward's bias_grad epilogue on the dW GEMM, for 2-D and 3-D inputs.
TEST(CudaGemmEpilogue, linear_forward_backward_match_cpu) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(35);
  for (DType t : {DType::f32, DType::bf16, DType::f16}) {
    for (const LinearDims& d : kDims) {
      for (bool three_d : {false, true}) {
        if (three_d && d.rows % 2 != 0) continue;
        const Shape x_shape = three_d ? Shape{2, d.rows / 2, d.in} : Shape{d.rows, d.in};
        Shape y_shape(x_shape.begin(), x_shape.end() - 1);
        y_shape.push_back(d.out);
        Tensor x = uniform_tensor(x_shape, t, gen), w = uniform_tensor({d.out, d.in}, t, gen);
        Tensor b = uniform_tensor({d.out}, t, gen), gy = uniform_tensor(y_shape, t, gen);
        Tensor xc = x.detach().set_requires_grad(true), wc = w.detach().set_requires_grad(true);
        Tensor bc = b.detach().set_requires_grad(true);
        Tensor xg = on_gpu(x).set_requires_grad(true), wg = on_gpu(w).set_requires_grad(true);
        Tensor bg = on_gpu(b).set_requires_grad(true);
        Tensor yc = linear(xc, wc, bc), yg = linear(xg, wg, bg);
        yc.backward(gy);
        yg.backward(on_gpu(gy));
        const std::string what = name(three_d ? "linear 3-D" : "linear", t, d);
        expect_parity(yc, yg, what + " y");
        expect_parity(xc.grad(), xg.grad(), what + " dx");
        expect_parity(wc.grad(), wg.grad(), what + " dW");
        expect_parity(bc.grad(), bg.grad(), what + " db");
      }
    }
  }
}

}  // namespace
}  // namespace dtrain
