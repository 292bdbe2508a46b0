// CUDA vs CPU parity for memory, copies, elementwise ops, reductions, random fills and GEMM. Every test
// skips with a reason where no GPU is visible.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/backend/backend.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
#include "tests/core/backend/cuda/parity.h"
#include "tests/core/ops/unary_cases.h"

namespace dtrain {
namespace {

using testing::cpu_be;
using testing::expect_parity;
using testing::float_dtypes;
using testing::gpu;
using testing::gpu_be;
using testing::on_gpu;
using testing::uniform_tensor;

// The binary cases loop over every row of core/backend/binary_ops.def.
std::vector<BinaryOp> all_binary_ops() {
  std::vector<BinaryOp> ops;
  for (int i = 0; i < kBinaryOpCount; ++i) ops.push_back(static_cast<BinaryOp>(i));
  return ops;
}
// div's divisor and pow's base stay positive (the table's domain column).
bool needs_positive(BinaryOp op) {
  switch (op) {
#define DTRAIN_BINARY_OP(name, domain, ...) \
  case BinaryOp::name:                      \
    return std::string_view(#domain) == "positive";
#include "core/backend/binary_ops.def"
  }
  return false;
}

// Values on a grid of 0.25 in [lo, hi], so comparisons meet equal pairs.
Tensor grid_tensor(const Shape& shape, DType dtype, Generator& gen, double lo, double hi) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  const auto steps = static_cast<uint64_t>((hi - lo) / 0.25) + 1;
  for (double& x : v) x = lo + 0.25 * static_cast<double>(gen.next_u64() % steps);
  return Tensor::from_vector(v, shape, dtype);
}

TEST(Cuda, device_count_is_never_an_error) {
  // Runs everywhere: without a driver or a device the count is 0 rather than an exception.
  int count = -1;
  EXPECT_NO_THROW(count = cuda_device_count());
  EXPECT_GE(count, 0);
  EXPECT_EQ(cuda_available(), count > 0);
  if (count == 0) {
    EXPECT_THROW(backend_for(Device::cuda(0)), Error);
  }
}

TEST(Cuda, host_copies_round_trip) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  // 12 MB: several chunks of the 4 MiB pinned staging buffers, and a ragged last chunk.
  const int64_t n = 3 * 1000 * 1000 + 7;
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i % 9973) * 0.5f;
  Tensor host = Tensor::from_vector(v, {n}, DType::f32);
  Tensor dev = host.to(gpu());
  EXPECT_TRUE(dev.device().is_cuda());
  EXPECT_EQ(dev.to(Device::cpu()).to_vector<float>(), v);
  // Raw byte copies.
  Backend& be = gpu_be();
  void* p = be.allocate(100, 0);
  const char msg[100] = "dtrain pinned staging";
  char back[100] = {};
  be.copy_from_host(msg, p, sizeof msg, 0);
  be.copy_to_host(p, back, sizeof back, 0);
  EXPECT_EQ(std::memcmp(msg, back, sizeof msg), 0);
  be.deallocate(p, 100, 0);
}

TEST(Cuda, copy) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(11);
  const std::vector<DType> all = {DType::f32,  DType::f64, DType::f16,
                                  DType::bf16, DType::i32, DType::i64};
  for (DType from : all) {
    for (DType to : all) {
      // Integers stay small and exact in every dtype.
      Tensor src = grid_tensor({6, 5, 7}, from, gen, -8.0, 8.0);
      // A transposed source, a permuted destination: both strided.
      Tensor src_c = src.permute({2, 0, 1});
      Tensor dst_c = Tensor::empty({5, 7, 6}, to).permute({1, 2, 0});  // shape [7, 6, 5]
      cpu_be().copy(src_c, dst_c);
      Tensor src_g = on_gpu(src).permute({2, 0, 1});
      Tensor dst_g = Tensor::empty({5, 7, 6}, to, gpu()).permute({1, 2, 0});
      gpu_be().copy(src_g, dst_g);
      expect_parity(dst_c.contiguous(), dst_g.contiguous(),
                    std::string("copy ") + dtype_name(from) + " -> " + dtype_name(to));
    }
  }
  // Broadcast source (stride 0).
  Tensor row = uniform_tensor({1, 9}, DType::f32, gen);
  Tensor out_c = Tensor::empty({4, 9}, DType::f32);
  cpu_be().copy(row.expand({4, 9}), out_c);
  Tensor out_g = Tensor::empty({4, 9}, DType::f32, gpu());
  gpu_be().copy(on_gpu(row).expand({4, 9}), out_g);
  expect_parity(out_c, out_g, "broadcast copy");
}

