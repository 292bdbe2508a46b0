// Per-device state of the CUDA backend: the compute stream every kernel and library call of the
// backend is queued on, a copy stream for uploads, the caching allocator, pinned host staging
// buffers, and the cuBLAS(Lt) and cuDNN handles (bound to the compute stream). Created on first use
// of a device and kept for the life of the process (they are never destroyed: tensors in static
// storage may be freed after main returns).
//
// One process drives one GPU. It is chosen once (cuda_select_device) and no code here ever makes
// another device current: with CUDA 12+, making a device current creates a context on it, which on
// a GPU in exclusive-process mode belongs to another rank and fails.
//
// Every host wait on the device (event/stream/device synchronise) calls dtrain::count_host_sync().
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
#include <string>

#include "core/backend/cuda/caching_allocator.h"
#include "core/tensor/tensor.h"

namespace dtrain::cuda {

// Devices visible to this process; 0 (not an error) without a driver or a device. Why there is none
// is cuda_unavailable_reason().
int device_count();
// The message for a cudaGetDeviceCount that failed with `status` (cudaSuccess: it found 0 devices).
// Versions as cudaDriverGetVersion / cudaRuntimeGetVersion report them (12040 = 12.4; driver 0 = no
// driver loaded). Pure, so it is tested without a GPU.
std::string describe_device_count_failure(cudaError_t status, int driver_version,
                                          int runtime_version);

// What a DeviceGuard does, given the thread's current device, the device asked for, and the device
// this thread chose itself (cuda_select_device / cuda_use_selected_device; -1: none). It switches
// only when the device differs, and restores only to a device the thread chose: a fresh thread
// reports device 0 as current without having a context there, and "restoring" 0 would create one.
struct DeviceSwitch {
  bool set = false;
  int restore_to = -1;  // -1: leave the asked-for device current
};
DeviceSwitch plan_device_switch(int current, int requested, int thread_choice);

// Makes `index` the calling thread's current device (a no-op when it already is); at scope end it
// switches back only to a device the thread chose itself (plan_device_switch).
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int restore_to_ = -1;
};

// The slot size a pinned upload buffer of `capacity` bytes needs for a chunk of `wanted` bytes: it
// grows to the chunk (in steps of PinnedStaging::kChunk, at most kMaxSlot) so that a batch upload
// of a training loop, after the first steps, is one or a few chunks that never wait for a slot.
size_t staging_slot_capacity(size_t capacity, size_t wanted);

// Host <-> device copies through pinned buffers, so the caller's pageable memory is never handed to
// the DMA engine.
//
// Uploads run on a copy stream of their own: the compute stream waits for them on the device
// (cudaStreamWaitEvent), the host does not. Chunks go through a ring of kUploadSlots pinned buffers
// that rotates across calls; a buffer is reused once its own copy has finished, which does not wait
// for queued compute. The destination's memory may still be read by compute work queued before it
// was freed and reallocated, so the copy stream writes a scratch block of its own pool and the
// compute stream moves it into place; uploads over kMaxStaged (checkpoint loads) are instead
// ordered after the queued compute and written in place, to spare the device memory.
//
// Downloads need the values the compute stream produces: they run on it, through two buffers of
// their own, and each counts one host sync.
class PinnedStaging {
 public:
  static constexpr int kUploadSlots = 4;
  static constexpr size_t kChunk = size_t{4} << 20;
  static constexpr size_t kMaxSlot = size_t{32} << 20;
  static constexpr size_t kMaxStaged = size_t{256} << 20;

  explicit PinnedStaging(int device);
  // Returns when `host` may be reused; work queued on `compute` afterwards sees the data.
  void to_device(const void* host, void* dev, size_t nbytes, cudaStream_t compute,
                 CachingAllocator& allocator);
  // Returns when `host` holds the data (everything queued on `compute` before it has run).
  void to_host(const void* dev, void* host, size_t nbytes, cudaStream_t compute);

 private:
  struct Slot {
    void* buffer = nullptr;
    size_t capacity = 0;
    cudaEvent_t done = nullptr;
    bool in_flight = false;
  };
  Slot& take_upload_slot(size_t wanted);
  // Queues src -> dst (device) on the copy stream; returns an event recorded after the last chunk.
  cudaEvent_t upload_chunks(const char* src, char* dst, size_t nbytes);

  int device_;
  std::mutex upload_mutex_;
  cudaStream_t copy_stream_ = nullptr;  // created on the first upload
  cudaEvent_t compute_mark_ = nullptr;  // orders an in-place upload after queued compute
  Slot upload_[kUploadSlots];
  int next_upload_ = 0;
  std::mutex download_mutex_;
  Slot download_[2];
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

// ---- TF32 and tensor-op policy of f32 GEMM and convolution (pure; tested without a GPU)

// The cuBLAS compute type of a GEMM on `type` data: f32 accumulation for f32/f16/bf16 (TF32 inputs
// for f32 only when allowed), f64 for f64.
cublasComputeType_t gemm_compute_type(DType type, bool allow_tf32);
// The math type set on a convolution descriptor before cuDNN's heuristics run.
cudnnMathType_t conv_requested_math(DType type, bool allow_tf32);
// Whether an algorithm the heuristics report with `algo_math` may run: f32 never runs on tensor
// cores without TF32, and never down-converts to f16 (ALLOW_CONVERSION) either way.
bool conv_algo_allowed(cudnnMathType_t algo_math, DType type, bool allow_tf32);
// The math type the descriptor runs with. Algorithms reporting CUDNN_DEFAULT_MATH may still use
// TF32 on Ampere and later, so f32 without TF32 is pinned to CUDNN_FMA_MATH.
cudnnMathType_t conv_execution_math(cudnnMathType_t algo_math, DType type, bool allow_tf32);

// ---- for code outside the backend

// Makes `index` this process's GPU and the calling thread's current device. Call it once, at
// start-up, before other CUDA work (a second call with another index is an error). Threads that
// start doing CUDA work later (collective watchdogs, data loaders) call cuda_use_selected_device()
// first.
void cuda_select_device(int index);
// The selected device, or -1 when cuda_select_device was not called.
int cuda_selected_device();
// Makes the selected device current on the calling thread (nothing when none is selected).
void cuda_use_selected_device();
// The stream all of dtrain's work on `device` is ordered on.
cudaStream_t cuda_compute_stream(int device);
AllocatorStats cuda_memory_stats(int device);
size_t cuda_peak_allocated_bytes(int device);  // cuda_memory_stats(device).peak_allocated
void cuda_reset_peak_memory_stats(int device);
// Returns cached, unused device memory to the driver (waits for the device first).
void cuda_empty_cache(int device);
// Marks t's storage as used by work queued on `stream` (not the compute stream): when t's storage
// is freed, its memory is reused only after that work completes.
void cuda_record_stream(const Tensor& t, cudaStream_t stream);
// TF32 for f32 GEMM and convolution: off by default in the library (f32 results then match the CPU
// to f32 accuracy); DTRAIN_ALLOW_TF32=1 in the environment turns it on at start-up, and the command
// line sets it from --tf32. Cached GEMM and convolution plans are keyed on it.
void cuda_set_allow_tf32(bool allow);
bool cuda_allow_tf32();
// Why no CUDA device can be used ("" when device_count() > 0): one line naming the cause and the
// remedy, e.g. a driver older than the CUDA runtime dtrain was built with.
std::string cuda_unavailable_reason();

}  // namespace dtrain::cuda
