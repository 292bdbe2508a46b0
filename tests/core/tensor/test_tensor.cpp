// core/tensor/tensor: the Tensor handle itself. Factories make row-major contiguous tensors; views
// share their base's Storage (a write through one is seen through the other) and differ only in shape,
// strides and offset; reshape copies only when no view can express the result; views that would run
// past their storage and out-of-range dims are refused. (Values through dtype conversions and strided
// copies are checked by the kernel tests in tests/core/ops.)
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "tests/error_message.h"

namespace dtrain {
namespace {

using testing::error_of;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// 0, 1, ..., 11 as f32 [3, 4].
Tensor counting() {
  std::vector<float> v(12);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  return Tensor::from_vector(v, {3, 4});
}

TEST(TensorBasics, FactoriesAreContiguousRowMajor) {
  Tensor t = Tensor::zeros({2, 3, 4}, DType::f64);
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(t.offset(), 0);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.dim(), 3);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_TRUE(t.is_leaf());
  EXPECT_FALSE(t.requires_grad());
  EXPECT_EQ(t.storage()->nbytes(), 24 * sizeof(double));
  EXPECT_TRUE(t.device().is_cpu());

  Tensor s = Tensor::scalar(2.5);
  EXPECT_EQ(s.shape(), Shape{});
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item(), 2.5);
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(shape_str({2, 3}), "[2, 3]");
  // A zero-sized dim counts as 1 for the strides of the dims before it.
  EXPECT_EQ(contiguous_strides({2, 0, 3}), (Shape{3, 3, 1}));
  EXPECT_EQ(Tensor::empty({2, 0, 3}).numel(), 0);
  EXPECT_EQ(Tensor::arange(4).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(Tensor::arange(4).dtype(), DType::i64);
  // from_vector converts the host values into the tensor's dtype.
  Tensor i = Tensor::from_vector(std::vector<double>{1.0, -2.0}, {2}, DType::i32);
  EXPECT_EQ(i.dtype(), DType::i32);
  EXPECT_EQ(i.to_vector<int32_t>(), (std::vector<int32_t>{1, -2}));
  EXPECT_EQ(i.to_vector<double>(), (std::vector<double>{1.0, -2.0}));
}

TEST(TensorViews, ShareStorageAndWritesShowThroughEveryView) {
  Tensor x = counting();
  Tensor t = x.transpose(0, 1);     // [4, 3]
  Tensor cols = x.narrow(1, 1, 2);  // [3, 2]
  Tensor row = x.select(0, 2);      // [4]
  Tensor wide = x.narrow(0, 0, 1).expand({5, 4});
  for (const Tensor& v :
       {x.view({4, 3}), t, cols, row, wide, x.unsqueeze(0), x.flatten(), x.detach()}) {
    EXPECT_EQ(v.storage().get(), x.storage().get()) << shape_str(v.shape());
  }
  EXPECT_EQ(t.strides(), (Shape{1, 4}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(cols.strides(), (Shape{4, 1}));
  EXPECT_EQ(cols.offset(), 1);
  EXPECT_FALSE(cols.is_contiguous());
  EXPECT_EQ(row.offset(), 8);
  EXPECT_TRUE(row.is_contiguous());
  EXPECT_EQ(wide.strides(), (Shape{0, 1}));      // broadcast rows: stride 0
  EXPECT_EQ(wide.to_vector<float>()[13], 1.0f);  // row 3 of the expansion is x's row 0
  EXPECT_EQ(x.unsqueeze(1).shape(), (Shape{3, 1, 4}));
  EXPECT_EQ(x.unsqueeze(1).squeeze(1).shape(), (Shape{3, 4}));
  EXPECT_EQ(x.squeeze(0).shape(), (Shape{3, 4}));  // a dim of size 3 is kept

  cols.fill_(-1);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{0, -1, -1, 3, 4, -1, -1, 7, 8, -1, -1, 11}));
  t.select(0, 3).copy_(Tensor::from_vector({30.0f, 70.0f, 110.0f}, {3}));  // column 3 of x
  EXPECT_EQ(row.to_vector<float>(), (std::vector<float>{8, -1, -1, 110}));
  // detach shares the storage but not the graph.
  Tensor w = Tensor::ones({2}).set_requires_grad(true);
  Tensor d = w.detach();
  EXPECT_EQ(d.storage().get(), w.storage().get());
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
}

TEST(TensorViews, ContiguityIgnoresSizeOneDims) {
  Tensor x = counting();
  // The stride of a size-1 dim never matters for where elements are.
  EXPECT_TRUE(make_view(x, {3, 1, 4}, {4, 99, 1}, 0).is_contiguous());
  EXPECT_FALSE(make_view(x, {2, 4}, {8, 1}, 0).is_contiguous());  // every other row
  EXPECT_TRUE(x.narrow(0, 1, 2).is_contiguous());  // whole rows: contiguous at an offset
  EXPECT_TRUE(x.transpose(0, 1).narrow(1, 0, 1).is_contiguous());  // one column of t: [4, 1]
}

TEST(TensorViews, ReshapeCopiesOnlyWhenItMust) {
  Tensor x = counting();
  EXPECT_EQ(x.reshape({2, -1}).shape(), (Shape{2, 6}));
  EXPECT_EQ(x.reshape({2, -1}).storage().get(), x.storage().get());
  EXPECT_TRUE(x.contiguous().same(x));

  Tensor t = x.transpose(0, 1);
  EXPECT_TRUE(contains(error_of([&] { t.view({12}); }), "use reshape"));
  Tensor flat = t.reshape({12});
  EXPECT_NE(flat.storage().get(), x.storage().get());
  EXPECT_EQ(flat.to_vector<float>(), (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  Tensor c = t.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage().get(), x.storage().get());
  EXPECT_EQ(c.to_vector<float>(), flat.to_vector<float>());
  // A view of a transposed tensor that keeps its dims apart needs no copy.
  EXPECT_EQ(t.view({2, 2, 3}).storage().get(), x.storage().get());
  EXPECT_THROW(x.view({5, -1}), Error);  // 12 elements are not 5 rows
}

TEST(TensorViews, OutOfRangeViewsAndDimsAreRefused) {
  Tensor x = counting();
  EXPECT_TRUE(contains(error_of([&] {
                         make_view(x, {3, 4}, {4, 1}, 1);
                       }),
                       "runs past its storage"));
  EXPECT_TRUE(contains(error_of([&] { make_view(x, {3}, {4, 1}, 0); }), "differ in length"));
  EXPECT_NO_THROW(make_view(x, {0, 4}, {4, 1}, 12));  // an empty view may sit at the end
  EXPECT_TRUE(contains(error_of([&] { x.narrow(1, 3, 2); }), "is outside dim 1 of size 4"));
  EXPECT_EQ(x.size(-1), 4);
  EXPECT_EQ(x.size(0), 3);
  EXPECT_TRUE(contains(error_of([&] { x.size(2); }), "size: dim 2 is out of range"));
  EXPECT_EQ(wrap_dim(-2, 3, "op"), 1);
  EXPECT_THROW(wrap_dim(-4, 3, "op"), Error);
  EXPECT_TRUE(contains(error_of([&] { x.permute({0, 0}); }), "repeated"));
  EXPECT_TRUE(contains(error_of([&] { x.expand({2, 4}); }), "cannot be expanded"));
}

}  // namespace
}  // namespace dtrain
