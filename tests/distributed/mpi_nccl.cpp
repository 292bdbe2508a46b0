// ProcessGroupNCCL under mpiexec: every collective on CUDA tensors against exact expected values, the
// ordering of collectives after compute-stream work, and the blocking barrier. NCCL needs one GPU per
// rank of a node; where any rank lacks one (or dtrain is built without CUDA) every rank skips, so the
// ranks never disagree about which collectives run.
#include <cmath>
#include <vector>

#include "mpi_test_main.h"

#ifdef DTRAIN_WITH_CUDA
#include "core/backend/backend.h"
#include "core/ops/elementwise.h"
#include "distributed/nccl/process_group_nccl.h"

namespace dtrain {
namespace {

// Every rank agrees: true only if each has a GPU for its local rank.
bool every_rank_has_a_gpu() {
  const bool mine = cuda_device_count() > dist::local_rank_from_environment();
  return dist::all_reduce_value(*test::world(), mine ? 0.0 : 1.0, dist::ReduceOp::max) == 0.0;
}

#define SKIP_WITHOUT_GPUS()                                                                \
  do {                                                                                     \
    if (!every_rank_has_a_gpu())                                                           \
      GTEST_SKIP() << "NCCL needs one visible GPU per rank; this check is owed on a GPU " \
                      "machine (mpiexec -np N with N GPUs)";                               \
  } while (0)

std::shared_ptr<dist::ProcessGroupNCCL> make_group() {
  dist::ProcessGroupOptions options;
  options.timeout = std::chrono::seconds(60);
  return dist::ProcessGroupNCCL::create(test::world(), -1, options);
}

const std::vector<DType> kDTypes{DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32,
                                 DType::i64};
const std::vector<int64_t> kSizes{1, 7, 1000003};

// Small integers, exact in every dtype, different per rank and element.
double value(int r, int64_t i) { return static_cast<double>((r + 1) * ((i % 5) - 2)); }

template <class F>
Tensor filled(int64_t n, DType dtype, Device device, F f) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = f(i);
  return Tensor::from_vector(v, {n}, dtype, device);
}

template <class F>
void expect_values(const Tensor& t, F expected, double tol, const std::string& what) {
  const std::vector<double> got = t.to_vector<double>();
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < static_cast<int64_t>(got.size()); ++i) {
    if (std::abs(got[static_cast<size_t>(i)] - expected(i)) > tol * std::max(1.0, std::abs(expected(i)))) {
      if (first < 0) first = i;
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": first mismatch at " << first << ": got "
                    << (first >= 0 ? got[static_cast<size_t>(first)] : 0.0) << ", expected "
                    << (first >= 0 ? expected(first) : 0.0);
}

TEST(NcclCollectives, AllReduce) {
  SKIP_WITHOUT_GPUS();
  auto pg = make_group();
  const int size = pg->size();
  const double rank_sum = size * (size + 1) / 2.0;  // sum over r of (r + 1)
  for (DType t : kDTypes) {
    for (int64_t n : kSizes) {
      const std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n);
      Tensor x = filled(n, t, pg->device(), [&](int64_t i) { return value(pg->rank(), i); });
      pg->all_reduce(x, dist::ReduceOp::sum)->wait();
      expect_values(x, [&](int64_t i) { return rank_sum * ((i % 5) - 2); }, 0.0, "sum " + what);

      Tensor m = filled(n, t, pg->device(), [&](int64_t i) { return value(pg->rank(), i); });
      pg->all_reduce(m, dist::ReduceOp::max)->wait();
      expect_values(m, [&](int64_t i) { return value((i % 5) - 2 >= 0 ? size - 1 : 0, i); }, 0.0,
                    "max " + what);
      if (!is_floating(t)) continue;
      Tensor a = filled(n, t, pg->device(), [&](int64_t i) { return value(pg->rank(), i); });
      pg->all_reduce(a, dist::ReduceOp::avg)->wait();
      const double tol = t == DType::bf16 ? 1.0 / 128 : t == DType::f16 ? 1.0 / 1024 : 1e-6;
      expect_values(a, [&](int64_t i) { return rank_sum / size * ((i % 5) - 2); }, tol,
                    "avg " + what);
    }
  }
}

TEST(NcclCollectives, BroadcastReduceScatterAllGather) {
  SKIP_WITHOUT_GPUS();
  auto pg = make_group();
  const int size = pg->size(), rank = pg->rank(), root = size - 1;
  for (DType t : kDTypes) {
    const int64_t n = 1001;
    Tensor b = filled(n, t, pg->device(), [&](int64_t i) { return value(rank, i); });
    pg->broadcast(b, root)->wait();
    expect_values(b, [&](int64_t i) { return value(root, i); }, 0.0,
                  std::string("broadcast ") + dtype_name(t));

    Tensor in = filled(n * size, t, pg->device(), [&](int64_t i) { return value(rank, i); });
    Tensor out = Tensor::empty({n}, t, pg->device());
    pg->reduce_scatter(out, in, dist::ReduceOp::sum)->wait();
    const double rank_sum = size * (size + 1) / 2.0;
    expect_values(out, [&](int64_t i) { return rank_sum * (((rank * n + i) % 5) - 2); }, 0.0,
                  std::string("reduce_scatter ") + dtype_name(t));

    Tensor mine = filled(n, t, pg->device(), [&](int64_t i) { return value(rank, i); });
    Tensor all = Tensor::empty({n * size}, t, pg->device());
    pg->all_gather(all, mine)->wait();
    expect_values(all, [&](int64_t i) { return value(static_cast<int>(i / n), i % n); }, 0.0,
                  std::string("all_gather ") + dtype_name(t));
  }
}

TEST(NcclCollectives, OrderedAfterComputeAndBarrier) {
  SKIP_WITHOUT_GPUS();
  auto pg = make_group();
  // Values written by kernels on the compute stream just before the collective are what it reduces,
  // and the compute stream's next kernel sees the reduced values after wait().
  for (int round = 0; round < 20; ++round) {
    Tensor x = Tensor::full({1 << 20}, static_cast<double>(pg->rank() + round), DType::f32,
                            pg->device());
    mul_(x, 2.0);
    pg->all_reduce(x)->wait();
    x.copy_(x + 1.0);
    const double expected = 2.0 * (pg->size() * (pg->size() - 1) / 2.0 + pg->size() * round) + 1.0;
    expect_values(x, [&](int64_t) { return expected; }, 0.0, "round " + std::to_string(round));
  }
  auto work = pg->barrier();
  work->wait();
  EXPECT_TRUE(work->is_completed());
  EXPECT_GE(work->end_time(), work->start_time());

  Tensor r = Tensor::full({33}, 1.0, DType::bf16, pg->device());
  pg->raw_all_reduce(r);
  expect_values(r, [&](int64_t) { return static_cast<double>(pg->size()); }, 0.0, "raw_all_reduce");
}

TEST(NcclCollectives, RejectsCpuTensors) {
  SKIP_WITHOUT_GPUS();
  auto pg = make_group();
  Tensor cpu = Tensor::zeros({4});
  EXPECT_THROW(pg->all_reduce(cpu), Error);
  Tensor ints = Tensor::zeros({4}, DType::i64, pg->device());
  EXPECT_THROW(pg->all_reduce(ints, dist::ReduceOp::avg), Error);
}

}  // namespace
}  // namespace dtrain

#else

TEST(NcclCollectives, NeedsTheCudaBuild) {
  GTEST_SKIP() << "dtrain was built without CUDA (-DDTRAIN_CUDA=OFF)";
}

#endif

int main(int argc, char** argv) { return dtrain::test::mpi_test_main(argc, argv); }
