#include "distributed/bench_allreduce.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <ostream>

#ifdef DTRAIN_WITH_CUDA
#include "distributed/nccl/process_group_nccl.h"
#endif

namespace dtrain::dist {

double allreduce_bus_factor(int n) { return n > 1 ? 2.0 * (n - 1) / n : 0.0; }

double bus_factor(BenchCollective c, int n) {
  if (c == BenchCollective::all_reduce) return allreduce_bus_factor(n);
  return n > 1 ? static_cast<double>(n - 1) / n : 0.0;
}

const char* bench_collective_name(BenchCollective c) {
  switch (c) {
    case BenchCollective::all_reduce: return "all_reduce";
    case BenchCollective::reduce_scatter: return "reduce_scatter";
    case BenchCollective::all_gather: return "all_gather";
  }
  return "?";
}

std::vector<BenchCollective> parse_bench_collectives(const std::string& text) {
  const std::vector<BenchCollective> every = {BenchCollective::all_reduce,
                                              BenchCollective::reduce_scatter,
                                              BenchCollective::all_gather};
  if (text == "all") return every;
  for (BenchCollective c : every) {
    if (text == bench_collective_name(c)) return {c};
  }
  throw Error("--collective '" + text + "' is not one of all_reduce, reduce_scatter, all_gather, all");
}

namespace {

std::string format(const char* fmt, auto... args) {
  char line[256];
  std::snprintf(line, sizeof line, fmt, args...);
  return line;
}

// Seconds per call of `issue` over `calls` back-to-back calls, as this rank measured them.
using Timer = std::function<double(int calls, const std::function<void()>& issue)>;

// The host clock around calls that each wait for their collective (CPU groups).
double host_time(int calls, const std::function<void()>& issue) {
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < calls; ++i) issue();
  return std::chrono::duration<double>(Clock::now() - start).count() / calls;
}

// Average seconds per call of `issue`, as the slowest rank saw it, after `warmup` untimed calls.
// Every rank must make the same number of calls, so the count comes from one probe call whose time
// the ranks agree on (max): `iters`, or fewer when that would take more than `max_seconds`.
double time_calls(ProcessGroup& pg, const Timer& timer, int warmup, int iters, double max_seconds,
                  int& done, const std::function<void()>& issue) {
  if (warmup > 0) timer(warmup, issue);
  pg.barrier()->wait();
  const double probe = all_reduce_value(pg, timer(1, issue), ReduceOp::max);
  int n = iters;
  if (probe * iters > max_seconds) n = std::max(2, static_cast<int>(max_seconds / probe));
  pg.barrier()->wait();
  const double local = timer(n, issue);
  done = n;
  return all_reduce_value(pg, local, ReduceOp::max);
}

void check_options(const AllReduceBenchOptions& options) {
  DTRAIN_CHECK(options.min_bytes > 0 && options.max_bytes >= options.min_bytes && options.factor > 1,
               "bench allreduce: sizes from ", options.min_bytes, " to ", options.max_bytes,
               " bytes by x", options.factor, " make no sense; need 0 < min <= max and factor > 1");
  DTRAIN_CHECK(options.iters > 0 && options.warmup_iters >= 0, "bench allreduce: --iters ",
               options.iters, " must be positive");
}

// The CPU group's all-reduce table (its format is what earlier runs and the README compare with).
std::vector<AllReduceRow> cpu_allreduce_table(ProcessGroup& pg,
                                              const AllReduceBenchOptions& options,
                                              std::ostream* out) {
  const bool print = out != nullptr && pg.rank() == 0;
  const int n = pg.size();
  const size_t elem = dtype_size(options.dtype);
  if (print) {
    *out << "# all_reduce(sum) over " << n << " ranks, " << pg.backend_name() << " on "
         << pg.device().str() << ", " << dtype_name(options.dtype)
         << "; raw = the library's blocking all-reduce called directly\n"
         << "# busbw = algbw * 2(n-1)/n = algbw * " << format("%.3f", allreduce_bus_factor(n))
         << "\n"
         << format("# %12s %12s %6s %10s %10s %10s %12s %10s %10s %7s\n", "size(B)", "count", "type",
                   "time(us)", "algbw", "busbw", "raw time(us)", "raw algbw", "raw busbw",
                   "#wrong")
         << format("# %12s %12s %6s %10s %10s %10s %12s %10s %10s %7s\n", "", "", "", "", "(GB/s)",
                   "(GB/s)", "", "(GB/s)", "(GB/s)", "");
    out->flush();
  }
  std::vector<AllReduceRow> rows;
  for (int64_t bytes = options.min_bytes; bytes <= options.max_bytes; bytes *= options.factor) {
    AllReduceRow row;
    row.count = std::max<int64_t>(1, bytes / static_cast<int64_t>(elem));
    row.bytes = row.count * static_cast<int64_t>(elem);
    // Values stay small through the repeated sums: the buffer holds 0 until the correctness check.
    Tensor buf = Tensor::zeros({row.count}, options.dtype, pg.device());
    int done = 0;
    const double t = time_calls(pg, host_time, options.warmup_iters, options.iters,
                                options.max_seconds_per_size, done,
                                [&] { pg.all_reduce(buf)->wait(); });
    int raw_done = 0;
    const double raw = time_calls(pg, host_time, options.warmup_iters, options.iters,
                                  options.max_seconds_per_size, raw_done,
                                  [&] { pg.raw_all_reduce(buf); });
    row.iters = done;
    row.time_us = t * 1e6;
    row.algbw_gbs = static_cast<double>(row.bytes) / t / 1e9;
    row.busbw_gbs = row.algbw_gbs * allreduce_bus_factor(n);
    row.raw_time_us = raw * 1e6;
    row.raw_algbw_gbs = static_cast<double>(row.bytes) / raw / 1e9;
    row.raw_busbw_gbs = row.raw_algbw_gbs * allreduce_bus_factor(n);

    // Check: rank r contributes r + 1, so every element must be n (n + 1) / 2 (exact in every dtype
    // for the world sizes a benchmark runs at).
    buf.fill_(pg.rank() + 1.0);
    pg.all_reduce(buf)->wait();
    const double expected = n * (n + 1) / 2.0;
    std::vector<double> got = buf.to_vector<double>();
    int64_t wrong = 0;
    for (double v : got) wrong += v != expected;
    row.wrong = static_cast<int64_t>(all_reduce_value(pg, static_cast<double>(wrong), ReduceOp::sum));

    if (print) {
      *out << format("  %12lld %12lld %6s %10.1f %10.3f %10.3f %12.1f %10.3f %10.3f %7lld\n",
                     static_cast<long long>(row.bytes), static_cast<long long>(row.count),
                     dtype_name(options.dtype), row.time_us, row.algbw_gbs, row.busbw_gbs,
                     row.raw_time_us, row.raw_algbw_gbs, row.raw_busbw_gbs,
                     static_cast<long long>(row.wrong));
      out->flush();
    }
    rows.push_back(row);
  }
  if (print) {
    AllReduceSummary all = summarize_allreduce(rows);
    AllReduceSummary large = summarize_allreduce(rows, 1 << 20);
    *out << format("# avg busbw: %.3f GB/s (raw %.3f GB/s, ratio %.2f)", all.busbw_gbs,
                   all.raw_busbw_gbs, all.ratio);
    if (large.busbw_gbs > 0) {
      *out << format("; sizes >= 1 MiB: %.3f GB/s (raw %.3f GB/s, ratio %.2f)", large.busbw_gbs,
                     large.raw_busbw_gbs, large.ratio);
    }
    *out << "\n";
    out->flush();
  }
  return rows;
}

// The buffers of one row: `whole` is the buffer the size counts (all-reduce: the one buffer;
// reduce-scatter: the input; all-gather: the output), `part` its 1/n chunk.
struct Buffers {
  Tensor whole, part;
};

Buffers make_buffers(BenchCollective c, int64_t bytes, DType dtype, Device device, int n) {
  const int64_t elements = bytes / static_cast<int64_t>(dtype_size(dtype));
  if (c == BenchCollective::all_reduce) {
    return {Tensor::zeros({std::max<int64_t>(1, elements)}, dtype, device), Tensor()};
  }
  const int64_t chunk = std::max<int64_t>(1, elements / n);
  return {Tensor::zeros({chunk * n}, dtype, device), Tensor::zeros({chunk}, dtype, device)};
}

// Runs `c` once through the group: `wait` for CPU groups, whose timer needs each call finished.
void run_collective(ProcessGroup& pg, BenchCollective c, const Buffers& b, bool wait) {
  WorkPtr w;
  switch (c) {
    case BenchCollective::all_reduce: w = pg.all_reduce(b.whole); break;
    case BenchCollective::reduce_scatter: w = pg.reduce_scatter(b.part, b.whole); break;
    case BenchCollective::all_gather: w = pg.all_gather(b.whole, b.part); break;
  }
  if (wait) w->wait();
}

// After timing: rank r contributes r + 1 everywhere; elements that differ from the expected result
// (exact in every dtype for the world sizes a benchmark runs at), summed over the ranks.
int64_t count_wrong(ProcessGroup& pg, BenchCollective c, Buffers b) {
  const int n = pg.size();
  const double sum = n * (n + 1) / 2.0;
  Tensor result;
  if (c == BenchCollective::all_reduce) {
    b.whole.fill_(pg.rank() + 1.0);
    result = b.whole;
  } else if (c == BenchCollective::reduce_scatter) {
    b.whole.fill_(pg.rank() + 1.0);
    result = b.part;
  } else {
    b.part.fill_(pg.rank() + 1.0);
    result = b.whole;
  }
  run_collective(pg, c, b, true);
  const std::vector<double> got = result.to_vector<double>();
  const int64_t chunk = b.part.defined() ? b.part.numel() : 1;
  int64_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double expected = c == BenchCollective::all_gather
                                ? static_cast<double>(static_cast<int64_t>(i) / chunk + 1)
                                : sum;
    wrong += got[i] != expected;
  }
  b.whole.zero_();
  if (b.part.defined()) b.part.zero_();
  return static_cast<int64_t>(all_reduce_value(pg, static_cast<double>(wrong), ReduceOp::sum));
}

