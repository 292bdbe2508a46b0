#include "core/backend/cuda/cuda_device.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/backend/cuda/cuda_check.h"
#include "core/error.h"

namespace dtrain::cuda {
namespace {

// "12.4" from 12040.
std::string version_str(int v) { return detail::concat(v / 1000, ".", (v % 1000) / 10); }

struct DeviceProbe {
  int count = 0;
  std::string reason;  // why count is 0
};

const DeviceProbe& device_probe() {
  static const DeviceProbe probe = [] {
    DeviceProbe p;
    int n = 0;
    const cudaError_t status = cudaGetDeviceCount(&n);
    if (status == cudaSuccess && n > 0) {
      p.count = n;
      return p;
    }
    (void)cudaGetLastError();  // leave no error behind for a later check to report
    int driver = 0, runtime = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
    if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) runtime = CUDART_VERSION;
    (void)cudaGetLastError();
    p.reason = describe_device_count_failure(status, driver, runtime);
    return p;
  }();
  return probe;
}

// The device this process drives (cuda_select_device), and the one each thread chose itself.
std::atomic<int> g_selected_device{-1};
thread_local int t_thread_choice = -1;

// cudaEventQuery: true when the event has completed; a not-ready answer is cleared from the
// runtime's last error, so a later check_launch does not report it against an innocent kernel.
bool event_completed(cudaEvent_t event) {
  const cudaError_t status = cudaEventQuery(event);
  if (status == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  check_cuda(status, "cudaEventQuery");
  return true;
}

}  // namespace

int device_count() { return device_probe().count; }

std::string describe_device_count_failure(cudaError_t status, int driver_version,
                                          int runtime_version) {
  const std::string cpu = "run with --device cpu";
  switch (status) {
    case cudaSuccess:
    case cudaErrorNoDevice:
      return "no CUDA device is visible (see nvidia-smi and CUDA_VISIBLE_DEVICES); " + cpu;
    case cudaErrorInsufficientDriver:
      if (driver_version <= 0) {
        return detail::concat("no NVIDIA driver is loaded (dtrain was built with CUDA runtime ",
                              version_str(runtime_version), "); install the driver or ", cpu);
      }
      if (driver_version < runtime_version) {
        return detail::concat("the NVIDIA driver supports CUDA ", version_str(driver_version),
                              ", older than the CUDA runtime ", version_str(runtime_version),
                              " dtrain was built with; update the driver or ", cpu);
      }
      break;
    case cudaErrorSystemDriverMismatch:
      return "the NVIDIA kernel driver and its user-space library differ in version "
             "(cudaErrorSystemDriverMismatch); reboot or reinstall the driver, or " +
             cpu;
    default:
      break;
  }
  return detail::concat("CUDA cannot start: ", cudaGetErrorName(status), " (",
                        cudaGetErrorString(status), "); ", cpu);
}

std::string cuda_unavailable_reason() { return device_probe().reason; }

// ---------------------------------------------------------------------------------------------
// Device selection

DeviceSwitch plan_device_switch(int current, int requested, int thread_choice) {
  DeviceSwitch s;
  if (current == requested) return s;
  s.set = true;
  if (thread_choice >= 0 && thread_choice != requested) s.restore_to = thread_choice;
  return s;
}

DeviceGuard::DeviceGuard(int index) {
  // cudaGetDevice only reads the thread's setting (0 on a fresh thread); it creates no context.
  int current = 0;
  DTRAIN_CUDA_CHECK(cudaGetDevice(&current));
  const DeviceSwitch plan = plan_device_switch(current, index, t_thread_choice);
  if (plan.set) DTRAIN_CUDA_CHECK(cudaSetDevice(index));
  restore_to_ = plan.restore_to;
}

DeviceGuard::~DeviceGuard() {
  if (restore_to_ >= 0) (void)cudaSetDevice(restore_to_);
}

void cuda_select_device(int index) {
  const int count = device_count();
  DTRAIN_CHECK(count > 0, "cuda:", index, " requested but ", cuda_unavailable_reason());
  DTRAIN_CHECK(index >= 0 && index < count, "cuda:", index, " requested but only ", count,
               " CUDA device(s) are visible");
  int expected = -1;
  if (!g_selected_device.compare_exchange_strong(expected, index)) {
    DTRAIN_CHECK(expected == index, "cuda:", index,
                 " requested but this process already drives cuda:", expected,
                 "; run one process per GPU (mpirun -np <GPUs>)");
  }
  DTRAIN_CUDA_CHECK(cudaSetDevice(index));
  t_thread_choice = index;
}

int cuda_selected_device() { return g_selected_device.load(); }

void cuda_use_selected_device() {
  const int selected = g_selected_device.load();
  if (selected < 0 || t_thread_choice == selected) return;
  DTRAIN_CUDA_CHECK(cudaSetDevice(selected));
  t_thread_choice = selected;
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
  bool event_done(void* event) override { return event_completed(static_cast<cudaEvent_t>(event)); }
  void destroy_event(void* event) override {
    DTRAIN_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
  }
  void synchronize() override {
    DeviceGuard guard(device_);
    count_host_sync();
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

size_t staging_slot_capacity(size_t capacity, size_t wanted) {
  if (wanted <= capacity) return capacity;
  const size_t chunk = PinnedStaging::kChunk;
  const size_t rounded = (wanted + chunk - 1) / chunk * chunk;
  return std::max(capacity, std::min(rounded, PinnedStaging::kMaxSlot));
}

PinnedStaging::PinnedStaging(int device) : device_(device) {}

PinnedStaging::Slot& PinnedStaging::take_upload_slot(size_t wanted) {
  Slot& slot = upload_[next_upload_];
  next_upload_ = (next_upload_ + 1) % kUploadSlots;
  if (slot.in_flight) {
    // Only this slot's own copy is waited for (the copy stream holds nothing but copies); the host
    // waits only when the whole ring is still in flight.
    if (!event_completed(slot.done)) {
      count_host_sync();
      DTRAIN_CUDA_CHECK(cudaEventSynchronize(slot.done));
    }
    slot.in_flight = false;
  }
  const size_t capacity = staging_slot_capacity(slot.capacity, wanted);
  if (capacity != slot.capacity) {
    if (slot.buffer) {
      // cudaFreeHost may wait for the device; slots grow only in the first steps.
      count_host_sync();
      DTRAIN_CUDA_CHECK(cudaFreeHost(slot.buffer));
      slot.buffer = nullptr;
      slot.capacity = 0;
    }
    DTRAIN_CUDA_CHECK(cudaHostAlloc(&slot.buffer, capacity, cudaHostAllocDefault));
    slot.capacity = capacity;
  }
  if (!slot.done) DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
  return slot;
}

cudaEvent_t PinnedStaging::upload_chunks(const char* src, char* dst, size_t nbytes) {
  cudaEvent_t last = nullptr;
  for (size_t off = 0; off < nbytes;) {
    Slot& slot = take_upload_slot(nbytes - off);
    const size_t len = std::min(slot.capacity, nbytes - off);
    std::memcpy(slot.buffer, src + off, len);
    DTRAIN_CUDA_CHECK(
        cudaMemcpyAsync(dst + off, slot.buffer, len, cudaMemcpyHostToDevice, copy_stream_));
    DTRAIN_CUDA_CHECK(cudaEventRecord(slot.done, copy_stream_));
    slot.in_flight = true;
    last = slot.done;
    off += len;
  }
  return last;
}

void PinnedStaging::to_device(const void* host, void* dev, size_t nbytes, cudaStream_t compute,
                              CachingAllocator& allocator) {
  if (nbytes == 0) return;
  std::lock_guard<std::mutex> lock(upload_mutex_);
  DeviceGuard guard(device_);
  if (!copy_stream_) {
    DTRAIN_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&compute_mark_, cudaEventDisableTiming));
  }
  const char* src = static_cast<const char*>(host);
  if (nbytes > kMaxStaged) {
    // In place: dev's memory may still be read by compute work queued before it was reallocated.
    DTRAIN_CUDA_CHECK(cudaEventRecord(compute_mark_, compute));
    DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, compute_mark_, 0));
    cudaEvent_t copied = upload_chunks(src, static_cast<char*>(dev), nbytes);
    DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(compute, copied, 0));
    return;
  }
  // Through a scratch block of the copy stream's pool, which no compute work can still be using.
  struct Scratch {
    CachingAllocator& allocator;
    void* ptr;
    ~Scratch() { allocator.free(ptr); }  // reused once the compute stream's move has run
  } scratch{allocator, allocator.allocate(nbytes, copy_stream_)};
  cudaEvent_t copied = upload_chunks(src, static_cast<char*>(scratch.ptr), nbytes);
  DTRAIN_CUDA_CHECK(cudaStreamWaitEvent(compute, copied, 0));
  allocator.record_stream(scratch.ptr, compute);
  DTRAIN_CUDA_CHECK(cudaMemcpyAsync(dev, scratch.ptr, nbytes, cudaMemcpyDeviceToDevice, compute));
}

