// Autocast: which ops compute in 16 bits under mixed precision, and which stay in f32.
//
// Parameters stay f32 (the master weights) and so do optimizer states. Inside an AutocastGuard, an op of
// a low-precision class casts its f32 inputs to the autocast dtype (bf16 or f16) before computing, and
// an op of an f32 class casts 16-bit inputs up to f32. The casts are ordinary recorded conversions
// (Tensor::to), so backward converts the gradients back: a weight's gradient arrives in f32.
//
//   low precision (throughput, and the error is averaged away):  GEMM (matmul, linear), convolution,
//                                                                 attention
//   f32 (range or accumulation matters):  softmax / log_softmax, layer_norm, losses, reductions
//                                         (sum, mean), and everything else
//
// An op applies the policy with one call at its top, e.g. in linear():
//   Tensor x16 = amp::autocast(amp::OpClass::gemm, x), w16 = amp::autocast(amp::OpClass::gemm, w);
// f64 tensors and integer tensors are never cast (f64 means the caller asked for precision), and outside
// a guard every call returns its input unchanged.
#pragma once
#include "core/tensor/tensor.h"

namespace dtrain::amp {

enum class OpClass : uint8_t { gemm, conv, attention, softmax, layer_norm, loss, reduction, other };
const char* op_class_name(OpClass c);

// True for the classes that run in the autocast dtype.
bool runs_in_low_precision(OpClass c);

// Thread-local autocast state; off by default.
bool autocast_enabled();
DType autocast_dtype();  // bf16 or f16 while enabled

// Turns autocast on (dtype bf16 or f16) or off for a scope; restores the previous state after.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype = DType::bf16, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool previous_enabled_;
  DType previous_dtype_;
};

// The dtype an op of class `c` should compute in for an input of dtype `t` under the current state
// (`t` itself when nothing changes).
DType autocast_target(OpClass c, DType t);
// `x` converted as autocast_target says (x itself when no conversion is needed; undefined stays
// undefined).
Tensor autocast(OpClass c, const Tensor& x);

}  // namespace dtrain::amp
