// Per-device state of the CUDA backend: the compute stream every kernel, copy and library call of the
// backend is queued on, the caching allocator, pinned host staging buffers, and the cuBLAS(Lt) and
// cuDNN handles (bound to the compute stream). Created on first use of a device and kept for the life
// of the process (they are never destroyed: tensors in static storage may be freed after main returns).
//
// Code outside the backend (the NCCL process group, tests) uses the functions at the bottom.
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <cstddef>
#include <memory>
#include <mutex>

#include "core/backend/cuda/caching_allocator.h"
#include "core/tensor/tensor.h"

namespace dtrain::cuda {

// Devices visible to this process; 0 (not an error) without a driver or a device.
int device_count();

// Makes `index` the current device for its scope (a no-op when it already is).
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Host <-> device copies through two pinned buffers used in turn, so the host-side memcpy of one chunk
// overlaps the DMA of the other, and the caller's pageable memory is never handed to the DMA engine.
class PinnedStaging {
 public:
  static constexpr size_t kChunk = size_t{4} << 20;
  explicit PinnedStaging(int device);
  // Returns when `host` may be reused; the device copy is queued on `stream`.
  void to_device(const void* host, void* dev, size_t nbytes, cudaStream_t stream);
  // Returns when `host` holds the data (everything queued on `stream` before it has run).
  void to_host(const void* dev, void* host, size_t nbytes, cudaStream_t stream);

 private:
  void ensure_buffers();
  void wait_slot(int slot);
  int device_;
  std::mutex mutex_;
  void* buffers_[2] = {nullptr, nullptr};
  cudaEvent_t done_[2] = {nullptr, nullptr};
  bool in_flight_[2] = {false, false};
};

struct DeviceContext {
  explicit DeviceContext(int index);
  int index;
  cudaStream_t stream = nullptr;
  std::unique_ptr<CachingAllocator> allocator;
  PinnedStaging staging;

  // Library handles, made on first use.
  cublasLtHandle_t cublaslt();
  cublasHandle_t cublas();
  cudnnHandle_t cudnn();
  // cuBLASLt workspace (kept for the process), sized for the largest heuristic we allow.
  static constexpr size_t kGemmWorkspace = size_t{32} << 20;
  void* gemm_workspace();

 private:
  std::mutex mutex_;
  cublasLtHandle_t cublaslt_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  void* gemm_workspace_ = nullptr;
};

// The context of device `index` (checked against device_count()).
DeviceContext& device_context(int index);
inline cudaStream_t compute_stream(int index) { return device_context(index).stream; }

// ---- for code outside the backend

// The stream all of dtrain's work on `device` is ordered on.
cudaStream_t cuda_compute_stream(int device);
AllocatorStats cuda_memory_stats(int device);
void cuda_reset_peak_memory_stats(int device);
// Returns cached, unused device memory to the driver (waits for the device first).
void cuda_empty_cache(int device);
// Marks t's storage as used by work queued on `stream` (not the compute stream): when t's storage is
// freed, its memory is reused only after that work completes.
void cuda_record_stream(const Tensor& t, cudaStream_t stream);
// TF32 for f32 GEMM and convolution: off by default (f32 results then match the CPU to f32 accuracy);
// DTRAIN_ALLOW_TF32=1 in the environment turns it on at start-up.
void cuda_set_allow_tf32(bool allow);
bool cuda_allow_tf32();

}  // namespace dtrain::cuda
