// The test cases of the unary elementwise ops, generated from core/backend/unary_ops.def: for each
// row, where its inputs are drawn (domain, kink) and how to call its public op. The gradient checks
// (test_gradcheck_elementwise.cpp), the PyTorch reference (test_reference.cpp) and the CUDA parity
// tests (tests/core/backend/cuda/test_cuda_parity_elementwise.cpp) loop over kUnaryCases or expand the
// table themselves; none of them lists the ops by hand.
#pragma once
#include <iterator>

#include "core/backend/backend.h"
#include "core/ops/ops.h"

namespace dtrain::testing {

enum class UnaryDomain { real, positive };
enum class UnaryDerivative { smooth, kink };

struct UnaryCase {
  UnaryOp op;
  const char* name;
  UnaryDomain domain;
  UnaryDerivative derivative;
  Tensor (*call)(const Tensor& x);  // the public op; null for a kernel without one
};

inline constexpr UnaryCase kUnaryCases[] = {
#define DTRAIN_UNARY_OP(name, domain, derivative, call)                    \
  {UnaryOp::name, #name, UnaryDomain::domain, UnaryDerivative::derivative, \
   [](const Tensor& x) -> Tensor { return call; }},
#define DTRAIN_UNARY_OP_INTERNAL(name, domain, derivative) \
  {UnaryOp::name, #name, UnaryDomain::domain, UnaryDerivative::derivative, nullptr},
#include "core/backend/unary_ops.def"
};

constexpr bool unary_cases_follow_the_enum() {
  if (std::size(kUnaryCases) != static_cast<size_t>(kUnaryOpCount)) return false;
  for (int i = 0; i < kUnaryOpCount; ++i) {
    if (static_cast<int>(kUnaryCases[i].op) != i) return false;
  }
  return true;
}
static_assert(unary_cases_follow_the_enum(), "kUnaryCases[i] must be the case of UnaryOp i");

inline const UnaryCase& unary_case(UnaryOp op) { return kUnaryCases[static_cast<int>(op)]; }

}  // namespace dtrain::testing
