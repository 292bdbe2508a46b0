// ProcessGroupNCCL under mpiexec: every collective on CUDA tensors against exact expected values, the
// ordering of collectives after compute-stream work, wait() as a stream wait (no host sync), the
// blocking barrier, the agreement check, and the placement checks of create(). NCCL needs one GPU per
// rank of a node; where any rank lacks one (or dtrain is built without CUDA) every rank skips the
// tests that need it, so the ranks never disagree about which collectives run. The placement errors
// run exactly there.
//
// `mpi_nccl --expect-abort=disagreement|timeout` runs a job meant to be aborted by the NCCL group
// (ranks that issue different collectives; a rank that never joins one) instead of the tests.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
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

#define SKIP_WITHOUT_GPUS()                                                               \
  do {                                                                                    \
    if (!every_rank_has_a_gpu())                                                          \
      GTEST_SKIP() << "NCCL needs one visible GPU per rank; this check is owed on a GPU " \
                      "machine (mpiexec -np N with N GPUs)";                              \
  } while (0)

std::shared_ptr<dist::ProcessGroupNCCL> make_group(int device = -1, bool debug = false) {
  dist::ProcessGroupOptions options;
  options.timeout = std::chrono::seconds(60);
  options.debug_collectives = debug;
  return dist::ProcessGroupNCCL::create(test::world(), device, options);
}

// The ranks on this rank's node, by host name as create() counts them. Collective.
int ranks_on_this_node() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  const std::vector<std::string> hosts = dist::all_gather_strings(*test::world(), name);
  int ranks = 0;
  for (const std::string& h : hosts) ranks += h == name;
  return ranks;
}

const std::vector<DType> kDTypes{DType::f32,  DType::f64, DType::f16,
                                 DType::bf16, DType::i32, DType::i64};
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
    if (std::abs(got[static_cast<size_t>(i)] - expected(i)) >
        tol * std::max(1.0, std::abs(expected(i)))) {
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
      expect_values(
          x, [&](int64_t i) { return rank_sum * ((i % 5) - 2); }, 0.0, "sum " + what);

      Tensor m = filled(n, t, pg->device(), [&](int64_t i) { return value(pg->rank(), i); });
      pg->all_reduce(m, dist::ReduceOp::max)->wait();
      expect_values(
          m, [&](int64_t i) { return value((i % 5) - 2 >= 0 ? size - 1 : 0, i); }, 0.0,
          "max " + what);
      if (!is_floating(t)) continue;
      Tensor a = filled(n, t, pg->device(), [&](int64_t i) { return value(pg->rank(), i); });
      pg->all_reduce(a, dist::ReduceOp::avg)->wait();
      const double tol = t == DType::bf16 ? 1.0 / 128 : t == DType::f16 ? 1.0 / 1024 : 1e-6;
      expect_values(
          a, [&](int64_t i) { return rank_sum / size * ((i % 5) - 2); }, tol, "avg " + what);
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
    expect_values(
        b, [&](int64_t i) { return value(root, i); }, 0.0,
        std::string("broadcast ") + dtype_name(t));

    Tensor in = filled(n * size, t, pg->device(), [&](int64_t i) { return value(rank, i); });
    Tensor out = Tensor::empty({n}, t, pg->device());
    pg->reduce_scatter(out, in, dist::ReduceOp::sum)->wait();
    const double rank_sum = size * (size + 1) / 2.0;
    expect_values(
        out, [&](int64_t i) { return rank_sum * (((rank * n + i) % 5) - 2); }, 0.0,
        std::string("reduce_scatter ") + dtype_name(t));

    Tensor mine = filled(n, t, pg->device(), [&](int64_t i) { return value(rank, i); });
    Tensor all = Tensor::empty({n * size}, t, pg->device());
    pg->all_gather(all, mine)->wait();
    expect_values(
        all, [&](int64_t i) { return value(static_cast<int>(i / n), i % n); }, 0.0,
        std::string("all_gather ") + dtype_name(t));
  }
}

