// The CPU backend: the reference implementation of the kernel interface. OpenBLAS for GEMM, OpenMP
// loops elsewhere. Its methods are defined across the files of this folder, one per kernel family:
//   cpu_backend.cpp      memory, registry, cpu_to_f32
//   cpu_elementwise.cpp  copy, fill, unary (+ backward), binary, binary_scalar
//   cpu_reduce.cpp       reduce (sum, max, min over [outer, n, inner])
//   cpu_random.cpp       random (uniform, normal, bernoulli)
//   cpu_gemm.cpp         gemm
//   cpu_softmax.cpp      softmax, log_softmax (+ backward)
//   cpu_nn.cpp           layer_norm, embedding, cross_entropy (+ backward)
//   cpu_conv.cpp         conv2d, max_pool2d, avg_pool2d (+ backward)
//   cpu_attention.cpp    sdpa (+ backward): fused attention, f32 and f64
// and two internal headers: cpu_loops.h (dtype dispatch, threading, strided loops shared by the
// kernel files) and cpu_math.h (f32 exp/erf that vectorise).
#pragma once
#include "core/backend/backend.h"

namespace dtrain {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  void* allocate(size_t nbytes, int device_index) override;
  void deallocate(void* ptr, size_t nbytes, int device_index) override;
  void copy_to_host(const void* src, void* dst_host, size_t nbytes, int device_index) override;
  void copy_from_host(const void* src_host, void* dst, size_t nbytes, int device_index) override;

  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void unary(UnaryOp op, const Tensor& x, const Tensor& out) override;
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& grad, const Tensor& out) override;
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void binary_scalar(BinaryOp op, const Tensor& a, double s, bool scalar_first,
                     const Tensor& out) override;
  void reduce(ReduceOp op, const Tensor& x, int64_t outer, int64_t n, int64_t inner,
              const Tensor& out, const Tensor& indices) override;
  void random(RandomKind kind, double a, double b, Generator& gen, const Tensor& dst) override;

  void gemm(const GemmArgs& args, const Tensor& a, const Tensor& b, const Tensor& c) override;

  void softmax(const Tensor& x, const Tensor& out, bool log) override;
  void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, bool log) override;
  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                  const Tensor& out, const Tensor& mean, const Tensor& rstd) override;
  void layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                           const Tensor& mean, const Tensor& rstd, const Tensor& dx,
                           const Tensor& dweight, const Tensor& dbias) override;
  void embedding(const Tensor& weight, const Tensor& indices, const Tensor& out) override;
  void embedding_backward(const Tensor& grad, const Tensor& indices, int64_t padding_idx,
                          const Tensor& dweight) override;
  void cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                     double label_smoothing, const Tensor& losses) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                              double label_smoothing, const Tensor& grad_losses,
                              const Tensor& dlogits) override;

  void conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dArgs& args,
              const Tensor& out) override;
  void conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                       const Conv2dArgs& args, const Tensor& dx, const Tensor& dweight,
                       const Tensor& dbias) override;
  void max_pool2d(const Tensor& x, const Pool2dArgs& args, const Tensor& out,
                  const Tensor& indices) override;
  void max_pool2d_backward(const Tensor& dy, const Tensor& indices, const Tensor& dx) override;
  void avg_pool2d(const Tensor& x, const Pool2dArgs& args, const Tensor& out) override;
  void avg_pool2d_backward(const Tensor& dy, const Pool2dArgs& args, const Tensor& dx) override;

  bool sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask, bool causal,
            double scale, const Tensor& out, const Tensor& stats) override;
  bool sdpa_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                     const Tensor& out, const Tensor& stats, const Tensor& attn_mask, bool causal,
                     double scale, const Tensor& dq, const Tensor& dk, const Tensor& dv) override;
};

// Runs `f` on f32 copies of half-precision tensors and writes results back: the CPU path for
// f16/bf16, which stores 16 bits and computes in f32. Tensors not in half precision pass through.
// (Declared here so every kernel file of the CPU backend shares one implementation.)
Tensor cpu_to_f32(const Tensor& t);

}  // namespace dtrain
