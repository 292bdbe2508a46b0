// The caching allocator's bookkeeping, run against a fake device (host memory, events the test
// completes by hand), so it is tested on every machine that builds the CUDA backend; and the real
// allocator on a GPU (skipped without one).
#include <gtest/gtest.h>

#include "tests/core/backend/cuda/parity.h"

#ifdef DTRAIN_WITH_CUDA
#include <cstdlib>
#include <map>
#include <memory>
#include <set>

#include "core/backend/cuda/caching_allocator.h"
#include "core/backend/cuda/cuda_device.h"

namespace dtrain {
namespace {

using cuda::AllocatorStats;
using cuda::CachingAllocator;

// Host memory with a capacity, and events that complete when the test says so.
struct FakeDevice {
  size_t capacity = size_t{1} << 30;
  size_t in_use = 0;
  int mallocs = 0, frees = 0, syncs = 0;
  std::map<void*, size_t> live;
  std::set<int*> pending_events;
};

class FakeOps final : public cuda::DeviceMemoryOps {
 public:
  explicit FakeOps(FakeDevice& d) : d_(d) {}
  void* raw_malloc(size_t nbytes) override {
    if (d_.in_use + nbytes > d_.capacity) return nullptr;
    void* p = std::malloc(nbytes);
    d_.in_use += nbytes;
    d_.live[p] = nbytes;
    d_.mallocs += 1;
    return p;
  }
  void raw_free(void* ptr) override {
    d_.in_use -= d_.live.at(ptr);
    d_.live.erase(ptr);
    d_.frees += 1;
    std::free(ptr);
  }
  void* record_event(void*) override {
    int* e = new int(0);
    d_.pending_events.insert(e);
    return e;
  }
  bool event_done(void* event) override { return *static_cast<int*>(event) != 0; }
  void destroy_event(void* event) override {
    d_.pending_events.erase(static_cast<int*>(event));
    delete static_cast<int*>(event);
  }
  void synchronize() override {
    d_.syncs += 1;
    for (int* e : d_.pending_events) *e = 1;  // all queued work done
  }

