// Every collective of ProcessGroupMPI, for every dtype, at sizes 1, 7 and 1e6+3 (odd, so no algorithm
// gets an evenly divisible message). Values are small integers (exact in bf16) so expected results are
// exact except for avg, checked to the dtype's precision.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "mpi_test_main.h"

namespace dtrain {
namespace {

const std::vector<DType> kDTypes{DType::f32,  DType::f64, DType::f16,
                                 DType::bf16, DType::i32, DType::i64};
const std::vector<int64_t> kSizes{1, 7, 1000003};

// What rank r holds at element i: small signed integers that differ between ranks and elements.
double value(int r, int64_t i) { return static_cast<double>((r + 1) * ((i % 5) - 2)); }
double max_value(int r, int64_t i, int size) { return static_cast<double>((i + r) % size) * 2 - 3; }

double tolerance(DType t) {
  switch (t) {
    case DType::bf16:
      return 1.0 / 128;
    case DType::f16:
      return 1.0 / 1024;
    case DType::f32:
      return 1e-6;
    default:
      return 1e-12;
  }
}

// Element access straight on the buffer (the tensors are contiguous CPU tensors): a million-element
// check stays cheap next to the collective it checks.
double read(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::f32:
      return t.data<float>()[i];
    case DType::f64:
      return t.data<double>()[i];
    case DType::f16:
      return half_to_float(t.data<Half>()[i]);
    case DType::bf16:
      return bf16_to_float(t.data<BFloat16>()[i]);
    case DType::i32:
      return t.data<int32_t>()[i];
    case DType::i64:
      return static_cast<double>(t.data<int64_t>()[i]);
  }
  return 0;
}

void write(const Tensor& t, int64_t i, double v) {
  switch (t.dtype()) {
    case DType::f32:
      t.data<float>()[i] = static_cast<float>(v);
      break;
    case DType::f64:
      t.data<double>()[i] = v;
      break;
    case DType::f16:
      t.data<Half>()[i] = float_to_half(static_cast<float>(v));
      break;
    case DType::bf16:
      t.data<BFloat16>()[i] = float_to_bf16(static_cast<float>(v));
      break;
    case DType::i32:
      t.data<int32_t>()[i] = static_cast<int32_t>(v);
      break;
    case DType::i64:
      t.data<int64_t>()[i] = static_cast<int64_t>(v);
      break;
  }
}

template <class F>
Tensor filled(int64_t n, DType dtype, F f) {
  Tensor t = Tensor::empty({n}, dtype);
  for (int64_t i = 0; i < n; ++i) write(t, i, f(i));
  return t;
}

// Counts mismatches (and reports the first) instead of one EXPECT per element of a million.
template <class F>
void expect_values(const Tensor& view, F expected, double rel_tol, const std::string& what) {
  const Tensor t = view.contiguous();
  int64_t bad = 0, first = -1;
  double first_got = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double e = expected(i), got = read(t, i);
    if (std::abs(got - e) > rel_tol * std::max(1.0, std::abs(e))) {
      if (first < 0) first = i, first_got = got;
      ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": first mismatch at " << first << ": got " << first_got
                    << ", expected " << (first >= 0 ? expected(first) : 0.0);
}

std::string label(const char* op, DType t, int64_t n) {
  return std::string(op) + " " + dtype_name(t) + " n=" + std::to_string(n);
}

TEST(MpiCollectives, Broadcast) {
  auto pg = test::world();
  const int root = pg->size() - 1;
  for (DType t : kDTypes) {
    for (int64_t n : kSizes) {
      Tensor x = filled(n, t, [&](int64_t i) { return value(pg->rank(), i); });
      pg->broadcast(x, root)->wait();
      expect_values(
          x, [&](int64_t i) { return value(root, i); }, 0, label("broadcast", t, n));
    }
  }
}

TEST(MpiCollectives, AllReduceSumAvgMax) {
  auto pg = test::world();
  const int size = pg->size();
  for (DType t : kDTypes) {
    for (int64_t n : kSizes) {
      auto sum = [&](int64_t i) {
        double s = 0;
        for (int r = 0; r < size; ++r) s += value(r, i);
        return s;
      };
      Tensor x = filled(n, t, [&](int64_t i) { return value(pg->rank(), i); });
      pg->all_reduce(x, dist::ReduceOp::sum)->wait();
      expect_values(x, sum, 0, label("all_reduce sum", t, n));

      Tensor m = filled(n, t, [&](int64_t i) { return max_value(pg->rank(), i, size); });
      pg->all_reduce(m, dist::ReduceOp::max)->wait();
      expect_values(
          m,
          [&](int64_t i) {
            double best = -1e9;
            for (int r = 0; r < size; ++r) best = std::max(best, max_value(r, i, size));
            return best;
          },
          0, label("all_reduce max", t, n));

      if (!is_floating(t)) continue;
      Tensor a = filled(n, t, [&](int64_t i) { return value(pg->rank(), i); });
      pg->all_reduce(a, dist::ReduceOp::avg)->wait();
      expect_values(
          a, [&](int64_t i) { return sum(i) / size; }, tolerance(t), label("all_reduce avg", t, n));
    }
  }
}

TEST(MpiCollectives, AllReduceOverSeveralPieces) {
  // ProcessGroupMPI reduces messages over 16 MiB in 16 MiB pieces: 2^21 + 3 f64 elements make two,
  // the second of 3 elements.
  auto pg = test::world();
  const int64_t n = (int64_t{1} << 21) + 3;
  Tensor x = filled(n, DType::f64, [&](int64_t i) { return value(pg->rank(), i); });
  pg->all_reduce(x, dist::ReduceOp::avg)->wait();
  expect_values(
      x,
      [&](int64_t i) {
        double s = 0;
        for (int r = 0; r < pg->size(); ++r) s += value(r, i);
        return s / pg->size();
      },
      1e-12, "all_reduce avg f64 in pieces");
}

TEST(MpiCollectives, ReduceScatter) {
  auto pg = test::world();
  const int size = pg->size();
  for (DType t : kDTypes) {
    for (int64_t n : kSizes) {
      Tensor in = filled(n * size, t, [&](int64_t i) { return value(pg->rank(), i); });
      Tensor out = Tensor::empty({n}, t);
      pg->reduce_scatter(out, in, dist::ReduceOp::sum)->wait();
      const int64_t base = pg->rank() * n;
      expect_values(
          out,
          [&](int64_t i) {
            double s = 0;
            for (int r = 0; r < size; ++r) s += value(r, base + i);
            return s;
          },
          0, label("reduce_scatter sum", t, n));
      if (is_floating(t)) {
        pg->reduce_scatter(out, in, dist::ReduceOp::avg)->wait();
        expect_values(
            out,
            [&](int64_t i) {
              double s = 0;
              for (int r = 0; r < size; ++r) s += value(r, base + i);
              return s / size;
            },
            tolerance(t), label("reduce_scatter avg", t, n));
      }
    }
  }
}

TEST(MpiCollectives, AllGather) {
  auto pg = test::world();
  const int size = pg->size();
  for (DType t : kDTypes) {
    for (int64_t n : kSizes) {
      Tensor in = filled(n, t, [&](int64_t i) { return value(pg->rank(), i); });
      Tensor out = Tensor::empty({n * size}, t);
      pg->all_gather(out, in)->wait();
      expect_values(
          out, [&](int64_t i) { return value(static_cast<int>(i / n), i % n); }, 0,
          label("all_gather", t, n));
    }
  }
}

TEST(MpiCollectives, BarrierOrdersRanks) {
  auto pg = test::world();
  // Each rank writes its arrival count before the barrier; after it, an all-gather sees every rank's.
  for (int round = 0; round < 3; ++round) {
    pg->barrier()->wait();
    std::vector<int64_t> all = dist::all_gather_values(*pg, {round});
    for (int64_t v : all) EXPECT_EQ(v, round);
  }
}

TEST(MpiCollectives, ManyInFlightCompleteInAnyWaitOrder) {
  auto pg = test::world();
  std::vector<Tensor> xs;
  std::vector<dist::WorkPtr> works;
  for (int k = 0; k < 8; ++k) {
    xs.push_back(Tensor::full({1000 + k}, pg->rank() + k, DType::f32));
    works.push_back(pg->all_reduce(xs.back()));
  }
  for (int k = 7; k >= 0; --k) works[static_cast<size_t>(k)]->wait();
  const int size = pg->size();
  for (int k = 0; k < 8; ++k) {
    double expected = size * (size - 1) / 2.0 + size * k;
    expect_values(
        xs[static_cast<size_t>(k)], [&](int64_t) { return expected; }, 0, "in flight");
    EXPECT_TRUE(works[static_cast<size_t>(k)]->is_completed());
    EXPECT_LE(works[static_cast<size_t>(k)]->start_time(),
              works[static_cast<size_t>(k)]->end_time());
  }
}

TEST(MpiCollectives, HelpersAndRawAllReduce) {
  auto pg = test::world();
  const int size = pg->size();
  EXPECT_EQ(dist::all_reduce_value(*pg, pg->rank() + 1.0, dist::ReduceOp::sum),
            size * (size + 1) / 2.0);
  EXPECT_EQ(dist::all_reduce_value(*pg, pg->rank(), dist::ReduceOp::max), size - 1.0);
  Tensor x = Tensor::full({1000003}, 1.5, DType::f32);
  pg->raw_all_reduce(x);
  expect_values(
      x, [&](int64_t) { return 1.5 * size; }, 0, "raw_all_reduce");

  // Non-contiguous tensors are packed by broadcast_coalesced; mixed dtypes go in separate messages.
  Tensor a = Tensor::full({3, 4}, pg->rank(), DType::f32).transpose(0, 1);
  Tensor b = Tensor::full({5}, pg->rank() * 10, DType::i64);
  Tensor c = Tensor::full({2, 2}, pg->rank() + 0.5, DType::f64);
  dist::broadcast_coalesced(*pg, {a, b, c}, 1);
  expect_values(
      a, [](int64_t) { return 1.0; }, 0, "coalesced f32 view");
  expect_values(
      b, [](int64_t) { return 10.0; }, 0, "coalesced i64");
  expect_values(
      c, [](int64_t) { return 1.5; }, 0, "coalesced f64");
}

// The node placement comes from MPI (ranks sharing memory), not from a launcher's variables: on this
// one machine every rank is local, the local ranks are 0..n-1 once each, and they agree with what
// Open MPI's mpiexec also exports. The host group of an MPI group is itself.
TEST(MpiCollectives, LocalRankAndSizeFromMpi) {
  auto pg = test::world();
  EXPECT_EQ(dist::local_size(), pg->size());
  const std::vector<int64_t> locals = dist::all_gather_values(*pg, {dist::local_rank()});
  std::vector<int64_t> sorted = locals;
  std::sort(sorted.begin(), sorted.end());
  for (int r = 0; r < pg->size(); ++r) EXPECT_EQ(sorted[static_cast<size_t>(r)], r);
  if (std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) {
    EXPECT_EQ(dist::local_rank(), dist::local_rank_from_environment());
  }
  EXPECT_EQ(&pg->host(), pg.get());
}

TEST(MpiCollectives, BadArgumentsAreErrorsOnTheCallingRank) {
  auto pg = test::world();
  Tensor i = Tensor::zeros({4}, DType::i64);
  EXPECT_THROW(pg->all_reduce(i, dist::ReduceOp::avg), Error);
  Tensor nc = Tensor::zeros({3, 4}).transpose(0, 1);
  EXPECT_THROW(pg->all_reduce(nc), Error);
  EXPECT_THROW(pg->all_gather(Tensor::zeros({3}), Tensor::zeros({2})), Error);
  EXPECT_THROW(pg->reduce_scatter(Tensor::zeros({3}), Tensor::zeros({3 * pg->size() + 1})), Error);
  EXPECT_THROW(pg->broadcast(Tensor::zeros({2}), pg->size()), Error);
  try {
    pg->all_reduce(i, dist::ReduceOp::avg);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("avg"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) { return dtrain::test::mpi_test_main(argc, argv); }