TEST(Cuda, fill) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64}) {
    for (double value : {0.0, -2.5, 3.0, 1.0 / 3.0}) {
      Tensor c = Tensor::full({3, 17}, value, t);
      Tensor g = Tensor::full({3, 17}, value, t, gpu());
      expect_parity(c, g, std::string("fill ") + dtype_name(t));
    }
  }
  // Strided destination (every other column).
  Tensor g = Tensor::zeros({4, 10}, DType::f32, gpu());
  g.narrow(1, 2, 5).fill_(7.0);
  Tensor c = Tensor::zeros({4, 10}, DType::f32);
  c.narrow(1, 2, 5).fill_(7.0);
  expect_parity(c, g, "strided fill");
}

TEST(Cuda, copy_flat_casts_vector_tail_and_misaligned) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  // Contiguous copies of every dtype pair: the 128-bit path for f32/f16/bf16 pairs (8 per thread,
  // 1031 = 128 * 8 + 7 leaves a tail), and, one element in, the misaligned scalar path; the other
  // pairs take the run-time-dtype kernel on one flat dim.
  Generator gen(12);
  const std::vector<DType> all = {DType::f32,  DType::f64, DType::f16,
                                  DType::bf16, DType::i32, DType::i64};
  for (DType from : all) {
    for (DType to : all) {
      Tensor src = grid_tensor({1032}, from, gen, -100.0, 100.0);
      for (int64_t start : {0, 1}) {
        Tensor dst_c = Tensor::empty({1031}, to);
        cpu_be().copy(src.narrow(0, start, 1031), dst_c);
        Tensor dst_g = Tensor::empty({1032}, to, gpu()).narrow(0, start, 1031);
        gpu_be().copy(on_gpu(src).narrow(0, start, 1031), dst_g);
        expect_parity(dst_c, dst_g.contiguous(),
                      std::string("flat copy ") + dtype_name(from) + " -> " + dtype_name(to) +
                          " offset " + std::to_string(start));
      }
    }
  }
  // int64 -> f32 rounds once, as the CPU's static_cast does. Through f64 it would round twice:
  // 2^60 + 2^36 + 1 becomes 2^60 + 2^36 in f64, a tie that f32 rounds down to 2^60, where rounding
  // once goes up to 2^60 + 2^37.
  const std::vector<int64_t> big = {(int64_t{1} << 60) + (int64_t{1} << 36) + 1,
                                    -((int64_t{1} << 55) + (int64_t{1} << 31) + 1), 16777217};
  Tensor ints = Tensor::from_vector(big, {3}, DType::i64);
  Tensor f_c = Tensor::empty({3}, DType::f32);
  cpu_be().copy(ints, f_c);
  Tensor f_g = Tensor::empty({3}, DType::f32, gpu());
  gpu_be().copy(on_gpu(ints), f_g);
  EXPECT_EQ(f_c.to_vector<float>(), f_g.to_vector<float>()) << "i64 -> f32 rounding";
}

TEST(Cuda, copy_and_fill_with_64_bit_indexing) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  // 2^31 + 8 elements (4 GiB of f16): more than int32 counts, so the strided kernels run with 64-bit
  // index arithmetic. Checked on the device (a sum) and at both ends, not against the CPU.
  const int64_t rows = (int64_t{1} << 28) + 1, cols = 8, numel = rows * cols;
  std::vector<float> row_values(static_cast<size_t>(cols));
  double row_sum = 0.0;
  for (int64_t j = 0; j < cols; ++j) {
    row_values[static_cast<size_t>(j)] = 0.5f * static_cast<float>(j + 1);
    row_sum += 0.5 * static_cast<double>(j + 1);
  }
  Tensor row = on_gpu(Tensor::from_vector(row_values, {1, cols}, DType::f32));
  Tensor out = Tensor::empty({rows, cols}, DType::f16, gpu());
  auto check = [&](const std::string& what) {
    Tensor total = Tensor::empty({1}, DType::f64, gpu());
    gpu_be().reduce(ReduceOp::sum, out, 1, numel, 1, total, Tensor());
    EXPECT_EQ(total.to_vector<double>()[0], row_sum * static_cast<double>(rows)) << what;
    for (int64_t r : {int64_t{0}, rows - 1}) {
      std::vector<double> got = out.narrow(0, r, 1).to_vector<double>();
      for (int64_t j = 0; j < cols; ++j) {
        EXPECT_EQ(got[static_cast<size_t>(j)], 0.5 * static_cast<double>(j + 1))
            << what << " row " << r << " col " << j;
      }
    }
  };
  gpu_be().copy(row.expand({rows, cols}), out);  // converting (f32 -> f16), broadcast source
  check("converting broadcast copy");
  gpu_be().fill(out, 0.0);
  gpu_be().copy(row.to(DType::f16).expand({rows, cols}), out);  // same dtype: bit copy
  check("bit copy of a broadcast row");
  // A strided fill over the same count (every other column of a [rows, 16] buffer would be 8 GiB;
  // a transposed view of out is enough: not flat, 2^31 + 8 elements).
  gpu_be().fill(out.transpose(0, 1), 0.25);
  Tensor total = Tensor::empty({1}, DType::f64, gpu());
  gpu_be().reduce(ReduceOp::sum, out, 1, numel, 1, total, Tensor());
  EXPECT_EQ(total.to_vector<double>()[0], 0.25 * static_cast<double>(numel)) << "strided fill";
}