 private:
  FakeDevice& d_;
};

void* const kStream = reinterpret_cast<void*>(0x10);
void* const kOtherStream = reinterpret_cast<void*>(0x20);

std::unique_ptr<CachingAllocator> make(FakeDevice& d) {
  return std::make_unique<CachingAllocator>(std::make_unique<FakeOps>(d), "fake:0");
}

TEST(CudaAllocator, rounds_and_sizes_segments) {
  EXPECT_EQ(CachingAllocator::round_size(0), 512u);
  EXPECT_EQ(CachingAllocator::round_size(1), 512u);
  EXPECT_EQ(CachingAllocator::round_size(513), 1024u);
  EXPECT_EQ(CachingAllocator::segment_size(512), size_t{2} << 20);
  EXPECT_EQ(CachingAllocator::segment_size(size_t{1} << 20), size_t{2} << 20);
  EXPECT_EQ(CachingAllocator::segment_size((size_t{1} << 20) + 512), size_t{20} << 20);
  EXPECT_EQ(CachingAllocator::segment_size(size_t{15} << 20), size_t{16} << 20);
}

TEST(CudaAllocator, splits_a_segment_and_reuses_freed_blocks) {
  FakeDevice dev;
  auto alloc = make(dev);
  void* a = alloc->allocate(1000, kStream);  // 1024 bytes of a new 2 MiB segment
  void* b = alloc->allocate(3000, kStream);  // 3072 bytes split from the same segment
  EXPECT_EQ(dev.mallocs, 1);
  EXPECT_EQ(static_cast<char*>(b) - static_cast<char*>(a), 1024);
  AllocatorStats s = alloc->stats();
  EXPECT_EQ(s.allocated, 1024u + 3072u);
  EXPECT_EQ(s.reserved, size_t{2} << 20);
  EXPECT_EQ(s.segments, 1);
  alloc->free(a);
  void* c = alloc->allocate(512, kStream);  // best fit: a's freed 1024-byte block
  EXPECT_EQ(c, a);
  EXPECT_EQ(dev.mallocs, 1);
  EXPECT_EQ(alloc->stats().cache_hits, 2);
  alloc->free(b);
  alloc->free(c);
  EXPECT_EQ(alloc->stats().allocated, 0u);
  // All pieces merged back: the whole segment serves one large small-pool request.
  void* d = alloc->allocate(size_t{1} << 20, kStream);
  EXPECT_EQ(d, a);
  EXPECT_EQ(dev.mallocs, 1);
  alloc->free(d);
}

TEST(CudaAllocator, blocks_are_reused_only_on_their_stream) {
  FakeDevice dev;
  auto alloc = make(dev);
  void* a = alloc->allocate(4096, kStream);
  alloc->free(a);
  void* b = alloc->allocate(4096, kOtherStream);
  EXPECT_NE(a, b);
  EXPECT_EQ(dev.mallocs, 2);
  alloc->free(b);
}

TEST(CudaAllocator, record_stream_defers_reuse_until_the_event_completes) {
  FakeDevice dev;
  auto alloc = make(dev);
  void* a = alloc->allocate(size_t{8} << 20, kStream);  // large pool
  alloc->record_stream(a, kOtherStream);
  alloc->free(a);
  ASSERT_EQ(dev.pending_events.size(), 1u);
  // The block may still be in use on the other stream: a new request gets other memory.
  void* b = alloc->allocate(size_t{8} << 20, kStream);
  EXPECT_NE(a, b);
  // Once the other stream's work is done, the block comes back.
  for (int* e : dev.pending_events) *e = 1;
  alloc->free(b);
  void* c = alloc->allocate(size_t{8} << 20, kStream);
  EXPECT_TRUE(c == a || c == b);
  EXPECT_TRUE(dev.pending_events.empty());
  alloc->free(c);
}

TEST(CudaAllocator, large_requests_split_only_big_remainders) {
  FakeDevice dev;
  auto alloc = make(dev);
  // 19.5 MiB from a 20 MiB segment: the 0.5 MiB rest stays attached (no split).
  void* a = alloc->allocate((size_t{39} << 20) / 2, kStream);
  EXPECT_EQ(alloc->stats().allocated, size_t{20} << 20);
  alloc->free(a);
  // 4 MiB from the cached 20 MiB segment: split, and the 16 MiB rest serves the next request.
  void* b = alloc->allocate(size_t{4} << 20, kStream);
  void* c = alloc->allocate(size_t{16} << 20, kStream);
  EXPECT_EQ(b, a);
  EXPECT_EQ(static_cast<char*>(c) - static_cast<char*>(b), size_t{4} << 20);
  EXPECT_EQ(dev.mallocs, 1);
  alloc->free(b);
  alloc->free(c);
}

TEST(CudaAllocator, tracks_peak_and_empties_the_cache) {
  FakeDevice dev;
  auto alloc = make(dev);
  void* a = alloc->allocate(size_t{30} << 20, kStream);  // a 30 MiB segment of its own
  void* b = alloc->allocate(size_t{2} << 20, kStream);   // 2 MiB split from a new 20 MiB segment
  alloc->free(a);
  AllocatorStats s = alloc->stats();
  EXPECT_EQ(s.peak_allocated, size_t{32} << 20);
  EXPECT_EQ(s.allocated, size_t{2} << 20);
  EXPECT_EQ(s.reserved, size_t{50} << 20);
  alloc->reset_peak();
  EXPECT_EQ(alloc->stats().peak_allocated, size_t{2} << 20);
  alloc->empty_cache();  // releases a's segment; b's is still in use
  s = alloc->stats();
  EXPECT_EQ(s.reserved, size_t{20} << 20);
  EXPECT_EQ(s.releases, 1);
  EXPECT_EQ(dev.frees, 1);
  alloc->free(b);
}

TEST(CudaAllocator, out_of_memory_flushes_the_cache_then_reports) {
  FakeDevice dev;
  dev.capacity = size_t{64} << 20;
  auto alloc = make(dev);
  void* a = alloc->allocate(size_t{40} << 20, kStream);
  alloc->free(a);  // cached, not returned
  // 50 MiB does not fit beside the cached 40: the cache is flushed and the request retried.
  void* b = alloc->allocate(size_t{50} << 20, kStream);
  EXPECT_NE(b, nullptr);
  EXPECT_EQ(alloc->stats().oom_retries, 1);
  EXPECT_GE(dev.syncs, 1);
  // Nothing can make room for another 50 MiB: a one-line error naming the device.
  try {
    alloc->allocate(size_t{50} << 20, kStream);
    ADD_FAILURE() << "expected an out-of-memory error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fake:0 is out of memory"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  alloc->free(b);
}

TEST(CudaAllocator, freeing_unknown_or_null_pointers_is_harmless) {
  FakeDevice dev;
  auto alloc = make(dev);
  int local = 0;
  alloc->free(nullptr);
  alloc->free(&local);
  EXPECT_EQ(alloc->stats().allocated, 0u);
}

// ---- on a GPU

TEST(CudaAllocator, device_memory_is_cached_and_counted) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  const AllocatorStats before = cuda::cuda_memory_stats(0);
  {
    Tensor t = Tensor::empty({1 << 20}, DType::f32, Device::cuda(0));  // 4 MiB
    // 4 MiB, or a little more when a cached block is not worth splitting (under 1 MiB left over).
    const size_t grown = cuda::cuda_memory_stats(0).allocated - before.allocated;
    EXPECT_GE(grown, size_t{4} << 20);
    EXPECT_LE(grown, size_t{5} << 20);
  }
  // Freed to the cache, not to the driver: the same request again needs no new segment.
  const AllocatorStats freed = cuda::cuda_memory_stats(0);
  EXPECT_EQ(freed.allocated, before.allocated);
  Tensor again = Tensor::empty({1 << 20}, DType::f32, Device::cuda(0));
  const AllocatorStats reused = cuda::cuda_memory_stats(0);
  EXPECT_EQ(reused.reserved, freed.reserved);
  EXPECT_EQ(reused.cache_hits, freed.cache_hits + 1);
  EXPECT_GE(reused.peak_allocated, before.allocated + (size_t{4} << 20));
  // Emptying the cache returns whole free segments and keeps live ones.
  cuda::cuda_empty_cache(0);
  EXPECT_LE(cuda::cuda_memory_stats(0).reserved, reused.reserved);
  EXPECT_EQ(cuda::cuda_memory_stats(0).allocated, reused.allocated);
}

TEST(CudaAllocator, device_out_of_memory_is_a_one_line_error) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  try {
    Tensor huge = Tensor::empty({int64_t{1} << 40}, DType::f32, Device::cuda(0));  // 4 TiB
    ADD_FAILURE() << "expected an out-of-memory error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cuda:0 is out of memory"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  // The device is still usable afterwards.
  Tensor t = Tensor::ones({4}, DType::f32, Device::cuda(0));
  EXPECT_EQ(t.to_vector<float>(), std::vector<float>(4, 1.0f));
}

}  // namespace
}  // namespace dtrain

#else  // built without CUDA

TEST(CudaAllocator, needs_the_cuda_build) {
  GTEST_SKIP() << "dtrain was built without CUDA (-DDTRAIN_CUDA=OFF)";
}

#endif
