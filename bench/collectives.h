// The collective benchmarks behind `dtrain bench allreduce`: one row per message size, in the columns
// and units of nccl-tests, so numbers compare across machines and libraries:
//
//   size count type redop root | out-of-place: time algbw busbw #wrong | in-place: time algbw busbw
//   #wrong | raw: time algbw busbw
//
//   algbw = bytes / time
//   busbw = algbw * 2 (n - 1) / n     all-reduce (each rank sends and receives 2 (n-1)/n of the buffer
//                                      in a ring, so busbw is comparable with the link bandwidth)
//   busbw = algbw * (n - 1) / n       reduce-scatter and all-gather, whose size is the whole buffer
//                                      (the input of reduce-scatter, the output of all-gather)
//   busbw = algbw                     broadcast (root 0)
//
// Out-of-place and in-place as nccl-tests means them: out-of-place has separate send and receive
// buffers; in place, reduce-scatter's output is chunk `rank` of its input, all-gather's input is chunk
// `rank` of its output, and all-reduce and broadcast work on one buffer. Per collective:
//   all_reduce      in-place: dtrain's all_reduce (the dist::ProcessGroup API is in place only).
//                   out-of-place: dtrain has no such call; on a CPU group the library's
//                   MPI_Allreduce(send, recv) called directly (f32, f64, i32, i64; "n/a" for 16-bit
//                   floats, which dtrain reduces with its own MPI operations); "n/a" on GPUs (the NCCL
//                   group does not expose its communicator for an out-of-place ncclAllReduce).
//   broadcast       in-place: dtrain's broadcast. out-of-place: "n/a" (the API is in place only, and
//                   MPI_Bcast has a single buffer).
//   reduce_scatter  both through dtrain (an aliased call is run with MPI_IN_PLACE on CPU groups; NCCL
//   all_gather      detects in place from the pointers itself).
// "n/a" rows hold 0 in their fields.
//
// raw: the library's own call beside dtrain's, to show the cost of dtrain's machinery (queue,
// communication thread, agreement check, watchdog), in the form of the column it is compared with:
// in place for all_reduce and broadcast, out of place for reduce_scatter and all_gather. On the CPU
// (MPI): MPI_Allreduce (dist::ProcessGroup::raw_all_reduce) and MPI_Bcast; reduce-scatter and all-gather
// have none. On GPUs (NCCL): ncclAllReduce, ncclBroadcast, ncclReduceScatter, ncclAllGather on the
// group's stream. GPU times come from CUDA events on the NCCL stream around back-to-back calls (no
// host wait between them), after warm-up calls; CPU times from the host clock around each call and
// its wait. Every time is the slowest rank's mean.
//
// #wrong: after timing, a check run of the same call: for the reductions rank r contributes r + 1
// and every result element must be the sum; all-gather's chunk r must hold r + 1; broadcast's
// elements must equal root 0's values. Summed over the ranks.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "distributed/process_group.h"

namespace dtrain::bench {

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

// One column group of a row: time_us == 0 when the column is "n/a".
struct BenchTiming {
  double time_us = 0, algbw_gbs = 0, busbw_gbs = 0;
  int64_t wrong = 0;  // see #wrong above
  int iters = 0;      // timed calls
  bool measured() const { return time_us > 0; }
};

// One row of any collective's table (the name is historical).
struct AllReduceRow {
  int64_t bytes = 0;  // the whole buffer (see the busbw factors above)
  int64_t count = 0;  // its elements
  BenchTiming out_of_place, in_place;
  // dtrain's column that `raw` is compared with, copied: in place for all_reduce and broadcast, out
  // of place for reduce_scatter and all_gather (what the table printed before it had both columns).
  int iters = 0;
  double time_us = 0, algbw_gbs = 0, busbw_gbs = 0;
  int64_t wrong = 0;
  double raw_time_us = 0, raw_algbw_gbs = 0, raw_busbw_gbs = 0;  // the library's own call (0: none)
};

// The collectives `dtrain bench allreduce --collective` measures.
enum class BenchCollective : uint8_t { all_reduce, reduce_scatter, all_gather, broadcast };
const char* bench_collective_name(BenchCollective c);  // "all_reduce", ...
// "all_reduce", "reduce_scatter", "all_gather", "broadcast", or "all" (the four, in that order).
std::vector<BenchCollective> parse_bench_collectives(const std::string& text);

// busbw / algbw over n ranks (see above).
double allreduce_bus_factor(int n);
double bus_factor(BenchCollective c, int n);

// The table of one collective (collective: every rank calls it). Rank 0 prints a header, one row per
// size as it completes, and a summary to `out` when it is not null.
std::vector<AllReduceRow> bench_collective(dist::ProcessGroup& pg, BenchCollective collective,
                                           const AllReduceBenchOptions& options, std::ostream* out);
// bench_collective(pg, BenchCollective::all_reduce, ...).
std::vector<AllReduceRow> bench_allreduce(dist::ProcessGroup& pg,
                                          const AllReduceBenchOptions& options, std::ostream* out);

// The mean busbw over the rows of at least `min_bytes` (all rows when 0), for dtrain's column that the
// raw call is compared with (AllReduceRow::busbw_gbs) and for the raw call; the ratio is what the
// README quotes.
struct AllReduceSummary {
  double busbw_gbs = 0, raw_busbw_gbs = 0, ratio = 0;
};
AllReduceSummary summarize_allreduce(const std::vector<AllReduceRow>& rows, int64_t min_bytes = 0);

}  // namespace dtrain::bench
