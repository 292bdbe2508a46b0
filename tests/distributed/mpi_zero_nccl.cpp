// ZeRO-1 over NCCL under mpiexec: the sharded step (its all-gather) and the checkpoint gathering
// (all_gather_strings and one all-gather per kind of state) on CUDA tensors. NCCL needs a GPU of its own
// for each rank of a node; where any rank lacks one (or dtrain is built without CUDA) every rank skips.
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
#include "distributed/zero.h"

namespace dtrain {
namespace {

using test::Batch;
using test::make_batch;

constexpr int kSteps = 10;
constexpr int64_t kGlobalBatch = 24;

std::shared_ptr<dist::ProcessGroup> nccl_group() {
  dist::ProcessGroupOptions options;
  options.timeout = std::chrono::seconds(60);
  return dist::ProcessGroupNCCL::create(test::world(), -1, options);
}

struct Trained {
  std::vector<float> weights;
  optim::OptimizerState state;  // gathered on every rank
};

// DDP + ZeRO-1 (AdamW) on `pg`'s device, each rank its share of each global batch; or, with
// `identical`, every rank the whole batch and no DDP, and optionally the plain optimizer.
Trained train(std::shared_ptr<dist::ProcessGroup> pg, bool zero, bool identical) {
  const Device device = pg->device();
  auto model = test::make_mlp(identical ? 7 : 7 + 100 * static_cast<uint64_t>(pg->rank()));
  model->to(device);
  std::unique_ptr<dist::DistributedDataParallel> ddp;
  if (!identical) ddp = std::make_unique<dist::DistributedDataParallel>(model, pg);
  std::unique_ptr<optim::Optimizer> opt =
      zero ? std::make_unique<dist::ZeroRedundancyOptimizer>(model->parameters(), pg, test::adamw)
           : test::adamw(model->parameters());
  for (int step = 0; step < kSteps; ++step) {
    Batch b = make_batch(step, kGlobalBatch);
    if (!identical) {
      const int64_t local = kGlobalBatch / pg->size();
      b = b.rows(pg->rank() * local, (pg->rank() + 1) * local);
    }
    cross_entropy(model->forward(b.x.to(device)), b.y.to(device)).backward();
    if (ddp) ddp->finish_gradient_synchronization();
    opt->step();
    opt->zero_grad();
  }
  Trained out;
  std::vector<Tensor> weights;
  for (const Tensor& p : model->parameters()) weights.push_back(p.to(Device::cpu()));
  out.weights = test::flat_values(weights);
  out.state = opt->state_dict();
  return out;
}

TEST(NcclZero, MatchesZeroOverMpiOnTheCpu) {
  SKIP_WITHOUT_GPUS("ZeRO-1 over NCCL");
  const Trained cpu = train(test::world(), true, false);
  const Trained gpu = train(nccl_group(), true, false);
  // As in mpi_nccl_ddp: the GPU's kernels and NCCL's summation order; AdamW divides by sqrt(v).
  EXPECT_LT(test::max_abs_diff(cpu.weights, gpu.weights), 1e-3);
  EXPECT_TRUE(test::same_on_all_ranks(*test::world(), gpu.weights));
}

TEST(NcclZero, StateDictGatheredOnTheGpuEqualsThePlainOptimizers) {
  SKIP_WITHOUT_GPUS("ZeRO-1 over NCCL");
  auto pg = nccl_group();
  const Trained plain = train(pg, false, true);
  const Trained zero = train(pg, true, true);
  EXPECT_LE(test::max_abs_diff(plain.weights, zero.weights), 1e-6);
  EXPECT_EQ(zero.state.scalars, plain.state.scalars);
  ASSERT_EQ(zero.state.tensors.size(), plain.state.tensors.size());
  for (size_t i = 0; i < zero.state.tensors.size(); ++i) {
    const auto& [name, t] = zero.state.tensors[i];
    EXPECT_EQ(name, plain.state.tensors[i].first);
    EXPECT_EQ(t.device(), pg->device()) << name;
    EXPECT_EQ(t.shape(), plain.state.tensors[i].second.shape()) << name;
    EXPECT_LE(
        test::max_abs_diff(t.to(Device::cpu()).to_vector<float>(),
                           plain.state.tensors[i].second.to(Device::cpu()).to_vector<float>()),
        1e-6)
        << name;
  }
}

}  // namespace
}  // namespace dtrain

#else

TEST(NcclZero, NeedsCuda) { GTEST_SKIP() << "dtrain was built without CUDA"; }

#endif

int main(int argc, char** argv) { return dtrain::test::mpi_test_main(argc, argv); }
