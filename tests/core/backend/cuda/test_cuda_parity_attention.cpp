// CUDA fused attention (cuda_attention.cu) against the CPU fused kernel (the reference), through
// Backend::sdpa / sdpa_backward with identical inputs: out, stats, dq, dk and dv for f32, f16 and
// bf16, head dims 32, 64 and 128, causal or not, key padding and [1, 1, Tq, Tk] masks, dropout
// (both backends draw the same mask from the seed), odd and unequal lengths, strided heads. The CPU
// kernel takes f32 and f64 only, so the f16/bf16 reference runs in f32 on the same (rounded) inputs
// and is rounded once at the end, as the CUDA kernel does. Then the op end to end (dropout
// included, one generator seed on both devices), and the composed fallback for a head dim the
// kernel declines. Every test skips with a reason where no GPU is visible.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/ops/ops.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
#include "tests/core/backend/cuda/parity.h"

namespace dtrain {
namespace {

using testing::cpu_be;
using testing::expect_parity;
using testing::gpu;
using testing::gpu_be;
using testing::on_gpu;
using testing::uniform_tensor;

struct Case {
  DType dtype;
  int64_t d;
  bool causal;
  int64_t tq, tk;
  enum MaskKind { none, key_padding, full_rows, all_masked_batch } mask;
  double p;
  bool strided;  // q, k, v, out, dout and the gradients as [B, H, T, D] views of [B, T, H, D]
};

std::string name_of(const Case& c) {
  return std::string(dtype_name(c.dtype)) + " d" + std::to_string(c.d) +
         (c.causal ? " causal" : " full") + " Tq " + std::to_string(c.tq) + " Tk " +
         std::to_string(c.tk) + " mask " + std::to_string(static_cast<int>(c.mask)) + " p " +
         std::to_string(c.p) + (c.strided ? " strided" : " contiguous");
}

constexpr int64_t kBatch = 2, kHeads = 3;

// The additive f32 mask of a case ([B, 1, 1, Tk] or [1, 1, Tq, Tk]), or undefined.
Tensor make_mask(const Case& c, Generator& gen) {
  const double ninf = -std::numeric_limits<double>::infinity();
  switch (c.mask) {
    case Case::none:
      return Tensor();
    case Case::key_padding:
    case Case::all_masked_batch: {
      // Batch b pads its last 5 b keys; all_masked_batch masks every key of batch 1.
      std::vector<double> m(static_cast<size_t>(kBatch * c.tk), 0.0);
      for (int64_t b = 0; b < kBatch; ++b) {
        const int64_t first = c.mask == Case::all_masked_batch && b == 1 ? 0 : c.tk - 5 * b;
        for (int64_t j = first; j < c.tk; ++j) m[static_cast<size_t>(b * c.tk + j)] = ninf;
      }
      return Tensor::from_vector(m, {kBatch, 1, 1, c.tk}, DType::f32);
    }
    case Case::full_rows:
      return uniform_tensor({1, 1, c.tq, c.tk}, DType::f32, gen, -2.0, 2.0);
  }
  return Tensor();
}

// A [B, H, T, D] tensor with host's values on `dev`: contiguous, or a view of a [B, T, H, D] one.
Tensor place(const Tensor& host, Device dev, bool strided) {
  if (!strided) return host.to(dev);
  return host.permute({0, 2, 1, 3}).contiguous().to(dev).permute({0, 2, 1, 3});
}
Tensor empty_heads(const Shape& s, DType t, Device dev, bool strided) {
  if (!strided) return Tensor::empty(s, t, dev);
  return Tensor::empty({s[0], s[2], s[1], s[3]}, t, dev).permute({0, 2, 1, 3});
}

void run_case(const Case& c, uint64_t seed) {
  SCOPED_TRACE(name_of(c));
  Generator gen(seed);
  const DType t = c.dtype, f32 = DType::f32;
  const Shape qs{kBatch, kHeads, c.tq, c.d}, ks{kBatch, kHeads, c.tk, c.d};
  // Inputs in the case's dtype; the CPU reference reads their exact f32 values.
  const Tensor q = uniform_tensor(qs, t, gen, -2.0, 2.0), k = uniform_tensor(ks, t, gen, -2.0, 2.0);
  const Tensor v = uniform_tensor(ks, t, gen), dout = uniform_tensor(qs, t, gen);
  const Tensor mask = make_mask(c, gen);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  const uint64_t dropout_seed = gen.next_u64();

  // CPU reference in f32.
  const Tensor q32 = q.to(f32), k32 = k.to(f32), v32 = v.to(f32), dout32 = dout.to(f32);
  Tensor out32 = Tensor::empty(qs, f32), stats32 = Tensor::empty({kBatch, kHeads, c.tq}, f32);
  ASSERT_TRUE(
      cpu_be().sdpa(q32, k32, v32, mask, c.causal, scale, c.p, dropout_seed, out32, stats32));
  // The backward reads the output as stored in the case's dtype (the CUDA kernel's D uses it).
  const Tensor out_stored = out32.to(t).to(f32);
  Tensor dq32 = Tensor::empty(qs, f32), dk32 = Tensor::empty(ks, f32),
         dv32 = Tensor::empty(ks, f32);
  ASSERT_TRUE(cpu_be().sdpa_backward(dout32, q32, k32, v32, out_stored, stats32, mask, c.causal,
                                     scale, c.p, dropout_seed, dq32, dk32, dv32));

  // CUDA.
  const Tensor qg = place(q, gpu(), c.strided), kg = place(k, gpu(), c.strided),
               vg = place(v, gpu(), c.strided), doutg = place(dout, gpu(), c.strided);
  const Tensor maskg = on_gpu(mask);
  Tensor outg = empty_heads(qs, t, gpu(), c.strided);
  Tensor statsg = Tensor::empty({kBatch, kHeads, c.tq}, f32, gpu());
  ASSERT_TRUE(gpu_be().sdpa(qg, kg, vg, maskg, c.causal, scale, c.p, dropout_seed, outg, statsg));
  Tensor dqg = empty_heads(qs, t, gpu(), c.strided), dkg = empty_heads(ks, t, gpu(), c.strided),
         dvg = empty_heads(ks, t, gpu(), c.strided);
  ASSERT_TRUE(gpu_be().sdpa_backward(doutg, qg, kg, vg, outg, statsg, maskg, c.causal, scale, c.p,
                                     dropout_seed, dqg, dkg, dvg));

  // Bounds: parity.h's NMSE per dtype for out and stats (one f32 accumulation against another, then
  // one rounding); 10x for the gradients, whose dS = P (dP - D) cancels and whose dq sums the key
  // tiles in atomic (unordered) f32 adds.
  expect_parity(out32.to(t), outg.contiguous(), "out");
  expect_parity(stats32, statsg, "stats");
  expect_parity(dq32.to(t), dqg.contiguous(), "dq", 10.0);
  expect_parity(dk32.to(t), dkg.contiguous(), "dk", 10.0);
  expect_parity(dv32.to(t), dvg.contiguous(), "dv", 10.0);
}

TEST(CudaSdpa, fused_matches_cpu_across_dtypes_head_dims_and_masks) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  uint64_t seed = 100;
  for (DType t : {DType::f32, DType::f16, DType::bf16}) {
    for (int64_t d : {32, 64, 128}) {
      for (bool causal : {false, true}) {
        // Odd equal lengths, key padding, dropout, strided heads.
        run_case({t, d, causal, 77, 77, Case::key_padding, 0.2, true}, ++seed);
      }
      // Tq != Tk both ways (a causal Tq > Tk row sees every key), a [1, 1, Tq, Tk] mask, no
      // dropout, contiguous operands.
      run_case({t, d, true, 45, 130, Case::full_rows, 0.0, false}, ++seed);
      run_case({t, d, true, 130, 45, Case::full_rows, 0.0, false}, ++seed);
      run_case({t, d, false, 33, 100, Case::none, 0.5, false}, ++seed);
    }
  }
}

// A row whose every key is masked: the CPU kernel's output and stats are NaN there (as the composed
// softmax), and the NaN reaches that batch's gradients; CUDA must put NaN in the same places (the
// parity check compares NaN positions) and leave the other batch finite.
TEST(CudaSdpa, fully_masked_rows_are_nan_as_on_cpu) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  for (DType t : {DType::f32, DType::bf16}) {
    run_case({t, 64, false, 20, 37, Case::all_masked_batch, 0.0, false}, 200);
    run_case({t, 32, false, 20, 37, Case::all_masked_batch, 0.3, true}, 201);
  }
}

