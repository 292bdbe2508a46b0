// The collective benchmarks' arithmetic and tables on a one-rank MPI group (no launcher needed): the
// busbw factors nccl-tests defines, the --collective names, and every collective's table in
// nccl-tests' out-of-place / in-place columns with its correctness check.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "bench/collectives.h"
#include "distributed/mpi/process_group_mpi.h"

namespace dtrain::bench {

using dist::ProcessGroupMPI;
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
  EXPECT_DOUBLE_EQ(bus_factor(BenchCollective::all_reduce, 4), 1.5);       // 2(n-1)/n
  EXPECT_DOUBLE_EQ(bus_factor(BenchCollective::reduce_scatter, 4), 0.75);  // (n-1)/n
  EXPECT_DOUBLE_EQ(bus_factor(BenchCollective::all_gather, 8), 0.875);
  EXPECT_DOUBLE_EQ(bus_factor(BenchCollective::broadcast, 8), 1.0);  // busbw = algbw
  EXPECT_DOUBLE_EQ(bus_factor(BenchCollective::broadcast, 1), 1.0);
  EXPECT_DOUBLE_EQ(allreduce_bus_factor(2), 1.0);
  EXPECT_EQ(bus_factor(BenchCollective::all_gather, 1), 0.0);
}

TEST(BenchCollectives, NamesOnTheCommandLine) {
  EXPECT_EQ(
      parse_bench_collectives("all"),
      (std::vector<BenchCollective>{BenchCollective::all_reduce, BenchCollective::reduce_scatter,
                                    BenchCollective::all_gather, BenchCollective::broadcast}));
  EXPECT_EQ(parse_bench_collectives("reduce_scatter"),
            std::vector<BenchCollective>{BenchCollective::reduce_scatter});
  EXPECT_EQ(parse_bench_collectives("broadcast"),
            std::vector<BenchCollective>{BenchCollective::broadcast});
  EXPECT_STREQ(bench_collective_name(BenchCollective::broadcast), "broadcast");
  try {
    parse_bench_collectives("allgather");
    ADD_FAILURE() << "no error for 'allgather'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("all_reduce, reduce_scatter, all_gather, broadcast, all"),
              std::string::npos)
        << e.what();
  }
}

void expect_filled(const BenchTiming& t, const std::string& what) {
  EXPECT_GT(t.time_us, 0.0) << what;
  EXPECT_GT(t.algbw_gbs, 0.0) << what;
  EXPECT_GT(t.iters, 0) << what;
  EXPECT_EQ(t.wrong, 0) << what;
}

// all_reduce: in place through dtrain, out of place through MPI_Allreduce(send, recv), and the raw
// in-place MPI_Allreduce the README's dtrain/raw ratios compare with.
TEST(BenchCollectives, CpuAllReduceTableHasBothColumnsAndRaw) {
  auto pg = ProcessGroupMPI::create();
  std::ostringstream out;
  const std::vector<AllReduceRow> rows =
      bench_collective(*pg, BenchCollective::all_reduce, small_sizes(), &out);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2].bytes, 4096);
  EXPECT_EQ(rows[2].count, 1024);
  for (const AllReduceRow& r : rows) {
    expect_filled(r.in_place, "in-place " + out.str());
    expect_filled(r.out_of_place, "out-of-place " + out.str());
    // The legacy fields are the in-place column, compared with the raw call.
    EXPECT_EQ(r.time_us, r.in_place.time_us);
    EXPECT_EQ(r.wrong, 0);
    EXPECT_GT(r.raw_time_us, 0.0);
  }
  const std::string text = out.str();
  EXPECT_EQ(
      first_line(text).rfind("# all_reduce over 1 ranks, mpi on cpu, f32; times on the host", 0),
      0u)
      << text;
  EXPECT_NE(text.find("out-of-place: MPI_Allreduce(send, recv) called directly"), std::string::npos)
      << text;
  EXPECT_NE(text.find("raw: MPI_Allreduce called directly, in place"), std::string::npos) << text;
  for (const char* column : {"size(B)", "redop", "root", "out-of-place", "in-place", "#wrong",
                             "raw time(us)", "raw busbw"}) {
    EXPECT_NE(text.find(column), std::string::npos) << column << "\n" << text;
  }
  EXPECT_NE(text.find("    sum   -1 "), std::string::npos) << text;
  EXPECT_NE(text.find("# avg busbw: in-place "), std::string::npos) << text;
  for (const AllReduceRow& r : rows) EXPECT_GT(r.raw_algbw_gbs, 0.0);  // busbw: 0 at one rank
}

