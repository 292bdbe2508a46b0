// All-reduce bandwidth over MPI (CPU tensors), nccl-tests style, beside raw MPI_Allreduce:
//   mpiexec -np 4 build/bench_allreduce [min_bytes [max_bytes [iters]]]
// `dtrain bench allreduce` prints the same table; this program needs no model or config.
#include <cstdlib>
#include <iostream>

#include "distributed/bench_allreduce.h"
#include "distributed/mpi/process_group_mpi.h"

int main(int argc, char** argv) {
  using namespace dtrain;
  try {
    dist::AllReduceBenchOptions options;
    if (argc > 1) options.min_bytes = std::atoll(argv[1]);
    if (argc > 2) options.max_bytes = std::atoll(argv[2]);
    if (argc > 3) options.iters = std::atoi(argv[3]);
    auto pg = dist::ProcessGroupMPI::create();
    dist::bench_allreduce(*pg, options, &std::cout);
    pg.reset();
    dist::finalize_mpi();
  } catch (const std::exception& e) {
    dist::abort_job(e.what());
  }
  return 0;
}