TEST(Cuda, fill_flat_misaligned_leaves_neighbours) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64}) {
    // One element in and one short: the vector path cannot start aligned; the ends stay 0.
    Tensor g = Tensor::zeros({1033}, t, gpu());
    gpu_be().fill(g.narrow(0, 1, 1031), -3.0);
    Tensor c = Tensor::zeros({1033}, t);
    cpu_be().fill(c.narrow(0, 1, 1031), -3.0);
    expect_parity(c, g, std::string("misaligned fill ") + dtype_name(t));
    // Aligned, with a tail (1031 is not a multiple of any pack).
    Tensor ga = Tensor::zeros({1031}, t, gpu());
    gpu_be().fill(ga, 5.0);
    expect_parity(Tensor::full({1031}, 5.0, t), ga, std::string("aligned fill ") + dtype_name(t));
  }
}

TEST(Cuda, unary) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(3);
  for (DType t : float_dtypes()) {
    for (const testing::UnaryCase& c : testing::kUnaryCases) {  // every row of unary_ops.def
      const UnaryOp op = c.op;
      const bool positive = c.domain == testing::UnaryDomain::positive;  // log, sqrt, ...
      // 1031 elements: not a multiple of any 128-bit pack, so the tail path runs too; the narrowed
      // view starts one element in, so it is misaligned and takes the scalar path.
      Tensor full = uniform_tensor({1032}, t, gen, positive ? 0.1 : -3.0, 3.0);
      for (int64_t start : {0, 1}) {
        Tensor x = full.narrow(0, start, 1031);
        Tensor out_c = Tensor::empty({1031}, t);
        cpu_be().unary(op, x, out_c);
        Tensor x_g = on_gpu(full).narrow(0, start, 1031);
        Tensor out_g = Tensor::empty({1032}, t, gpu()).narrow(0, start, 1031);
        gpu_be().unary(op, x_g, out_g);
        expect_parity(out_c, out_g.contiguous(),
                      std::string("unary ") + c.name + " offset " + std::to_string(start));
      }
    }
  }
}

TEST(Cuda, unary_backward) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(4);
  for (DType t : float_dtypes()) {
    for (const testing::UnaryCase& c : testing::kUnaryCases) {  // every row of unary_ops.def
      const UnaryOp op = c.op;
      const bool positive = c.domain == testing::UnaryDomain::positive;
      Tensor x = uniform_tensor({517}, t, gen, positive ? 0.2 : -3.0, 3.0);
      Tensor g = uniform_tensor({517}, t, gen);
      Tensor out_c = Tensor::empty({517}, t);
      cpu_be().unary_backward(op, x, g, out_c);
      Tensor out_g = Tensor::empty({517}, t, gpu());
      gpu_be().unary_backward(op, on_gpu(x), on_gpu(g), out_g);
      expect_parity(out_c, out_g, std::string("unary_backward ") + c.name);
    }
  }
}

