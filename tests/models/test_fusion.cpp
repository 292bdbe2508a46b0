// FusionClassifier: the output shape and the parameters built for each modality, the text padding
// kept out of the result, and a finite-difference gradient check of a tiny model in f64 (every
// parameter, through both encoders, the cross-modal attention and the gated fusion).
#include "models/fusion.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "core/tensor/random.h"
#include "gradcheck.h"

namespace dtrain::models {
namespace {

FusionConfig tiny(const std::string& modalities) {
  FusionConfig c;
  c.modalities = modalities;
  c.num_classes = 5;
  c.image_size = 16;
  c.patch_size = 8;  // 4 image tokens
  c.vocab_size = 7;
  c.seq_len = 4;
  c.dim = 4;
  c.depth = 1;
  c.heads = 2;
  c.mlp_dim = 8;
  return c;
}

Tensor glyphs(int64_t batch) { return Tensor::randn({batch, 1, 16, 16}); }

// Row 0 has all four characters, row 1 two and then padding (0).
Tensor text_ids() {
  return Tensor::from_vector(std::vector<int64_t>{3, 4, 5, 6, 2, 5, 0, 0}, {2, 4}, DType::i64);
}

bool has_parameter_starting(const nn::Module& m, const std::string& prefix) {
  for (const auto& [name, p] : m.named_parameters()) {
    if (name.starts_with(prefix)) return true;
  }
  return false;
}

TEST(FusionClassifier, OutputShapeAndPartsPerModality) {
  manual_seed(5);
  for (const std::string modalities : {"image", "text", "both"}) {
    FusionClassifier model(tiny(modalities));
    Tensor logits = model.forward(glyphs(2), text_ids());
    EXPECT_EQ(logits.shape(), (Shape{2, 5})) << modalities;
    for (float v : logits.to_vector<float>()) EXPECT_TRUE(std::isfinite(v)) << modalities;
    EXPECT_EQ(has_parameter_starting(model, "patch_embed."), modalities != "text") << modalities;
    EXPECT_EQ(has_parameter_starting(model, "token_embed."), modalities != "image") << modalities;
    EXPECT_EQ(has_parameter_starting(model, "fuse."), modalities == "both") << modalities;
    EXPECT_EQ(has_parameter_starting(model, "image_to_text."), modalities == "both") << modalities;
  }
  // A model of one modality needs no input of the other.
  FusionClassifier image_only(tiny("image")), text_only(tiny("text"));
  EXPECT_EQ(image_only.forward(glyphs(3), Tensor()).shape(), (Shape{3, 5}));
  EXPECT_EQ(text_only.forward(Tensor(), text_ids()).shape(), (Shape{2, 5}));
}

TEST(FusionClassifier, PaddingDoesNotChangeTheResult) {
  manual_seed(6);
  for (const std::string modalities : {"text", "both"}) {
    FusionClassifier model(tiny(modalities));
    model.eval();
    Tensor images = glyphs(1);
    // The same two characters, once followed by two pads and once by one (and the shorter T).
    Tensor long_ids = Tensor::from_vector(std::vector<int64_t>{2, 5, 0, 0}, {1, 4}, DType::i64);
    Tensor short_ids = Tensor::from_vector(std::vector<int64_t>{2, 5, 0}, {1, 3}, DType::i64);
    std::vector<float> a = model.forward(images, long_ids).to_vector<float>();
    std::vector<float> b = model.forward(images, short_ids).to_vector<float>();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_NEAR(a[i], b[i], 1e-5) << modalities << " logit " << i;
  }
}

TEST(FusionClassifier, BadInputsAreOneLineErrors) {
  FusionClassifier model(tiny("both"));
  Tensor too_long = Tensor::zeros({2, 5}, DType::i64);
  EXPECT_THROW(model.forward(glyphs(2), too_long), Error);
  EXPECT_THROW(model.forward(Tensor::randn({2, 1, 8, 8}), text_ids()), Error);
  EXPECT_THROW(FusionClassifier(tiny("audio")), Error);
}

// Central differences in f64 of L = sum(logits * w) for every parameter, against backward().
TEST(GradCheck, FusionClassifierWholeModel) {
  manual_seed(7);
  FusionClassifier model(tiny("both"));
  model.to(DType::f64);
  {
    // The fusion parts start with zero biases; make them non-zero so their paths are exercised.
    NoGradGuard no_grad;
    nn::init::uniform_(model.image_to_text->in_proj_bias, -0.5, 0.5);
    nn::init::uniform_(model.text_to_image->out_proj->bias, -0.5, 0.5);
  }
  const Tensor images = glyphs(2).to(DType::f64), ids = text_ids();
  auto f = [&] { return model.forward(images, ids); };
  Tensor out = f();
  Generator gen(99);
  std::vector<double> w(static_cast<size_t>(out.numel()));
  for (auto& wi : w) wi = gen.next_double() * 2.0 - 1.0;
  model.zero_grad();
  out.backward(Tensor::from_vector(w, out.shape(), DType::f64));

  NoGradGuard no_grad;
  const double eps = 1e-6, tol = 1e-6;
  int64_t checked = 0;
  for (auto& [name, p] : model.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name << " got no gradient";
    const std::vector<double> analytic = p.grad().to_vector<double>();
    if (name == "token_embed.weight") {
      // The pad row (id 0) gets no gradient by design: check that, and the other rows below as usual.
      for (int64_t i = 0; i < model.config().dim; ++i)
        EXPECT_EQ(analytic[static_cast<size_t>(i)], 0.0) << name;
    }
    double* x = p.data<double>();
    for (int64_t i = 0; i < p.numel(); ++i) {
      if (name == "token_embed.weight" && i < model.config().dim) continue;
      const double saved = x[i];
      x[i] = saved + eps;
      const double plus = testing::weighted_sum(f(), w);
      x[i] = saved - eps;
      const double minus = testing::weighted_sum(f(), w);
      x[i] = saved;
      const double numeric = (plus - minus) / (2 * eps);
      EXPECT_NEAR(analytic[static_cast<size_t>(i)], numeric, tol * (1.0 + std::fabs(numeric)))
          << name << " " << i;
      ++checked;
    }
  }
  EXPECT_GT(checked, 300);
}

}  // namespace
}  // namespace dtrain::models
