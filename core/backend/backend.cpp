#include "core/backend/backend.h"
#include "core/backend/runtime.h"

#include <atomic>

#include "core/backend/cpu/cpu_backend.h"

namespace dtrain {

#ifdef DTRAIN_WITH_CUDA
// Defined in core/backend/cuda (built when the CUDA toolkit is found).
Backend& cuda_backend();
int cuda_backend_device_count();
std::string cuda_backend_unavailable_reason();
namespace cuda {
void cuda_set_allow_tf32(bool allow);
void cuda_select_device(int index);
size_t cuda_peak_allocated_bytes(int device);
void cuda_reset_peak_memory_stats(int device);
}  // namespace cuda
#endif

size_t peak_device_memory_bytes(Device device) {
  if (device.is_cpu()) return cpu_tensor_memory().peak;
#ifdef DTRAIN_WITH_CUDA
  if (device.is_cuda() && cuda_device_count() > device.index)
    return cuda::cuda_peak_allocated_bytes(device.index);
#endif
  return 0;
}

void reset_peak_device_memory(Device device) {
  if (device.is_cpu()) {
    reset_cpu_tensor_memory_peak();
    return;
  }
#ifdef DTRAIN_WITH_CUDA
  if (device.is_cuda() && cuda_device_count() > device.index)
    cuda::cuda_reset_peak_memory_stats(device.index);
#endif
}

std::string cuda_unavailable_reason() {
#ifdef DTRAIN_WITH_CUDA
  return cuda_backend_unavailable_reason();
#else
  return "dtrain was built without CUDA; rebuild where nvcc is found (-DDTRAIN_CUDA=ON) or run "
         "with "
         "--device cpu";
#endif
}

void select_device(Device device) {
#ifdef DTRAIN_WITH_CUDA
  if (device.is_cuda()) cuda::cuda_select_device(device.index);
#else
  (void)device;
#endif
}

void set_allow_tf32(bool allow) {
#ifdef DTRAIN_WITH_CUDA
  cuda::cuda_set_allow_tf32(allow);
#else
  (void)allow;
#endif
}

namespace {
std::atomic<uint64_t> g_host_syncs{0};
}  // namespace

uint64_t host_sync_count() { return g_host_syncs.load(std::memory_order_relaxed); }
void count_host_sync() { g_host_syncs.fetch_add(1, std::memory_order_relaxed); }

int cuda_device_count() {
#ifdef DTRAIN_WITH_CUDA
  return cuda_backend_device_count();
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

Backend& backend_for(Device device) {
  static CpuBackend cpu;
  if (device.is_cpu()) return cpu;
#ifdef DTRAIN_WITH_CUDA
  int count = cuda_device_count();
  DTRAIN_CHECK(count > 0, "device ", device.str(), " requested but ",
               cuda_backend_unavailable_reason());
  DTRAIN_CHECK(device.index < count, "device ", device.str(), " requested but only ", count,
               " CUDA device(s) are visible");
  return cuda_backend();
#else
  throw Error("device " + device.str() +
              " requested but dtrain was built without CUDA; rebuild where nvcc is found "
              "(-DDTRAIN_CUDA=ON) or run with --device cpu");
#endif
}

void synchronize(Device device) { backend_for(device).synchronize(device.index); }

}  // namespace dtrain
