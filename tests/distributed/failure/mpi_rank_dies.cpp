// A job in which one rank dies mid-run while the others are inside a collective. The job must end with
// a non-zero status promptly (CTest allows 60 s; expect_job_failure.cmake checks), not hang.
//   mpi_rank_dies kill    the last rank sends itself SIGKILL (a crash, OOM kill)
//   mpi_rank_dies throw   the last rank lets a dtrain::Error escape main (std::terminate)
//   mpi_rank_dies exit    the last rank calls exit(3) without MPI_Finalize
#include <mpi.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "distributed/mpi/process_group_mpi.h"

int main(int argc, char** argv) {
  using namespace dtrain;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  const std::string mode = argc > 1 ? argv[1] : "kill";
  auto pg = dist::ProcessGroupMPI::create();  // the default 10-minute timeout: mpiexec must act
  const bool victim = pg->rank() == pg->size() - 1;
  Tensor grads = Tensor::ones({100000});
  for (int step = 0; step < 1000; ++step) {
    if (step == 5 && victim) {
      std::fprintf(stderr, "rank %d: failing on purpose (%s) at step %d\n", pg->rank(),
                   mode.c_str(), step);
      std::fflush(stderr);
      if (mode == "kill") std::raise(SIGKILL);
      if (mode == "throw")
        throw Error("a deliberate failure on rank " + std::to_string(pg->rank()));
      std::exit(3);
    }
    pg->all_reduce(grads, dist::ReduceOp::avg)->wait();
  }
  // Not reached when the failure brings the job down; exiting 0 here makes the test fail.
  pg.reset();
  dist::finalize_mpi();
  return 0;
}
