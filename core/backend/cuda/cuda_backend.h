// The CUDA backend: the kernel interface of core/backend/backend.h on NVIDIA GPUs. Every call is
// queued on the device's compute stream (cuda_device.h) and returns without waiting, except the
// copies to the host and synchronize() (each counted by count_host_sync). Uploads run on a copy
// stream the compute stream waits for on the device. Its methods are defined across the files of
// this folder, one per kernel family: cuda_backend.cpp (memory, registry), cuda_elementwise.cu
// (copy, fill, unary, binary), cuda_reduce.cu, cuda_random.cu, cuda_gemm.cpp (cuBLASLt), cuda_nn.cu
// (softmax, embedding, cross_entropy), cuda_layer_norm.cu (layer_norm, add_layer_norm),
// cuda_dropout.cu (dropout_add), cuda_conv.cpp (cuDNN convolution), cuda_pool.cu (pooling),
// cuda_attention.cu (fused attention) and cuda_optim.cu (fused optimizer updates).
//
// Floating kernels take f32, f64, f16 and bf16; f16 and bf16 are loaded into f32 registers,
// computed in f32 and rounded once on store (the CPU backend's rounding). Fused attention (sdpa)
// takes f32, f16 and bf16 at head dim 32, 64 or 128 and declines the rest, which the op then
// composes from gemm and softmax.
#pragma once
#include "core/backend/backend.h"

namespace dtrain {

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  // Every kernel of core/backend/backend_kernels.def.
#define DTRAIN_KERNEL(ret, name, params) ret name params override;
#include "core/backend/backend_kernels.def"

  // Fused attention, FlashAttention-2 style (cuda_attention.cu).
  bool sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask, bool causal,
            double scale, double dropout_p, uint64_t seed, const Tensor& out,
            const Tensor& stats) override;
  bool sdpa_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                     const Tensor& out, const Tensor& stats, const Tensor& attn_mask, bool causal,
                     double scale, double dropout_p, uint64_t seed, const Tensor& dq,
                     const Tensor& dk, const Tensor& dv) override;

  // Waits for the device (optional in the interface; the CPU has nothing to wait for).
  void synchronize(int device_index) override;
};

}  // namespace dtrain
