// The all-reduce benchmark behind `dtrain bench allreduce`: one row per message size, in the units
// nccl-tests uses so numbers compare across machines and libraries.
//
//   algbw = bytes / time
//   busbw = algbw * 2 (n - 1) / n     (each rank sends and receives 2 (n-1)/n of the buffer in a ring
//                                      all-reduce, so busbw is comparable with the link bandwidth)
//
// Each row also times the library's own blocking call on the same buffer (ProcessGroup::raw_all_reduce:
// MPI_Allreduce, or ncclAllReduce + stream sync), so the cost of dtrain's asynchronous machinery
// (queue, communication thread, watchdog) shows directly.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <vector>

#include "distributed/process_group.h"

namespace dtrain::dist {

struct AllReduceBenchOptions {
  int64_t min_bytes = 4 << 10;    // 4 KiB
  int64_t max_bytes = 256 << 20;  // 256 MiB
  int64_t factor = 2;             // next size = size * factor
  int warmup_iters = 5;
  int iters = 20;
  // Fewer iterations for large messages: stop a size after this many seconds of timed iterations
  // (at least 2 iterations run).
  double max_seconds_per_size = 2.0;
  DType dtype = DType::f32;
};

struct AllReduceRow {
  int64_t bytes = 0;
  int64_t count = 0;  // elements
  int iters = 0;
  double time_us = 0, algbw_gbs = 0, busbw_gbs = 0;              // dtrain's all_reduce
  double raw_time_us = 0, raw_algbw_gbs = 0, raw_busbw_gbs = 0;  // the library's own call
  int64_t wrong = 0;  // elements that differed from the expected sum in a check after timing
};

// busbw / algbw for an all-reduce over n ranks.
double allreduce_bus_factor(int n);

// Runs every size (collective: every rank calls it). Rank 0 prints a header, one row per size as it
// completes, and a summary to `out` when it is not null. Times are the slowest rank's average.
std::vector<AllReduceRow> bench_allreduce(ProcessGroup& pg, const AllReduceBenchOptions& options,
                                          std::ostream* out);

// The mean busbw over the rows of at least `min_bytes` (all rows when 0), for dtrain and for the raw
// call; the ratio is what the README quotes.
struct AllReduceSummary {
  double busbw_gbs = 0, raw_busbw_gbs = 0, ratio = 0;
};
AllReduceSummary summarize_allreduce(const std::vector<AllReduceRow>& rows, int64_t min_bytes = 0);

}  // namespace dtrain::dist
