// CUDA fused optimizer updates: every parameter of the list in one launch (a multi-tensor apply),
// with the per-element arithmetic of core/backend/optim_update.h, shared with the CPU backend.
//
// The host writes one table to the device per call, uploaded through the pinned staging path (no
// host synchronisation): an entry per parameter (its pointers, element count and per-parameter
// scalars), then the chunk list, (parameter, first element) for every kChunk elements of every
// parameter. Block c updates chunk c (blocks stride over the chunks when there are more than the
// grid holds), so one launch covers tensors of any sizes and the work is balanced however the sizes
// vary. The table is a stream-ordered allocation freed after the launch is queued, so nothing is
// reused before the kernel has read it.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_device.h"
#include "core/backend/cuda/cuda_tensor_util.h"
#include "core/backend/cuda/kernel_utils.cuh"

namespace dtrain {

using namespace cuda;

namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per block per chunk

// One parameter's row of the table (int64-sized fields only, so the host and device layouts agree).
struct AdamEntry {
  void* p;
  const void* g;
  void* m;
  void* v;
  void* v_max;  // null without amsgrad
  int64_t n;
  double step_size, inv_sqrt_bc2;
};
struct SgdEntry {
  void* p;
  const void* g;
  void* b;  // null without momentum
  int64_t n;
  int64_t first_step;
};
struct Chunk {
  int64_t entry, begin;
};

// Uploads entries then chunks as one device buffer; returns it (kept alive by the caller until the
// launch is queued) and the device addresses of both parts.
template <class Entry>
Tensor upload_table(const std::vector<Entry>& entries, const std::vector<Chunk>& chunks, int dev,
                    const Entry** d_entries, const Chunk** d_chunks) {
  static_assert(sizeof(Entry) % sizeof(int64_t) == 0 && sizeof(Chunk) == 2 * sizeof(int64_t));
  const size_t entry_bytes = entries.size() * sizeof(Entry);
  const size_t bytes = entry_bytes + chunks.size() * sizeof(Chunk);
  std::vector<int64_t> host(bytes / sizeof(int64_t));
  std::memcpy(host.data(), entries.data(), entry_bytes);
  std::memcpy(reinterpret_cast<char*>(host.data()) + entry_bytes, chunks.data(),
              chunks.size() * sizeof(Chunk));
  Tensor table = Tensor::empty({static_cast<int64_t>(host.size())}, DType::i64, Device::cuda(dev));
  backend_for(table.device()).copy_from_host(host.data(), mdata(table), bytes, dev);
  *d_entries = static_cast<const Entry*>(cdata(table));
  *d_chunks = reinterpret_cast<const Chunk*>(static_cast<const char*>(cdata(table)) + entry_bytes);
  return table;
}

void add_chunks(std::vector<Chunk>& chunks, int64_t entry, int64_t n) {
  for (int64_t begin = 0; begin < n; begin += kChunk) chunks.push_back({entry, begin});
}

void check_entry(const Tensor& t, DType dtype, int dev, const char* op, const char* what) {
  check_cuda_tensor(t, op, what);
  DTRAIN_CHECK(t.dtype() == dtype && t.device().index == dev, "cuda ", op, ": ", what, " is ",
               dtype_name(t.dtype()), " on ", t.device().str(), "; the list needs one dtype (",
               dtype_name(dtype), ") on one device");
}

template <class T>
__global__ void adam_kernel(const AdamEntry* entries, const Chunk* chunks, int64_t num_chunks,
                            AdamUpdateArgs args) {
  using C = compute_t<T>;
  for (int64_t c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    const AdamEntry e = entries[chunks[c].entry];
    const auto s = optim_math::adam_scalars<C>(args, e.step_size, e.inv_sqrt_bc2);
    T* p = static_cast<T*>(e.p);
    const T* g = static_cast<const T*>(e.g);
    T* m = static_cast<T*>(e.m);
    T* v = static_cast<T*>(e.v);
    T* v_max = static_cast<T*>(e.v_max);
    const int64_t end = min(e.n, chunks[c].begin + kChunk);
    for (int64_t i = chunks[c].begin + threadIdx.x; i < end; i += blockDim.x) {
      C pi = p[i], mi = m[i], vi = v[i], vmi = v_max ? C(v_max[i]) : C(0);
      optim_math::adam_element(s, pi, C(g[i]), mi, vi, v_max ? &vmi : nullptr);
      p[i] = pi;
      m[i] = mi;
      v[i] = vi;
      if (v_max) v_max[i] = vmi;
    }
  }
}

template <class T>
__global__ void sgd_kernel(const SgdEntry* entries, const Chunk* chunks, int64_t num_chunks,
                           SgdUpdateArgs args) {
  using C = compute_t<T>;
  const auto s = optim_math::sgd_scalars<C>(args);
  for (int64_t c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    const SgdEntry e = entries[chunks[c].entry];
    T* p = static_cast<T*>(e.p);
    const T* g = static_cast<const T*>(e.g);
    T* b = static_cast<T*>(e.b);
    const int64_t end = min(e.n, chunks[c].begin + kChunk);
    for (int64_t i = chunks[c].begin + threadIdx.x; i < end; i += blockDim.x) {
      C pi = p[i], bi = b ? C(b[i]) : C(0);
      optim_math::sgd_element(s, pi, C(g[i]), b ? &bi : nullptr, e.first_step != 0);
      p[i] = pi;
      if (b) b[i] = bi;
    }
  }
}

unsigned chunk_grid(size_t num_chunks) {
  return static_cast<unsigned>(std::min<size_t>(num_chunks, static_cast<size_t>(kMaxBlocks)));
}

}  // namespace

