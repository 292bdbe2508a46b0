// The models against PyTorch, and in use.
//   ModelReference.*: loss and every parameter gradient of a small ViT (patch and dwsep stems), Transformer and GPT equal
//     PyTorch's for the same weights and batch (fixtures from tests/reference/generate_models.py).
//   ModelTraining.*: 30 AdamW steps on a tiny synthetic task lower each model's loss.
//   TransformerDecoding.*, GptGeneration.*: greedy decoding and sampling, checked against the
//     model's own forward pass.
//   TransformerTorchState.*: the torch.nn.Transformer state_dict names and the round trip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/ops/ops.h"
#include "core/optim/adam.h"
#include "models/gpt.h"
#include "models/transformer.h"
#include "models/vit.h"

#include "token_batch.h"

namespace dtrain::models {
namespace {

SafetensorsFile load_fixture(const std::string& model) {
  return load_safetensors(std::string(DTRAIN_SOURCE_DIR) + "/tests/reference/fixtures/model_" +
                          model + ".safetensors");
}

// The fixture's tensors whose names start with `prefix`, with the prefix removed.
NamedTensors with_prefix(const SafetensorsFile& f, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [name, t] : f.tensors())
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), t);
  return out;
}

int64_t meta_int(const SafetensorsFile& f, const std::string& key) {
  return std::stoll(f.metadata().at(key));
}

// Largest |actual - expected| / (1 + |expected|) over the elements; NaN counts as infinite.
void expect_close(const Tensor& actual, const Tensor& expected, double tol,
                  const std::string& what) {
  ASSERT_TRUE(actual.defined()) << what << " is undefined";
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double err = std::fabs(a[i] - e[i]) / (1.0 + std::fabs(e[i]));
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  EXPECT_LE(worst, tol) << what << ": element " << at << " is " << a[at] << ", torch has " << e[at];
}

// Compares the loss and the gradient of every parameter (by name) with the fixture's.
void expect_matches_torch(const nn::Module& model, const Tensor& loss, const SafetensorsFile& f,
                          double tol, const std::string& what) {
  expect_close(loss, f.at("loss"), tol, what + " loss");
  size_t checked = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    ASSERT_TRUE(f.contains("grad." + name)) << what << ": torch has no gradient for " << name;
    expect_close(p.grad(), f.at("grad." + name), tol, what + " grad of " + name);
    ++checked;
  }
  EXPECT_EQ(checked, with_prefix(f, "grad.").size()) << what << ": a torch gradient went unchecked";
}

// Torch computed in f64 from the fixture's f32 weights, so dtrain in f64 agrees to rounding (measured:
// under 1e-15), and in f32, the precision training uses, to f32 rounding through the layers (measured:
// under 3e-7). The error is |ours - torch| / (1 + |torch|) per element.
constexpr double kTolF64 = 1e-12;
constexpr double kTolF32 = 5e-6;

VitConfig fixture_vit_config(const SafetensorsFile& f) {
  VitConfig c;
  c.image_size = meta_int(f, "image");
  c.in_channels = meta_int(f, "channels");
  c.patch_size = meta_int(f, "patch");
  c.dim = meta_int(f, "dim");
  c.depth = meta_int(f, "depth");
  c.heads = meta_int(f, "heads");
  c.mlp_dim = meta_int(f, "mlp");
  c.num_classes = meta_int(f, "classes");
  if (f.metadata().count("stem_channels")) {
    c.stem = "dwsep";
    c.stem_channels = meta_int(f, "stem_channels");
  }
  return c;
}

TEST(ModelReference, Vit) {
  SafetensorsFile f = load_fixture("vit");
  for (DType dtype : {DType::f64, DType::f32}) {
    VisionTransformer model(fixture_vit_config(f));
    model.to(dtype);
    model.load_state_dict(with_prefix(f, "param."));  // strict: timm's names, all of them
    Tensor logits = model.forward(f.at("input.images").to(dtype));
    Tensor loss = cross_entropy(logits, f.at("input.labels"));
    loss.backward();
    expect_matches_torch(model, loss, f, dtype == DType::f64 ? kTolF64 : kTolF32,
                         std::string("ViT ") + dtype_name(dtype));
  }
}

