// A caching allocator for one device. cudaMalloc and cudaFree synchronise the device and cost tens of
// microseconds, so freed blocks are kept and handed out again:
//
// - Requests are rounded up to 512 bytes. Requests up to 1 MiB come from 2 MiB segments (the small
//   pool); larger ones from segments of 20 MiB, or of the request rounded up to 2 MiB when that is
//   bigger (the large pool). A block larger than the request is split, and the rest stays free.
// - Free blocks sit in size-class bins (one per power of two) ordered by (stream, size, address); a
//   request takes the smallest free block of its stream that fits. Freed neighbours in a segment merge.
// - Frees are stream-ordered: a block is reused only by work on the stream it was allocated on, which
//   runs after everything queued before the free. A block also used on other streams (record_stream)
//   returns to the bins only once events recorded on those streams at free time have completed.
// - When the device is out of memory, cached segments that are entirely free are released and the
//   request is retried once.
//
// The device calls go through DeviceMemoryOps so the bookkeeping can be tested without a GPU.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace dtrain::cuda {

// The device calls the allocator needs. Streams and events are opaque handles.
class DeviceMemoryOps {
 public:
  virtual ~DeviceMemoryOps() = default;
  virtual void* raw_malloc(size_t nbytes) = 0;  // nullptr when the device is out of memory
  virtual void raw_free(void* ptr) = 0;
  virtual void* record_event(
      void* stream) = 0;  // an event marking the work queued on stream so far
  virtual bool event_done(void* event) = 0;
  virtual void destroy_event(void* event) = 0;
  virtual void synchronize() = 0;  // waits for all work on the device (a counted host sync)
};

struct AllocatorStats {
  size_t allocated = 0;  // bytes in blocks handed out (rounded sizes)
  size_t reserved = 0;   // bytes obtained from the device (segments)
  size_t peak_allocated = 0;
  size_t peak_reserved = 0;
  int64_t allocations = 0;  // allocate() calls served
  int64_t cache_hits = 0;   // ... of which without a new segment
  int64_t segments = 0;     // live segments
  int64_t releases = 0;     // segments returned to the device
  int64_t oom_retries = 0;  // times the cache was flushed to retry an allocation
};

class CachingAllocator {
 public:
  static constexpr size_t kRound = 512;
  static constexpr size_t kSmallRequest = size_t{1} << 20;  // up to this goes to the small pool
  static constexpr size_t kSmallSegment = size_t{2} << 20;
  static constexpr size_t kLargeSegment = size_t{20} << 20;
  static constexpr size_t kLargeRound = size_t{2} << 20;
  static constexpr size_t kMinLargeSplit = size_t{1}
                                           << 20;  // smaller large-pool remainders aren't split

  // `device_name` ("cuda:0") appears in error messages.
  CachingAllocator(std::unique_ptr<DeviceMemoryOps> ops, std::string device_name);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Never returns nullptr; throws dtrain::Error when the device has no room even after flushing.
  void* allocate(size_t nbytes, void* stream);
  // ptr must come from allocate(); nullptr is ignored. Never throws.
  void free(void* ptr);
  // Declares that the block at ptr is also used by work on `stream`: its reuse waits for that work.
  void record_stream(void* ptr, void* stream);
  // Returns every entirely free segment to the device.
  void empty_cache();
  AllocatorStats stats() const;
  void reset_peak();

  static size_t round_size(size_t nbytes);
  static size_t segment_size(size_t rounded);

 private:
  struct Block;
  struct BlockLess {
    bool operator()(const Block* a, const Block* b) const;
  };
  using Bin = std::set<Block*, BlockLess>;
  static constexpr int kBins = 64;
  struct Pool {
    std::array<Bin, kBins> bins;
  };

  Pool& pool_for(size_t rounded) { return rounded <= kSmallRequest ? small_ : large_; }
  static int bin_index(size_t size);
  Block* find_free(Pool& pool, size_t rounded, void* stream);
  void insert_free(Block* block);
  void remove_free(Block* block);
  void release_block(Block* block);
  void process_events();
  bool release_free_segments();
  void note_peaks();

  std::unique_ptr<DeviceMemoryOps> ops_;
  std::string device_name_;
  mutable std::mutex mutex_;
  Pool small_, large_;
  std::unordered_map<void*, Block*> live_;  // allocated blocks by address
  struct PendingEvent {
    void* event;
    Block* block;
  };
  std::vector<PendingEvent> pending_;  // frees waiting for other streams
  AllocatorStats stats_;
};

}  // namespace dtrain::cuda