TEST(Cuda, binary) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(5);
  const Shape out_shape = {7, 33};
  // b's stored shapes: full, a broadcast row, a broadcast column, a scalar.
  const std::vector<Shape> b_shapes = {{7, 33}, {1, 33}, {7, 1}, {1, 1}};
  std::vector<DType> types = float_dtypes();
  types.push_back(DType::i64);
  types.push_back(DType::i32);
  for (DType t : types) {
    for (BinaryOp op : all_binary_ops()) {
      if (!is_floating(t) && !binary_op_takes_integers(op)) continue;
      const bool positive = needs_positive(op);
      for (const Shape& bs : b_shapes) {
        Tensor a = grid_tensor(out_shape, t, gen, positive ? 0.5 : -2.0, 2.0);
        Tensor b = grid_tensor(bs, t, gen, positive ? 0.5 : -2.0, 2.0);
        Tensor out_c = Tensor::empty(out_shape, t);
        cpu_be().binary(op, a, b.expand(out_shape), out_c);
        Tensor out_g = Tensor::empty(out_shape, t, gpu());
        gpu_be().binary(op, on_gpu(a), on_gpu(b).expand(out_shape), out_g);
        expect_parity(out_c, out_g,
                      std::string("binary ") + binary_op_name(op) + " b " + shape_str(bs));
      }
      // In place (out is a) on the contiguous fast path.
      Tensor a = grid_tensor({1001}, t, gen, positive ? 0.5 : -2.0, 2.0);
      Tensor b = grid_tensor({1001}, t, gen, positive ? 0.5 : -2.0, 2.0);
      Tensor a_g = on_gpu(a), b_g = on_gpu(b);
      cpu_be().binary(op, a, b, a);
      gpu_be().binary(op, a_g, b_g, a_g);
      expect_parity(a, a_g, std::string("in-place binary ") + binary_op_name(op));
    }
  }
}

TEST(Cuda, binary_scalar) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(6);
  for (DType t : float_dtypes()) {
    for (BinaryOp op : all_binary_ops()) {
      for (bool scalar_first : {false, true}) {
        const bool positive = needs_positive(op);
        Tensor a = grid_tensor({1003}, t, gen, positive ? 0.5 : -2.0, 2.0);
        Tensor out_c = Tensor::empty({1003}, t);
        cpu_be().binary_scalar(op, a, 0.75, scalar_first, out_c);
        Tensor out_g = Tensor::empty({1003}, t, gpu());
        gpu_be().binary_scalar(op, on_gpu(a), 0.75, scalar_first, out_g);
        expect_parity(out_c, out_g,
                      std::string("binary_scalar ") + binary_op_name(op) +
                          (scalar_first ? " (scalar first)" : ""));
      }
    }
  }
}

TEST(Cuda, reduce) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(7);
  struct Case {
    int64_t outer, n, inner;
  };
  // Rows and columns; long n with few outputs exercises the two-pass (chunked) path.
  const Case cases[] = {{64, 37, 1},  {1, 100000, 1}, {3, 50, 17},
                        {1, 4096, 3}, {2, 1, 5},      {5, 300, 40}};
  std::vector<DType> types = float_dtypes();
  types.push_back(DType::i64);
  for (DType t : types) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min}) {
      for (const Case& c : cases) {
        Tensor x = is_floating(t) ? uniform_tensor({c.outer, c.n, c.inner}, t, gen)
                                  : testing::index_tensor({c.outer, c.n, c.inner}, -50, 50, gen);
        const bool with_idx = op != ReduceOp::sum;
        Tensor out_c = Tensor::empty({c.outer, c.inner}, t);
        Tensor idx_c = with_idx ? Tensor::empty({c.outer, c.inner}, DType::i64) : Tensor();
        cpu_be().reduce(op, x, c.outer, c.n, c.inner, out_c, idx_c);
        Tensor out_g = Tensor::empty({c.outer, c.inner}, t, gpu());
        Tensor idx_g = with_idx ? Tensor::empty({c.outer, c.inner}, DType::i64, gpu()) : Tensor();
        gpu_be().reduce(op, on_gpu(x), c.outer, c.n, c.inner, out_g, idx_g);
        const std::string what = std::string("reduce op ") + std::to_string(static_cast<int>(op)) +
                                 " [" + std::to_string(c.outer) + ", " + std::to_string(c.n) +
                                 ", " + std::to_string(c.inner) + "]";
        // A long f32 sum differs by summation order more than elementwise ops do.
        expect_parity(out_c, out_g, what, op == ReduceOp::sum ? 100.0 : 1.0);
        // Arg positions are unambiguous only without ties: f32/f64 uniform draws.
        if (with_idx && (t == DType::f32 || t == DType::f64)) expect_parity(idx_c, idx_g, what);
      }
    }
  }
}

