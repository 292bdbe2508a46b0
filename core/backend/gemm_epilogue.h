// The GEMM epilogues of backend_kernels.def's gemm row, composed from a backend's own kernels: what
// the CPU backend runs, and what the CUDA backend runs wherever cuBLASLt does not take the case.
#pragma once
#include "core/backend/backend.h"

namespace dtrain {

// Throws "<backend> gemm: ..." unless the epilogue's contract holds: batch 1, beta 0, and args.bias a
// contiguous vector of c's dtype and device with n (bias) or m (bias_grad) elements.
void check_gemm_epilogue(const char* backend, const GemmArgs& g, const Tensor& c);

// bias: the bias rows are copied into C and the GEMM adds onto them (beta 1). bias_grad: the plain
// GEMM, then bias[i] = sum_p op(A)[i, p], reduced as the column sums of op(A)^T [k, m] made dense
// (the numbers linear's sum(g, {0}) gave before the epilogue).
void compose_gemm_epilogue(Backend& be, const GemmArgs& g, const Tensor& a, const Tensor& b,
                           const Tensor& c);

}  // namespace dtrain
