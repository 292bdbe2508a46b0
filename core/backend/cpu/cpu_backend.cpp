// CPU backend: memory, threads, and the f16/bf16 staging shared by its kernel files.
#include "core/backend/cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>

#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

namespace dtrain {

namespace {
constexpr size_t kAlignment = 64;  // a cache line, and enough for any SIMD load

// Training allocates and frees the same activation sizes every step. glibc serves large blocks with
// fresh mmap()s by default, so each step would pay page faults and page clearing for every
// activation; keeping freed memory in the heap turns those into reuse, a caching allocator for free.
const bool g_heap_tuned = [] {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return true;
}();

// Bytes held by live CPU tensors, and their peak (peak_device_memory_bytes).
std::atomic<size_t> g_live_bytes{0};
std::atomic<size_t> g_peak_bytes{0};
}  // namespace

CpuTensorMemory cpu_tensor_memory() { return {g_live_bytes.load(), g_peak_bytes.load()}; }
void reset_cpu_tensor_memory_peak() { g_peak_bytes.store(g_live_bytes.load()); }

void* CpuBackend::allocate(size_t nbytes, int) {
  size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (!p) throw Error("out of host memory allocating " + std::to_string(nbytes) + " bytes");
  const size_t live = g_live_bytes.fetch_add(nbytes) + nbytes;
  size_t peak = g_peak_bytes.load();
  while (live > peak && !g_peak_bytes.compare_exchange_weak(peak, live)) {}
  return p;
}

void CpuBackend::deallocate(void* ptr, size_t nbytes, int) {
  std::free(ptr);
  g_live_bytes.fetch_sub(nbytes);
}

void CpuBackend::copy_to_host(const void* src, void* dst_host, size_t nbytes, int) {
  std::memcpy(dst_host, src, nbytes);
}

void CpuBackend::copy_from_host(const void* src_host, void* dst, size_t nbytes, int) {
  std::memcpy(dst, src_host, nbytes);
}

Tensor cpu_to_f32(const Tensor& t) {
  if (!t.defined() || !is_half(t.dtype())) return t;
  Tensor out = Tensor::empty(t.shape(), DType::f32, Device::cpu());
  if (out.numel() > 0) backend_for(Device::cpu()).copy(t, out);
  return out;
}

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  // GEMMs are split over OpenMP's threads (cpu_gemm.cpp); OpenBLAS itself stays single-threaded.
  openblas_set_num_threads(1);
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace dtrain