void PinnedStaging::to_host(const void* dev, void* host, size_t nbytes, cudaStream_t compute) {
  if (nbytes == 0) return;
  std::lock_guard<std::mutex> lock(download_mutex_);
  DeviceGuard guard(device_);
  // One host sync per download: the host waits for the compute stream to produce the values; the
  // chunk waits below are part of that one wait.
  count_host_sync();
  for (Slot& slot : download_) {
    if (slot.buffer) continue;
    DTRAIN_CUDA_CHECK(cudaHostAlloc(&slot.buffer, kChunk, cudaHostAllocDefault));
    slot.capacity = kChunk;
    DTRAIN_CUDA_CHECK(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming));
  }
  auto finish = [](Slot& slot) {
    if (!slot.in_flight) return;
    slot.in_flight = false;
    DTRAIN_CUDA_CHECK(cudaEventSynchronize(slot.done));
  };
  const char* src = static_cast<const char*>(dev);
  char* dst = static_cast<char*>(host);
  // Chunk k is copied into slot k % 2 while chunk k - 1 is drained from the other slot.
  Slot* prev = nullptr;
  size_t prev_off = 0, prev_len = 0;
  int index = 0;
  for (size_t off = 0; off < nbytes; off += kChunk, index ^= 1) {
    Slot& slot = download_[index];
    const size_t len = std::min(kChunk, nbytes - off);
    finish(slot);
    DTRAIN_CUDA_CHECK(
        cudaMemcpyAsync(slot.buffer, src + off, len, cudaMemcpyDeviceToHost, compute));
    DTRAIN_CUDA_CHECK(cudaEventRecord(slot.done, compute));
    slot.in_flight = true;
    if (prev) {
      finish(*prev);
      std::memcpy(dst + prev_off, prev->buffer, prev_len);
    }
    prev = &slot, prev_off = off, prev_len = len;
  }
  finish(*prev);
  std::memcpy(dst + prev_off, prev->buffer, prev_len);
}

