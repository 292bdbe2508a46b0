#include "distributed/bench_allreduce.h"

#include <cmath>
#include <cstdio>
#include <ostream>

namespace dtrain::dist {

double allreduce_bus_factor(int n) { return n > 1 ? 2.0 * (n - 1) / n : 0.0; }

namespace {

std::string format(const char* fmt, auto... args) {
  char line[256];
  std::snprintf(line, sizeof line, fmt, args...);
  return line;
}

// Average seconds per call of `call`, as the slowest rank saw it, after `warmup` untimed calls. Every
// rank must make the same number of calls, so the count comes from one probe call whose time the
// ranks agree on (max): `iters`, or fewer when that would take more than `max_seconds`.
template <class Call>
double time_calls(ProcessGroup& pg, int warmup, int iters, double max_seconds, int& done,
                  Call call) {
  for (int i = 0; i < warmup; ++i) call();
  pg.barrier()->wait();
  const Clock::time_point probe_start = Clock::now();
  call();
  const double probe = all_reduce_value(
      pg, std::chrono::duration<double>(Clock::now() - probe_start).count(), ReduceOp::max);
  int n = iters;
  if (probe * iters > max_seconds) n = std::max(2, static_cast<int>(max_seconds / probe));
  pg.barrier()->wait();
  const Clock::time_point start = Clock::now();
  for (int i = 0; i < n; ++i) call();
  const double local = std::chrono::duration<double>(Clock::now() - start).count() / n;
  done = n;
  return all_reduce_value(pg, local, ReduceOp::max);
}

}  // namespace

std::vector<AllReduceRow> bench_allreduce(ProcessGroup& pg, const AllReduceBenchOptions& options,
                                          std::ostream* out) {
  DTRAIN_CHECK(options.min_bytes > 0 && options.max_bytes >= options.min_bytes && options.factor > 1,
               "bench allreduce: sizes from ", options.min_bytes, " to ", options.max_bytes,
               " bytes by x", options.factor, " make no sense; need 0 < min <= max and factor > 1");
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
    const double t = time_calls(pg, options.warmup_iters, options.iters, options.max_seconds_per_size,
                                done, [&] { pg.all_reduce(buf)->wait(); });
    int raw_done = 0;
    const double raw = time_calls(pg, options.warmup_iters, options.iters,
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
