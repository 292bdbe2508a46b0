// The nccl-tests tables of `dtrain bench allreduce --device cuda` on a one-rank job (MPI singleton, no
// launcher): every collective's rows checked (#wrong 0) beside the library's own call. Without a GPU it
// skips, saying so.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>

#include "core/backend/runtime.h"

#ifdef DTRAIN_WITH_CUDA
#include "bench/collectives.h"
#include "distributed/mpi/process_group_mpi.h"
#include "distributed/nccl/process_group_nccl.h"

namespace dtrain::bench {
namespace {

TEST(CudaNcclOneRank, BenchTablesInNcclTestsColumns) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device is visible; owed on a GPU";
  dist::ProcessGroupOptions options;
  options.timeout = std::chrono::seconds(60);
  auto pg = dist::ProcessGroupNCCL::create(dist::ProcessGroupMPI::create(options), -1, options);
  AllReduceBenchOptions o;
  o.min_bytes = 4096;
  o.max_bytes = 1 << 20;
  o.factor = 16;
  o.iters = 3;
  for (BenchCollective c : parse_bench_collectives("all")) {
    std::ostringstream out;
    const std::vector<AllReduceRow> rows = bench_collective(*pg, c, o, &out);
    ASSERT_EQ(rows.size(), 3u) << out.str();
    for (const AllReduceRow& r : rows) {
      EXPECT_EQ(r.wrong, 0) << out.str();
      EXPECT_GT(r.time_us, 0.0);
      EXPECT_GT(r.raw_time_us, 0.0);
    }
    const std::string text = out.str();
    EXPECT_NE(text.find("CUDA events on the NCCL stream"), std::string::npos) << text;
    EXPECT_NE(text.find("redop"), std::string::npos) << text;
    EXPECT_NE(text.find("raw busbw"), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace dtrain::bench

#else

TEST(CudaNcclOneRank, BenchTablesNeedTheCudaBuild) {
  GTEST_SKIP() << "dtrain was built without CUDA (-DDTRAIN_CUDA=OFF)";
}

#endif
