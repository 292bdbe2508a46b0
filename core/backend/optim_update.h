// The fused optimizer updates (Backend::adam_update and sgd_update): their arguments, and the
// update of one element, written once for both backends (plain C++ that nvcc compiles for the
// device too), so the CPU loop and the CUDA multi-tensor kernel apply the same arithmetic in the
// same order.
//
// The rules are core/optim/adam.h's and sgd.h's, in the order the per-tensor path of core/optim
// applies its in-place ops, each step rounded to the compute type C (f32 for f32 parameters, f64
// for f64):
//
//   Adam:  g = grad + wd p                          AdamW: p = p (1 - lr wd);  g = grad
//          m = beta1 m + (1 - beta1) g
//          v = beta2 v + (1 - beta2) g g;   v_max = max(v_max, v) with amsgrad
//          p = p - step_size * m / (sqrt(v or v_max) * inv_sqrt_bc2 + eps)
//            with step_size = lr / (1 - beta1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t), t the
//            parameter's own step count (a parameter that skipped steps has a smaller t)
//   SGD:   g = grad + wd p
//          b = g on the parameter's first step, else momentum b + (1 - dampening) g
//          d = g + momentum b (Nesterov), b (momentum != 0), g (no momentum)
//          p = p - lr d
#pragma once
#include <cmath>
#include <vector>

#include "core/tensor/tensor.h"

#ifdef __CUDACC__
#define DTRAIN_OPTIM_HD __host__ __device__ __forceinline__
#else
#define DTRAIN_OPTIM_HD inline
#endif

namespace dtrain {

struct AdamUpdateArgs {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled = false;  // AdamW's decay of the weights, else Adam's L2 term in the gradient
  bool amsgrad = false;
};
// One parameter of an adam_update call: all contiguous, of one shape and of the call's dtype;
// max_exp_avg_sq is defined exactly when amsgrad is on.
struct AdamUpdateTensors {
  Tensor param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq;
  double step_size = 0.0;     // lr / (1 - beta1^t)
  double inv_sqrt_bc2 = 1.0;  // 1 / sqrt(1 - beta2^t)
};

struct SgdUpdateArgs {
  double lr = 1e-3, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
};
// One parameter of an sgd_update call: momentum_buffer is defined exactly when momentum != 0 and
// receives g itself on the parameter's first step (first_step).
struct SgdUpdateTensors {
  Tensor param, grad, momentum_buffer;
  bool first_step = false;
};

namespace optim_math {

template <class C>
DTRAIN_OPTIM_HD C root(C x) {
#ifdef __CUDA_ARCH__
  return sqrt(x);
#else
  return std::sqrt(x);
#endif
}

// The scalars of one Adam parameter, in the compute type C.
template <class C>
struct AdamScalars {
  C beta1, one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay_factor;
  C neg_step_size, inv_sqrt_bc2;
  bool decoupled, amsgrad;
};

template <class C>
DTRAIN_OPTIM_HD AdamScalars<C> adam_scalars(const AdamUpdateArgs& a, double step_size,
                                            double inv_sqrt_bc2) {
  return {static_cast<C>(a.beta1),
          static_cast<C>(1.0 - a.beta1),
          static_cast<C>(a.beta2),
          static_cast<C>(1.0 - a.beta2),
          static_cast<C>(a.eps),
          static_cast<C>(a.weight_decay),
          static_cast<C>(1.0 - a.lr * a.weight_decay),
          static_cast<C>(-step_size),
          static_cast<C>(inv_sqrt_bc2),
          a.decoupled,
          a.amsgrad};
}

// One element: p, m, v (and v_max with amsgrad) updated in place from g.
template <class C>
DTRAIN_OPTIM_HD void adam_element(const AdamScalars<C>& s, C& p, C g, C& m, C& v, C* v_max) {
  if (s.weight_decay != C(0)) {
    if (s.decoupled) {
      p = p * s.decay_factor;
    } else {
      g = g + s.weight_decay * p;
    }
  }
  m = m * s.beta1;
  m = m + s.one_minus_beta1 * g;
  v = v * s.beta2;
  v = v + s.one_minus_beta2 * g * g;
  C second = v;
  if (v_max) {
    *v_max = *v_max > v ? *v_max : v;
    second = *v_max;
  }
  const C denom = root(second) * s.inv_sqrt_bc2 + s.eps;
  p = p + s.neg_step_size * (m / denom);
}

template <class C>
struct SgdScalars {
  C momentum, one_minus_dampening, weight_decay, neg_lr;
  bool nesterov;
};

template <class C>
DTRAIN_OPTIM_HD SgdScalars<C> sgd_scalars(const SgdUpdateArgs& a) {
  return {static_cast<C>(a.momentum), static_cast<C>(1.0 - a.dampening),
          static_cast<C>(a.weight_decay), static_cast<C>(-a.lr), a.nesterov};
}

// One element: p (and the momentum buffer b, when given) updated in place from g.
template <class C>
DTRAIN_OPTIM_HD void sgd_element(const SgdScalars<C>& s, C& p, C g, C* b, bool first_step) {
  if (s.weight_decay != C(0)) g = g + s.weight_decay * p;
  C d = g;
  if (b) {
    *b = first_step ? g : *b * s.momentum + s.one_minus_dampening * g;
    d = s.nesterov ? g + s.momentum * *b : *b;
  }
  p = p + s.neg_lr * d;
}

}  // namespace optim_math
}  // namespace dtrain
