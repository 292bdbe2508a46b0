// The one kernel interface every backend implements (CPU is the reference; CUDA is tested against it).
// Ops in core/ops check their inputs, allocate outputs and call these; nothing above core/ops includes
// a backend header. The kernels and their contracts are listed in core/backend/backend_kernels.def
// (one row each); the op tables in unary_ops.def and binary_ops.def.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/backend/optim_update.h"
#include "core/backend/runtime.h"
#include "core/tensor/tensor.h"

namespace dtrain {

class Generator;

// The unary elementwise ops: one row each in core/backend/unary_ops.def (which states their math).
enum class UnaryOp : uint8_t {
#define DTRAIN_UNARY_OP(name, ...) name,
#include "core/backend/unary_ops.def"
};
inline constexpr int kUnaryOpCount = 0
#define DTRAIN_UNARY_OP(name, ...) +1
#include "core/backend/unary_ops.def"
    ;
// The row's name ("gelu_erf").
constexpr const char* unary_op_name(UnaryOp op) {
  switch (op) {
#define DTRAIN_UNARY_OP(name, ...) \
  case UnaryOp::name:              \
    return #name;
#include "core/backend/unary_ops.def"
  }
  return "?";
}
// a op b: one row each in core/backend/binary_ops.def. Comparisons (eq, ne, gt, ge, lt, le) give
// 1 or 0 in the output dtype.
enum class BinaryOp : uint8_t {
#define DTRAIN_BINARY_OP(name, ...) name,
#include "core/backend/binary_ops.def"
};
inline constexpr int kBinaryOpCount = 0
#define DTRAIN_BINARY_OP(name, ...) +1
#include "core/backend/binary_ops.def"
    ;
constexpr const char* binary_op_name(BinaryOp op) {
  switch (op) {
#define DTRAIN_BINARY_OP(name, ...) \
  case BinaryOp::name:              \
    return #name;
#include "core/backend/binary_ops.def"
  }
  return "?";
}
// False for div and pow, which backends may refuse on integer tensors.
constexpr bool binary_op_takes_integers(BinaryOp op) {
  switch (op) {
#define DTRAIN_BINARY_OP(name, domain, integers) \
  case BinaryOp::name:                           \
    return std::string_view(#integers) == "ints";
#include "core/backend/binary_ops.def"
  }
  return false;
}
enum class ReduceOp : uint8_t { sum, max, min };
enum class RandomKind : uint8_t { uniform, normal, bernoulli };

// What a GEMM does besides the product (the gemm row of backend_kernels.def states the contract):
// bias adds GemmArgs::bias [n] to every row of C; bias_grad also writes op(A)'s row sums into
// GemmArgs::bias [m] (a linear layer's bias gradient next to its weight gradient).
enum class GemmEpilogue : uint8_t { none, bias, bias_grad };

struct GemmArgs {
  // C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], row-major, op = transpose when trans_*.
  // op(A) is m x k, op(B) is k x n, C is m x n with row stride ldc. A batch stride of 0 broadcasts.
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  double alpha = 1.0, beta = 0.0;
  GemmEpilogue epilogue = GemmEpilogue::none;
  Tensor bias;  // the epilogue's vector: read for bias, written for bias_grad; else undefined
};

struct Conv2dArgs {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, groups = 1;
};

struct Pool2dArgs {
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // The kernels, with their contracts: one row each in core/backend/backend_kernels.def.
#define DTRAIN_KERNEL(ret, name, params) virtual ret name params = 0;
#include "core/backend/backend_kernels.def"

  // ---- fused attention: q [B, H, Tq, D], k/v [B, H, Tk, D], out like q, each with any strides whose
  // last one is 1 (a backend that needs more returns false); attn_mask additive [B or 1, 1, Tq or 1,
  // Tk] contiguous, or undefined; stats [B, H, Tq] contiguous; mask and stats are f64 for f64 inputs,
  // else f32. Causal: key j is visible to query i iff j <= i (top-left aligned). Dropout (0 <= p <= 1,
  // 0 = none) multiplies the softmax weights P by M / (1 - p), where the keep mask M of score
  // (b, h, i, j) is sdpa_dropout_keep(seed, b, h, i, j, p) (core/backend/sdpa_dropout.h) on every
  // backend, so forward and backward (and CPU and CUDA) see the same mask; stats stay those of the
  // undropped softmax. A backend that has no fused path, or declines these shapes, returns false and
  // the op composes attention from matmul and softmax instead.
  virtual bool sdpa(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                    bool causal, double scale, double dropout_p, uint64_t seed, const Tensor& out,
                    const Tensor& stats) {
    (void)q, (void)k, (void)v, (void)attn_mask, (void)causal, (void)scale, (void)dropout_p;
    (void)seed, (void)out, (void)stats;
    return false;
  }
  virtual bool sdpa_backward(const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& out, const Tensor& stats, const Tensor& attn_mask,
                             bool causal, double scale, double dropout_p, uint64_t seed,
                             const Tensor& dq, const Tensor& dk, const Tensor& dv) {
    (void)dout, (void)q, (void)k, (void)v, (void)out, (void)stats, (void)attn_mask, (void)causal;
    (void)scale, (void)dropout_p, (void)seed, (void)dq, (void)dk, (void)dv;
    return false;
  }

  // Waits for all work queued on the device (no-op on CPU).
  virtual void synchronize(int device_index) { (void)device_index; }
};

// The backend serving `device`. Throws a dtrain::Error when that backend is not built or no device
// exists ("CUDA requested but dtrain was built without CUDA"...).
Backend& backend_for(Device device);
}  // namespace dtrain
