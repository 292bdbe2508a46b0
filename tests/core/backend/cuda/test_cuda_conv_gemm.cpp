// cuDNN and cuBLASLt policy: which cuDNN statuses are declines (answered with an f32 run), which
// math types f32 may use with TF32 on or off, and, on a GPU, that cached GEMM and convolution plans
// follow the TF32 switch (f32 stays f32-exact with TF32 off, before and after it was on).
#include <gtest/gtest.h>

#include "tests/core/backend/cuda/parity.h"

#ifdef DTRAIN_WITH_CUDA
#include "core/backend/cuda/cuda_check.h"
#include "core/backend/cuda/cuda_device.h"

namespace dtrain {
namespace {

TEST(CudaConvPolicy, declines_are_the_whole_not_supported_category) {
  using cuda::cudnn_declined;
  EXPECT_TRUE(cudnn_declined(CUDNN_STATUS_NOT_SUPPORTED));                // 3000
  EXPECT_TRUE(cudnn_declined(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN));  // 3001
  EXPECT_TRUE(cudnn_declined(CUDNN_STATUS_NOT_SUPPORTED_SHAPE));
  EXPECT_TRUE(cudnn_declined(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE));
  EXPECT_TRUE(cudnn_declined(CUDNN_STATUS_NOT_SUPPORTED_INVALID_DYNAMIC_SHAPE));  // 3014
  EXPECT_TRUE(cudnn_declined(static_cast<cudnnStatus_t>(3999)));  // a sub-code a later cuDNN adds
  EXPECT_FALSE(cudnn_declined(CUDNN_STATUS_SUCCESS));
  EXPECT_FALSE(cudnn_declined(CUDNN_STATUS_BAD_PARAM));  // 2000
  EXPECT_FALSE(cudnn_declined(CUDNN_STATUS_BAD_PARAM_NULL_POINTER));
  EXPECT_FALSE(cudnn_declined(CUDNN_STATUS_INTERNAL_ERROR));    // 4000
  EXPECT_FALSE(cudnn_declined(CUDNN_STATUS_EXECUTION_FAILED));  // 5000
  EXPECT_FALSE(cudnn_declined(CUDNN_STATUS_NOT_INITIALIZED));   // 1001
}

TEST(CudaConvPolicy, f32_without_tf32_never_runs_on_tensor_cores) {
  using cuda::conv_algo_allowed;
  using cuda::conv_execution_math;
  using cuda::conv_requested_math;
  // Requested before the heuristics.
  EXPECT_EQ(conv_requested_math(DType::f32, false), CUDNN_FMA_MATH);
  EXPECT_EQ(conv_requested_math(DType::f32, true), CUDNN_TENSOR_OP_MATH);
  EXPECT_EQ(conv_requested_math(DType::f16, false), CUDNN_TENSOR_OP_MATH);
  EXPECT_EQ(conv_requested_math(DType::bf16, true), CUDNN_TENSOR_OP_MATH);
  EXPECT_EQ(conv_requested_math(DType::f64, true), CUDNN_DEFAULT_MATH);

  // Which reported algorithms may run.
  EXPECT_FALSE(conv_algo_allowed(CUDNN_TENSOR_OP_MATH, DType::f32, false));
  EXPECT_FALSE(conv_algo_allowed(CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, DType::f32, false));
  EXPECT_FALSE(conv_algo_allowed(CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, DType::f32, true));
  EXPECT_TRUE(conv_algo_allowed(CUDNN_DEFAULT_MATH, DType::f32, false));
  EXPECT_TRUE(conv_algo_allowed(CUDNN_FMA_MATH, DType::f32, false));
  EXPECT_TRUE(conv_algo_allowed(CUDNN_TENSOR_OP_MATH, DType::f32, true));
  EXPECT_TRUE(conv_algo_allowed(CUDNN_TENSOR_OP_MATH, DType::bf16, false));
  EXPECT_TRUE(conv_algo_allowed(CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, DType::f16, false));

  // The math the descriptor runs with: DEFAULT_MATH may mean TF32 on Ampere+, so it is pinned to
  // FMA.
  EXPECT_EQ(conv_execution_math(CUDNN_DEFAULT_MATH, DType::f32, false), CUDNN_FMA_MATH);
  EXPECT_EQ(conv_execution_math(CUDNN_FMA_MATH, DType::f32, false), CUDNN_FMA_MATH);
  EXPECT_EQ(conv_execution_math(CUDNN_DEFAULT_MATH, DType::f32, true), CUDNN_DEFAULT_MATH);
  EXPECT_EQ(conv_execution_math(CUDNN_TENSOR_OP_MATH, DType::f32, true), CUDNN_TENSOR_OP_MATH);
  EXPECT_EQ(conv_execution_math(CUDNN_TENSOR_OP_MATH, DType::f16, false), CUDNN_TENSOR_OP_MATH);
  EXPECT_EQ(conv_execution_math(CUDNN_DEFAULT_MATH, DType::f64, false), CUDNN_DEFAULT_MATH);
}

TEST(CudaGemmPolicy, tf32_only_for_f32_and_only_when_allowed) {
  using cuda::gemm_compute_type;
  EXPECT_EQ(gemm_compute_type(DType::f32, false), CUBLAS_COMPUTE_32F);
  EXPECT_EQ(gemm_compute_type(DType::f32, true), CUBLAS_COMPUTE_32F_FAST_TF32);
  EXPECT_EQ(gemm_compute_type(DType::f16, true), CUBLAS_COMPUTE_32F);
  EXPECT_EQ(gemm_compute_type(DType::bf16, true), CUBLAS_COMPUTE_32F);
  EXPECT_EQ(gemm_compute_type(DType::f64, true), CUBLAS_COMPUTE_64F);
}

// ---- on a GPU

// Restores the TF32 switch at scope end, so other tests keep the library default.
struct Tf32Scope {
  bool saved = cuda::cuda_allow_tf32();
  ~Tf32Scope() { cuda::cuda_set_allow_tf32(saved); }
};

TEST(CudaConvGemm, cached_plans_follow_the_tf32_switch) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Tf32Scope scope;
  Generator gen(21);
  // K = 576 products per output: TF32's 10-bit mantissa would exceed the f32 bound.
  const Tensor x = testing::uniform_tensor({4, 64, 16, 16}, DType::f32, gen);
  const Tensor w = testing::uniform_tensor({32, 64, 3, 3}, DType::f32, gen);
  const Tensor a = testing::uniform_tensor({192, 576}, DType::f32, gen);
  const Tensor b = testing::uniform_tensor({576, 160}, DType::f32, gen);
  Conv2dArgs args;
  args.pad_h = args.pad_w = 1;
  GemmArgs g;
  g.m = 192, g.n = 160, g.k = 576, g.lda = 576, g.ldb = 160, g.ldc = 160;
  g.stride_a = g.m * g.k, g.stride_b = g.k * g.n, g.stride_c = g.m * g.n;

