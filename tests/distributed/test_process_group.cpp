// ProcessGroup helpers that need no other process, and ProcessGroupMPI on a one-rank job.
#include <gtest/gtest.h>

#include <cstdlib>

#include "distributed/mpi/process_group_mpi.h"

namespace dtrain::dist {
namespace {

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

TEST(ProcessGroup, TimeoutFromTheEnvironment) {
  EXPECT_EQ(ProcessGroupOptions{}.timeout, std::chrono::minutes(10));
  {
    ScopedEnv env("DTRAIN_COLLECTIVE_TIMEOUT_S", "2.5");
    EXPECT_EQ(ProcessGroupOptions::from_environment().timeout, std::chrono::milliseconds(2500));
  }
  {
    ScopedEnv env("DTRAIN_COLLECTIVE_TIMEOUT_S", "soon");
    EXPECT_THROW(ProcessGroupOptions::from_environment(), Error);
  }
}

TEST(ProcessGroup, LocalRankFromTheLaunchersEnvironment) {
  ScopedEnv a("OMPI_COMM_WORLD_LOCAL_RANK", "3");
  EXPECT_EQ(local_rank_from_environment(), 3);
  {
    ScopedEnv b("OMPI_COMM_WORLD_LOCAL_RANK", "");
    ScopedEnv c("SLURM_LOCALID", "2");
    EXPECT_EQ(local_rank_from_environment(), 2);
  }
}

TEST(ProcessGroup, DescribesCollectivesForMessages) {
  EXPECT_EQ(describe_collective("all_reduce(sum)", 1000003, DType::f32),
            "all_reduce(sum) of 1000003 f32 elements (3.81 MiB)");
  EXPECT_STREQ(reduce_op_name(ReduceOp::avg), "avg");
}

TEST(ProcessGroupMPI, OneRankCollectivesAreIdentities) {
  auto pg = ProcessGroupMPI::create();
  ASSERT_EQ(pg->size(), 1);
  EXPECT_EQ(pg->rank(), 0);
  EXPECT_STREQ(pg->backend_name(), "mpi");
  Tensor x = Tensor::from_vector({1.5f, -2.0f, 3.0f}, {3});
  pg->all_reduce(x, ReduceOp::avg)->wait();
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1.5f, -2.0f, 3.0f}));
  Tensor h = x.to(DType::bf16);
  pg->all_reduce(h, ReduceOp::max)->wait();
  EXPECT_EQ(h.to_vector<float>(), (std::vector<float>{1.5f, -2.0f, 3.0f}));
  Tensor out = Tensor::empty({3});
  pg->all_gather(out, x)->wait();
  EXPECT_EQ(out.to_vector<float>(), x.to_vector<float>());
  pg->reduce_scatter(out, x)->wait();
  EXPECT_EQ(out.to_vector<float>(), x.to_vector<float>());
  pg->barrier()->wait();
  EXPECT_EQ(all_reduce_value(*pg, 4.0, ReduceOp::sum), 4.0);
  EXPECT_TRUE(any_rank(*pg, true));
  EXPECT_FALSE(any_rank(*pg, false));
}

}  // namespace
}  // namespace dtrain::dist