// ---------------------------------------------------------------------------------------------
// Device contexts

DeviceContext::DeviceContext(int idx) : index(idx), staging(idx) {
  DeviceGuard guard(index);
  // Non-blocking: the legacy default stream, which other libraries may use, does not serialise with
  // it.
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
  DTRAIN_CHECK(count > 0, "cuda:", index, " requested but ", cuda_unavailable_reason());
  DTRAIN_CHECK(index >= 0 && index < count, "cuda:", index, " requested but ", count,
               " CUDA device(s) are visible");
  if (contexts->empty()) contexts->resize(static_cast<size_t>(count));
  auto& slot = (*contexts)[static_cast<size_t>(index)];
  if (!slot) slot = std::make_unique<DeviceContext>(index);
  return *slot;
}

// ---------------------------------------------------------------------------------------------
// TF32 and tensor-op policy

cublasComputeType_t gemm_compute_type(DType type, bool allow_tf32) {
  if (type == DType::f64) return CUBLAS_COMPUTE_64F;
  if (type == DType::f32 && allow_tf32) return CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_COMPUTE_32F;
}

cudnnMathType_t conv_requested_math(DType type, bool allow_tf32) {
  if (is_half(type)) return CUDNN_TENSOR_OP_MATH;
  if (type == DType::f32) return allow_tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
  return CUDNN_DEFAULT_MATH;
}

bool conv_algo_allowed(cudnnMathType_t algo_math, DType type, bool allow_tf32) {
  if (type != DType::f32) return true;
  if (algo_math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false;
  return allow_tf32 || algo_math != CUDNN_TENSOR_OP_MATH;
}

cudnnMathType_t conv_execution_math(cudnnMathType_t algo_math, DType type, bool allow_tf32) {
  if (type == DType::f32 && !allow_tf32) return CUDNN_FMA_MATH;
  return algo_math;
}

// ---------------------------------------------------------------------------------------------
// For code outside the backend

cudaStream_t cuda_compute_stream(int device) { return compute_stream(device); }

AllocatorStats cuda_memory_stats(int device) { return device_context(device).allocator->stats(); }

size_t cuda_peak_allocated_bytes(int device) { return cuda_memory_stats(device).peak_allocated; }

void cuda_reset_peak_memory_stats(int device) { device_context(device).allocator->reset_peak(); }

void cuda_empty_cache(int device) { device_context(device).allocator->empty_cache(); }

void cuda_record_stream(const Tensor& t, cudaStream_t stream) {
  DTRAIN_CHECK(t.defined() && t.device().is_cuda(), "cuda_record_stream needs a CUDA tensor");
  device_context(t.device().index).allocator->record_stream(t.storage()->data(), stream);
}

void cuda_set_allow_tf32(bool allow) { allow_tf32_flag() = allow; }
bool cuda_allow_tf32() { return allow_tf32_flag(); }

}  // namespace dtrain::cuda
