#include "core/backend/cuda/caching_allocator.h"

#include <cstdio>
#include <functional>

#include "core/error.h"

namespace dtrain::cuda {

// One piece of a segment. Blocks of a segment form a doubly linked list in address order; a block is
// either handed out (allocated), free in a bin, or free but waiting for events (pending > 0).
struct CachingAllocator::Block {
  char* ptr = nullptr;
  size_t size = 0;
  void* stream = nullptr;
  bool small = false;  // which pool it belongs to (fixed at segment creation)
  bool allocated = false;
  int pending = 0;
  Block* prev = nullptr;
  Block* next = nullptr;
  std::vector<void*> other_streams;
};

namespace {

std::string format_bytes(size_t n) {
  char buf[32];
  const double v = static_cast<double>(n);
  if (n >= (size_t{1} << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", v / (1 << 30));
  } else if (n >= (size_t{1} << 20)) {
    std::snprintf(buf, sizeof buf, "%.2f MiB", v / (1 << 20));
  } else {
    std::snprintf(buf, sizeof buf, "%zu bytes", n);
  }
  return buf;
}

}  // namespace

bool CachingAllocator::BlockLess::operator()(const Block* a, const Block* b) const {
  if (a->stream != b->stream) return std::less<void*>()(a->stream, b->stream);
  if (a->size != b->size) return a->size < b->size;
  return std::less<char*>()(a->ptr, b->ptr);
}

CachingAllocator::CachingAllocator(std::unique_ptr<DeviceMemoryOps> ops, std::string device_name)
    : ops_(std::move(ops)), device_name_(std::move(device_name)) {}

CachingAllocator::~CachingAllocator() {
  // Return every segment; the heads of segments are the blocks without a predecessor.
  std::vector<Block*> all;
  for (Pool* pool : {&small_, &large_}) {
    for (Bin& bin : pool->bins) all.insert(all.end(), bin.begin(), bin.end());
  }
  for (auto& [ptr, block] : live_) all.push_back(block);
  for (PendingEvent& p : pending_) {
    try {
      ops_->destroy_event(p.event);
    } catch (...) {}
    if (p.block->pending > 0) {
      p.block->pending = 0;  // count each pending block once
      all.push_back(p.block);
    }
  }
  for (Block* b : all) {
    if (b->prev == nullptr) {
      try {
        ops_->raw_free(b->ptr);
      } catch (...) {}
    }
  }
  for (Block* b : all) delete b;
}

size_t CachingAllocator::round_size(size_t nbytes) {
  if (nbytes < kRound) return kRound;
  return (nbytes + kRound - 1) / kRound * kRound;
}

size_t CachingAllocator::segment_size(size_t rounded) {
  if (rounded <= kSmallRequest) return kSmallSegment;
  if (rounded < kLargeSegment / 2) return kLargeSegment;
  return (rounded + kLargeRound - 1) / kLargeRound * kLargeRound;
}

int CachingAllocator::bin_index(size_t size) {
  int i = 0;
  while (i < kBins - 1 && (size >> (i + 1)) != 0) ++i;
  return i;  // floor(log2(size))
}

CachingAllocator::Block* CachingAllocator::find_free(Pool& pool, size_t rounded, void* stream) {
  Block key;
  key.stream = stream;
  key.size = rounded;
  key.ptr = nullptr;
  // Blocks in lower bins are smaller than 2^floor(log2(rounded)) <= rounded, so the search starts at
  // the request's own bin; within a bin, lower_bound gives the smallest block of this stream that fits.
  for (int i = bin_index(rounded); i < kBins; ++i) {
    Bin& bin = pool.bins[static_cast<size_t>(i)];
    auto it = bin.lower_bound(&key);
    if (it != bin.end() && (*it)->stream == stream) return *it;
  }
  return nullptr;
}

void CachingAllocator::remove_free(Block* block) {
  Pool& pool = block->small ? small_ : large_;
  pool.bins[static_cast<size_t>(bin_index(block->size))].erase(block);
}

void CachingAllocator::insert_free(Block* block) {
  auto mergeable = [](const Block* b) { return b && !b->allocated && b->pending == 0; };
  if (mergeable(block->prev)) {
    Block* prev = block->prev;
    remove_free(prev);
    prev->size += block->size;
    prev->next = block->next;
    if (block->next) block->next->prev = prev;
    delete block;
    block = prev;
  }
  if (mergeable(block->next)) {
    Block* next = block->next;
    remove_free(next);
    block->size += next->size;
    block->next = next->next;
    if (next->next) next->next->prev = block;
    delete next;
  }
  Pool& pool = block->small ? small_ : large_;
  pool.bins[static_cast<size_t>(bin_index(block->size))].insert(block);
}

void CachingAllocator::process_events() {
  size_t kept = 0;
  for (size_t i = 0; i < pending_.size(); ++i) {
    PendingEvent p = pending_[i];
    if (ops_->event_done(p.event)) {
      ops_->destroy_event(p.event);
      if (--p.block->pending == 0) insert_free(p.block);
    } else {
      pending_[kept++] = p;
    }
  }
  pending_.resize(kept);
}

bool CachingAllocator::release_free_segments() {
  std::vector<Block*> whole;
  for (Pool* pool : {&small_, &large_}) {
    for (Bin& bin : pool->bins) {
      for (Block* b : bin) {
        if (b->prev == nullptr && b->next == nullptr) whole.push_back(b);
      }
    }
  }
  for (Block* b : whole) {
    remove_free(b);
    ops_->raw_free(b->ptr);
    stats_.reserved -= b->size;
    stats_.segments -= 1;
    stats_.releases += 1;
    delete b;
  }
  return !whole.empty();
}

void CachingAllocator::note_peaks() {
  if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
  if (stats_.reserved > stats_.peak_reserved) stats_.peak_reserved = stats_.reserved;
}

void* CachingAllocator::allocate(size_t nbytes, void* stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  process_events();
  const size_t rounded = round_size(nbytes);
  const bool small = rounded <= kSmallRequest;
  Block* block = find_free(small ? small_ : large_, rounded, stream);
  if (block) {
    remove_free(block);
    stats_.cache_hits += 1;
  } else {
    const size_t seg = segment_size(rounded);
    void* p = ops_->raw_malloc(seg);
    if (!p) {
      // Out of memory: wait for pending frees, give cached segments back, and try once more.
      stats_.oom_retries += 1;
      ops_->synchronize();
      process_events();
      release_free_segments();
      p = ops_->raw_malloc(seg);
    }
    if (!p) {
      throw Error(detail::concat(
          device_name_, " is out of memory allocating ", format_bytes(nbytes), " (tensors hold ",
          format_bytes(stats_.allocated), ", dtrain reserves ", format_bytes(stats_.reserved),
          "); reduce the batch size or the model, or free other processes on this GPU"));
    }
    block = new Block;
    block->ptr = static_cast<char*>(p);
    block->size = seg;
    block->stream = stream;
    block->small = small;
    stats_.reserved += seg;
    stats_.segments += 1;
  }
  // Marked first: the remainder split off below must not merge back into it.
  block->allocated = true;
  // Split off what the request does not need. Small remainders of large blocks stay attached: a
  // sliver of under 1 MiB is rarely reusable and splitting it fragments the segment.
  const size_t rest_size = block->size - rounded;
  if (small ? rest_size >= kRound : rest_size > kMinLargeSplit) {
    Block* rest = new Block;
    rest->ptr = block->ptr + rounded;
    rest->size = rest_size;
    rest->stream = stream;
    rest->small = block->small;
    rest->prev = block;
    rest->next = block->next;
    if (block->next) block->next->prev = rest;
    block->next = rest;
    block->size = rounded;
    insert_free(rest);
  }
  live_[block->ptr] = block;
  stats_.allocated += block->size;
  stats_.allocations += 1;
  note_peaks();
  return block->ptr;
}

void CachingAllocator::free(void* ptr) {
  if (!ptr) return;
  try {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(ptr);
    if (it == live_.end()) return;  // not ours; freeing it would corrupt the pools
    Block* block = it->second;
    live_.erase(it);
    block->allocated = false;
    stats_.allocated -= block->size;
    if (block->other_streams.empty()) {
      insert_free(block);
      return;
    }
    // Work on other streams may still read or write the block: it returns to the bins once the
    // events recorded on those streams now have completed.
    std::vector<void*> streams;
    streams.swap(block->other_streams);
    block->pending = static_cast<int>(streams.size());
    for (void* s : streams) pending_.push_back({ops_->record_event(s), block});
  } catch (...) {
    // free runs from destructors and must not throw; a block whose event could not be recorded is
    // left out of the pools (leaked) rather than reused too early.
  }
}

void CachingAllocator::record_stream(void* ptr, void* stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  DTRAIN_CHECK(it != live_.end(), "record_stream: ", ptr, " is not a live allocation on ",
               device_name_);
  Block* block = it->second;
  if (stream == block->stream) return;
  for (void* s : block->other_streams) {
    if (s == stream) return;
  }
  block->other_streams.push_back(stream);
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mutex_);
  ops_->synchronize();
  process_events();
  release_free_segments();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_allocated = stats_.allocated;
  stats_.peak_reserved = stats_.reserved;
}

}  // namespace dtrain::cuda