std::vector<AllReduceRow> collective_table(ProcessGroup& pg, BenchCollective c,
                                           const AllReduceBenchOptions& options,
                                           std::ostream* out) {
  const bool gpu = pg.device().is_cuda();
  Timer timer = host_time;
  std::function<void(const Buffers&)> raw;  // empty: no raw call to compare with
  std::string raw_name;
#ifdef DTRAIN_WITH_CUDA
  if (gpu) {
    auto* nccl = dynamic_cast<ProcessGroupNCCL*>(&pg);
    DTRAIN_CHECK(nccl != nullptr, "bench allreduce: the ", pg.backend_name(), " group on ",
                 pg.device().str(), " is not an NCCL group");
    timer = [nccl](int calls, const std::function<void()>& issue) {
      return nccl->time_on_stream(calls, issue);
    };
    raw = [nccl, c](const Buffers& b) {
      switch (c) {
        case BenchCollective::all_reduce:
          nccl->raw_collective(CollectiveKind::all_reduce, b.whole);
          break;
        case BenchCollective::reduce_scatter:
          nccl->raw_collective(CollectiveKind::reduce_scatter, b.part, b.whole);
          break;
        case BenchCollective::all_gather:
          nccl->raw_collective(CollectiveKind::all_gather, b.whole, b.part);
          break;
      }
    };
    raw_name = c == BenchCollective::all_reduce       ? "ncclAllReduce"
               : c == BenchCollective::reduce_scatter ? "ncclReduceScatter"
                                                      : "ncclAllGather";
  }
#endif
  if (!gpu && c == BenchCollective::all_reduce) {
    raw = [&pg](const Buffers& b) { pg.raw_all_reduce(b.whole); };
    raw_name = "MPI_Allreduce";
  }
  const bool print = out != nullptr && pg.rank() == 0;
  const int n = pg.size();
  const double factor = bus_factor(c, n);
  const char* redop = c == BenchCollective::all_gather ? "none" : "sum";
  if (print) {
    *out << "# " << bench_collective_name(c) << " over " << n << " ranks, " << pg.backend_name()
         << " on " << pg.device().str() << ", " << dtype_name(options.dtype) << "; "
         << (gpu ? "times from CUDA events on the NCCL stream around back-to-back calls"
                 : "times on the host around each call and its wait")
         << ", the slowest rank's mean"
         << (raw ? "; raw = " + raw_name + " called directly" : std::string()) << "\n"
         << "# busbw = algbw * " << (c == BenchCollective::all_reduce ? "2(n-1)/n" : "(n-1)/n")
         << " = algbw * " << format("%.3f", factor) << "\n";
    if (raw) {
      *out << format("# %12s %12s %6s %6s %10s %10s %10s %12s %10s %10s %7s\n", "size(B)", "count",
                     "type", "redop", "time(us)", "algbw", "busbw", "raw time(us)", "raw algbw",
                     "raw busbw", "#wrong")
           << format("# %12s %12s %6s %6s %10s %10s %10s %12s %10s %10s %7s\n", "", "", "", "", "",
                     "(GB/s)", "(GB/s)", "", "(GB/s)", "(GB/s)", "");
    } else {
      *out << format("# %12s %12s %6s %6s %10s %10s %10s %7s\n", "size(B)", "count", "type",
                     "redop", "time(us)", "algbw", "busbw", "#wrong")
           << format("# %12s %12s %6s %6s %10s %10s %10s %7s\n", "", "", "", "", "", "(GB/s)",
                     "(GB/s)", "");
    }
    out->flush();
  }
  std::vector<AllReduceRow> rows;
  for (int64_t bytes = options.min_bytes; bytes <= options.max_bytes; bytes *= options.factor) {
    const Buffers b = make_buffers(c, bytes, options.dtype, pg.device(), n);
    AllReduceRow row;
    row.count = b.whole.numel();
    row.bytes = row.count * static_cast<int64_t>(dtype_size(options.dtype));
    // The group's calls are not waited for on a GPU: its stream runs them back to back.
    const double t = time_calls(pg, timer, options.warmup_iters, options.iters,
                                options.max_seconds_per_size, row.iters,
                                [&] { run_collective(pg, c, b, !gpu); });
    row.time_us = t * 1e6;
    row.algbw_gbs = static_cast<double>(row.bytes) / t / 1e9;
    row.busbw_gbs = row.algbw_gbs * factor;
    if (raw) {
      int raw_done = 0;
      const double r = time_calls(pg, timer, options.warmup_iters, options.iters,
                                  options.max_seconds_per_size, raw_done, [&] { raw(b); });
      row.raw_time_us = r * 1e6;
      row.raw_algbw_gbs = static_cast<double>(row.bytes) / r / 1e9;
      row.raw_busbw_gbs = row.raw_algbw_gbs * factor;
    }
    row.wrong = count_wrong(pg, c, b);
    if (print) {
      *out << format("  %12lld %12lld %6s %6s %10.1f %10.3f %10.3f", static_cast<long long>(row.bytes),
                     static_cast<long long>(row.count), dtype_name(options.dtype), redop,
                     row.time_us, row.algbw_gbs, row.busbw_gbs);
      if (raw) {
        *out << format(" %12.1f %10.3f %10.3f", row.raw_time_us, row.raw_algbw_gbs,
                       row.raw_busbw_gbs);
      }
      *out << format(" %7lld\n", static_cast<long long>(row.wrong));
      out->flush();
    }
    rows.push_back(row);
  }
  if (print) {
    const AllReduceSummary all = summarize_allreduce(rows);
    const AllReduceSummary large = summarize_allreduce(rows, 1 << 20);
    *out << format("# avg busbw: %.3f GB/s", all.busbw_gbs);
    if (raw) *out << format(" (raw %.3f GB/s, ratio %.2f)", all.raw_busbw_gbs, all.ratio);
    if (large.busbw_gbs > 0) {
      *out << format("; sizes >= 1 MiB: %.3f GB/s", large.busbw_gbs);
      if (raw) *out << format(" (raw %.3f GB/s, ratio %.2f)", large.raw_busbw_gbs, large.ratio);
    }
    *out << "\n";
    out->flush();
  }
  return rows;
}

}  // namespace