TEST(NcclCollectives, OrderedAfterComputeAndBarrier) {
  SKIP_WITHOUT_GPUS();
  auto pg = make_group();
  // Values written by kernels on the compute stream just before the collective are what it reduces,
  // and the compute stream's next kernel sees the reduced values after wait().
  for (int round = 0; round < 20; ++round) {
    Tensor x =
        Tensor::full({1 << 20}, static_cast<double>(pg->rank() + round), DType::f32, pg->device());
    mul_(x, 2.0);
    pg->all_reduce(x)->wait();
    x.copy_(x + 1.0);
    const double expected = 2.0 * (pg->size() * (pg->size() - 1) / 2.0 + pg->size() * round) + 1.0;
    expect_values(
        x, [&](int64_t) { return expected; }, 0.0, "round " + std::to_string(round));
  }
  auto work = pg->barrier();
  work->wait();
  EXPECT_TRUE(work->is_completed());
  EXPECT_GE(work->end_time(), work->start_time());

  Tensor r = Tensor::full({33}, 1.0, DType::bf16, pg->device());
  pg->raw_all_reduce(r);
  expect_values(
      r, [&](int64_t) { return static_cast<double>(pg->size()); }, 0.0, "raw_all_reduce");
}

TEST(NcclCollectives, RejectsCpuTensors) {
  SKIP_WITHOUT_GPUS();
  auto pg = make_group();
  Tensor cpu = Tensor::zeros({4});
  EXPECT_THROW(pg->all_reduce(cpu), Error);
  Tensor ints = Tensor::zeros({4}, DType::i64, pg->device());
  EXPECT_THROW(pg->all_reduce(ints, dist::ReduceOp::avg), Error);
}

TEST(NcclCollectives, WaitIsAStreamWaitNotAHostWait) {
  SKIP_WITHOUT_GPUS();
  auto pg = make_group();
  const int size = pg->size();
  Tensor x = Tensor::full({1 << 20}, static_cast<double>(pg->rank() + 1), DType::f32, pg->device());
  const uint64_t before = host_sync_count();
  dist::WorkPtr work = pg->all_reduce(x);
  work->wait();
  mul_(x, 2.0);  // queued on the compute stream after the collective, while it may still run
  EXPECT_EQ(host_sync_count(), before) << "wait() on an NCCL collective blocked the host";
  expect_values(
      x, [&](int64_t) { return 2.0 * size * (size + 1) / 2.0; }, 0.0, "after wait");

  // The end time is known once the watchdog (or is_completed) saw the collective finish.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!work->is_completed() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(work->is_completed());
  EXPECT_NE(work->end_time(), dist::Clock::time_point{});
  EXPECT_LE(work->start_time(), work->end_time());
}

TEST(NcclCollectives, ManyCollectivesInFlightWithoutWaiting) {
  // More collectives than agreement slots, none waited for until the end: the slots are reused as
  // the watchdog retires collectives, in order.
  SKIP_WITHOUT_GPUS();
  auto pg = make_group();
  std::vector<Tensor> xs;
  std::vector<dist::WorkPtr> works;
  for (int i = 0; i < 1500; ++i) {
    xs.push_back(Tensor::full({16}, i % 7, DType::i64, pg->device()));
    works.push_back(pg->all_reduce(xs.back()));
  }
  for (auto& w : works) w->wait();
  for (int i : {0, 1023, 1024, 1499}) {
    expect_values(
        xs[static_cast<size_t>(i)], [&](int64_t) { return pg->size() * (i % 7) * 1.0; }, 0.0,
        "collective " + std::to_string(i) + " of 1500");
  }
}

TEST(NcclPlacement, ExplicitDeviceIsUsedAsGiven) {
  SKIP_WITHOUT_GPUS();
  // The local rank's GPU, which the earlier tests' groups selected for this process already.
  const int device = dist::local_rank_from_environment();
  auto pg = make_group(device);
  EXPECT_EQ(pg->device(), Device::cuda(device));
  Tensor x = Tensor::ones({5}, DType::f32, pg->device());
  pg->all_reduce(x)->wait();
  expect_values(
      x, [&](int64_t) { return static_cast<double>(pg->size()); }, 0.0, "cuda:K");
}

TEST(NcclPlacement, TwoRanksOfANodeOnOneGpuIsOneErrorOnEveryRank) {
  const bool no_gpu = cuda_device_count() == 0;
  if (dist::any_rank(*test::world(), no_gpu)) GTEST_SKIP() << "needs a GPU on every rank";
  if (!dist::any_rank(*test::world(), ranks_on_this_node() > 1)) {
    GTEST_SKIP() << "needs two ranks on one node";
  }
  try {
    make_group(0);
    ADD_FAILURE() << "every rank of a node on cuda:0 was accepted";
  } catch (const dist::AllRanksError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("both use cuda:0"), std::string::npos) << msg;
  }
}