// --stem dwsep: two depthwise-separable 3x3 convolutions with GELU before the patch projection, on
// 3 channels so the depthwise step has several groups.
TEST(ModelReference, VitDwsepStem) {
  SafetensorsFile f = load_fixture("vit_dwsep");
  for (DType dtype : {DType::f64, DType::f32}) {
    VisionTransformer model(fixture_vit_config(f));
    ASSERT_NE(model.stem, nullptr);
    model.to(dtype);
    model.load_state_dict(with_prefix(f, "param."));  // strict: stem.conv1.depthwise.weight, ...
    Tensor logits = model.forward(f.at("input.images").to(dtype));
    Tensor loss = cross_entropy(logits, f.at("input.labels"));
    loss.backward();
    expect_matches_torch(model, loss, f, dtype == DType::f64 ? kTolF64 : kTolF32,
                         std::string("ViT dwsep ") + dtype_name(dtype));
  }
}

TransformerConfig fixture_transformer_config(const SafetensorsFile& f) {
  TransformerConfig c;
  c.src_vocab = c.tgt_vocab = meta_int(f, "vocab");
  c.dim = meta_int(f, "dim");
  c.encoder_layers = c.decoder_layers = meta_int(f, "layers");
  c.heads = meta_int(f, "heads");
  c.mlp_dim = meta_int(f, "mlp");
  c.max_len = meta_int(f, "max_len");
  c.pad_id = meta_int(f, "pad");
  c.dropout = 0.0;
  return c;
}

TEST(ModelReference, Transformer) {
  SafetensorsFile f = load_fixture("transformer");
  TransformerConfig config = fixture_transformer_config(f);
  for (DType dtype : {DType::f64, DType::f32}) {
    Transformer model(config);
    model.to(dtype);
    model.from_torch_state(with_prefix(f, "param."));  // torch.nn.Transformer's names
    Tensor logits = model.forward(f.at("input.src"), f.at("input.tgt_in"));
    Tensor loss = cross_entropy(logits, f.at("input.tgt_out"), /*ignore_index=*/config.pad_id);
    loss.backward();
    expect_matches_torch(model, loss, f, dtype == DType::f64 ? kTolF64 : kTolF32,
                         std::string("Transformer ") + dtype_name(dtype));
  }
}

GptConfig fixture_gpt_config(const SafetensorsFile& f) {
  GptConfig c;
  c.vocab_size = meta_int(f, "vocab");
  c.dim = meta_int(f, "dim");
  c.depth = meta_int(f, "depth");
  c.heads = meta_int(f, "heads");
  c.mlp_dim = meta_int(f, "mlp");
  c.max_len = meta_int(f, "max_len");
  return c;
}

TEST(ModelReference, Gpt) {
  SafetensorsFile f = load_fixture("gpt");
  for (DType dtype : {DType::f64, DType::f32}) {
    Gpt model(fixture_gpt_config(f));
    model.to(dtype);
    model.load_state_dict(with_prefix(f, "param."));
    Tensor logits = model.forward(f.at("input.tokens"));
    Tensor loss = cross_entropy(logits, f.at("input.targets"));
    loss.backward();
    // The tied head adds its gradient to tok_embed.weight's; torch's tensor holds both parts.
    expect_matches_torch(model, loss, f, dtype == DType::f64 ? kTolF64 : kTolF32,
                         std::string("GPT ") + dtype_name(dtype));
  }
}

// ---- training: 30 steps on a task each model learns quickly ------------------------------------

struct Batch {
  std::vector<Tensor> inputs;
  Tensor targets;
};

// Runs `steps` AdamW steps, a fresh batch each, and returns the losses.
template <class Model, class MakeBatch, class Loss>
std::vector<double> train_steps(Model& model, int steps, double lr, MakeBatch make_batch,
                                Loss loss_of) {
  optim::AdamW opt(model.parameters(), {.lr = lr, .weight_decay = 0.01});
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    Batch batch = make_batch();
    Tensor loss = loss_of(batch);
    opt.zero_grad();
    loss.backward();
    opt.step();
    losses.push_back(loss.item());
  }
  return losses;
}

double mean_of(const std::vector<double>& v, size_t begin, size_t end) {
  return std::accumulate(v.begin() + static_cast<std::ptrdiff_t>(begin),
                         v.begin() + static_cast<std::ptrdiff_t>(end), 0.0) /
         static_cast<double>(end - begin);
}

std::string join(const std::vector<double>& v) {
  std::ostringstream s;
  for (double x : v) s << x << ' ';
  return s.str();
}