std::vector<AllReduceRow> bench_allreduce(ProcessGroup& pg, const AllReduceBenchOptions& options,
                                          std::ostream* out) {
  return bench_collective(pg, BenchCollective::all_reduce, options, out);
}

std::vector<AllReduceRow> bench_collective(ProcessGroup& pg, BenchCollective collective,
                                           const AllReduceBenchOptions& options, std::ostream* out) {
  check_options(options);
  if (!pg.device().is_cuda() && collective == BenchCollective::all_reduce) {
    return cpu_allreduce_table(pg, options, out);
  }
  return collective_table(pg, collective, options, out);
}

AllReduceSummary summarize_allreduce(const std::vector<AllReduceRow>& rows, int64_t min_bytes) {
  AllReduceSummary s;
  int count = 0;
  for (const AllReduceRow& r : rows) {
    if (r.bytes < min_bytes) continue;
    s.busbw_gbs += r.busbw_gbs;
    s.raw_busbw_gbs += r.raw_busbw_gbs;
    ++count;
  }
  if (count == 0) return s;
  s.busbw_gbs /= count;
  s.raw_busbw_gbs /= count;
  s.ratio = s.raw_busbw_gbs > 0 ? s.busbw_gbs / s.raw_busbw_gbs : 0;
  return s;
}

}  // namespace dtrain::dist
