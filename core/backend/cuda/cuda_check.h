// Status checks for CUDA runtime, cuBLAS(Lt) and cuDNN calls. A failed call becomes one
// dtrain::Error line naming the call and the library's own name for the status, e.g.
//   "cudaMalloc failed: cudaErrorMemoryAllocation (out of memory)".
// The macros stringify the call and keep only the function name, so messages stay one short line.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

namespace dtrain::cuda {

void check_cuda(cudaError_t status, const char* call);
void check_cublas(cublasStatus_t status, const char* call);
void check_cudnn(cudnnStatus_t status, const char* call);
// Whether cuDNN declined the request: it has no kernel for this configuration (any status of the
// CUDNN_STATUS_NOT_SUPPORTED category: cuDNN 9 reports sub-codes 3001-3014 such as ..._SHAPE or
// ..._DATA_TYPE), which a caller may answer with another precision. Bad parameters (2000s),
// internal errors (4000s) and execution failures (5000s) are not declines.
bool cudnn_declined(cudnnStatus_t status);
// After a kernel launch: a bad launch configuration (or an earlier asynchronous fault) is reported
// against `kernel`.
void check_launch(const char* kernel);

}  // namespace dtrain::cuda

#define DTRAIN_CUDA_CHECK(call) ::dtrain::cuda::check_cuda((call), #call)
#define DTRAIN_CUBLAS_CHECK(call) ::dtrain::cuda::check_cublas((call), #call)
#define DTRAIN_CUDNN_CHECK(call) ::dtrain::cuda::check_cudnn((call), #call)
