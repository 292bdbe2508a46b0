#include "core/amp/autocast.h"

namespace dtrain::amp {

namespace {
thread_local bool t_enabled = false;
thread_local DType t_dtype = DType::bf16;
}  // namespace

const char* op_class_name(OpClass c) {
  switch (c) {
    case OpClass::gemm:
      return "gemm";
    case OpClass::conv:
      return "conv";
    case OpClass::attention:
      return "attention";
    case OpClass::softmax:
      return "softmax";
    case OpClass::layer_norm:
      return "layer_norm";
    case OpClass::loss:
      return "loss";
    case OpClass::reduction:
      return "reduction";
    case OpClass::other:
      return "other";
  }
  return "?";
}

bool runs_in_low_precision(OpClass c) {
  return c == OpClass::gemm || c == OpClass::conv || c == OpClass::attention;
}

bool autocast_enabled() { return t_enabled; }
DType autocast_dtype() { return t_dtype; }

AutocastGuard::AutocastGuard(DType dtype, bool enabled)
    : previous_enabled_(t_enabled), previous_dtype_(t_dtype) {
  DTRAIN_CHECK(!enabled || is_half(dtype),
               "AutocastGuard: the autocast dtype must be bf16 or f16, got ", dtype_name(dtype));
  t_enabled = enabled;
  if (enabled) t_dtype = dtype;
}

AutocastGuard::~AutocastGuard() {
  t_enabled = previous_enabled_;
  t_dtype = previous_dtype_;
}

DType autocast_target(OpClass c, DType t) {
  if (!t_enabled) return t;
  if (runs_in_low_precision(c)) return t == DType::f32 ? t_dtype : t;
  return is_half(t) ? DType::f32 : t;
}

Tensor autocast(OpClass c, const Tensor& x) {
  if (!x.defined() || !t_enabled) return x;
  DType target = autocast_target(c, x.dtype());
  return target == x.dtype() ? x : x.to(target);
}

}  // namespace dtrain::amp