TEST(Cuda, random) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  const int64_t n = 200000;
  for (DType t : float_dtypes()) {
    const std::string name = dtype_name(t);
    Generator gen(42);
    Tensor u = Tensor::empty({n}, t, gpu());
    gpu_be().random(RandomKind::uniform, -1.0, 3.0, gen, u);
    std::vector<double> v = u.to_vector<double>();
    double mean = 0.0, sq = 0.0, lo = 1e9, hi = -1e9;
    for (double x : v) mean += x, sq += x * x, lo = std::min(lo, x), hi = std::max(hi, x);
    mean /= static_cast<double>(n);
    const double var = sq / static_cast<double>(n) - mean * mean;
    EXPECT_NEAR(mean, 1.0, 0.02) << name;
    EXPECT_NEAR(var, 16.0 / 12.0, 0.03) << name;
    EXPECT_GE(lo, -1.0) << name;
    EXPECT_LE(hi, 3.0) << name;

    Tensor z = Tensor::empty({n}, t, gpu());
    gpu_be().random(RandomKind::normal, 2.0, 3.0, gen, z);
    v = z.to_vector<double>();
    mean = 0.0, sq = 0.0;
    for (double x : v) mean += x, sq += x * x;
    mean /= static_cast<double>(n);
    EXPECT_NEAR(mean, 2.0, 0.05) << name;
    EXPECT_NEAR(std::sqrt(sq / static_cast<double>(n) - mean * mean), 3.0, 0.05) << name;

    Tensor b = Tensor::empty({n}, t, gpu());
    gpu_be().random(RandomKind::bernoulli, 0.3, 0.0, gen, b);
    v = b.to_vector<double>();
    double ones = 0.0;
    for (double x : v) {
      EXPECT_TRUE(x == 0.0 || x == 1.0) << name;
      ones += x;
    }
    EXPECT_NEAR(ones / static_cast<double>(n), 0.3, 0.01) << name;
  }
  // Reproducible from the generator's state; different for a different state.
  Generator g1(9), g2(9), g3(10);
  Tensor a = Tensor::empty({1000}, DType::f32, gpu());
  Tensor b = Tensor::empty({1000}, DType::f32, gpu());
  Tensor c = Tensor::empty({1000}, DType::f32, gpu());
  gpu_be().random(RandomKind::normal, 0.0, 1.0, g1, a);
  gpu_be().random(RandomKind::normal, 0.0, 1.0, g2, b);
  gpu_be().random(RandomKind::normal, 0.0, 1.0, g3, c);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  EXPECT_NE(a.to_vector<float>(), c.to_vector<float>());
}

TEST(Cuda, gemm) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(8);
  const int64_t m = 37, n = 29, k = 45;
  for (DType t : float_dtypes()) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        for (int64_t batch : {1, 3}) {
          for (bool broadcast_b : {false, true}) {
            if (batch == 1 && broadcast_b) continue;
            GemmArgs g;
            g.trans_a = ta, g.trans_b = tb, g.m = m, g.n = n, g.k = k, g.batch = batch;
            // Padded leading dimensions: the ld, not the width, steps between rows.
            const int64_t rows_a = ta ? k : m, cols_a = ta ? m : k;
            const int64_t rows_b = tb ? n : k, cols_b = tb ? k : n;
            g.lda = cols_a + 3, g.ldb = cols_b + 1, g.ldc = n + 2;
            g.stride_a = rows_a * g.lda;
            g.stride_b = broadcast_b ? 0 : rows_b * g.ldb;
            g.stride_c = m * g.ldc;
            g.alpha = 0.5, g.beta = 0.25;
            Tensor a = uniform_tensor({batch, rows_a, g.lda}, t, gen);
            Tensor b = uniform_tensor({broadcast_b ? 1 : batch, rows_b, g.ldb}, t, gen);
            Tensor c = uniform_tensor({batch, m, g.ldc}, t, gen);
            Tensor c_g = on_gpu(c);
            cpu_be().gemm(g, a, b, c);
            gpu_be().gemm(g, on_gpu(a), on_gpu(b), c_g);
            expect_parity(c, c_g,
                          std::string("gemm ta=") + (ta ? "1" : "0") + " tb=" + (tb ? "1" : "0") +
                              " batch=" + std::to_string(batch) +
                              (broadcast_b ? " (b broadcast)" : ""));
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace dtrain
