// `dtrain bench allreduce`'s tables at several ranks (run under mpiexec at 2, 3 and 4): every collective's
// in-place and out-of-place columns filled, their results checked (#wrong 0), busbw by nccl-tests' factor.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "bench/collectives.h"
#include "distributed/mpi_test_main.h"

namespace dtrain {
namespace {

TEST(MpiBench, EveryTableFilledAndCorrect) {
  auto pg = test::world();
  bench::AllReduceBenchOptions o;
  o.min_bytes = 1024;
  o.max_bytes = 1 << 20;
  o.factor = 32;
  o.warmup_iters = 1;
  o.iters = 3;
  for (bench::BenchCollective c : bench::parse_bench_collectives("all")) {
    std::ostringstream out;
    const std::vector<bench::AllReduceRow> rows = bench::bench_collective(*pg, c, o, &out);
    ASSERT_EQ(rows.size(), 3u);
    const bool one_buffer =
        c == bench::BenchCollective::all_reduce || c == bench::BenchCollective::broadcast;
    for (const bench::AllReduceRow& r : rows) {
      const std::string what = std::string(bench::bench_collective_name(c)) + "\n" + out.str();
      EXPECT_GT(r.in_place.time_us, 0.0) << what;
      EXPECT_GT(r.in_place.busbw_gbs, 0.0) << what;
      EXPECT_EQ(r.in_place.wrong, 0) << what;
      // Out of place: dtrain's for reduce_scatter and all_gather, MPI_Allreduce(send, recv) for
      // all_reduce, none for broadcast.
      EXPECT_EQ(r.out_of_place.measured(), c != bench::BenchCollective::broadcast) << what;
      EXPECT_EQ(r.out_of_place.wrong, 0) << what;
      EXPECT_EQ(r.raw_time_us > 0, one_buffer) << what;
      EXPECT_DOUBLE_EQ(r.busbw_gbs / r.algbw_gbs, bench::bus_factor(c, pg->size()));
    }
    if (pg->rank() == 0) {
      EXPECT_NE(out.str().find("# avg busbw"), std::string::npos) << out.str();
    }
  }
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) { return dtrain::test::mpi_test_main(argc, argv); }
