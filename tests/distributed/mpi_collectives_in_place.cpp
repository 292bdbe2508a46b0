// In-place reduce_scatter and all_gather on ProcessGroupMPI (output = chunk `rank` of the input,
// input = chunk `rank` of the output, as nccl-tests and NCCL define in place; run with MPI_IN_PLACE),
// at several ranks.
#include <sstream>
#include <string>
#include <vector>

#include "distributed/process_group.h"
#include "distributed/mpi/process_group_mpi.h"
#include "mpi_test_main.h"

namespace dtrain {
namespace {

const std::vector<DType> kDTypes{DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64};
const std::vector<int64_t> kChunks{1, 7, 1000003};

// What rank r holds at element i: small integers, exact in every dtype, different on every rank.
double value(int r, int64_t i) { return static_cast<double>((r + 1) * ((i % 5) - 2)); }

Tensor filled(int64_t n, DType dtype, int rank) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = value(rank, i);
  return Tensor::from_vector(v, {n}, dtype);
}

// Mismatches of `t` against `expected(i)`, reporting the first.
template <class F>
void expect_values(const Tensor& t, F expected, const std::string& what) {
  const std::vector<double> got = t.to_vector<double>();
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != expected(static_cast<int64_t>(i))) {
      if (first < 0) first = static_cast<int64_t>(i);
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": first mismatch at " << first << ": got "
                    << (first >= 0 ? got[static_cast<size_t>(first)] : 0.0) << ", expected "
                    << (first >= 0 ? expected(first) : 0.0);
}

std::string label(const char* op, DType t, int64_t chunk) {
  return std::string(op) + " " + dtype_name(t) + " chunk=" + std::to_string(chunk);
}

TEST(MpiInPlace, ReduceScatterIntoOwnChunk) {
  auto pg = test::world();
  const int n = pg->size(), rank = pg->rank();
  for (DType t : kDTypes) {
    for (int64_t chunk : kChunks) {
      Tensor whole = filled(chunk * n, t, rank);
      Tensor own = whole.narrow(0, rank * chunk, chunk);
      pg->reduce_scatter(own, whole, dist::ReduceOp::sum)->wait();
      expect_values(
          own,
          [&](int64_t j) {
            double s = 0;
            for (int q = 0; q < n; ++q) s += value(q, rank * chunk + j);
            return s;
          },
          label("reduce_scatter sum in place", t, chunk));

      // max, and the out-of-place call on the same values for comparison.
      Tensor again = filled(chunk * n, t, rank);
      Tensor separate = Tensor::zeros({chunk}, t);
      pg->reduce_scatter(separate, again, dist::ReduceOp::max)->wait();
      Tensor own_max = again.narrow(0, rank * chunk, chunk);
      pg->reduce_scatter(own_max, again, dist::ReduceOp::max)->wait();
      const std::vector<double> want = separate.to_vector<double>();
      expect_values(
          own_max, [&](int64_t j) { return want[static_cast<size_t>(j)]; },
          label("reduce_scatter max in place vs out of place", t, chunk));
    }
  }
}

TEST(MpiInPlace, ReduceScatterAvgInPlace) {
  auto pg = test::world();
  const int n = pg->size(), rank = pg->rank();
  const int64_t chunk = 1001;
  Tensor whole = Tensor::full({chunk * n}, static_cast<double>(n * (rank + 1)), DType::f64);
  Tensor own = whole.narrow(0, rank * chunk, chunk);
  pg->reduce_scatter(own, whole, dist::ReduceOp::avg)->wait();
  expect_values(
      own, [&](int64_t) { return n * (n + 1) / 2.0; }, "reduce_scatter avg in place");
}

TEST(MpiInPlace, AllGatherFromOwnChunk) {
  auto pg = test::world();
  const int n = pg->size(), rank = pg->rank();
  for (DType t : kDTypes) {
    for (int64_t chunk : kChunks) {
      Tensor whole = Tensor::full({chunk * n}, -7.0, t);  // other ranks' chunks: overwritten
      whole.narrow(0, rank * chunk, chunk).copy_(filled(chunk, t, rank));
      pg->all_gather(whole, whole.narrow(0, rank * chunk, chunk))->wait();
      expect_values(
          whole, [&](int64_t i) { return value(static_cast<int>(i / chunk), i % chunk); },
          label("all_gather in place", t, chunk));
    }
  }
}

TEST(MpiInPlace, OverlapOtherThanOwnChunkIsAnError) {
  auto pg = test::world();
  const int n = pg->size(), rank = pg->rank();
  const int64_t chunk = 16;
  Tensor whole = Tensor::zeros({chunk * n});
  Tensor other = whole.narrow(0, ((rank + 1) % n) * chunk, chunk);
  Tensor shifted = whole.narrow(0, 1, chunk);  // overlaps chunk 0 and 1 (n >= 2)
  for (const Tensor& bad : {other, shifted}) {
    try {
      pg->reduce_scatter(bad, whole);
      ADD_FAILURE() << "no error for an overlapping reduce_scatter output";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("in place means exactly that chunk"), std::string::npos)
          << e.what();
    }
    EXPECT_THROW(pg->all_gather(whole, bad), Error);
  }
  pg->barrier()->wait();  // nothing was issued: the group still works
}

// Every rank or none must alias (MPI_IN_PLACE is all-or-nothing): a mix is a disagreement that
// every rank reports, on a group of its own (a disagreement leaves its group unusable).
TEST(MpiInPlace, MixedAliasingIsADisagreement) {
  auto pg = dist::ProcessGroupMPI::create();
  const int n = pg->size(), rank = pg->rank();
  const int64_t chunk = 8;
  Tensor whole = Tensor::ones({chunk * n});
  Tensor output = rank == 0 ? whole.narrow(0, 0, chunk) : Tensor::zeros({chunk});
  try {
    pg->reduce_scatter(output, whole)->wait();
    ADD_FAILURE() << "no error when only rank 0 works in place";
  } catch (const dist::AllRanksError& e) {
    EXPECT_NE(std::string(e.what()).find("in place"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) { return dtrain::test::mpi_test_main(argc, argv); }