  const Tensor y_cpu = Tensor::empty({4, 32, 16, 16}, DType::f32);
  testing::cpu_be().conv2d(x, w, Tensor(), args, y_cpu);
  const Tensor c_cpu = Tensor::zeros({192, 160}, DType::f32);
  testing::cpu_be().gemm(g, a, b, c_cpu);
  const Tensor xg = testing::on_gpu(x), wg = testing::on_gpu(w), ag = testing::on_gpu(a),
               bg = testing::on_gpu(b);
  auto run = [&](bool tf32, double bound_scale, const std::string& what) {
    cuda::cuda_set_allow_tf32(tf32);
    for (int repeat = 0; repeat < 2; ++repeat) {  // the second call runs the cached plan
      const Tensor y = Tensor::empty({4, 32, 16, 16}, DType::f32, testing::gpu());
      testing::gpu_be().conv2d(xg, wg, Tensor(), args, y);
      testing::expect_parity(y_cpu, y, "conv2d " + what, bound_scale);
      const Tensor c = Tensor::zeros({192, 160}, DType::f32, testing::gpu());
      testing::gpu_be().gemm(g, ag, bg, c);
      testing::expect_parity(c_cpu, c, "gemm " + what, bound_scale);
    }
  };
  run(false, 1.0, "TF32 off");
  run(true, 1e6, "TF32 on");          // runs (TF32 accuracy is ~1e-6 NMSE)
  run(false, 1.0, "TF32 off again");  // not the TF32 plans cached a moment ago
}

}  // namespace
}  // namespace dtrain
#endif  // DTRAIN_WITH_CUDA