// The mean of the last 5 losses must be below `ratio` times the mean of the first 5.
void expect_loss_falls(const std::vector<double>& losses, double ratio) {
  ASSERT_EQ(losses.size(), 30u);
  double first = mean_of(losses, 0, 5), last = mean_of(losses, 25, 30);
  EXPECT_TRUE(std::isfinite(last)) << join(losses);
  EXPECT_LT(last, ratio * first) << "losses: " << join(losses);
}

int64_t uniform_int(Generator& gen, int64_t n) {
  return static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(n));
}

// 8x8 images of noise with one, two or three bright 4x4 quadrants (chosen at random); the class is
// how many. (Which quadrant is lit would be a poor task: at initialisation the class token attends
// evenly to all patches and sees the same average for every class.)
TEST(ModelTraining, Vit30Steps) {
  manual_seed(1);
  VitConfig c{.image_size = 8,
              .in_channels = 1,
              .num_classes = 3,
              .patch_size = 4,
              .dim = 32,
              .depth = 2,
              .heads = 2,
              .mlp_dim = 64};
  VisionTransformer model(c);
  Generator gen(11);
  const int64_t batch = 32;
  auto make_batch = [&] {
    std::vector<float> pixels(static_cast<size_t>(batch * 64));
    std::vector<int64_t> labels(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      int64_t label = uniform_int(gen, 3);
      labels[static_cast<size_t>(b)] = label;
      std::vector<int64_t> quadrants = {0, 1, 2, 3};
      for (int64_t i = 3; i > 0; --i)
        std::swap(quadrants[static_cast<size_t>(i)],
                  quadrants[static_cast<size_t>(uniform_int(gen, i + 1))]);
      std::vector<bool> lit(4, false);
      for (int64_t i = 0; i <= label; ++i)
        lit[static_cast<size_t>(quadrants[static_cast<size_t>(i)])] = true;
      for (int64_t y = 0; y < 8; ++y) {
        for (int64_t x = 0; x < 8; ++x) {
          pixels[static_cast<size_t>(b * 64 + y * 8 + x)] =
              static_cast<float>((lit[static_cast<size_t>((y / 4) * 2 + x / 4)] ? 1.0 : 0.0) +
                                 0.5 * gen.next_normal());
        }
      }
    }
    return Batch{{Tensor::from_vector(pixels, {batch, 1, 8, 8})},
                 Tensor::from_vector(labels, {batch}, DType::i64)};
  };
  auto losses = train_steps(model, 30, 3e-3, make_batch, [&](const Batch& b) {
    return cross_entropy(model.forward(b.inputs[0]), b.targets);
  });
  expect_loss_falls(losses, 0.7);
}

// Copying: the target is the source (3 to 6 symbols, padded) between bos and eos.
constexpr int64_t kPad = 0, kBos = 1, kEos = 2, kVocab = 11;

TEST(ModelTraining, Transformer30Steps) {
  manual_seed(2);
  TransformerConfig c{.src_vocab = kVocab,
                      .tgt_vocab = kVocab,
                      .max_len = 16,
                      .dim = 32,
                      .encoder_layers = 2,
                      .decoder_layers = 2,
                      .heads = 2,
                      .mlp_dim = 64,
                      .dropout = 0.0,
                      .pad_id = kPad};
  Transformer model(c);
  Generator gen(12);
  const int64_t batch = 32, src_len = 6, tgt_len = src_len + 1;
  auto make_batch = [&] {
    std::vector<int64_t> src(static_cast<size_t>(batch * src_len), kPad);
    std::vector<int64_t> tgt_in(static_cast<size_t>(batch * tgt_len), kPad);
    std::vector<int64_t> tgt_out(static_cast<size_t>(batch * tgt_len), kPad);
    for (int64_t b = 0; b < batch; ++b) {
      int64_t n = 3 + uniform_int(gen, 4);
      tgt_in[static_cast<size_t>(b * tgt_len)] = kBos;
      for (int64_t i = 0; i < n; ++i) {
        int64_t symbol = 3 + uniform_int(gen, kVocab - 3);
        src[static_cast<size_t>(b * src_len + i)] = symbol;
        tgt_in[static_cast<size_t>(b * tgt_len + i + 1)] = symbol;
        tgt_out[static_cast<size_t>(b * tgt_len + i)] = symbol;
      }
      tgt_out[static_cast<size_t>(b * tgt_len + n)] = kEos;
    }
    return Batch{{Tensor::from_vector(src, {batch, src_len}, DType::i64),
                  Tensor::from_vector(tgt_in, {batch, tgt_len}, DType::i64)},
                 Tensor::from_vector(tgt_out, {batch, tgt_len}, DType::i64)};
  };
  auto losses = train_steps(model, 30, 3e-3, make_batch, [&](const Batch& b) {
    return cross_entropy(model.forward(b.inputs[0], b.inputs[1]), b.targets, kPad);
  });
  expect_loss_falls(losses, 0.8);
}

