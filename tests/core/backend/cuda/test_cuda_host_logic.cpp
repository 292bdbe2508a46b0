// The host-side arithmetic the CUDA kernels rely on, checked without a GPU: Philox against the
// published known-answer vectors, dim coalescing of strided layouts against direct indexing, and the
// row-major -> column-major GEMM mapping against a direct row-major product.
#include <gtest/gtest.h>

#include <array>
#include <vector>

#include "core/backend/cuda/gemm_layout.h"
#include "core/backend/cuda/philox.h"
#include "core/backend/cuda/strided_layout.h"
#include "core/tensor/random.h"
#include "tests/core/backend/cuda/strided_reference.h"

namespace dtrain {
namespace {

using cuda::Philox4;

TEST(CudaKernelMath, philox_matches_known_answers) {
  // Known-answer vectors of Philox4x32-10 published with Random123 (counter, key -> output).
  struct Kat {
    Philox4 ctr;
    uint32_t k0, k1;
    Philox4 expected;
  };
  const Kat kats[] = {
      {{{0u, 0u, 0u, 0u}}, 0u, 0u, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       0xffffffffu,
       0xffffffffu,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       0xa4093822u,
       0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& k : kats) {
    const Philox4 r = cuda::philox4x32_10(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.v[i], k.expected.v[i]) << "word " << i;
  }
  EXPECT_EQ(cuda::uniform_float(0u), 0.0f);
  EXPECT_LT(cuda::uniform_float(0xffffffffu), 1.0f);
  EXPECT_EQ(cuda::uniform_double(0u, 0u), 0.0);
  EXPECT_LT(cuda::uniform_double(0xffffffffu, 0xffffffffu), 1.0);
}

using testing::direct_offset;

TEST(CudaKernelMath, strided_layout_coalesces_and_indexes) {
  // Contiguous operands collapse to one flat dim.
  cuda::StridedLayout<2> flat;
  const Shape shape = {4, 5, 6}, contiguous = {30, 6, 1};
  ASSERT_TRUE(cuda::make_strided_layout<2>(shape, {&contiguous, &contiguous}, flat));
  EXPECT_EQ(flat.ndim, 1);
  EXPECT_EQ(flat.sizes[0], 120);
  EXPECT_TRUE(cuda::is_flat_contiguous(flat));

  // A transposed source keeps two dims; size-1 dims vanish; a scalar is one dim of size 1.
  const Shape t_shape = {6, 1, 4}, t_dst = {4, 4, 1}, t_src = {1, 99, 6};
  cuda::StridedLayout<2> tr;
  ASSERT_TRUE(cuda::make_strided_layout<2>(t_shape, {&t_dst, &t_src}, tr));
  EXPECT_EQ(tr.ndim, 2);
  EXPECT_FALSE(cuda::is_flat_contiguous(tr));
  const Shape s_shape = {1, 1}, s_strides = {1, 1};
  cuda::StridedLayout<2> sc;
  ASSERT_TRUE(cuda::make_strided_layout<2>(s_shape, {&s_strides, &s_strides}, sc));
  EXPECT_EQ(sc.ndim, 1);
  EXPECT_EQ(sc.sizes[0], 1);

  // Random shapes with contiguous, permuted, broadcast and sliced strides: every offset matches.
  Generator gen(5);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t nd = 1 + gen.next_u64() % 5;
    Shape sh(nd);
    for (auto& s : sh) s = 1 + static_cast<int64_t>(gen.next_u64() % 4);
    Shape out_strides = contiguous_strides(sh);
    // b: a permutation of a contiguous layout, with random dims broadcast (stride 0).
    Shape perm_shape(sh.rbegin(), sh.rend());
    Shape perm_strides = contiguous_strides(perm_shape);
    Shape b_strides(perm_strides.rbegin(), perm_strides.rend());
    for (auto& s : b_strides) {
      if (gen.next_u64() % 3 == 0) s = 0;
    }
    // c: every other element of a larger buffer in the last dim.
    Shape c_strides = contiguous_strides(sh);
    for (auto& s : c_strides) s *= 2;
    cuda::StridedLayout<3> l;
    ASSERT_TRUE(cuda::make_strided_layout<3>(sh, {&out_strides, &b_strides, &c_strides}, l));
    for (int64_t i = 0; i < shape_numel(sh); ++i) {
      int64_t off[3];
      l.offsets(i, off);
      EXPECT_EQ(off[0], direct_offset(i, sh, out_strides));
      EXPECT_EQ(off[1], direct_offset(i, sh, b_strides));
      EXPECT_EQ(off[2], direct_offset(i, sh, c_strides));
    }
  }
}

// cuBLAS's column-major GEMM, written out: C(m x n) = alpha op(A) op(B) + beta C, element (i, j) of a
// column-major matrix X at X[i + j * ld].
void col_major_gemm(const cuda::ColMajorGemm& p, double alpha, const std::vector<double>& first,
                    const std::vector<double>& second, double beta, std::vector<double>& out) {
  auto at = [](const cuda::ColMajorMatrix& mat, const std::vector<double>& data, int64_t i,
               int64_t j) {
    // element (i, j) of op(mat)
    return mat.transposed ? data[static_cast<size_t>(j + i * mat.ld)]
                          : data[static_cast<size_t>(i + j * mat.ld)];
  };
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double acc = 0.0;
      for (int64_t l = 0; l < p.k; ++l)
        acc += at(p.first, first, i, l) * at(p.second, second, l, j);
      double& c = out[static_cast<size_t>(i + j * p.out.ld)];
      c = alpha * acc + beta * c;
    }
  }
}

