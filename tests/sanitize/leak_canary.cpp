// Built only by `make test-sanitize` (DTRAIN_SANITIZE=ON). An MPI job that does what a training run
// does with MPI (init through ProcessGroupMPI, a collective, finalize) and then leaks one block of its
// own on every rank. The test Sanitize.leak_of_ours_is_reported_under_mpiexec expects each rank's
// LeakSanitizer report to name exactly that block and nothing else, which proves three things at once:
// the sanitizer options reach ranks started by mpiexec, tests/sanitize/lsan.supp covers all of Open
// MPI's own leaks, and it does not hide ours.
#include <cstdio>

#include "core/tensor/tensor.h"
#include "distributed/mpi/process_group_mpi.h"

namespace {
int* volatile g_block = nullptr;  // volatile: the compiler may not drop the allocation

// Out of line, so that no copy of the pointer survives in main's frame for LeakSanitizer to find.
__attribute__((noinline)) void leak_one_block(int rank) {
  g_block = new int[10];  // 40 bytes, never freed: the leak the test looks for
  g_block[0] = rank;
  g_block = nullptr;
}
}  // namespace

int main() {
  using namespace dtrain;
  int rank = 0;
  {
    auto pg = dist::ProcessGroupMPI::create();
    rank = pg->rank();
    Tensor t = Tensor::ones({1000});
    pg->all_reduce(t)->wait();
  }
  dist::finalize_mpi();
  leak_one_block(rank);
  std::printf("rank %d: leaked 40 bytes on purpose\n", rank);
  return 0;
}
