// The collective benchmarks' arithmetic and tables on a one-rank MPI group (no launcher needed): the
// busbw factors nccl-tests defines, the --collective names, the CPU all-reduce table as earlier runs
// printed it, and the reduce-scatter and all-gather tables with their correctness check.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "distributed/bench_allreduce.h"
#include "distributed/mpi/process_group_mpi.h"

namespace dtrain::dist {
namespace {

AllReduceBenchOptions small_sizes() {
  AllReduceBenchOptions o;
  o.min_bytes = 1024;
  o.max_bytes = 4096;
  o.warmup_iters = 1;
  o.iters = 2;
  return o;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

TEST(BenchCollectives, BusFactorsAreNcclTests) {
  EXPECT_DOUBLE_EQ(bus_factor(BenchCollective::all_reduce, 4), 1.5);  // 2(n-1)/n
  EXPECT_DOUBLE_EQ(bus_factor(BenchCollective::reduce_scatter, 4), 0.75);  // (n-1)/n
  EXPECT_DOUBLE_EQ(bus_factor(BenchCollective::all_gather, 8), 0.875);
  EXPECT_DOUBLE_EQ(allreduce_bus_factor(2), 1.0);
  EXPECT_EQ(bus_factor(BenchCollective::all_gather, 1), 0.0);
}

TEST(BenchCollectives, NamesOnTheCommandLine) {
  EXPECT_EQ(parse_bench_collectives("all").size(), 3u);
  EXPECT_EQ(parse_bench_collectives("reduce_scatter"),
            std::vector<BenchCollective>{BenchCollective::reduce_scatter});
  try {
    parse_bench_collectives("allgather");
    ADD_FAILURE() << "no error for 'allgather'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all_reduce, reduce_scatter, all_gather, all"),
              std::string::npos)
        << e.what();
  }
}

TEST(BenchCollectives, CpuAllReduceTableIsUnchanged) {
  auto pg = ProcessGroupMPI::create();
  std::ostringstream out;
  const std::vector<AllReduceRow> rows =
      bench_collective(*pg, BenchCollective::all_reduce, small_sizes(), &out);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2].bytes, 4096);
  EXPECT_EQ(rows[2].count, 1024);
  for (const AllReduceRow& r : rows) EXPECT_EQ(r.wrong, 0);
  EXPECT_EQ(first_line(out.str()),
            "# all_reduce(sum) over 1 ranks, mpi on cpu, f32; raw = the library's blocking "
            "all-reduce called directly");
  EXPECT_NE(out.str().find("raw time(us)"), std::string::npos);
  EXPECT_EQ(out.str().find("redop"), std::string::npos) << out.str();
}

TEST(BenchCollectives, CpuReduceScatterAndAllGatherTables) {
  auto pg = ProcessGroupMPI::create();
  for (BenchCollective c : {BenchCollective::reduce_scatter, BenchCollective::all_gather}) {
    std::ostringstream out;
    const std::vector<AllReduceRow> rows = bench_collective(*pg, c, small_sizes(), &out);
    ASSERT_EQ(rows.size(), 3u);
    for (const AllReduceRow& r : rows) {
      EXPECT_EQ(r.wrong, 0);
      EXPECT_GT(r.time_us, 0.0);
      EXPECT_EQ(r.raw_time_us, 0.0);  // MPI has no raw call for these here
    }
    const std::string text = out.str();
    EXPECT_EQ(first_line(text).rfind(std::string("# ") + bench_collective_name(c) + " over 1 ranks", 0),
              0u)
        << text;
    EXPECT_NE(text.find("busbw = algbw * (n-1)/n"), std::string::npos) << text;
    EXPECT_NE(text.find(c == BenchCollective::all_gather ? "   none " : "    sum "), std::string::npos)
        << text;
    EXPECT_NE(text.find("# avg busbw"), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace dtrain::dist