// Counting: each sequence steps by +1 (mod vocab) from a random start, so one token predicts the next.
TEST(ModelTraining, Gpt30Steps) {
  manual_seed(3);
  GptConfig c{.vocab_size = 13, .max_len = 16, .dim = 32, .depth = 2, .heads = 2, .mlp_dim = 64};
  Gpt model(c);
  Generator gen(13);
  const int64_t batch = 16, len = 9;
  auto make_batch = [&] {
    std::vector<int64_t> seq(static_cast<size_t>(batch * len));
    for (int64_t b = 0; b < batch; ++b) {
      int64_t start = uniform_int(gen, c.vocab_size);
      for (int64_t i = 0; i < len; ++i)
        seq[static_cast<size_t>(b * len + i)] = (start + i) % c.vocab_size;
    }
    Tensor all = Tensor::from_vector(seq, {batch, len}, DType::i64);
    return Batch{{all.narrow(1, 0, len - 1).contiguous()}, all.narrow(1, 1, len - 1).contiguous()};
  };
  auto losses = train_steps(model, 30, 3e-3, make_batch, [&](const Batch& b) {
    return cross_entropy(model.forward(b.inputs[0]), b.targets);
  });
  expect_loss_falls(losses, 0.5);
}

// ---- Transformer: greedy decoding and torch names ------------------------------------------------

TransformerConfig small_transformer(double dropout = 0.0) {
  return {.src_vocab = kVocab,
          .tgt_vocab = kVocab,
          .max_len = 12,
          .dim = 16,
          .encoder_layers = 2,
          .decoder_layers = 2,
          .heads = 2,
          .mlp_dim = 32,
          .dropout = dropout,
          .pad_id = kPad};
}

// Rows of 5, 3 and 2 symbols, padded at the end.
const std::vector<std::vector<int64_t>> kSources = {{5, 7, 3, 9, 4}, {6, 10, 8}, {3, 4}};

Tensor padded_batch(const std::vector<std::vector<int64_t>>& rows) {
  return testing::padded_batch(rows, kPad);
}

// Pushes the generator's bias so one token always wins (+) or never does (-).
void bias_token(Transformer& model, int64_t token, double value) {
  NoGradGuard no_grad;
  model.generator->bias.narrow(0, token, 1).fill_(value);
}

TEST(TransformerDecoding, EachTokenIsTheArgMaxOfTheForwardPass) {
  manual_seed(4);
  Transformer model(small_transformer());
  model.to(DType::f64);
  const int64_t max_len = 8;
  auto decoded = model.greedy_decode(padded_batch(kSources), kBos, kEos, max_len);
  ASSERT_EQ(decoded.size(), kSources.size());
  for (size_t b = 0; b < kSources.size(); ++b) {
    const auto& out = decoded[b];
    ASSERT_LE(static_cast<int64_t>(out.size()), max_len);
    // Teacher-force bos + out through forward(); its arg max must reproduce out, then eos unless the
    // length limit stopped the row.
    std::vector<int64_t> tgt_in = {kBos};
    tgt_in.insert(tgt_in.end(), out.begin(), out.end());
    if (static_cast<int64_t>(out.size()) == max_len) tgt_in.pop_back();
    Tensor src = padded_batch({kSources[b]});
    Tensor tgt = Tensor::from_vector(tgt_in, {1, static_cast<int64_t>(tgt_in.size())}, DType::i64);
    std::vector<int64_t> best = argmax(model.forward(src, tgt), -1).to_vector<int64_t>();
    for (size_t i = 0; i < out.size(); ++i) {
      EXPECT_EQ(best[i], out[i]) << "row " << b << " position " << i;
      EXPECT_NE(out[i], kEos);
      EXPECT_TRUE(out[i] >= 0 && out[i] < kVocab);
    }
    if (static_cast<int64_t>(out.size()) < max_len) {
      EXPECT_EQ(best[out.size()], kEos) << "row " << b;
    }
  }
}

