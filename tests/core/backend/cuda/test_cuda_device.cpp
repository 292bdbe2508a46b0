// Device selection, the messages for a machine where CUDA cannot start, and the pinned upload ring:
// the host-side decisions run everywhere the CUDA backend is built; the checks that need a GPU skip
// without one.
#include <gtest/gtest.h>

#include "tests/core/backend/cuda/parity.h"

#ifdef DTRAIN_WITH_CUDA
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "core/backend/cuda/cuda_device.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"

namespace dtrain {
namespace {

using cuda::DeviceSwitch;
using cuda::plan_device_switch;

TEST(CudaDevice, guard_switches_only_when_needed_and_restores_only_a_chosen_device) {
  // Already current: nothing to do, nothing to restore.
  DeviceSwitch s = plan_device_switch(1, 1, 1);
  EXPECT_FALSE(s.set);
  EXPECT_EQ(s.restore_to, -1);
  // A fresh thread reports device 0 without having a context there: the guard switches to the asked
  // device and must not "restore" 0 (that would open a context on another rank's GPU).
  s = plan_device_switch(0, 3, -1);
  EXPECT_TRUE(s.set);
  EXPECT_EQ(s.restore_to, -1);
  s = plan_device_switch(0, 0, -1);
  EXPECT_FALSE(s.set);
  // A thread that chose device 2 and briefly works on 1 returns to 2.
  s = plan_device_switch(2, 1, 2);
  EXPECT_TRUE(s.set);
  EXPECT_EQ(s.restore_to, 2);
  // ... and to its own choice even when something else left another device current.
  s = plan_device_switch(0, 1, 2);
  EXPECT_TRUE(s.set);
  EXPECT_EQ(s.restore_to, 2);
  // Asking for its own device never schedules a restore.
  s = plan_device_switch(0, 2, 2);
  EXPECT_TRUE(s.set);
  EXPECT_EQ(s.restore_to, -1);
}

TEST(CudaDevice, device_count_failures_name_their_cause) {
  const std::string none = cuda::describe_device_count_failure(cudaErrorNoDevice, 13000, 13000);
  EXPECT_NE(none.find("no CUDA device is visible"), std::string::npos) << none;
  EXPECT_EQ(cuda::describe_device_count_failure(cudaSuccess, 13000, 13000), none);

  const std::string old_driver =
      cuda::describe_device_count_failure(cudaErrorInsufficientDriver, 12040, 13000);
  EXPECT_NE(old_driver.find("driver supports CUDA 12.4"), std::string::npos) << old_driver;
  EXPECT_NE(old_driver.find("CUDA runtime 13.0"), std::string::npos) << old_driver;
  EXPECT_NE(old_driver.find("update the driver"), std::string::npos) << old_driver;
  EXPECT_EQ(old_driver.find("no CUDA device"), std::string::npos) << old_driver;

  const std::string no_driver =
      cuda::describe_device_count_failure(cudaErrorInsufficientDriver, 0, 12080);
  EXPECT_NE(no_driver.find("no NVIDIA driver is loaded"), std::string::npos) << no_driver;
  EXPECT_NE(no_driver.find("12.8"), std::string::npos) << no_driver;

  const std::string mismatch =
      cuda::describe_device_count_failure(cudaErrorSystemDriverMismatch, 13000, 13000);
  EXPECT_NE(mismatch.find("kernel driver"), std::string::npos) << mismatch;

  const std::string other =
      cuda::describe_device_count_failure(cudaErrorInitializationError, 13000, 13000);
  EXPECT_NE(other.find("cudaErrorInitializationError"), std::string::npos) << other;

  for (const std::string& m : {none, old_driver, no_driver, mismatch, other}) {
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    EXPECT_NE(m.find("--device cpu"), std::string::npos) << m;
  }
}

TEST(CudaDevice, unavailable_reason_is_given_exactly_when_there_is_no_device) {
  // Runs on every machine: with a GPU the reason is empty, without one it says why.
  if (cuda::device_count() > 0) {
    EXPECT_EQ(cuda::cuda_unavailable_reason(), "");
  } else {
    const std::string reason = cuda::cuda_unavailable_reason();
    EXPECT_FALSE(reason.empty());
    EXPECT_NE(reason.find("--device cpu"), std::string::npos) << reason;
    // device_context refuses with that reason instead of a bare count.
    try {
      (void)cuda::device_context(0);
      ADD_FAILURE() << "device_context(0) succeeded without a device";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
    }
  }
}

TEST(CudaDevice, upload_slots_grow_in_chunks_up_to_a_cap) {
  using cuda::PinnedStaging;
  using cuda::staging_slot_capacity;
  const size_t chunk = PinnedStaging::kChunk, cap = PinnedStaging::kMaxSlot;
  EXPECT_EQ(staging_slot_capacity(0, 1), chunk);
  EXPECT_EQ(staging_slot_capacity(0, chunk), chunk);
  EXPECT_EQ(staging_slot_capacity(chunk, chunk + 1), 2 * chunk);
  EXPECT_EQ(staging_slot_capacity(2 * chunk, 100), 2 * chunk);  // never shrinks
  EXPECT_EQ(staging_slot_capacity(chunk, 10 * cap), cap);
  EXPECT_EQ(staging_slot_capacity(cap, 10 * cap), cap);
  // A training batch (here ViT-B's 128 x 3 x 224 x 224 f32) needs a few slots, not the whole ring
  // many times over: the ring then holds a step's uploads without waiting for its own copies.
  const size_t batch = size_t{128} * 3 * 224 * 224 * 4;
  EXPECT_LT((batch + cap - 1) / cap, static_cast<size_t>(PinnedStaging::kUploadSlots));
}

// ---- on a GPU

TEST(CudaDevice, selected_device_is_kept_and_another_is_refused) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  cuda::cuda_select_device(0);
  cuda::cuda_select_device(0);  // the same again is fine
  EXPECT_EQ(cuda::cuda_selected_device(), 0);
  EXPECT_THROW(cuda::cuda_select_device(1), Error);  // another GPU, or one that does not exist
  int current = -1;
  std::thread worker([&] {
    cuda::cuda_use_selected_device();
    (void)cudaGetDevice(&current);
  });
  worker.join();
  EXPECT_EQ(current, 0);
}

TEST(CudaDevice, guard_on_a_fresh_thread_leaves_its_device_current) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  const int last = cuda::device_count() - 1;
  int during = -1, after = -1;
  std::thread worker([&] {
    {
      cuda::DeviceGuard guard(last);
      (void)cudaGetDevice(&during);
    }
    (void)cudaGetDevice(&after);  // not switched back to 0: that would open a context on GPU 0
  });
  worker.join();
  EXPECT_EQ(during, last);
  EXPECT_EQ(after, last);
}

