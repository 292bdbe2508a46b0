// Collective bandwidth, nccl-tests style, beside the library's own call:
//   mpiexec -np 4 build/bench_allreduce [min_bytes [max_bytes [iters [device [collective]]]]]
// device: cpu (MPI, the default) | cuda (NCCL, each rank its local rank's GPU) | cuda:N;
// collective: all_reduce (the default) | reduce_scatter | all_gather | all.
// `dtrain bench allreduce` prints the same tables; this program needs no model or config.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "distributed/bench_allreduce.h"
#include "distributed/mpi/process_group_mpi.h"
#ifdef DTRAIN_WITH_CUDA
#include "distributed/nccl/process_group_nccl.h"
#endif

int main(int argc, char** argv) {
  using namespace dtrain;
  try {
    dist::AllReduceBenchOptions options;
    if (argc > 1) options.min_bytes = std::atoll(argv[1]);
    if (argc > 2) options.max_bytes = std::atoll(argv[2]);
    if (argc > 3) options.iters = std::atoi(argv[3]);
    const std::string device_text = argc > 4 ? argv[4] : "cpu";
    const std::vector<dist::BenchCollective> collectives =
        dist::parse_bench_collectives(argc > 5 ? argv[5] : "all_reduce");
    const Device device = Device::parse(device_text);
    auto mpi = dist::ProcessGroupMPI::create();
    std::shared_ptr<dist::ProcessGroup> pg = mpi;
    if (device.is_cuda()) {
#ifdef DTRAIN_WITH_CUDA
      pg = dist::ProcessGroupNCCL::create(mpi, device_text == "cuda" ? -1 : device.index);
#else
      throw Error("device " + device_text + " needs a CUDA build of dtrain");
#endif
    }
    for (dist::BenchCollective c : collectives) dist::bench_collective(*pg, c, options, &std::cout);
    pg.reset();
    mpi.reset();
    dist::finalize_mpi();
  } catch (const std::exception& e) {
    dist::abort_job(e.what());
  }
  return 0;
}
