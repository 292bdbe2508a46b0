#include "bench/collectives.h"

#include <climits>
#include <cmath>
#include <cstdio>
#include <functional>
#include <ostream>

#include "distributed/mpi/process_group_mpi.h"
#ifdef DTRAIN_WITH_CUDA
#include "distributed/nccl/process_group_nccl.h"
#endif

namespace dtrain::bench {

using dist::CollectiveKind;

using dist::WorkPtr;

using dist::all_reduce_value;
using dist::Clock;
using dist::ProcessGroup;
using dist::ProcessGroupMPI;
using dist::ReduceOp;

double allreduce_bus_factor(int n) { return n > 1 ? 2.0 * (n - 1) / n : 0.0; }

double bus_factor(BenchCollective c, int n) {
  if (c == BenchCollective::all_reduce) return allreduce_bus_factor(n);
  if (c == BenchCollective::broadcast) return 1.0;
  return n > 1 ? static_cast<double>(n - 1) / n : 0.0;
}

const char* bench_collective_name(BenchCollective c) {
  switch (c) {
    case BenchCollective::all_reduce:
      return "all_reduce";
    case BenchCollective::reduce_scatter:
      return "reduce_scatter";
    case BenchCollective::all_gather:
      return "all_gather";
    case BenchCollective::broadcast:
      return "broadcast";
  }
  return "?";
}

std::vector<BenchCollective> parse_bench_collectives(const std::string& text) {
  std::vector<BenchCollective> every = {BenchCollective::all_reduce,
                                        BenchCollective::reduce_scatter,
                                        BenchCollective::all_gather, BenchCollective::broadcast};
  if (text == "all") return every;
  for (BenchCollective c : every) {
    if (text == bench_collective_name(c)) return {c};
  }
  throw Error("--collective '" + text +
              "' is not one of all_reduce, reduce_scatter, all_gather, "
              "broadcast, all");
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
  DTRAIN_CHECK(
      options.min_bytes > 0 && options.max_bytes >= options.min_bytes && options.factor > 1,
      "bench allreduce: sizes from ", options.min_bytes, " to ", options.max_bytes, " bytes by x",
      options.factor, " make no sense; need 0 < min <= max and factor > 1");
  DTRAIN_CHECK(options.iters > 0 && options.warmup_iters >= 0, "bench allreduce: --iters ",
               options.iters, " must be positive");
}

bool in_place_only(BenchCollective c) {
  return c == BenchCollective::all_reduce || c == BenchCollective::broadcast;
}

// The buffers of one row: `whole` is the buffer the size counts (all-reduce, broadcast: the one
// buffer; reduce-scatter: the input; all-gather: the output); `part` a separate 1/n chunk (the
// out-of-place output of reduce-scatter, input of all-gather) and `own` chunk `rank` of `whole` (the
// same in place); `recv` the out-of-place output of the raw MPI_Allreduce.
struct Buffers {
  Tensor whole, part, own, recv;
};

Buffers make_buffers(BenchCollective c, int64_t bytes, DType dtype, Device device, int rank, int n,
                     bool recv) {
  const int64_t elements = bytes / static_cast<int64_t>(dtype_size(dtype));
  Buffers b;
  if (in_place_only(c)) {
    b.whole = Tensor::zeros({std::max<int64_t>(1, elements)}, dtype, device);
    if (recv) b.recv = Tensor::zeros({b.whole.numel()}, dtype, device);
    return b;
  }
  const int64_t chunk = std::max<int64_t>(1, elements / n);
  b.whole = Tensor::zeros({chunk * n}, dtype, device);
  b.part = Tensor::zeros({chunk}, dtype, device);
  b.own = b.whole.narrow(0, rank * chunk, chunk);
  return b;
}

// dtrain's call, out of place (reduce-scatter, all-gather) or in place; `wait` for CPU groups, whose
// timer needs each call finished, and for checks.
void run_dtrain(ProcessGroup& pg, BenchCollective c, const Buffers& b, bool in_place, bool wait) {
  const Tensor& chunk = in_place ? b.own : b.part;
  WorkPtr w;
  switch (c) {
    case BenchCollective::all_reduce:
      w = pg.all_reduce(b.whole);
      break;
    case BenchCollective::reduce_scatter:
      w = pg.reduce_scatter(chunk, b.whole);
      break;
    case BenchCollective::all_gather:
      w = pg.all_gather(b.whole, chunk);
      break;
    case BenchCollective::broadcast:
      w = pg.broadcast(b.whole, 0);
      break;
  }
  if (wait) w->wait();
}

// Root 0's values in the broadcast check: small integers, exact in every dtype.
double root_value(int64_t i) { return static_cast<double>(i % 97 + 1); }

// Fills `in` with this rank's check values, runs `run` once, counts the elements of `out` that differ
// from the expected result, summed over the ranks, and zeroes the buffers again (values stay small
// through the timed calls). `in` and `out` may alias (in place).
int64_t count_wrong(ProcessGroup& pg, BenchCollective c, Tensor in, Tensor out,
                    const std::function<void()>& run) {
  const int n = pg.size();
  const double sum = n * (n + 1) / 2.0;
  out.zero_();
  if (c != BenchCollective::broadcast) {
    in.fill_(pg.rank() + 1.0);
  } else if (pg.rank() == 0) {
    std::vector<float> values(static_cast<size_t>(in.numel()));
    for (size_t i = 0; i < values.size(); ++i) {
      values[i] = static_cast<float>(root_value(static_cast<int64_t>(i)));
    }
    in.copy_(Tensor::from_vector(values, {in.numel()}, in.dtype(), in.device()));
  } else {
    in.fill_(-1.0);
  }
  run();
  const std::vector<double> got = out.to_vector<double>();
  int64_t wrong = 0;
  // all_gather: element k of the output came from rank k / (elements per rank).
  auto source_rank = [&](int64_t k) { return k / in.numel(); };
  for (size_t i = 0; i < got.size(); ++i) {
    const auto k = static_cast<int64_t>(i);
    const double expected = c == BenchCollective::all_gather
                                ? static_cast<double>(source_rank(k) + 1)
                            : c == BenchCollective::broadcast ? root_value(k)
                                                              : sum;
    wrong += got[i] != expected;
  }
  in.zero_();
  out.zero_();
  return static_cast<int64_t>(all_reduce_value(pg, static_cast<double>(wrong), ReduceOp::sum));
}

// The group's communicator duplicated for the raw MPI calls this thread makes (the group's own belongs
// to its communication thread); MPI_COMM_NULL for other groups. Collective: every rank makes one.
class RawMpiComm {
 public:
  explicit RawMpiComm(ProcessGroup& pg) {
    if (auto* mpi = dynamic_cast<ProcessGroupMPI*>(&pg)) MPI_Comm_dup(mpi->comm(), &comm_);
  }
  ~RawMpiComm() {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }
  RawMpiComm(const RawMpiComm&) = delete;
  RawMpiComm& operator=(const RawMpiComm&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

// MPI's own type for a sum over `t`; MPI_DATATYPE_NULL for f16 and bf16, which MPI cannot add.
MPI_Datatype mpi_sum_type(DType t) {
  return t == DType::f16 || t == DType::bf16 ? MPI_DATATYPE_NULL : dist::mpi_type(t);
}

void check_mpi(int rc, const char* call) {
  DTRAIN_CHECK(rc == MPI_SUCCESS, "bench allreduce: ", call, " failed (MPI error ", rc, ")");
}

// The "time algbw busbw #wrong" cells of one column group (`wrong`: with #wrong).
std::string cells(const BenchTiming& t, bool wrong) {
  std::string s = t.measured() ? format(" %10.1f %9.3f %9.3f", t.time_us, t.algbw_gbs, t.busbw_gbs)
                               : format(" %10s %9s %9s", "n/a", "n/a", "n/a");
  if (wrong) {
    s += t.measured() ? format(" %7lld", static_cast<long long>(t.wrong)) : format(" %7s", "n/a");
  }
  return s;
}

double mean_busbw(const std::vector<AllReduceRow>& rows, int64_t min_bytes,
                  BenchTiming AllReduceRow::*form) {
  double sum = 0;
  int count = 0;
  for (const AllReduceRow& r : rows) {
    if (r.bytes < min_bytes || !(r.*form).measured()) continue;
    sum += (r.*form).busbw_gbs;
    ++count;
  }
  return count > 0 ? sum / count : 0;
}

std::vector<AllReduceRow> collective_table(ProcessGroup& pg, BenchCollective c,
                                           const AllReduceBenchOptions& options,
                                           std::ostream* out) {
  const bool gpu = pg.device().is_cuda();
  const int n = pg.size();
  Timer timer = host_time;
  std::function<void(const Buffers&)> raw;  // the library's own call; empty: none
  std::string raw_name;
  // The out-of-place all-reduce of a CPU group: MPI_Allreduce with separate buffers.
  RawMpiComm mpi(pg);
  const MPI_Datatype sum_type = mpi_sum_type(options.dtype);
  const bool mpi_allreduce_oop = !gpu && c == BenchCollective::all_reduce &&
                                 mpi.get() != MPI_COMM_NULL && sum_type != MPI_DATATYPE_NULL;
#ifdef DTRAIN_WITH_CUDA
  if (gpu) {
    auto* nccl = dynamic_cast<dist::ProcessGroupNCCL*>(&pg);
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
        case BenchCollective::broadcast:
          nccl->raw_collective(CollectiveKind::broadcast, b.whole);
          break;
      }
    };
    raw_name = c == BenchCollective::all_reduce       ? "ncclAllReduce"
               : c == BenchCollective::reduce_scatter ? "ncclReduceScatter"
               : c == BenchCollective::all_gather     ? "ncclAllGather"
                                                      : "ncclBroadcast";
  }
#endif
  if (!gpu && c == BenchCollective::all_reduce) {
    raw = [&pg](const Buffers& b) { pg.raw_all_reduce(b.whole); };
    raw_name = "MPI_Allreduce";
  }
  if (!gpu && c == BenchCollective::broadcast && mpi.get() != MPI_COMM_NULL) {
    raw = [&mpi](const Buffers& b) {
      const int64_t bytes = b.whole.numel() * static_cast<int64_t>(dtype_size(b.whole.dtype()));
      DTRAIN_CHECK(bytes <= INT_MAX, "bench allreduce: a raw MPI_Bcast of ", bytes, " bytes");
      check_mpi(MPI_Bcast(b.whole.raw_data(), static_cast<int>(bytes), MPI_BYTE, 0, mpi.get()),
                "MPI_Bcast");
    };
    raw_name = "MPI_Bcast";
  }
  const bool print = out != nullptr && pg.rank() == 0;
  const double factor = bus_factor(c, n);
  const char* name = bench_collective_name(c);
  const bool reduces = c == BenchCollective::all_reduce || c == BenchCollective::reduce_scatter;
  if (print) {
    *out << "# " << name << " over " << n << " ranks, " << pg.backend_name() << " on "
         << pg.device().str() << ", " << dtype_name(options.dtype) << "; "
         << (gpu ? "times from CUDA events on the NCCL stream around back-to-back calls"
                 : "times on the host around each call and its wait")
         << ", the slowest rank's mean\n# out-of-place: "
         << (!in_place_only(c) ? std::string("dtrain's ") + name + " with separate buffers"
             : mpi_allreduce_oop
                 ? std::string("MPI_Allreduce(send, recv) called directly (dtrain's "
                               "all_reduce works in place only)")
                 : std::string("n/a (dtrain's ") + name + " works in place only)")
         << "; in-place: dtrain's " << name
         << (in_place_only(c) ? "" : " on chunk `rank` of the whole buffer")
         << (raw ? "; raw: " + raw_name + " called directly, " +
                       (in_place_only(c) ? "in place" : "out of place")
                 : std::string("; no raw call"))
         << "\n# busbw = algbw * "
         << (c == BenchCollective::all_reduce  ? "2(n-1)/n"
             : c == BenchCollective::broadcast ? "1"
                                               : "(n-1)/n")
         << " = algbw * " << format("%.3f", factor) << "\n"
         << format("# %12s %12s %6s %6s %4s  %-38s  %s", "", "", "", "", "", "out-of-place",
                   raw ? "in-place                                raw" : "in-place")
         << "\n"
         << format("# %12s %12s %6s %6s %4s  %10s %9s %9s %7s  %10s %9s %9s %7s", "size(B)",
                   "count", "type", "redop", "root", "time(us)", "algbw", "busbw", "#wrong",
                   "time(us)", "algbw", "busbw", "#wrong")
         << (raw ? format("  %12s %9s %9s", "raw time(us)", "raw algbw", "raw busbw")
                 : std::string())
         << "\n"
         << format("# %12s %12s %6s %6s %4s  %10s %9s %9s %7s  %10s %9s %9s", "", "", "", "", "",
                   "", "(GB/s)", "(GB/s)", "", "", "(GB/s)", "(GB/s)")
         << (raw ? format(" %7s  %12s %9s %9s", "", "", "(GB/s)", "(GB/s)") : std::string())
         << "\n";
    out->flush();
  }
  std::vector<AllReduceRow> rows;
  for (int64_t bytes = options.min_bytes; bytes <= options.max_bytes; bytes *= options.factor) {
    const Buffers b =
        make_buffers(c, bytes, options.dtype, pg.device(), pg.rank(), n, mpi_allreduce_oop);
    AllReduceRow row;
    row.count = b.whole.numel();
    row.bytes = row.count * static_cast<int64_t>(dtype_size(options.dtype));
    const auto measure = [&](const std::function<void()>& issue) {
      BenchTiming t;
      const double s = time_calls(pg, timer, options.warmup_iters, options.iters,
                                  options.max_seconds_per_size, t.iters, issue);
      t.time_us = s * 1e6;
      t.algbw_gbs = static_cast<double>(row.bytes) / s / 1e9;
      t.busbw_gbs = t.algbw_gbs * factor;
      return t;
    };
    // dtrain's calls are not waited for on a GPU: its stream runs them back to back.
    for (const bool in_place : {false, true}) {
      if (!in_place && in_place_only(c)) continue;
      BenchTiming t = measure([&] { run_dtrain(pg, c, b, in_place, !gpu); });
      const Tensor& chunk = in_place ? b.own : b.part;
      const bool gathers = c == BenchCollective::all_gather;
      const Tensor& in = in_place_only(c) || !gathers ? b.whole : chunk;
      const Tensor& result = in_place_only(c) || gathers ? b.whole : chunk;
      t.wrong = count_wrong(pg, c, in, result, [&] { run_dtrain(pg, c, b, in_place, true); });
      (in_place ? row.in_place : row.out_of_place) = t;
    }
    if (mpi_allreduce_oop) {
      DTRAIN_CHECK(b.whole.numel() <= INT_MAX, "bench allreduce: a raw MPI_Allreduce of ",
                   b.whole.numel(), " elements (MPI counts are int)");
      const auto call = [&] {
        check_mpi(MPI_Allreduce(b.whole.raw_data(), b.recv.raw_data(),
                                static_cast<int>(b.whole.numel()), sum_type, MPI_SUM, mpi.get()),
                  "MPI_Allreduce");
      };
      row.out_of_place = measure(call);
      row.out_of_place.wrong = count_wrong(pg, c, b.whole, b.recv, call);
    }
    const BenchTiming& compared = in_place_only(c) ? row.in_place : row.out_of_place;
    row.iters = compared.iters;
    row.time_us = compared.time_us;
    row.algbw_gbs = compared.algbw_gbs;
    row.busbw_gbs = compared.busbw_gbs;
    row.wrong = compared.wrong;
    if (raw) {
      const BenchTiming r = measure([&] { raw(b); });
      row.raw_time_us = r.time_us;
      row.raw_algbw_gbs = r.algbw_gbs;
      row.raw_busbw_gbs = r.busbw_gbs;
    }
    if (print) {
      *out << format("  %12lld %12lld %6s %6s %4d ", static_cast<long long>(row.bytes),
                     static_cast<long long>(row.count), dtype_name(options.dtype),
                     reduces ? "sum" : "none", c == BenchCollective::broadcast ? 0 : -1)
           << cells(row.out_of_place, true) << " " << cells(row.in_place, true);
      if (raw) {
        *out << format("  %12.1f %9.3f %9.3f", row.raw_time_us, row.raw_algbw_gbs,
                       row.raw_busbw_gbs);
      }
      *out << "\n";
      out->flush();
    }
    rows.push_back(row);
  }
  if (print) {
    const char* compared = in_place_only(c) ? "in-place" : "out-of-place";
    const char* other = in_place_only(c) ? "out-of-place" : "in-place";
    BenchTiming AllReduceRow::*other_form =
        in_place_only(c) ? &AllReduceRow::out_of_place : &AllReduceRow::in_place;
    const auto summary = [&](int64_t min_bytes) {
      const AllReduceSummary s = summarize_allreduce(rows, min_bytes);
      std::string text = format("%s %.3f GB/s", compared, s.busbw_gbs);
      if (raw) text += format(" (raw %.3f GB/s, ratio %.2f)", s.raw_busbw_gbs, s.ratio);
      const double o = mean_busbw(rows, min_bytes, other_form);
      if (o > 0) text += format(", %s %.3f GB/s", other, o);
      return text;
    };
    *out << "# avg busbw: " << summary(0);
    if (rows.back().bytes >= (1 << 20)) *out << "; sizes >= 1 MiB: " << summary(1 << 20);
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
                                           const AllReduceBenchOptions& options,
                                           std::ostream* out) {
  check_options(options);
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

}  // namespace dtrain::bench