// A 2048 x 2048 operand on the GPU for queue_compute, uploaded (and waited for) beforehand.
Tensor compute_operand(Device gpu) {
  Generator gen(3);
  Tensor a = testing::uniform_tensor({2048, 2048}, DType::f32, gen).to(gpu);
  backend_for(gpu).synchronize(gpu.index);
  return a;
}

// Keeps the compute stream busy for a while with a chain of large GEMMs; uploads nothing.
Tensor queue_compute(const Tensor& a, int rounds) {
  Tensor acc = a;
  for (int i = 0; i < rounds; ++i) acc = mul(matmul(acc, a), 1.0 / 2048.0);
  return acc;
}

TEST(CudaDevice, uploads_do_not_wait_for_queued_compute) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  const Device gpu = testing::gpu();
  Generator gen(11);
  const Tensor big = testing::uniform_tensor({3, 1000, 1000}, DType::f32, gen);  // 12 MB
  // Together with the big one, as many uploads as the ring has slots: none waits for a slot.
  std::vector<Tensor> small;
  for (int i = 1; i < cuda::PinnedStaging::kUploadSlots; ++i) {
    small.push_back(testing::uniform_tensor({256}, DType::f32, gen));
  }
  const Tensor operand = compute_operand(gpu);
  // Warm-up: the ring's slots grow to the upload's size once (cudaFreeHost may wait then).
  for (int i = 0; i < 2 * cuda::PinnedStaging::kUploadSlots; ++i) (void)big.to(gpu);
  backend_for(gpu).synchronize(gpu.index);

  Tensor busy = queue_compute(operand, 40);
  const uint64_t before = host_sync_count();
  std::vector<Tensor> uploaded;
  uploaded.push_back(big.to(gpu));
  for (const Tensor& t : small) uploaded.push_back(t.to(gpu));
  EXPECT_EQ(host_sync_count(), before) << "an upload waited for the host";

  // The values arrived, and the queued compute was not disturbed by memory reused under it.
  testing::expect_parity(big, uploaded[0], "big upload");
  for (size_t i = 0; i < small.size(); ++i) {
    testing::expect_parity(small[i], uploaded[i + 1], "small upload " + std::to_string(i));
  }
  EXPECT_TRUE(std::isfinite(sum(busy).item()));
}

TEST(CudaDevice, upload_into_memory_freed_under_queued_compute_is_ordered_after_it) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  const Device gpu = testing::gpu();
  Generator gen(12);
  const Tensor a_host = testing::uniform_tensor({1024, 1024}, DType::f32, gen);
  const Tensor expected = matmul(a_host, a_host);
  const Tensor operand = compute_operand(gpu);
  Tensor result;
  {
    Tensor a = a_host.to(gpu);
    Tensor busy = queue_compute(operand, 20);  // delays the product below on the stream
    result = matmul(a, a);
  }  // a is freed while the product that reads it is still queued
  // Likely served from a's block: must not overwrite it before the product has read it.
  const Tensor junk = Tensor::full({1024, 1024}, 1e6, DType::f32);
  Tensor overwrite = junk.to(gpu);
  testing::expect_parity(expected, result, "product of a freed operand", 1e3);
  testing::expect_parity(junk, overwrite, "upload into reused memory");
}

TEST(CudaDevice, downloads_and_synchronize_count_one_host_sync) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  const Device gpu = testing::gpu();
  Generator gen(13);
  // Larger than two download buffers: still one wait as far as the step is concerned.
  const Tensor host = testing::uniform_tensor({3, 1024, 1024}, DType::f32, gen);
  Tensor t = host.to(gpu);
  uint64_t before = host_sync_count();
  const std::vector<float> values = t.to_vector<float>();
  EXPECT_EQ(host_sync_count(), before + 1);
  EXPECT_EQ(values, host.to_vector<float>());
  before = host_sync_count();
  backend_for(gpu).synchronize(gpu.index);
  EXPECT_EQ(host_sync_count(), before + 1);
}

}  // namespace
}  // namespace dtrain
#endif  // DTRAIN_WITH_CUDA
