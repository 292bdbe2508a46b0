// The CPU backend: the reference implementation of the kernel interface. OpenBLAS for GEMM, OpenMP
// loops elsewhere. Its methods are defined across the files of this folder, one per kernel family:
//   cpu_backend.cpp      memory, registry, cpu_to_f32
//   cpu_elementwise.cpp  copy, fill, binary, binary_scalar
//   cpu_unary.cpp        unary (+ backward): the math of each row of core/backend/unary_ops.def
//   cpu_reduce.cpp       reduce (sum, max, min over [outer, n, inner])
//   cpu_random.cpp       random (uniform, normal, bernoulli)
//   cpu_gemm.cpp         gemm
//   cpu_softmax.cpp      softmax, log_softmax (+ backward)
//   cpu_nn.cpp           layer_norm, embedding, cross_entropy (+ backward)
//   cpu_conv.cpp         conv2d, max_pool2d, avg_pool2d (+ backward)
//   cpu_attention.cpp    sdpa (+ backward): fused attention, f32 and f64
//   cpu_optim.cpp        adam_update, sgd_update: the fused optimizer steps
// and two internal headers: cpu_loops.h (dtype dispatch, threading, strided loops, and F32Staging,
// the f16/bf16 path, shared by the kernel files) and cpu_math.h (f32 exp/erf that vectorise).
#pragma once
#include "core/backend/backend.h"

namespace dtrain {

// Bytes held by live CPU tensors now and at their peak (since start or the last reset).
struct CpuTensorMemory {
  size_t live = 0, peak = 0;
};
CpuTensorMemory cpu_tensor_memory();
void reset_cpu_tensor_memory_peak();

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  // Every kernel of core/backend/backend_kernels.def.
#define DTRAIN_KERNEL(ret, name, params) ret name params override;
#include "core/backend/backend_kernels.def"

  // Fused attention (optional in the interface).
  bool sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask, bool causal,
            double scale, double dropout_p, uint64_t seed, const Tensor& out,
            const Tensor& stats) override;
  bool sdpa_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                     const Tensor& out, const Tensor& stats, const Tensor& attn_mask, bool causal,
                     double scale, double dropout_p, uint64_t seed, const Tensor& dq,
                     const Tensor& dk, const Tensor& dv) override;
};

// A dense f32 copy of an f16/bf16 tensor; any other tensor (or an undefined one) as it is. The
// kernel files reach it through F32Staging (cpu_loops.h), the CPU's half-precision path.
Tensor cpu_to_f32(const Tensor& t);

}  // namespace dtrain
