// DDP overhead on CPU: an MLP of core/nn Linear layers, N ranks with DDP against N independent
// replicas, the same per-rank batch:
//   mpiexec -np 2 build/bench_ddp [width [layers [batch [bucket_cap_mb]]]]
// `dtrain bench ddp` runs the same measurement on the real models.
#include <cstdlib>
#include <iostream>

#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "core/optim/sgd.h"
#include "distributed/bench_ddp.h"
#include "distributed/mpi/process_group_mpi.h"

int main(int argc, char** argv) {
  using namespace dtrain;
  try {
    const int64_t width = argc > 1 ? std::atoll(argv[1]) : 1024;
    const int layers = argc > 2 ? std::atoi(argv[2]) : 6;
    const int64_t batch = argc > 3 ? std::atoll(argv[3]) : 64;
    dist::DdpBenchOptions options;
    if (argc > 4) options.ddp.bucket_cap_mb = std::atof(argv[4]);
    auto pg = dist::ProcessGroupMPI::create();

    manual_seed(0);
    auto model = std::make_shared<nn::Module>("Mlp");
    std::vector<std::shared_ptr<nn::Linear>> fc;
    for (int i = 0; i < layers; ++i) {
      fc.push_back(model->register_module("fc" + std::to_string(i),
                                          std::make_shared<nn::Linear>(width, width)));
    }
    manual_seed(1 + static_cast<uint64_t>(pg->rank()));
    Tensor x = Tensor::randn({batch, width});
    Tensor y = Tensor::zeros({batch}, DType::i64);
    auto loss = [&] {
      Tensor h = x;
      for (auto& l : fc) h = relu(l->forward(h));
      return cross_entropy(h, y);
    };
    optim::SGD opt(model->parameters(), {.lr = 1e-3});
    dist::bench_ddp(model, pg, loss, [&] { opt.step(); }, options, &std::cout);
    pg.reset();
    dist::finalize_mpi();
  } catch (const std::exception& e) {
    dist::abort_job(e.what());
  }
  return 0;
}
