// core/amp/autocast: the autocast policy (one process).
#include <gtest/gtest.h>

#include "core/amp/autocast.h"
#include "core/ops/ops.h"

namespace dtrain::amp {
namespace {

TEST(Autocast, PolicyByOpClass) {
  EXPECT_TRUE(runs_in_low_precision(OpClass::gemm));
  EXPECT_TRUE(runs_in_low_precision(OpClass::conv));
  EXPECT_TRUE(runs_in_low_precision(OpClass::attention));
  for (OpClass c :
       {OpClass::softmax, OpClass::layer_norm, OpClass::loss, OpClass::reduction, OpClass::other}) {
    EXPECT_FALSE(runs_in_low_precision(c)) << op_class_name(c);
  }
}

TEST(Autocast, CastsOnlyInsideAGuard) {
  Tensor x = Tensor::ones({2, 2});
  EXPECT_FALSE(autocast_enabled());
  EXPECT_TRUE(autocast(OpClass::gemm, x).same(x));
  {
    AutocastGuard guard(DType::bf16);
    EXPECT_EQ(autocast(OpClass::gemm, x).dtype(), DType::bf16);
    EXPECT_EQ(autocast(OpClass::attention, x).dtype(), DType::bf16);
    EXPECT_TRUE(autocast(OpClass::softmax, x).same(x));  // f32 stays f32
    Tensor h = x.to(DType::bf16);
    EXPECT_EQ(autocast(OpClass::layer_norm, h).dtype(), DType::f32);  // 16-bit goes up
    EXPECT_EQ(autocast(OpClass::loss, h).dtype(), DType::f32);
    EXPECT_EQ(autocast(OpClass::gemm, h).dtype(), DType::bf16);
    Tensor d = Tensor::ones({2}, DType::f64);
    EXPECT_EQ(autocast(OpClass::gemm, d).dtype(), DType::f64);  // f64 is never lowered
    Tensor i = Tensor::ones({2}, DType::i64);
    EXPECT_EQ(autocast(OpClass::softmax, i).dtype(), DType::i64);
    {
      AutocastGuard inner(DType::f16);
      EXPECT_EQ(autocast(OpClass::conv, x).dtype(), DType::f16);
      AutocastGuard off(DType::bf16, false);
      EXPECT_TRUE(autocast(OpClass::conv, x).same(x));
    }
    EXPECT_EQ(autocast_dtype(), DType::bf16);
    EXPECT_TRUE(autocast_enabled());
  }
  EXPECT_FALSE(autocast_enabled());
  EXPECT_THROW(AutocastGuard(DType::f32), Error);
}

TEST(Autocast, GradientOfAnAutocastInputArrivesInF32) {
  Tensor w = Tensor::full({3, 3}, 0.5).set_requires_grad(true);
  Tensor x = Tensor::ones({2, 3});
  {
    AutocastGuard guard(DType::bf16);
    Tensor y = matmul(autocast(OpClass::gemm, x), autocast(OpClass::gemm, w));
    EXPECT_EQ(y.dtype(), DType::bf16);
    sum(autocast(OpClass::reduction, y)).backward();
  }
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().dtype(), DType::f32);
  for (float v : w.grad().to_vector<float>()) EXPECT_FLOAT_EQ(v, 2.0f);  // column sums of x
}

}  // namespace
}  // namespace dtrain::amp
