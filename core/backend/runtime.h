// The runtime: what code above core/ops needs of the devices without reaching the kernel interface
// (core/backend/backend.h): which GPUs exist and which one this process uses, waiting for a device,
// host synchronisations and peak memory, TF32, and the CPU's thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/tensor/device.h"

namespace dtrain {

bool cuda_available();  // built with CUDA and at least one device visible
int cuda_device_count();
// Why no CUDA device can be used, in one line ending with what to do (no driver, a driver older than
// the runtime, no device, a build without CUDA); empty when one can.
std::string cuda_unavailable_reason();
// Makes `device` this process's GPU, once, before any other CUDA work (no-op for the CPU): no context
// is ever opened on another GPU. A second call with another GPU is an error.
void select_device(Device device);

// Host synchronisations: each time the host waits for device work or reads back a value the device
// computed (Tensor::item/to_vector, a copy to the host, a stream/event/device synchronise, a host wait
// on a collective). A training step that reads nothing back queues its work and returns; each counted
// point stalls the host until the device catches up. Reads of CPU tensors through item()/to_vector()
// count too, so a CPU run accounts for the same points a GPU run would stall at. Thread-safe.
uint64_t host_sync_count();
void count_host_sync();

// The most memory dtrain's allocator has held in tensors on `device` since the process started (or
// the last reset_peak_device_memory), in bytes: the caching allocator's peak for a GPU; for the CPU,
// the peak of the bytes held by live tensors (the process's RSS adds the heap's own overhead).
size_t peak_device_memory_bytes(Device device);
// Starts a new peak from the memory held now (e.g. before measuring one step).
void reset_peak_device_memory(Device device);

// TF32 tensor cores for f32 GEMM and convolution on GPUs (no effect on the CPU). Off unless set here
// or by DTRAIN_ALLOW_TF32=1; `dtrain train` sets it from --tf32 (on by default).
void set_allow_tf32(bool allow);

// Threads used by CPU kernels and OpenBLAS.
void set_num_threads(int n);
int get_num_threads();

// Waits for all work queued on `device` (no-op on the CPU).
void synchronize(Device device);

}  // namespace dtrain