TEST(TransformerDecoding, PaddingDoesNotChangeTheResult) {
  manual_seed(5);
  Transformer model(small_transformer());
  model.to(DType::f64);
  bias_token(model, kEos, -1e3);  // run to the length limit, so every position is compared
  auto batched = model.greedy_decode(padded_batch(kSources), kBos, kEos, 6);
  for (size_t b = 0; b < kSources.size(); ++b) {
    auto alone = model.greedy_decode(padded_batch({kSources[b]}), kBos, kEos, 6);
    EXPECT_EQ(batched[b], alone[0]) << "row " << b;
    EXPECT_EQ(batched[b].size(), 6u);
  }
}

TEST(TransformerDecoding, StopsAtEosAndAtTheLengthLimit) {
  manual_seed(6);
  Transformer model(small_transformer());
  bias_token(model, kEos, 1e3);
  for (const auto& row : model.greedy_decode(padded_batch(kSources), kBos, kEos, 8))
    EXPECT_TRUE(row.empty());
  bias_token(model, kEos, -1e3);
  for (const auto& row : model.greedy_decode(padded_batch(kSources), kBos, kEos, 5))
    EXPECT_EQ(row.size(), 5u);
  // The limit is capped by the model's max_len (the positional table's length).
  for (const auto& row : model.greedy_decode(padded_batch(kSources), kBos, kEos, 100))
    EXPECT_EQ(static_cast<int64_t>(row.size()), small_transformer().max_len);
}

TEST(TransformerDecoding, DeterministicForASeedAndLeavesTrainingMode) {
  auto run = [](uint64_t seed) {
    manual_seed(seed);
    Transformer model(small_transformer(/*dropout=*/0.3));  // eval() inside must turn dropout off
    auto first = model.greedy_decode(padded_batch(kSources), kBos, kEos, 8);
    auto second = model.greedy_decode(padded_batch(kSources), kBos, kEos, 8);
    EXPECT_EQ(first, second);
    EXPECT_TRUE(model.is_training());
    return first;
  };
  EXPECT_EQ(run(7), run(7));
}

// An empty source (all padding) would mask every key; the model leaves such a row unmasked, so its
// outputs stay finite and the other rows are untouched.
TEST(TransformerDecoding, AnEmptySourceRowStaysFinite) {
  manual_seed(13);
  Transformer model(small_transformer());
  Tensor tgt =
      Tensor::from_vector(std::vector<int64_t>{kBos, 4, 5, kBos, 6, kPad}, {2, 3}, DType::i64);
  Tensor logits = model.forward(padded_batch({{5, 7, 3}, {}}), tgt);
  for (double v : logits.to_vector<double>()) ASSERT_TRUE(std::isfinite(v));
  Tensor alone = model.forward(padded_batch({{5, 7, 3}}), tgt.narrow(0, 0, 1).contiguous());
  expect_close(logits.narrow(0, 0, 1), alone, 1e-5, "row 0 beside an empty row");
  EXPECT_EQ(model.greedy_decode(padded_batch({{5, 7, 3}, {kPad}}), kBos, kEos, 4).size(), 2u);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

TEST(TransformerTorchState, NamesAreTorchNnTransformers) {
  SafetensorsFile f = load_fixture("transformer");
  Transformer model(fixture_transformer_config(f));
  std::set<std::string> ours, expected;
  for (const auto& [name, t] : model.to_torch_state()) ours.insert(name);
  // Every key of a real torch.nn.Transformer state_dict, plus the embeddings and the generator.
  for (const std::string& key : split(f.metadata().at("torch_state_keys"), ','))
    expected.insert(key);
  EXPECT_GT(expected.size(), 50u);
  for (const char* extra :
       {"src_embed.weight", "tgt_embed.weight", "generator.weight", "generator.bias"})
    expected.insert(extra);
  EXPECT_EQ(ours, expected);
  // Shapes as torch has them (the fused cross-attention in_proj included).
  for (const auto& [name, t] : model.to_torch_state())
    EXPECT_EQ(t.shape(), f.at("param." + name).shape()) << name;
}

TEST(TransformerTorchState, RoundTrip) {
  SafetensorsFile f = load_fixture("transformer");
  Transformer model(fixture_transformer_config(f));
  model.from_torch_state(with_prefix(f, "param."));
  for (const auto& [name, t] : model.to_torch_state())
    expect_close(t, f.at("param." + name), 0.0, "to_torch_state " + name);

  manual_seed(8);
  Transformer a(small_transformer());
  manual_seed(9);
  Transformer b(small_transformer());
  b.from_torch_state(a.to_torch_state());
  NamedTensors sa = a.state_dict(), sb = b.state_dict();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    ASSERT_EQ(sa[i].first, sb[i].first);
    expect_close(sb[i].second, sa[i].second, 0.0, sa[i].first);
  }
  NamedTensors missing = a.to_torch_state();
  missing.pop_back();
  EXPECT_THROW(b.from_torch_state(missing), Error);
}

