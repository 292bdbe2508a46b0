// Ranks that issue different collectives get an error naming both sides, on every rank, before any
// data moves: never a buffer overrun (the defect this guards against: rank 0 all-reducing one f64 while
// rank 1 all-reduced 39,316 f32 wrote 39 KB into rank 0's 8-byte buffer). Each test makes its own group,
// because a disagreement breaks the group for good (its ranks' sequences of collectives no longer pair).
#include <string>

#include "mpi_test_main.h"

namespace dtrain {
namespace {

std::shared_ptr<dist::ProcessGroupMPI> fresh_group(bool debug) {
  dist::ProcessGroupOptions options;
  options.timeout = std::chrono::seconds(60);
  options.debug_collectives = debug;
  return dist::ProcessGroupMPI::create(options);
}

// The error every rank gets from `work`, or "" when it succeeded.
std::string all_ranks_error(const dist::WorkPtr& work) {
  try {
    work->wait();
  } catch (const dist::AllRanksError& e) {
    return e.what();
  }
  return "";
}

void expect_mentions(const std::string& msg, const std::vector<std::string>& parts) {
  for (const std::string& p : parts)
    EXPECT_NE(msg.find(p), std::string::npos) << "no '" << p << "' in: " << msg;
}

TEST(MpiAgreement, CountAndDtypeMismatchIsAnErrorNotAnOverrun) {
  auto pg = fresh_group(false);
  // Sentinels on both sides of the small buffer: an overrun would change them.
  const bool last = pg->rank() == pg->size() - 1;
  Tensor guarded = Tensor::full({3}, 7.0, DType::f64);
  Tensor small = guarded.narrow(0, 1, 1);
  Tensor big = Tensor::ones({39316}, DType::f32);
  std::string msg =
      all_ranks_error(last ? pg->all_reduce(big) : pg->all_reduce(small, dist::ReduceOp::max));
  expect_mentions(msg, {"ranks disagree on collective #1", "rank 0 issued all_reduce(max) of 1 f64",
                        "issued all_reduce(sum) of 39316 f32"});
  EXPECT_EQ(guarded.to_vector<double>(), (std::vector<double>{7.0, 7.0, 7.0}));
  // The group is broken from then on: later collectives fail at once with the same message, no hang.
  EXPECT_EQ(all_ranks_error(pg->barrier()), msg);
}

TEST(MpiAgreement, AgreeingCollectivesStillWork) {
  auto pg = fresh_group(false);
  Tensor t = Tensor::full({5}, 1.0);
  pg->all_reduce(t)->wait();
  EXPECT_EQ(t.to_vector<float>(), std::vector<float>(5, static_cast<float>(pg->size())));
  pg->barrier()->wait();
  Tensor b = Tensor::full({2}, static_cast<double>(pg->rank()), DType::f64);
  pg->broadcast(b, pg->size() - 1)->wait();
  EXPECT_EQ(b.to_vector<double>(), std::vector<double>(2, pg->size() - 1.0));
}

TEST(MpiAgreement, RootAndKindMismatchesAreNamed) {
  auto pg = fresh_group(false);
  Tensor t = Tensor::zeros({4});
  std::string msg = all_ranks_error(pg->rank() == 0 ? pg->broadcast(t, 0) : pg->broadcast(t, 1));
  expect_mentions(msg, {"rank 0 issued broadcast(root 0)", "rank 1 issued broadcast(root 1)"});
  auto pg2 = fresh_group(false);
  msg = all_ranks_error(pg2->rank() == 0 ? pg2->barrier() : pg2->all_reduce(t));
  expect_mentions(msg, {"rank 0 issued barrier", "rank 1 issued all_reduce(sum) of 4 f32"});
}

// --debug-collectives also compares shapes: the same element count in another shape is named.
TEST(MpiAgreement, DebugModeComparesShapes) {
  auto cheap = fresh_group(false);
  Tensor t = cheap->rank() == 0 ? Tensor::zeros({2, 3}) : Tensor::zeros({3, 2});
  EXPECT_EQ(all_ranks_error(cheap->all_reduce(t)),
            "");  // same count and dtype: the cheap check passes
  auto debug = fresh_group(true);
  std::string msg = all_ranks_error(debug->all_reduce(t));
  expect_mentions(msg, {"rank 0 issued all_reduce(sum) of 6 f32", "shape [2, 3]", "rank 1 issued",
                        "shape [3, 2]"});
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) { return dtrain::test::mpi_test_main(argc, argv); }
