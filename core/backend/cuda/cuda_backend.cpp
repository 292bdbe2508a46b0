// CUDA backend: the registry entry points backend.cpp calls, memory, and synchronisation.
#include "core/backend/cuda/cuda_backend.h"

#include <string>

#include "core/backend/cuda/cuda_check.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"

namespace dtrain {

Backend& cuda_backend();

namespace cuda {

Tensor contiguous_as(const Tensor& t, DType d) {
  if (t.dtype() == d && t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), d, t.device());
  if (out.numel() > 0) cuda_backend().copy(t, out);
  return out;
}

Tensor f32_like(const Tensor& t) {
  return t.defined() ? Tensor::empty(t.shape(), DType::f32, t.device()) : t;
}

void check_cuda_tensor(const Tensor& t, const char* op, const char* what) {
  DTRAIN_CHECK(t.defined(), "cuda ", op, ": ", what, " is undefined");
  DTRAIN_CHECK(t.device().is_cuda(), "cuda ", op, ": ", what, " is on ", t.device().str(),
               "; move it with .to(Device::cuda())");
  DTRAIN_CHECK(t.is_contiguous(), "cuda ", op, ": ", what, " of shape ", shape_str(t.shape()),
               " must be contiguous; call .contiguous() first");
}

}  // namespace cuda

Backend& cuda_backend() {
  // Leaked: storages freed during static destruction still find their backend.
  static CudaBackend* backend = new CudaBackend();
  return *backend;
}

int cuda_backend_device_count() { return cuda::device_count(); }
// For backend_for's message when no device can be used (a driver older than the runtime, ...).
std::string cuda_backend_unavailable_reason() { return cuda::cuda_unavailable_reason(); }

void* CudaBackend::allocate(size_t nbytes, int device_index) {
  cuda::DeviceContext& ctx = cuda::device_context(device_index);
  return ctx.allocator->allocate(nbytes, ctx.stream);
}

void CudaBackend::deallocate(void* ptr, size_t, int device_index) {
  // Called from Storage's destructor: must not throw.
  try {
    cuda::device_context(device_index).allocator->free(ptr);
  } catch (...) {}
}

void CudaBackend::copy_to_host(const void* src, void* dst_host, size_t nbytes, int device_index) {
  cuda::DeviceContext& ctx = cuda::device_context(device_index);
  ctx.staging.to_host(src, dst_host, nbytes, ctx.stream);  // counts its host sync
}

void CudaBackend::copy_from_host(const void* src_host, void* dst, size_t nbytes, int device_index) {
  cuda::DeviceContext& ctx = cuda::device_context(device_index);
  ctx.staging.to_device(src_host, dst, nbytes, ctx.stream, *ctx.allocator);
}

void CudaBackend::synchronize(int device_index) {
  cuda::DeviceContext& ctx = cuda::device_context(device_index);
  cuda::DeviceGuard guard(device_index);
  count_host_sync();
  DTRAIN_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

}  // namespace dtrain