TEST(NcclPlacement, NoGpuOrTooFewGpusIsOneErrorOnEveryRank) {
  // Runs exactly where the NCCL tests skip: a node without a GPU, or with fewer than its ranks.
  const int count = cuda_device_count();
  const bool short_of_gpus = count == 0 || ranks_on_this_node() > count;
  if (!dist::any_rank(*test::world(), short_of_gpus)) {
    GTEST_SKIP() << "every rank has a GPU of its own; the refusal is checked on smaller machines";
  }
  try {
    make_group();
    ADD_FAILURE() << "create() accepted a node short of GPUs";
  } catch (const dist::AllRanksError& e) {
    const std::string msg = e.what();
    const bool named = msg.find("no CUDA device is visible") != std::string::npos ||
                       msg.find("GPUs are visible; start at most") != std::string::npos;
    EXPECT_TRUE(named) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(NcclAgreement, DebugModeNamesBothCollectivesOnEveryRank) {
  SKIP_WITHOUT_GPUS();
  auto pg = make_group(-1, true);
  const int odd = pg->size() - 1;
  Tensor same = Tensor::zeros({2, 3}, DType::f32, pg->device());
  pg->all_reduce(same)->wait();  // agreed: runs
  Tensor x = Tensor::zeros({pg->rank() == odd ? 8 : 4}, DType::f32, pg->device());
  try {
    pg->all_reduce(x);
    ADD_FAILURE() << "no error for all-reduces of 4 and 8 elements";
  } catch (const dist::AllRanksError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("collective #2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank 0 issued all_reduce(sum) of 4 f32"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank " + std::to_string(odd) + " issued all_reduce(sum) of 8 f32"),
              std::string::npos)
        << msg;
  }
  // The ranks' sequences no longer line up: the group refuses every later collective.
  EXPECT_THROW(pg->barrier(), dist::AllRanksError);
}

}  // namespace
}  // namespace dtrain

#else

TEST(NcclCollectives, NeedsTheCudaBuild) {
  GTEST_SKIP() << "dtrain was built without CUDA (-DDTRAIN_CUDA=OFF)";
}

#endif

namespace dtrain {
namespace {

// A job the NCCL group must abort (see the top of the file); returns 0 only when it was not aborted
// or cannot run here (then the first line of output says "NCCL failure check skipped").
int expect_abort(int argc, char** argv, const std::string& mode) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int status = 0;
  {
    auto world = test::world();
#ifdef DTRAIN_WITH_CUDA
    const bool short_of_gpus = cuda_device_count() <= dist::local_rank_from_environment();
    if (dist::any_rank(*world, short_of_gpus)) {
      if (world->rank() == 0) std::printf("NCCL failure check skipped: needs one GPU per rank\n");
    } else {
      dist::ProcessGroupOptions options;
      options.timeout = std::chrono::seconds(mode == "timeout" ? 2 : 30);
      auto pg = dist::ProcessGroupNCCL::create(world, -1, options);
      Tensor x = Tensor::ones({mode == "disagreement" && pg->rank() == 1 ? 1001 : 1000}, DType::f32,
                              pg->device());
      // disagreement: rank 1 all-reduces one element more; timeout: rank 0 never joins.
      if (mode == "disagreement" || pg->rank() != 0) pg->all_reduce(x)->wait();
      std::this_thread::sleep_for(std::chrono::seconds(50));
      std::fprintf(stderr, "the job was not aborted\n");
      status = 1;
    }
#else
    (void)mode;
    if (world->rank() == 0)
      std::printf("NCCL failure check skipped: dtrain was built without CUDA\n");
#endif
  }
  test::world_slot().reset();
  dist::finalize_mpi();
  return status;
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) {
  const std::string flag = "--expect-abort=";
  if (argc > 1 && std::string(argv[1]).rfind(flag, 0) == 0) {
    return dtrain::expect_abort(argc, argv, std::string(argv[1]).substr(flag.size()));
  }
  return dtrain::test::mpi_test_main(argc, argv);
}
