// The host-side plan of the CUDA elementwise kernels (strided_layout.h), checked without a GPU:
// which dims coalesce, when a launch is flat, when 32-bit index arithmetic is safe, the multiply-high
// division the 32-bit path uses, the offsets both index types compute, the type a converting copy
// passes through, and the key width of the sorts behind the deterministic backward passes.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/backend/cuda/strided_layout.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
#include "tests/core/backend/cuda/strided_reference.h"

namespace dtrain {
namespace {

using cuda::IndexPath;
using cuda::StridedLayout;

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

using testing::direct_offset;

template <int N>
StridedLayout<N> coalesce(const Shape& shape, const std::array<const Shape*, N>& strides) {
  StridedLayout<N> l;
  EXPECT_TRUE(cuda::make_strided_layout<N>(shape, strides, l));
  return l;
}

// Every element's offsets, from the host layout and from the kernel's layout in both index types,
// equal direct indexing of the original shape and strides.
template <int N>
void expect_offsets_match(const Shape& shape, const std::array<const Shape*, N>& strides,
                          const char* what) {
  const StridedLayout<N> l = coalesce<N>(shape, strides);
  const auto l32 = cuda::index_layout<int32_t>(l);
  const auto l64 = cuda::index_layout<int64_t>(l);
  for (int64_t i = 0; i < shape_numel(shape); ++i) {
    int64_t host[N], wide[N];
    int32_t narrow[N];
    l.offsets(i, host);
    l64.offsets(i, wide);
    l32.offsets(static_cast<int32_t>(i), narrow);
    for (int k = 0; k < N; ++k) {
      const int64_t want = direct_offset(i, shape, *strides[static_cast<size_t>(k)]);
      ASSERT_EQ(host[k], want) << what << ": operand " << k << ", element " << i;
      ASSERT_EQ(wide[k], want) << what << ": operand " << k << ", element " << i << " (int64)";
      ASSERT_EQ(narrow[k], want) << what << ": operand " << k << ", element " << i << " (int32)";
    }
  }
}

TEST(CudaKernelMath, contiguous_operands_of_one_shape_are_flat) {
  const Shape shape = {4, 5, 6}, c = {30, 6, 1};
  const auto l = coalesce<3>(shape, {&c, &c, &c});
  EXPECT_EQ(l.ndim, 1);
  EXPECT_EQ(l.sizes[0], 120);
  EXPECT_EQ(cuda::choose_index_path(l, 120), IndexPath::flat);
  // Size-1 dims vanish whatever their stride.
  const Shape s1 = {3, 1, 4}, st1 = {4, 999, 1};
  EXPECT_EQ(cuda::choose_index_path(coalesce<2>(s1, {&st1, &st1}), 12), IndexPath::flat);
  // A scalar is one dim of size 1, flat.
  const Shape s0 = {1, 1}, st0 = {7, 3};
  const auto l0 = coalesce<2>(s0, {&st0, &st0});
  EXPECT_EQ(l0.ndim, 1);
  EXPECT_EQ(l0.sizes[0], 1);
  EXPECT_EQ(cuda::choose_index_path(l0, 1), IndexPath::flat);
  // The same storage order in every operand is not enough: the destination must be contiguous too.
  const Shape sliced = {60, 6, 1};  // rows of a buffer twice as tall
  EXPECT_NE(cuda::choose_index_path(coalesce<2>(shape, {&c, &sliced}), 120), IndexPath::flat);
}

TEST(CudaKernelMath, transposed_operand_is_not_collapsed) {
  // dst [4, 6] contiguous, src its transpose's storage: strides (1, 4). Merging the two dims would
  // read src linearly, which is wrong for every element but the first and last.
  const Shape shape = {4, 6}, dst = {6, 1}, src = {1, 4};
  const auto l = coalesce<2>(shape, {&dst, &src});
  EXPECT_EQ(l.ndim, 2);
  EXPECT_EQ(cuda::choose_index_path(l, 24), IndexPath::strided32);
  expect_offsets_match<2>(shape, {&dst, &src}, "transpose");
  // 3-D permutations: dims that kept their relative order (and adjacency) in the source merge,
  // the others do not. dst is [2, 3, 4] contiguous in all three cases.
  const Shape s3 = {2, 3, 4}, d3 = {12, 4, 1};
  // Storage [3, 4, 2] permuted (2, 0, 1): dims 1 and 2 kept their order -> [2, 12], src (1, 2).
  const Shape inner_kept = {1, 8, 2};
  const auto li = coalesce<2>(s3, {&d3, &inner_kept});
  ASSERT_EQ(li.ndim, 2);
  EXPECT_EQ(li.sizes[0], 2);
  EXPECT_EQ(li.sizes[1], 12);
  EXPECT_EQ(li.strides[1][0], 1);
  EXPECT_EQ(li.strides[1][1], 2);
  expect_offsets_match<2>(s3, {&d3, &inner_kept}, "permute (2, 0, 1)");
  // Storage [4, 2, 3] permuted (1, 2, 0): dims 0 and 1 kept their order -> [6, 4], src (1, 6).
  const Shape outer_kept = {3, 1, 6};
  const auto lo = coalesce<2>(s3, {&d3, &outer_kept});
  ASSERT_EQ(lo.ndim, 2);
  EXPECT_EQ(lo.sizes[0], 6);
  EXPECT_EQ(lo.sizes[1], 4);
  expect_offsets_match<2>(s3, {&d3, &outer_kept}, "permute (1, 2, 0)");
  // Storage [4, 3, 2] reversed: nothing merges.
  const Shape reversed = {1, 2, 6};
  EXPECT_EQ(coalesce<2>(s3, {&d3, &reversed}).ndim, 3);
  expect_offsets_match<2>(s3, {&d3, &reversed}, "reversed");
}

TEST(CudaKernelMath, broadcast_dims_collapse_only_with_broadcast_neighbours) {
  const Shape shape = {2, 3, 4}, c = {12, 4, 1};
  // b broadcast over the two outer dims (stride 0, 0): they merge with each other (0 = 0 * 3) but
  // not with the inner dim that b walks (0 != 1 * 4).
  const Shape b_outer = {0, 0, 1};
  const auto lo = coalesce<2>(shape, {&c, &b_outer});
  ASSERT_EQ(lo.ndim, 2);
  EXPECT_EQ(lo.sizes[0], 6);
  EXPECT_EQ(lo.sizes[1], 4);
  EXPECT_EQ(lo.strides[1][0], 0);
  EXPECT_EQ(lo.strides[1][1], 1);
  expect_offsets_match<2>(shape, {&c, &b_outer}, "outer broadcast");
  // b broadcast over the two inner dims (a column): the inner pair merges, the outer dim stays.
  const Shape b_inner = {1, 0, 0};
  const auto li = coalesce<2>(shape, {&c, &b_inner});
  ASSERT_EQ(li.ndim, 2);
  EXPECT_EQ(li.sizes[0], 2);
  EXPECT_EQ(li.sizes[1], 12);
  EXPECT_EQ(li.strides[1][0], 1);
  EXPECT_EQ(li.strides[1][1], 0);
  expect_offsets_match<2>(shape, {&c, &b_inner}, "inner broadcast");
  // A broadcast middle dim splits the layout in three, even though a is contiguous.
  const Shape b_mid = {4, 0, 1};
  EXPECT_EQ(coalesce<2>(shape, {&c, &b_mid}).ndim, 3);
  expect_offsets_match<2>(shape, {&c, &b_mid}, "middle broadcast");
  // A row [1, 7] and a column [5, 1] expanded to [5, 7]: neither merges.
  const Shape s2 = {5, 7}, c2 = {7, 1}, row = {0, 1}, col = {1, 0};
  EXPECT_EQ(coalesce<3>(s2, {&c2, &row, &col}).ndim, 2);
  expect_offsets_match<3>(s2, {&c2, &row, &col}, "row and column broadcast");
  // Broadcast of a scalar everywhere: one dim, stride 0, not flat.
  const Shape zero = {0, 0, 0};
  const auto ls = coalesce<2>(shape, {&c, &zero});
  EXPECT_EQ(ls.ndim, 1);
  EXPECT_EQ(ls.strides[1][0], 0);
  EXPECT_EQ(cuda::choose_index_path(ls, 24), IndexPath::strided32);
  expect_offsets_match<2>(shape, {&c, &zero}, "scalar broadcast");
}

TEST(CudaKernelMath, strided_offsets_match_direct_indexing_for_random_views) {
  Generator gen(12);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t nd = 1 + gen.next_u64() % 6;
    Shape sh(nd);
    for (auto& s : sh) s = 1 + static_cast<int64_t>(gen.next_u64() % 4);
    const Shape out = contiguous_strides(sh);
    // b: a random permutation of a contiguous layout, with random dims broadcast.
    std::vector<size_t> perm(nd);
    for (size_t i = 0; i < nd; ++i) perm[i] = i;
    for (size_t i = nd; i-- > 1;) std::swap(perm[i], perm[gen.next_u64() % (i + 1)]);
    Shape perm_shape(nd);
    for (size_t i = 0; i < nd; ++i) perm_shape[i] = sh[perm[i]];
    const Shape perm_strides = contiguous_strides(perm_shape);
    Shape b(nd);
    for (size_t i = 0; i < nd; ++i) b[perm[i]] = perm_strides[i];
    for (auto& s : b) {
      if (gen.next_u64() % 3 == 0) s = 0;
    }
    // c: a slice of a larger buffer (every dim padded by one), walked backwards in a random dim.
    Shape padded = sh;
    for (auto& s : padded) s += 1;
    Shape c = contiguous_strides(padded);
    c[gen.next_u64() % nd] *= -1;
    const auto l = coalesce<3>(sh, {&out, &b, &c});
    EXPECT_LE(l.ndim, static_cast<int>(nd));
    expect_offsets_match<3>(sh, {&out, &b, &c}, "random view");
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(CudaKernelMath, index_path_is_32_bit_only_when_every_offset_fits) {
  // A transposed [2^16, 2^15] has 2^31 elements: one more than int32 holds.
  {
    const Shape shape = {int64_t{1} << 16, int64_t{1} << 15};
    const Shape dst = contiguous_strides(shape), src = {1, int64_t{1} << 16};
    const auto l = coalesce<2>(shape, {&dst, &src});
    EXPECT_EQ(cuda::choose_index_path(l, shape_numel(shape)), IndexPath::strided64);
    const Shape smaller = {(int64_t{1} << 16) - 1, int64_t{1} << 15};
    const Shape sdst = contiguous_strides(smaller), ssrc = {1, (int64_t{1} << 16) - 1};
    EXPECT_EQ(cuda::choose_index_path(coalesce<2>(smaller, {&sdst, &ssrc}), shape_numel(smaller)),
              IndexPath::strided32);
  }
  // Few elements but a far offset: 1000 x 1000 with a source stride of 3e6 reaches 3e9.
  {
    const Shape shape = {1000, 1000}, dst = {1000, 1}, src = {1, 3000000};
    EXPECT_EQ(cuda::choose_index_path(coalesce<2>(shape, {&dst, &src}), 1000000),
              IndexPath::strided64);
  }
  // The boundary: a largest offset of exactly 2^31 - 1 fits, one more does not.
  {
    const Shape shape = {2, 2}, dst = {2, 1};
    const Shape at_max = {kInt32Max - 1, 1}, past_max = {kInt32Max, 1};
    EXPECT_TRUE(cuda::fits_int32(coalesce<2>(shape, {&dst, &at_max}), 4));
    EXPECT_FALSE(cuda::fits_int32(coalesce<2>(shape, {&dst, &past_max}), 4));
    // Negative strides count by magnitude on their own side.
    const Shape neg_ok = {-(kInt32Max - 1), -1}, neg_bad = {-kInt32Max, -1};
    EXPECT_TRUE(cuda::fits_int32(coalesce<2>(shape, {&dst, &neg_ok}), 4));
    EXPECT_FALSE(cuda::fits_int32(coalesce<2>(shape, {&dst, &neg_bad}), 4));
    // Positive and negative extents are bounded separately: they do not cancel into a "fits".
    const Shape s3 = {2, 2, 2}, d3 = {4, 2, 1};
    const Shape cancel = {kInt32Max, -kInt32Max, 1}, both_fit = {kInt32Max - 1, -kInt32Max, 1};
    EXPECT_FALSE(cuda::fits_int32(coalesce<2>(s3, {&d3, &cancel}), 8));
    EXPECT_TRUE(cuda::fits_int32(coalesce<2>(s3, {&d3, &both_fit}), 8));
  }
  // A huge stride times a huge size does not overflow the check itself.
  {
    const Shape shape = {int64_t{1} << 20, 3}, dst = {3, 1}, src = {int64_t{1} << 50, 1};
    EXPECT_FALSE(cuda::fits_int32(coalesce<2>(shape, {&dst, &src}), 3 << 20));
  }
  // A broadcast operand (stride 0) never limits the index width; the element count does.
  {
    const Shape shape = {int64_t{1} << 20, 1024}, dst = {1024, 1}, src = {0, 1};
    EXPECT_EQ(cuda::choose_index_path(coalesce<2>(shape, {&dst, &src}), int64_t{1} << 30),
              IndexPath::strided32);
    const Shape big = {int64_t{1} << 21, 1024}, bdst = {1024, 1};
    EXPECT_EQ(cuda::choose_index_path(coalesce<2>(big, {&bdst, &src}), int64_t{1} << 31),
              IndexPath::strided64);
  }
  // Flat stays flat however large (those kernels index with the 64-bit loop counter).
  {
    const Shape shape = {int64_t{1} << 33}, st = {1};
    EXPECT_EQ(cuda::choose_index_path(coalesce<2>(shape, {&st, &st}), int64_t{1} << 33),
              IndexPath::flat);
  }
}

TEST(CudaKernelMath, divisor32_divides_exactly) {
  std::vector<uint32_t> divisors;
  for (uint32_t d = 1; d <= 1100; ++d) divisors.push_back(d);
  for (int s = 11; s <= 31; ++s) {
    const uint32_t p = uint32_t{1} << s;
    for (uint32_t d : {p - 1, p, p + 1}) {
      if (d <= static_cast<uint32_t>(kInt32Max)) divisors.push_back(d);
    }
  }
  Generator gen(13);
  for (int i = 0; i < 2000; ++i) {
    divisors.push_back(1 + static_cast<uint32_t>(gen.next_u64() % uint64_t{kInt32Max}));
  }
  for (uint32_t d : divisors) {
    const cuda::Divisor32 div = cuda::Divisor32::make(d);
    const auto index_div = cuda::IndexDivisor<int32_t>::make(d);
    std::vector<uint32_t> numerators = {0,
                                        1,
                                        d - 1,
                                        d,
                                        d + 1,
                                        2 * d - 1,
                                        2 * d,
                                        static_cast<uint32_t>(kInt32Max),
                                        static_cast<uint32_t>(kInt32Max) - 1};
    // The last multiple of d below 2^31 and its neighbours: where a rounding error would show.
    const uint32_t last = static_cast<uint32_t>(kInt32Max) / d * d;
    numerators.insert(numerators.end(), {last, last - 1, last + d - 1});
    for (int j = 0; j < 40; ++j) {
      numerators.push_back(static_cast<uint32_t>(gen.next_u64() % (uint64_t{1} << 31)));
    }
    for (uint32_t n : numerators) {
      if (n > static_cast<uint32_t>(kInt32Max)) continue;
      ASSERT_EQ(div.div(n), n / d) << n << " / " << d;
      int32_t q = -1, r = -1;
      index_div.divmod(static_cast<int32_t>(n), q, r);
      ASSERT_EQ(q, static_cast<int32_t>(n / d)) << n << " / " << d;
      ASSERT_EQ(r, static_cast<int32_t>(n % d)) << n << " % " << d;
    }
  }
}

TEST(CudaKernelMath, converting_copies_go_through_f32_unless_a_side_is_f64_or_integer) {
  using cuda::CastVia;
  const DType narrow[] = {DType::f32, DType::f16, DType::bf16};
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64};
  for (DType a : narrow) {
    for (DType b : narrow) {
      EXPECT_EQ(cuda::cast_via(a, b), CastVia::f32) << dtype_name(a) << " -> " << dtype_name(b);
      EXPECT_EQ(cuda::cast_is_vectorisable(a, b), a != b);
    }
  }
  for (DType t : all) {
    EXPECT_EQ(cuda::cast_via(t, DType::f64), CastVia::f64) << dtype_name(t);
    EXPECT_EQ(cuda::cast_via(DType::f64, t), CastVia::f64) << dtype_name(t);
    EXPECT_FALSE(cuda::cast_is_vectorisable(t, DType::f64));
    EXPECT_FALSE(cuda::cast_is_vectorisable(t, DType::i32));
    EXPECT_FALSE(cuda::cast_is_vectorisable(DType::i64, t));
    if (t == DType::f64) continue;
    // Integers with anything but f64 pass through int64: int -> float rounds once (as the CPU's
    // static_cast does), float -> int truncates, int <-> int is exact.
    EXPECT_EQ(cuda::cast_via(t, DType::i32), CastVia::i64) << dtype_name(t);
    EXPECT_EQ(cuda::cast_via(DType::i64, t), CastVia::i64) << dtype_name(t);
  }
}

TEST(CudaKernelMath, sort_key_bits_cover_the_key_range) {
  EXPECT_EQ(cuda::key_bits_for(0), 1);
  EXPECT_EQ(cuda::key_bits_for(1), 1);
  EXPECT_EQ(cuda::key_bits_for(2), 2);
  EXPECT_EQ(cuda::key_bits_for(255), 8);
  EXPECT_EQ(cuda::key_bits_for(256), 9);
  EXPECT_EQ(cuda::key_bits_for(50257), 16);
  EXPECT_EQ(cuda::key_bits_for((uint64_t{1} << 32) - 1), 32);
  for (uint64_t k = 1; k < 5000; ++k) {
    const int bits = cuda::key_bits_for(k);
    EXPECT_EQ(k >> bits, 0u) << k;        // k, and every key below it, fits in `bits`
    EXPECT_NE(k >> (bits - 1), 0u) << k;  // and no bit is wasted (each 8 cost a radix pass)
  }
}

}  // namespace
}  // namespace dtrain
