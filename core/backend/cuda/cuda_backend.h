// The CUDA backend: the kernel interface of core/backend/backend.h on NVIDIA GPUs. Every call is
// queued on the device's compute stream (cuda_device.h) and returns without waiting, except the
// copies to the host and synchronize() (each counted by count_host_sync). Uploads run on a copy
// stream the compute stream waits for on the device. Its methods are defined across the files of
// this folder, one per kernel family: cuda_backend.cpp (memory, registry), cuda_elementwise.cu
// (copy, fill, unary, binary), cuda_reduce.cu, cuda_random.cu, cuda_gemm.cpp (cuBLASLt), cuda_nn.cu
// (softmax, layer_norm, embedding, cross_entropy), cuda_conv.cpp (cuDNN convolution) and
// cuda_pool.cu (pooling).
//
// Floating kernels take f32, f64, f16 and bf16; f16 and bf16 are loaded into f32 registers,
// computed in f32 and rounded once on store (the CPU backend's rounding). Fused attention is not
// provided: sdpa() keeps the interface's default (false), so attention is composed from gemm and
// softmax.
#pragma once
#include "core/backend/backend.h"

namespace dtrain {

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
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

  void synchronize(int device_index) override;
};

}  // namespace dtrain