void CudaBackend::adam_update(const AdamUpdateArgs& args,
                              const std::vector<AdamUpdateTensors>& list) {
  if (list.empty()) return;
  const DType dtype = list.front().param.dtype();
  const int dev = list.front().param.device().index;
  std::vector<AdamEntry> entries;
  std::vector<Chunk> chunks;
  for (const AdamUpdateTensors& t : list) {
    for (const Tensor* x : {&t.param, &t.grad, &t.exp_avg, &t.exp_avg_sq}) {
      check_entry(*x, dtype, dev, "adam_update", "a tensor of the list");
    }
    if (args.amsgrad) check_entry(t.max_exp_avg_sq, dtype, dev, "adam_update", "max_exp_avg_sq");
    if (t.param.numel() == 0) continue;
    add_chunks(chunks, static_cast<int64_t>(entries.size()), t.param.numel());
    entries.push_back({mdata(t.param), cdata(t.grad), mdata(t.exp_avg), mdata(t.exp_avg_sq),
                       args.amsgrad ? mdata(t.max_exp_avg_sq) : nullptr, t.param.numel(),
                       t.step_size, t.inv_sqrt_bc2});
  }
  if (chunks.empty()) return;
  DeviceGuard guard(dev);
  const AdamEntry* d_entries = nullptr;
  const Chunk* d_chunks = nullptr;
  const Tensor table = upload_table(entries, chunks, dev, &d_entries, &d_chunks);
  cudaStream_t stream = compute_stream(dev);
  if (dtype == DType::f32) {
    adam_kernel<float><<<chunk_grid(chunks.size()), kThreads, 0, stream>>>(
        d_entries, d_chunks, static_cast<int64_t>(chunks.size()), args);
  } else {
    DTRAIN_CHECK(dtype == DType::f64, "cuda adam_update: parameters are ", dtype_name(dtype),
                 "; fused updates take f32 or f64 master weights");
    adam_kernel<double><<<chunk_grid(chunks.size()), kThreads, 0, stream>>>(
        d_entries, d_chunks, static_cast<int64_t>(chunks.size()), args);
  }
  check_launch("adam_kernel");
}

void CudaBackend::sgd_update(const SgdUpdateArgs& args, const std::vector<SgdUpdateTensors>& list) {
  if (list.empty()) return;
  const DType dtype = list.front().param.dtype();
  const int dev = list.front().param.device().index;
  const bool momentum = args.momentum != 0.0;
  std::vector<SgdEntry> entries;
  std::vector<Chunk> chunks;
  for (const SgdUpdateTensors& t : list) {
    check_entry(t.param, dtype, dev, "sgd_update", "a parameter");
    check_entry(t.grad, dtype, dev, "sgd_update", "a gradient");
    if (momentum) check_entry(t.momentum_buffer, dtype, dev, "sgd_update", "a momentum buffer");
    if (t.param.numel() == 0) continue;
    add_chunks(chunks, static_cast<int64_t>(entries.size()), t.param.numel());
    entries.push_back({mdata(t.param), cdata(t.grad), momentum ? mdata(t.momentum_buffer) : nullptr,
                       t.param.numel(), t.first_step ? 1 : 0});
  }
  if (chunks.empty()) return;
  DeviceGuard guard(dev);
  const SgdEntry* d_entries = nullptr;
  const Chunk* d_chunks = nullptr;
  const Tensor table = upload_table(entries, chunks, dev, &d_entries, &d_chunks);
  cudaStream_t stream = compute_stream(dev);
  if (dtype == DType::f32) {
    sgd_kernel<float><<<chunk_grid(chunks.size()), kThreads, 0, stream>>>(
        d_entries, d_chunks, static_cast<int64_t>(chunks.size()), args);
  } else {
    DTRAIN_CHECK(dtype == DType::f64, "cuda sgd_update: parameters are ", dtype_name(dtype),
                 "; fused updates take f32 or f64 master weights");
    sgd_kernel<double><<<chunk_grid(chunks.size()), kThreads, 0, stream>>>(
        d_entries, d_chunks, static_cast<int64_t>(chunks.size()), args);
  }
  check_launch("sgd_kernel");
}

}  // namespace dtrain
