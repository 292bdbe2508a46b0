// A job in which rank 0 skips a collective that the other ranks enter (a code path that differs by
// rank). With a 2 s collective timeout the waiting ranks must abort the job with a message naming the
// collective, its size and their rank, instead of hanging.
#include <mpi.h>

#include <chrono>
#include <thread>

#include "distributed/mpi/process_group_mpi.h"

int main(int argc, char** argv) {
  using namespace dtrain;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  dist::ProcessGroupOptions options;
  options.timeout = std::chrono::seconds(2);
  auto pg = dist::ProcessGroupMPI::create(options);
  Tensor x = Tensor::ones({1000});
  pg->all_reduce(x)->wait();  // everyone: fine
  if (pg->rank() == 0) {
    std::this_thread::sleep_for(std::chrono::seconds(50));  // never joins the next all_reduce
  } else {
    pg->all_reduce(x)->wait();
  }
  pg.reset();
  dist::finalize_mpi();
  return 0;
}