// ---- GPT: sampling --------------------------------------------------------------------------------

GptConfig small_gpt() {
  return {.vocab_size = 13, .max_len = 10, .dim = 16, .depth = 2, .heads = 2, .mlp_dim = 32};
}

// The logits of the next token after `tokens` (the last max_len of them), as the model sees them.
std::vector<double> next_logits(const Gpt& model, const std::vector<int64_t>& tokens) {
  size_t start = tokens.size() > static_cast<size_t>(model.config().max_len)
                     ? tokens.size() - static_cast<size_t>(model.config().max_len)
                     : 0;
  std::vector<int64_t> window(tokens.begin() + static_cast<std::ptrdiff_t>(start), tokens.end());
  NoGradGuard no_grad;
  Tensor input = Tensor::from_vector(window, {1, static_cast<int64_t>(window.size())}, DType::i64);
  return model.forward(input).select(1, -1).to_vector<double>();
}

TEST(GptGeneration, GreedyFollowsTheArgMaxBeyondTheContext) {
  manual_seed(10);
  Gpt model(small_gpt());
  std::vector<int64_t> prompt = {3, 1, 4};
  // 3 + 12 tokens > max_len 10: the last steps see a cropped window.
  auto out = model.generate(prompt, 12, /*temperature=*/0.0, /*top_k=*/0, default_generator());
  ASSERT_EQ(out.size(), 15u);
  EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), out.begin()));
  for (size_t i = prompt.size(); i < out.size(); ++i) {
    std::vector<double> logits =
        next_logits(model, {out.begin(), out.begin() + static_cast<std::ptrdiff_t>(i)});
    EXPECT_EQ(out[i], std::max_element(logits.begin(), logits.end()) - logits.begin())
        << "token " << i;
  }
  EXPECT_TRUE(model.is_training());
  // top_k = 1 leaves only the arg max, whatever the temperature.
  Generator gen(1);
  EXPECT_EQ(model.generate(prompt, 12, 1.0, 1, gen), out);
}

TEST(GptGeneration, SamplingIsSeededAndRespectsTopK) {
  manual_seed(11);
  Gpt model(small_gpt());
  std::vector<int64_t> prompt = {5};
  Generator a(42), b(42), c(43);
  auto first = model.generate(prompt, 20, 1.0, 0, a);
  EXPECT_EQ(model.generate(prompt, 20, 1.0, 0, b), first);
  EXPECT_NE(model.generate(prompt, 20, 1.0, 0, c),
            first);  // 13^20 sequences: a collision means a bug
  for (int64_t t : first) EXPECT_TRUE(t >= 0 && t < 13);

  Generator d(44);
  const int64_t k = 3;
  auto sampled = model.generate(prompt, 15, 2.0, k, d);
  for (size_t i = prompt.size(); i < sampled.size(); ++i) {
    std::vector<double> logits =
        next_logits(model, {sampled.begin(), sampled.begin() + static_cast<std::ptrdiff_t>(i)});
    int64_t larger = std::count_if(logits.begin(), logits.end(), [&](double l) {
      return l > logits[static_cast<size_t>(sampled[i])];
    });
    EXPECT_LT(larger, k) << "token " << i << " is not among the " << k << " most likely";
  }
}

TEST(GptGeneration, LogitsAreCausal) {
  manual_seed(12);
  Gpt model(small_gpt());
  NoGradGuard no_grad;
  Tensor a = Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {1, 6}, DType::i64);
  Tensor b = Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 4, 9, 0}, {1, 6}, DType::i64);
  // Changing tokens 4 and 5 leaves the logits at positions 0..3 unchanged, and changes position 4's.
  expect_close(model.forward(b).narrow(1, 0, 4), model.forward(a).narrow(1, 0, 4), 1e-6,
               "prefix logits");
  std::vector<double> la = model.forward(a).select(1, 4).to_vector<double>();
  std::vector<double> lb = model.forward(b).select(1, 4).to_vector<double>();
  EXPECT_NE(la, lb);
}

}  // namespace
}  // namespace dtrain::models