// p = 0 is no dropout whatever the seed, and the same seed gives the same output twice.
TEST(CudaSdpa, dropout_is_a_function_of_the_seed) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(300);
  const Shape s{2, 2, 50, 64};
  const Tensor q = on_gpu(uniform_tensor(s, DType::f32, gen));
  auto run = [&](double p, uint64_t seed) {
    Tensor out = Tensor::empty(s, DType::f32, gpu());
    Tensor stats = Tensor::empty({2, 2, 50}, DType::f32, gpu());
    EXPECT_TRUE(gpu_be().sdpa(q, q, q, Tensor(), true, 0.125, p, seed, out, stats));
    return out.to_vector<float>();
  };
  EXPECT_EQ(run(0.0, 1), run(0.0, 2));
  EXPECT_EQ(run(0.3, 7), run(0.3, 7));
  EXPECT_NE(run(0.3, 7), run(0.3, 8));
}

// The op end to end on both devices: heads sliced from one qkv tensor, causal with key padding,
// dropout from generators with one seed (so one mask), f32 at head dim 64: forward and the gradient
// of qkv agree, and the fused layout ([B, T, H, D] underneath) is kept on CUDA.
TEST(CudaSdpa, op_with_dropout_matches_cpu) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator init(400);
  const int64_t b = 2, t = 61, h = 2, d = 64;
  const Tensor qkv0 = uniform_tensor({b, t, 3, h, d}, DType::f32, init);
  const Tensor weight = uniform_tensor({b, h, t, d}, DType::f32, init);
  std::vector<int64_t> pad(static_cast<size_t>(b * t), 0);
  for (int64_t j = t - 9; j < t; ++j) pad[static_cast<size_t>(t + j)] = 1;
  const Tensor pad_t = Tensor::from_vector(pad, {b, t}, DType::i64);
  auto run = [&](Device dev, Tensor& grad) {
    Tensor qkv = qkv0.to(dev).clone().set_requires_grad(true);
    Tensor parts = qkv.permute({2, 0, 3, 1, 4});
    Generator gen(55);
    Tensor out = scaled_dot_product_attention(
        parts.select(0, 0), parts.select(0, 1), parts.select(0, 2),
        key_padding_to_attn_mask(pad_t.to(dev), DType::f32), true, 0.3, true, 0.0, &gen);
    EXPECT_TRUE(out.transpose(1, 2).is_contiguous())
        << "the fused path was not taken on " << dev.str();
    sum(mul(out, weight.to(dev))).backward();
    grad = qkv.grad();
    return out;
  };
  Tensor grad_c, grad_g;
  const Tensor out_c = run(Device::cpu(), grad_c), out_g = run(gpu(), grad_g);
  expect_parity(out_c, out_g.contiguous(), "out");
  expect_parity(grad_c, grad_g, "d qkv", 10.0);
}

