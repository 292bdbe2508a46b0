// The collective benchmarks behind `dtrain bench allreduce`: one row per message size, in the units
// nccl-tests uses so numbers compare across machines and libraries.
//
//   algbw = bytes / time
//   busbw = algbw * 2 (n - 1) / n     all-reduce (each rank sends and receives 2 (n-1)/n of the buffer
//                                      in a ring, so busbw is comparable with the link bandwidth)
//   busbw = algbw * (n - 1) / n       reduce-scatter and all-gather, whose size is the whole buffer
//                                      (the input of reduce-scatter, the output of all-gather)
//
// Each row also times the library's own call on the same buffers, so the cost of dtrain's machinery
// shows directly: on the CPU (MPI) the blocking MPI_Allreduce beside dtrain's queue, communication
// thread and watchdog (all-reduce only: ProcessGroup::raw_all_reduce); on GPUs (NCCL) the bare
// ncclAllReduce / ncclReduceScatter / ncclAllGather on the group's stream beside dtrain's collective
// with its agreement check and events. GPU times come from CUDA events on the NCCL stream around
// back-to-back calls (no host wait between them), after warm-up calls.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
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

// One row of any collective's table (the name is historical).
struct AllReduceRow {
  int64_t bytes = 0;  // the whole buffer (see the busbw factors above)
  int64_t count = 0;  // its elements
  int iters = 0;
  double time_us = 0, algbw_gbs = 0, busbw_gbs = 0;              // dtrain's all_reduce
  double raw_time_us = 0, raw_algbw_gbs = 0, raw_busbw_gbs = 0;  // the library's own call (0: none)
  int64_t wrong = 0;  // elements that differed from the expected sum in a check after timing
};

// The collectives `dtrain bench allreduce --collective` measures.
enum class BenchCollective : uint8_t { all_reduce, reduce_scatter, all_gather };
const char* bench_collective_name(BenchCollective c);  // "all_reduce", ...
// "all_reduce", "reduce_scatter", "all_gather", or "all" (the three, in that order).
std::vector<BenchCollective> parse_bench_collectives(const std::string& text);

// busbw / algbw over n ranks (see above).
double allreduce_bus_factor(int n);
double bus_factor(BenchCollective c, int n);

// The all-reduce table (collective: every rank calls it). Rank 0 prints a header, one row per size as
// it completes, and a summary to `out` when it is not null. Times are the slowest rank's average; on a
// CPU group measured on the host around each call and its wait(), on a GPU group as bench_collective.
std::vector<AllReduceRow> bench_allreduce(ProcessGroup& pg, const AllReduceBenchOptions& options,
                                          std::ostream* out);

// The table of one collective in nccl-tests' columns (size, count, type, redop, time, algbw, busbw,
// the raw call's time, algbw and busbw, #wrong). A GPU group (NCCL) is timed with CUDA events on its
// stream; a CPU group's all-reduce is bench_allreduce's table, unchanged, and its reduce-scatter and
// all-gather are timed like it, without a raw call.
std::vector<AllReduceRow> bench_collective(ProcessGroup& pg, BenchCollective collective,
                                           const AllReduceBenchOptions& options, std::ostream* out);

// The mean busbw over the rows of at least `min_bytes` (all rows when 0), for dtrain and for the raw
// call; the ratio is what the README quotes.
struct AllReduceSummary {
  double busbw_gbs = 0, raw_busbw_gbs = 0, ratio = 0;
};
AllReduceSummary summarize_allreduce(const std::vector<AllReduceRow>& rows, int64_t min_bytes = 0);

}  // namespace dtrain::dist
