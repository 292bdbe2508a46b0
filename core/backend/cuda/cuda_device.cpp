#include "core/backend/cuda/cuda_device.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/backend/cuda/cuda_check.h"
#include "core/error.h"

namespace dtrain::cuda {

int device_count() {
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();  // no driver or no device: report none, and leave no error behind
      return 0;
    }
    return n;
  }();
  return count;
}

DeviceGuard::DeviceGuard(int index) {
  int current = 0;
  DTRAIN_CUDA_CHECK(cudaGetDevice(&current));
  if (current != index) {
    DTRAIN_CUDA_CHECK(cudaSetDevice(index));
    previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) (void)cudaSetDevice(previous_);
}

// ---------------------------------------------------------------------------------------------
// The device calls of the caching allocator.

namespace {

class CudaMemoryOps final : public DeviceMemoryOps {
 public:
  explicit CudaMemoryOps(int device) : device_(device) {}
  void* raw_malloc(size_t nbytes) override {
    DeviceGuard guard(device_);
    void* p = nullptr;
    cudaError_t status = cudaMalloc(&p, nbytes);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    check_cuda(status, "cudaMalloc");
    return p;
  }
  void raw_free(void* ptr) override {
    DeviceGuard guard(device_);
    DTRAIN_CUDA_CHECK(cudaFree(ptr));
  }
  void* record_event(void* stream) override {
    DeviceGuard guard(device_);
    cudaEvent_t event = nullptr;
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    DTRAIN_CUDA_CHECK(cudaEventRecord(event, static_cast<cudaStream_t>(stream)));
    return event;
  }
  bool event_done(void* event) override {
    cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(event));
    if (status == cudaErrorNotReady) return false;
    check_cuda(status, "cudaEventQuery");
    return true;
  }
  void destroy_event(void* event) override {
    DTRAIN_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
  }
  void synchronize() override {
    DeviceGuard guard(device_);
    DTRAIN_CUDA_CHECK(cudaDeviceSynchronize());
  }

 private:
  int device_;
};

std::atomic<bool>& allow_tf32_flag() {
  static std::atomic<bool> flag{[] {
    const char* v = std::getenv("DTRAIN_ALLOW_TF32");
    return v != nullptr && std::strcmp(v, "0") != 0 && v[0] != '\0';
  }()};
  return flag;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Pinned staging

PinnedStaging::PinnedStaging(int device) : device_(device) {}

void PinnedStaging::ensure_buffers() {
  if (buffers_[0]) return;
  for (int i = 0; i < 2; ++i) {
    DTRAIN_CUDA_CHECK(cudaHostAlloc(&buffers_[i], kChunk, cudaHostAllocDefault));
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&done_[i], cudaEventDisableTiming));
  }
}

void PinnedStaging::wait_slot(int slot) {
  if (!in_flight_[slot]) return;
  DTRAIN_CUDA_CHECK(cudaEventSynchronize(done_[slot]));
  in_flight_[slot] = false;
}

