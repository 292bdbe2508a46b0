// The models on a GPU against the same models on the CPU (GPU.*; they skip without a CUDA device):
// from the same initial weights and batches, 8 AdamW steps of a small ViT, GPT and Transformer give
// the same losses step after step, in f32 (TF32 off) to f32 rounding through the layers, and under
// bf16 autocast to bf16 rounding. A wrong kernel, a missed stream dependency or a stale cached plan
// shows up as a loss that drifts away from the CPU's.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/amp/autocast.h"
#include "core/backend/backend.h"
#include "core/ops/ops.h"
#include "core/optim/adam.h"
#include "models/gpt.h"
#include "models/transformer.h"
#include "models/vit.h"

namespace dtrain::models {
namespace {

#define SKIP_WITHOUT_GPU()                                                                         \
  do {                                                                                             \
    if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device: " << cuda_unavailable_reason(); \
  } while (0)

// Inputs and targets of one batch (CPU tensors; moved to the model's device for each step).
struct Batch {
  std::vector<Tensor> inputs;
  Tensor targets;
};

// A model of either device: its module and its loss on a batch already on that device.
struct Run {
  std::shared_ptr<nn::Module> module;
  std::function<Tensor(const std::vector<Tensor>&, const Tensor&)> loss;
};

// Losses of `steps` AdamW steps over `batches` (cycled) on `device`, autocast to `low` when mixed.
std::vector<double> losses_of(const Run& run, const std::vector<Batch>& batches, Device device,
                              int steps, bool mixed) {
  run.module->to(device);
  optim::AdamW opt(run.module->parameters(), {.lr = 1e-3, .weight_decay = 0.01});
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    const Batch& b = batches[static_cast<size_t>(s) % batches.size()];
    std::vector<Tensor> inputs;
    for (const Tensor& t : b.inputs) inputs.push_back(t.to(device));
    Tensor loss;
    {
      amp::AutocastGuard autocast(DType::bf16, mixed);
      loss = run.loss(inputs, b.targets.to(device));
    }
    losses.push_back(loss.item());
    loss.backward();
    opt.step();
    opt.zero_grad();
  }
  return losses;
}

// Builds the model twice from the same seed (once per device) and compares the loss curves.
void expect_same_curve(const std::function<Run()>& make, const std::vector<Batch>& batches,
                       bool mixed, double tol, const std::string& what) {
  set_allow_tf32(false);
  manual_seed(3);
  const std::vector<double> cpu = losses_of(make(), batches, Device::cpu(), 8, mixed);
  manual_seed(3);
  const std::vector<double> gpu = losses_of(make(), batches, Device::cuda(0), 8, mixed);
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_LE(std::fabs(gpu[i] - cpu[i]) / (1.0 + std::fabs(cpu[i])), tol)
        << what << ": step " << i + 1 << " loss " << gpu[i] << " on cuda:0, " << cpu[i]
        << " on the CPU";
  }
  EXPECT_LT(gpu.back(), gpu.front()) << what << ": the loss did not fall on cuda:0";
}

int64_t uniform_int(Generator& gen, int64_t n) {
  return static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(n));
}

Tensor random_ids(Generator& gen, int64_t rows, int64_t cols, int64_t lo, int64_t hi) {
  std::vector<int64_t> ids(static_cast<size_t>(rows * cols));
  for (int64_t& id : ids) id = lo + uniform_int(gen, hi - lo);
  return Tensor::from_vector(ids, {rows, cols}, DType::i64);
}

std::vector<Batch> vit_batches() {
  Generator gen(5);
  std::vector<Batch> out;
  for (int i = 0; i < 2; ++i) {
    std::vector<float> pixels(16 * 64);
    for (float& p : pixels) p = static_cast<float>(gen.next_normal());
    std::vector<int64_t> labels(16);
    for (int64_t& l : labels) l = uniform_int(gen, 3);
    out.push_back({{Tensor::from_vector(pixels, {16, 1, 8, 8})},
                   Tensor::from_vector(labels, {16}, DType::i64)});
  }
  return out;
}

Run vit() {
  auto m = std::make_shared<VisionTransformer>(VitConfig{.image_size = 8,
                                                         .in_channels = 1,
                                                         .num_classes = 3,
                                                         .patch_size = 4,
                                                         .dim = 32,
                                                         .depth = 2,
                                                         .heads = 2,
                                                         .mlp_dim = 64});
  return {m, [m](const std::vector<Tensor>& in, const Tensor& t) {
            return cross_entropy(m->forward(in[0]).to(DType::f32), t);
          }};
}

std::vector<Batch> text_batches(bool translation) {
  Generator gen(9);
  std::vector<Batch> out;
  for (int i = 0; i < 2; ++i) {
    Tensor src = random_ids(gen, 4, 12, 3, 20);
    Tensor tgt = random_ids(gen, 4, 12, 3, 20);
    // Padding at the end of some rows, so the masks and ignored targets are exercised.
    for (int64_t r = 0; r < 4; r += 2) {
      src.narrow(0, r, 1).narrow(1, 8, 4).fill_(0.0);
      tgt.narrow(0, r, 1).narrow(1, 9, 3).fill_(0.0);
    }
    out.push_back(translation ? Batch{{src, tgt}, tgt} : Batch{{src}, tgt});
  }
  return out;
}

Run gpt() {
  auto m = std::make_shared<Gpt>(
      GptConfig{.vocab_size = 20, .max_len = 12, .dim = 32, .depth = 2, .heads = 2, .mlp_dim = 64});
  return {m, [m](const std::vector<Tensor>& in, const Tensor& t) {
            return cross_entropy(m->forward(in[0]).to(DType::f32).flatten(0, 1), t.flatten());
          }};
}

Run transformer() {
  auto m = std::make_shared<Transformer>(TransformerConfig{.src_vocab = 20,
                                                           .tgt_vocab = 20,
                                                           .max_len = 12,
                                                           .dim = 32,
                                                           .encoder_layers = 1,
                                                           .decoder_layers = 1,
                                                           .heads = 2,
                                                           .mlp_dim = 64,
                                                           .dropout = 0.0});
  return {m, [m](const std::vector<Tensor>& in, const Tensor& t) {
            return cross_entropy(m->forward(in[0], in[1]).to(DType::f32).flatten(0, 1), t.flatten(),
                                 0);
          }};
}

// f32: the GPU sums in another order (cuBLAS, tree reductions), so losses agree to f32 rounding grown
// through 8 steps; bf16: both round every GEMM and attention output to 8 bits of mantissa, at places
// that may differ by one rounding.
constexpr double kTolF32 = 1e-4, kTolBf16 = 3e-2;

TEST(GPU, VitMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  expect_same_curve(vit, vit_batches(), false, kTolF32, "vit f32");
  expect_same_curve(vit, vit_batches(), true, kTolBf16, "vit bf16");
}

TEST(GPU, GptMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  expect_same_curve(gpt, text_batches(false), false, kTolF32, "gpt f32");
  expect_same_curve(gpt, text_batches(false), true, kTolBf16, "gpt bf16");
}

TEST(GPU, TransformerMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  expect_same_curve(transformer, text_batches(true), false, kTolF32, "transformer f32");
  expect_same_curve(transformer, text_batches(true), true, kTolBf16, "transformer bf16");
}

}  // namespace
}  // namespace dtrain::models