// Head dim 48 and f64 are declined by the CUDA kernel; the op composes attention on the GPU and
// still matches the CPU (whose fused kernel takes any head dim).
TEST(CudaSdpa, declined_head_dim_falls_back_to_composition) {
  DTRAIN_SKIP_WITHOUT_CUDA();
  Generator gen(500);
  const Shape qs{2, 2, 21, 48}, ks{2, 2, 30, 48};
  {
    const Tensor q = on_gpu(uniform_tensor(qs, DType::f32, gen));
    Tensor out = Tensor::empty(qs, DType::f32, gpu()),
           stats = Tensor::empty({2, 2, 21}, DType::f32, gpu());
    EXPECT_FALSE(gpu_be().sdpa(q, q, q, Tensor(), false, 0.1, 0.0, 0, out, stats));
    const Tensor q64 = on_gpu(uniform_tensor({1, 1, 8, 64}, DType::f64, gen));
    Tensor out64 = Tensor::empty({1, 1, 8, 64}, DType::f64, gpu());
    Tensor stats64 = Tensor::empty({1, 1, 8}, DType::f64, gpu());
    EXPECT_FALSE(gpu_be().sdpa(q64, q64, q64, Tensor(), false, 0.1, 0.0, 0, out64, stats64));
  }
  const Tensor q0 = uniform_tensor(qs, DType::f32, gen), k0 = uniform_tensor(ks, DType::f32, gen),
               v0 = uniform_tensor(ks, DType::f32, gen), w = uniform_tensor(qs, DType::f32, gen);
  std::vector<int64_t> pad(static_cast<size_t>(2 * 30), 0);
  for (int64_t j = 25; j < 30; ++j) pad[static_cast<size_t>(30 + j)] = 1;
  const Tensor pad_t = Tensor::from_vector(pad, {2, 30}, DType::i64);
  auto run = [&](Device dev, std::vector<Tensor>& grads) {
    Tensor q = q0.to(dev).clone().set_requires_grad(true),
           k = k0.to(dev).clone().set_requires_grad(true),
           v = v0.to(dev).clone().set_requires_grad(true);
    Tensor out = scaled_dot_product_attention(
        q, k, v, key_padding_to_attn_mask(pad_t.to(dev), DType::f32), true);
    sum(mul(out, w.to(dev))).backward();
    grads = {q.grad(), k.grad(), v.grad()};
    return out;
  };
  std::vector<Tensor> gc, gg;
  const Tensor out_c = run(Device::cpu(), gc), out_g = run(gpu(), gg);
  EXPECT_FALSE(out_g.transpose(1, 2).is_contiguous()) << "expected the composed path on CUDA";
  expect_parity(out_c, out_g, "out (composed on CUDA)", 10.0);
  expect_parity(gc[0], gg[0], "dq (composed on CUDA)", 10.0);
  expect_parity(gc[1], gg[1], "dk (composed on CUDA)", 10.0);
  expect_parity(gc[2], gg[2], "dv (composed on CUDA)", 10.0);
}

}  // namespace
}  // namespace dtrain