void PinnedStaging::to_device(const void* host, void* dev, size_t nbytes, cudaStream_t stream) {
  if (nbytes == 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  DeviceGuard guard(device_);
  ensure_buffers();
  const char* src = static_cast<const char*>(host);
  char* dst = static_cast<char*>(dev);
  int slot = 0;
  for (size_t off = 0; off < nbytes; off += kChunk, slot ^= 1) {
    const size_t len = std::min(kChunk, nbytes - off);
    wait_slot(slot);  // its previous chunk must have left the buffer
    std::memcpy(buffers_[slot], src + off, len);
    DTRAIN_CUDA_CHECK(
        cudaMemcpyAsync(dst + off, buffers_[slot], len, cudaMemcpyHostToDevice, stream));
    DTRAIN_CUDA_CHECK(cudaEventRecord(done_[slot], stream));
    in_flight_[slot] = true;
  }
}

void PinnedStaging::to_host(const void* dev, void* host, size_t nbytes, cudaStream_t stream) {
  if (nbytes == 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  DeviceGuard guard(device_);
  ensure_buffers();
  const char* src = static_cast<const char*>(dev);
  char* dst = static_cast<char*>(host);
  // Chunk k is copied into slot k % 2 while chunk k - 1 is drained from the other slot.
  int prev_slot = -1;
  size_t prev_off = 0, prev_len = 0;
  int slot = 0;
  for (size_t off = 0; off < nbytes; off += kChunk, slot ^= 1) {
    const size_t len = std::min(kChunk, nbytes - off);
    wait_slot(slot);
    DTRAIN_CUDA_CHECK(
        cudaMemcpyAsync(buffers_[slot], src + off, len, cudaMemcpyDeviceToHost, stream));
    DTRAIN_CUDA_CHECK(cudaEventRecord(done_[slot], stream));
    in_flight_[slot] = true;
    if (prev_slot >= 0) {
      wait_slot(prev_slot);
      std::memcpy(dst + prev_off, buffers_[prev_slot], prev_len);
    }
    prev_slot = slot, prev_off = off, prev_len = len;
  }
  wait_slot(prev_slot);
  std::memcpy(dst + prev_off, buffers_[prev_slot], prev_len);
}

// ---------------------------------------------------------------------------------------------
// Device contexts

DeviceContext::DeviceContext(int idx) : index(idx), staging(idx) {
  DeviceGuard guard(index);
  // Non-blocking: the legacy default stream, which other libraries may use, does not serialise with it.
  DTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  allocator = std::make_unique<CachingAllocator>(std::make_unique<CudaMemoryOps>(index),
                                                 "cuda:" + std::to_string(index));
}

cublasLtHandle_t DeviceContext::cublaslt() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!cublaslt_) {
    DeviceGuard guard(index);
    DTRAIN_CUBLAS_CHECK(cublasLtCreate(&cublaslt_));
  }
  return cublaslt_;
}

cublasHandle_t DeviceContext::cublas() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!cublas_) {
    DeviceGuard guard(index);
    DTRAIN_CUBLAS_CHECK(cublasCreate(&cublas_));
    DTRAIN_CUBLAS_CHECK(cublasSetStream(cublas_, stream));
  }
  return cublas_;
}

cudnnHandle_t DeviceContext::cudnn() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!cudnn_) {
    DeviceGuard guard(index);
    DTRAIN_CUDNN_CHECK(cudnnCreate(&cudnn_));
    DTRAIN_CUDNN_CHECK(cudnnSetStream(cudnn_, stream));
  }
  return cudnn_;
}

void* DeviceContext::gemm_workspace() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!gemm_workspace_) gemm_workspace_ = allocator->allocate(kGemmWorkspace, stream);
  return gemm_workspace_;
}

DeviceContext& device_context(int index) {
  static std::mutex mutex;
  // Leaked on purpose: see the header.
  static auto* contexts = new std::vector<std::unique_ptr<DeviceContext>>();
  std::lock_guard<std::mutex> lock(mutex);
  const int count = device_count();
  DTRAIN_CHECK(index >= 0 && index < count, "cuda:", index, " requested but ", count,
               " CUDA device(s) are visible");
  if (contexts->empty()) contexts->resize(static_cast<size_t>(count));
  auto& slot = (*contexts)[static_cast<size_t>(index)];
  if (!slot) slot = std::make_unique<DeviceContext>(index);
  return *slot;
}

cudaStream_t cuda_compute_stream(int device) { return compute_stream(device); }

AllocatorStats cuda_memory_stats(int device) { return device_context(device).allocator->stats(); }

void cuda_reset_peak_memory_stats(int device) { device_context(device).allocator->reset_peak(); }

void cuda_empty_cache(int device) { device_context(device).allocator->empty_cache(); }

void cuda_record_stream(const Tensor& t, cudaStream_t stream) {
  DTRAIN_CHECK(t.defined() && t.device().is_cuda(), "cuda_record_stream needs a CUDA tensor");
  device_context(t.device().index).allocator->record_stream(t.storage()->data(), stream);
}

void cuda_set_allow_tf32(bool allow) { allow_tf32_flag() = allow; }
bool cuda_allow_tf32() { return allow_tf32_flag(); }

}  // namespace dtrain::cuda
