// ProcessGroupNCCL on a one-rank job (MPI singleton, no launcher): the NCCL checks a one-GPU machine
// can run, where the mpiexec tests (2 to 4 ranks, one GPU each) skip. Collectives, wait() as a stream
// wait, end times from the watchdog, and DDP with the optimizer queued behind the last bucket (the
// benchmark tables over NCCL: tests/bench/test_collectives_nccl.cpp). Without a GPU every test skips.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "core/backend/backend.h"

#ifdef DTRAIN_WITH_CUDA
#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "core/optim/optim.h"
#include "distributed/ddp.h"
#include "distributed/nccl/process_group_nccl.h"

namespace dtrain::dist {
namespace {

#define SKIP_WITHOUT_GPU()                                                                    \
  do {                                                                                        \
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device is visible; owed on a GPU"; \
  } while (0)

std::shared_ptr<ProcessGroupNCCL> make_group() {
  ProcessGroupOptions options;
  options.timeout = std::chrono::seconds(60);
  return ProcessGroupNCCL::create(ProcessGroupMPI::create(options), -1, options);
}

TEST(CudaNcclOneRank, CollectivesAreIdentitiesAndWaitDoesNotBlockTheHost) {
  SKIP_WITHOUT_GPU();
  auto pg = make_group();
  ASSERT_EQ(pg->size(), 1);
  EXPECT_EQ(pg->device(), Device::cuda(0));
  Tensor x =
      Tensor::from_vector(std::vector<float>{1.5f, -2.0f, 3.0f}, {3}, DType::f32, pg->device());
  const uint64_t before = host_sync_count();
  WorkPtr work = pg->all_reduce(x, ReduceOp::avg);
  work->wait();
  Tensor y = x * 2.0;  // queued after the collective on the compute stream
  EXPECT_EQ(host_sync_count(), before) << "wait() blocked the host";
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{3.0f, -4.0f, 6.0f}));
  Tensor out = Tensor::empty({3}, DType::f32, pg->device());
  pg->all_gather(out, x)->wait();
  EXPECT_EQ(out.to_vector<float>(), x.to_vector<float>());
  pg->reduce_scatter(out, x)->wait();
  EXPECT_EQ(out.to_vector<float>(), x.to_vector<float>());
  pg->broadcast(x, 0)->wait();
  EXPECT_EQ(all_reduce_value(*pg, 4.0, ReduceOp::sum), 4.0);

  // The barrier blocks the host; afterwards the all-reduce above is long done and timed.
  pg->barrier()->wait();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!work->is_completed() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(work->is_completed());
  EXPECT_NE(work->end_time(), Clock::time_point{});
  EXPECT_LE(work->start_time(), work->end_time());
}

TEST(CudaNcclOneRank, PlacementErrorsAreOneLine) {
  SKIP_WITHOUT_GPU();
  auto mpi = ProcessGroupMPI::create();
  try {
    ProcessGroupNCCL::create(mpi, cuda_device_count());
    ADD_FAILURE() << "a device past the last one was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("GPU(s) are visible"), std::string::npos) << msg;
  }
}

TEST(CudaNcclOneRank, DdpQueuesTheOptimizerBehindTheLastBucket) {
  SKIP_WITHOUT_GPU();
  auto pg = make_group();
  manual_seed(5);
  auto model = std::make_shared<nn::Module>("Two");
  auto fc1 = model->register_module("fc1", std::make_shared<nn::Linear>(8, 16));
  auto fc2 = model->register_module("fc2", std::make_shared<nn::Linear>(16, 4));
  auto reference = std::make_shared<nn::Module>("Two");
  manual_seed(5);
  auto ref1 = reference->register_module("fc1", std::make_shared<nn::Linear>(8, 16));
  auto ref2 = reference->register_module("fc2", std::make_shared<nn::Linear>(16, 4));
  model->to(pg->device());
  DDPOptions options;
  options.bucket_cap_mb = 1e-6;
  DistributedDataParallel ddp(model, pg, options);
  optim::SGD opt(model->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  optim::SGD ref_opt(reference->parameters(), optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
  Tensor x = Tensor::randn({12, 8});
  Tensor target = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3},
                                      {12}, DType::i64);
  const Tensor gx = x.to(pg->device()), gtarget = target.to(pg->device());
  for (int step = 0; step < 5; ++step) {
    cross_entropy(fc2->forward(relu(fc1->forward(gx))), gtarget).backward();
    const uint64_t before = host_sync_count();
    ddp.finish_gradient_synchronization();
    opt.step();
    opt.zero_grad();
    EXPECT_EQ(host_sync_count(), before) << "step " << step << " waited on the host";
    cross_entropy(ref2->forward(relu(ref1->forward(x))), target).backward();
    ref_opt.step();
    ref_opt.zero_grad();
  }
  const std::vector<Tensor> got = model->parameters(), want = reference->parameters();
  for (size_t i = 0; i < got.size(); ++i) {
    const std::vector<float> g = got[i].to_vector<float>(), w = want[i].to_vector<float>();
    for (size_t k = 0; k < g.size(); ++k) EXPECT_NEAR(g[k], w[k], 1e-4) << "parameter " << i;
  }
}

}  // namespace
}  // namespace dtrain::dist

#else

TEST(CudaNcclOneRank, NeedsTheCudaBuild) {
  GTEST_SKIP() << "dtrain was built without CUDA (-DDTRAIN_CUDA=OFF)";
}

#endif
