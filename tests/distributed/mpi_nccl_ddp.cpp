// DistributedDataParallel over NCCL under mpiexec: training on the GPUs ends with the weights that the
// same training over MPI on the CPU reaches (SGD, and AdamW with one bucket per parameter, so many
// all-reduces are in flight), the replicas stay identical, and finish_gradient_synchronization()
// queues its waits on the device instead of blocking the host. NCCL needs a GPU of its own for each
// rank of a node; where any rank lacks one (or dtrain is built without CUDA) every rank skips, and the
// skip message gives each short rank's reason.
#include <unistd.h>

#include <string>
#include <vector>

#include "ddp_test_util.h"
#include "mpi_test_main.h"

#ifdef DTRAIN_WITH_CUDA
#include "nccl_test_util.h"
#include "core/optim/optim.h"
#include "distributed/ddp.h"
#include "distributed/nccl/process_group_nccl.h"

namespace dtrain {
namespace {

using dist::DistributedDataParallel;
using test::Batch;
using test::make_batch;
using test::make_mlp;

constexpr int kSteps = 10;
constexpr int64_t kGlobalBatch = 24;  // divisible by 2, 3 and 4

std::shared_ptr<dist::ProcessGroupNCCL> make_group() {
  dist::ProcessGroupOptions options;
  options.timeout = std::chrono::seconds(60);
  return dist::ProcessGroupNCCL::create(test::world(), -1, options);
}

// Trains the test MLP with DDP on `pg`'s device; every rank starts from its own seed (DDP must make
// them rank 0's) and takes its contiguous share of each global batch. Returns the final weights.
template <class MakeOpt>
std::vector<float> train(std::shared_ptr<dist::ProcessGroup> pg, MakeOpt make_opt,
                         dist::DDPOptions options = {}) {
  const Device device = pg->device();
  auto model = make_mlp(7 + 100 * static_cast<uint64_t>(pg->rank()));
  model->to(device);
  DistributedDataParallel ddp(model, pg, options);
  auto opt = make_opt(model->parameters());
  const int64_t local = kGlobalBatch / pg->size();
  for (int step = 0; step < kSteps; ++step) {
    Batch mine = make_batch(step, kGlobalBatch).rows(pg->rank() * local, (pg->rank() + 1) * local);
    cross_entropy(model->forward(mine.x.to(device)), mine.y.to(device)).backward();
    ddp.finish_gradient_synchronization();
    opt->step();
    opt->zero_grad();
  }
  std::vector<Tensor> weights;
  for (const Tensor& p : model->parameters()) weights.push_back(p.to(Device::cpu()));
  return test::flat_values(weights);
}

using test::adamw;
using test::sgd;

// Tolerances: the GPU's f32 kernels (TF32 off, the library's default) and NCCL's summation order
// differ from the CPU's by ~1e-7 relative per operation; 10 steps keep SGD with momentum below 1e-4
// and AdamW, which divides by sqrt(v), below 1e-3 (parameters are O(0.1..1)).
constexpr double kSgdTol = 1e-4;
constexpr double kAdamTol = 1e-3;

TEST(NcclDdp, SgdOnGpusMatchesMpiOnTheCpu) {
  SKIP_WITHOUT_GPUS("DDP over NCCL");
  const std::vector<float> cpu = train(test::world(), sgd);
  const std::vector<float> gpu = train(make_group(), sgd);
  EXPECT_LT(test::max_abs_diff(cpu, gpu), kSgdTol);
  EXPECT_TRUE(test::same_on_all_ranks(*test::world(), gpu)) << "GPU replicas drifted apart";
}

TEST(NcclDdp, AdamWWithOneBucketPerParameterMatchesMpiOnTheCpu) {
  SKIP_WITHOUT_GPUS("DDP over NCCL");
  dist::DDPOptions options;
  options.bucket_cap_mb = 1e-6;  // one bucket per parameter: several all-reduces in flight
  const std::vector<float> cpu = train(test::world(), adamw, options);
  const std::vector<float> gpu = train(make_group(), adamw, options);
  EXPECT_LT(test::max_abs_diff(cpu, gpu), kAdamTol);
  EXPECT_TRUE(test::same_on_all_ranks(*test::world(), gpu));
}

TEST(NcclDdp, FinishQueuesItsWaitsOnTheDevice) {
  SKIP_WITHOUT_GPUS("DDP over NCCL");
  auto pg = make_group();
  auto model = make_mlp(3);
  model->to(pg->device());
  dist::DDPOptions options;
  options.bucket_cap_mb = 1e-6;
  DistributedDataParallel ddp(model, pg, options);
  const int64_t local = kGlobalBatch / pg->size();
  Batch mine = make_batch(0, kGlobalBatch).rows(pg->rank() * local, (pg->rank() + 1) * local);
  Tensor x = mine.x.to(pg->device()), y = mine.y.to(pg->device());
  cross_entropy(model->forward(x), y).backward();
  const uint64_t before = host_sync_count();
  ddp.finish_gradient_synchronization();
  EXPECT_EQ(host_sync_count(), before)
      << "finish_gradient_synchronization() blocked the host on NCCL collectives";
  // The gradients it wrote back are the global mean: the same on every rank.
  EXPECT_TRUE(test::same_on_all_ranks(*test::world(), test::flat_grads(model->parameters())));
}

}  // namespace
}  // namespace dtrain

#else

TEST(NcclDdp, NeedsTheCudaBuild) {
  GTEST_SKIP() << "dtrain was built without CUDA (-DDTRAIN_CUDA=OFF)";
}

#endif

int main(int argc, char** argv) { return dtrain::test::mpi_test_main(argc, argv); }