// reduce_scatter and all_gather: both columns through dtrain (in place: the chunk is chunk `rank` of
// the whole buffer, which ProcessGroupMPI runs with MPI_IN_PLACE); no raw call on the CPU.
TEST(BenchCollectives, CpuReduceScatterAndAllGatherInAndOutOfPlace) {
  auto pg = ProcessGroupMPI::create();
  for (BenchCollective c : {BenchCollective::reduce_scatter, BenchCollective::all_gather}) {
    std::ostringstream out;
    const std::vector<AllReduceRow> rows = bench_collective(*pg, c, small_sizes(), &out);
    ASSERT_EQ(rows.size(), 3u);
    for (const AllReduceRow& r : rows) {
      expect_filled(r.out_of_place, "out-of-place " + out.str());
      expect_filled(r.in_place, "in-place " + out.str());
      EXPECT_EQ(r.time_us, r.out_of_place.time_us);  // the legacy fields: out of place
      EXPECT_EQ(r.raw_time_us, 0.0);                 // MPI has no raw call for these here
    }
    const std::string text = out.str();
    EXPECT_EQ(
        first_line(text).rfind(std::string("# ") + bench_collective_name(c) + " over 1 ranks", 0),
        0u)
        << text;
    EXPECT_NE(text.find("busbw = algbw * (n-1)/n"), std::string::npos) << text;
    EXPECT_NE(text.find(c == BenchCollective::all_gather ? "   none   -1 " : "    sum   -1 "),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("no raw call"), std::string::npos) << text;
    EXPECT_EQ(text.find("n/a"), std::string::npos) << text;
    EXPECT_NE(text.find("# avg busbw: out-of-place "), std::string::npos) << text;
  }
}

// broadcast from root 0: in place through dtrain, out of place n/a (one buffer in the API and in
// MPI_Bcast), raw MPI_Bcast; #wrong compares with root 0's values.
TEST(BenchCollectives, CpuBroadcastTable) {
  auto pg = ProcessGroupMPI::create();
  std::ostringstream out;
  const std::vector<AllReduceRow> rows =
      bench_collective(*pg, BenchCollective::broadcast, small_sizes(), &out);
  ASSERT_EQ(rows.size(), 3u);
  for (const AllReduceRow& r : rows) {
    expect_filled(r.in_place, out.str());
    EXPECT_FALSE(r.out_of_place.measured());
    EXPECT_DOUBLE_EQ(r.in_place.busbw_gbs, r.in_place.algbw_gbs);  // factor 1, even at one rank
    EXPECT_GT(r.raw_time_us, 0.0);
    EXPECT_DOUBLE_EQ(r.raw_busbw_gbs, r.raw_algbw_gbs);
  }
  const std::string text = out.str();
  EXPECT_EQ(first_line(text).rfind("# broadcast over 1 ranks", 0), 0u) << text;
  EXPECT_NE(text.find("busbw = algbw * 1 = algbw * 1.000"), std::string::npos) << text;
  EXPECT_NE(text.find("out-of-place: n/a"), std::string::npos) << text;
  EXPECT_NE(text.find("raw: MPI_Bcast called directly"), std::string::npos) << text;
  EXPECT_NE(text.find("   none    0         n/a       n/a       n/a     n/a"), std::string::npos)
      << text;
  const AllReduceSummary s = summarize_allreduce(rows);
  EXPECT_GT(s.busbw_gbs, 0.0);
  EXPECT_GT(s.ratio, 0.0);
}

// 16-bit floats: MPI cannot add them itself, so all_reduce's out-of-place column is n/a; dtrain's
// in-place all_reduce (its own MPI operations) is still measured and checked.
TEST(BenchCollectives, CpuAllReduceBf16HasNoOutOfPlaceColumn) {
  auto pg = ProcessGroupMPI::create();
  AllReduceBenchOptions o = small_sizes();
  o.dtype = DType::bf16;
  std::ostringstream out;
  const std::vector<AllReduceRow> rows =
      bench_collective(*pg, BenchCollective::all_reduce, o, &out);
  ASSERT_EQ(rows.size(), 3u);
  for (const AllReduceRow& r : rows) {
    expect_filled(r.in_place, out.str());
    EXPECT_FALSE(r.out_of_place.measured());
  }
  EXPECT_NE(out.str().find("out-of-place: n/a"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace dtrain::bench