TEST(CudaKernelMath, gemm_maps_row_major_to_column_major) {
  Generator gen(6);
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      GemmArgs g;
      g.trans_a = ta, g.trans_b = tb, g.m = 5, g.n = 4, g.k = 3;
      g.lda = (ta ? g.m : g.k) + 2;
      g.ldb = (tb ? g.k : g.n) + 1;
      g.ldc = g.n + 3;
      g.alpha = 1.5, g.beta = 0.5;
      const int64_t rows_a = ta ? g.k : g.m, rows_b = tb ? g.n : g.k;
      std::vector<double> a(static_cast<size_t>(rows_a * g.lda)),
          b(static_cast<size_t>(rows_b * g.ldb)), c(static_cast<size_t>(g.m * g.ldc));
      for (auto* v : {&a, &b, &c}) {
        for (double& x : *v) x = gen.next_double() - 0.5;
      }
      // Row-major reference: C[i][j] = alpha sum_l op(A)[i][l] op(B)[l][j] + beta C[i][j].
      std::vector<double> expected = c;
      for (int64_t i = 0; i < g.m; ++i) {
        for (int64_t j = 0; j < g.n; ++j) {
          double acc = 0.0;
          for (int64_t l = 0; l < g.k; ++l) {
            const double av =
                ta ? a[static_cast<size_t>(l * g.lda + i)] : a[static_cast<size_t>(i * g.lda + l)];
            const double bv =
                tb ? b[static_cast<size_t>(j * g.ldb + l)] : b[static_cast<size_t>(l * g.ldb + j)];
            acc += av * bv;
          }
          double& e = expected[static_cast<size_t>(i * g.ldc + j)];
          e = g.alpha * acc + g.beta * e;
        }
      }
      const cuda::ColMajorGemm p = cuda::to_col_major(g);
      // The stored matrices' declared sizes fit the buffers (what cuBLAS validates).
      EXPECT_GE(p.first.ld, p.first.rows);
      EXPECT_GE(p.second.ld, p.second.rows);
      EXPECT_GE(p.out.ld, p.out.rows);
      EXPECT_EQ(p.out.rows, p.m);
      EXPECT_EQ(p.out.cols, p.n);
      std::vector<double> got = c;
      col_major_gemm(p, g.alpha, b, a, g.beta, got);
      for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_NEAR(got[i], expected[i], 1e-12) << "ta=" << ta << " tb=" << tb << " at " << i;
      }
    }
  }
}

}  // namespace
}  // namespace dtrain
