#include "core/backend/cuda/cuda_check.h"

#include <string>

#include "core/error.h"

namespace dtrain::cuda {
namespace {

// "cudaMemcpyAsync(dst, src, n, kind, stream)" -> "cudaMemcpyAsync": the arguments add length, not
// information, to a one-line message.
std::string call_name(const char* call) {
  std::string s(call);
  size_t paren = s.find('(');
  if (paren != std::string::npos) s.resize(paren);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  return s;
}

}  // namespace

void check_cuda(cudaError_t status, const char* call) {
  if (status == cudaSuccess) return;
  // Clear a non-sticky error so the next call does not report it again.
  (void)cudaGetLastError();
  const char* hint =
      status == cudaErrorMemoryAllocation ? "; reduce the batch size or free cached memory" : "";
  throw Error(detail::concat(call_name(call), " failed: ", cudaGetErrorName(status), " (",
                             cudaGetErrorString(status), ")", hint));
}

void check_cublas(cublasStatus_t status, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error(detail::concat(call_name(call), " failed: ", cublasLtGetStatusName(status), " (",
                             cublasLtGetStatusString(status), ")"));
}

void check_cudnn(cudnnStatus_t status, const char* call) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  throw Error(detail::concat(call_name(call), " failed: ", cudnnGetErrorString(status)));
}

bool cudnn_declined(cudnnStatus_t status) {
  return CUDNN_STATUS_CATEGORY(static_cast<int>(status)) == CUDNN_STATUS_NOT_SUPPORTED;
}

void check_launch(const char* kernel) {
  cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) return;
  throw Error(detail::concat("CUDA kernel ", kernel, " failed to launch: ",
                             cudaGetErrorName(status), " (", cudaGetErrorString(status), ")"));
}

}  // namespace dtrain::cuda
