// The main() of an MPI test program (tests/distributed/mpi_<name>.cpp), run by CTest under mpiexec.
// Every rank runs every test. Rank 0 prints GoogleTest's usual report; other ranks print only their
// failures, prefixed with the rank. The program's exit status is the same on every rank: failed if any
// rank failed, so mpiexec and CTest see one verdict.
#pragma once
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <memory>

#include "distributed/mpi/process_group_mpi.h"

namespace dtrain::test {

// The group every test of the program shares. Its timeout is short so that a test where ranks
// disagree (one failed an ASSERT and skipped a collective) aborts within a minute instead of hanging.
inline std::shared_ptr<dist::ProcessGroupMPI>& world_slot() {
  static std::shared_ptr<dist::ProcessGroupMPI> pg;
  return pg;
}
inline std::shared_ptr<dist::ProcessGroupMPI> world() {
  std::shared_ptr<dist::ProcessGroupMPI>& pg = world_slot();
  if (!pg) {
    dist::ProcessGroupOptions options;
    options.timeout = std::chrono::seconds(60);
    pg = dist::ProcessGroupMPI::create(options);
  }
  return pg;
}

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }

 private:
  int rank_;
};

inline int mpi_test_main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && any_failed && !failed)
    std::fprintf(stderr, "FAILED on another rank (see above)\n");
  world_slot().reset();
  dist::finalize_mpi();
  return any_failed;
}

}  // namespace dtrain::test
