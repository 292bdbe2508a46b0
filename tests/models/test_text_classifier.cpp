// TextClassifier: logits of the right shape, padding that changes nothing (masked keys, a mean over
// the tokens that are not padding), an all-padding row that stays finite, and a state_dict that
// round-trips under its documented names.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/ops/ops.h"
#include "models/text_classifier.h"

namespace dtrain::models {
namespace {

TextClassifierConfig small_classifier() {
  TextClassifierConfig c;
  c.vocab_size = 20, c.num_classes = 3, c.max_len = 8;
  c.dim = 16, c.depth = 2, c.heads = 2, c.mlp_dim = 32;
  return c;
}

Tensor tokens(const std::vector<int64_t>& ids, int64_t rows) {
  return Tensor::from_vector(ids, {rows, static_cast<int64_t>(ids.size()) / rows}, DType::i64);
}

TEST(TextClassifier, LogitsHaveOneRowPerText) {
  manual_seed(1);
  TextClassifier model(small_classifier());
  Tensor logits = model.forward(tokens({3, 4, 5, 0, 6, 7, 0, 0}, 2));
  EXPECT_EQ(logits.shape(), (Shape{2, 3}));
  EXPECT_THROW(model.forward(tokens(std::vector<int64_t>(9, 3), 1)), Error);  // longer than max_len
}

TEST(TextClassifier, PaddingDoesNotChangeTheLogits) {
  manual_seed(2);
  TextClassifier model(small_classifier());
  model.to(DType::f64);
  model.eval();
  // Each text alone and unpadded, then in one batch padded to 8.
  const std::vector<std::vector<int64_t>> texts = {{5, 9, 2}, {7, 7, 1, 3, 11, 4}, {8}};
  std::vector<int64_t> batch;
  for (const auto& t : texts) {
    batch.insert(batch.end(), t.begin(), t.end());
    batch.insert(batch.end(), 8 - t.size(), 0);
  }
  const std::vector<double> together = model.forward(tokens(batch, 3)).to_vector<double>();
  for (size_t r = 0; r < texts.size(); ++r) {
    const std::vector<double> alone = model.forward(tokens(texts[r], 1)).to_vector<double>();
    for (size_t k = 0; k < alone.size(); ++k) {
      EXPECT_NEAR(together[r * 3 + k], alone[k], 1e-12) << "text " << r << " class " << k;
    }
  }
}

TEST(TextClassifier, AllPaddingRowStaysFinite) {
  manual_seed(3);
  TextClassifier model(small_classifier());
  for (double v : model.forward(tokens({0, 0, 0, 0, 4, 5, 0, 0}, 2)).to_vector<double>()) {
    EXPECT_TRUE(std::isfinite(v));
  }
}

TEST(TextClassifier, StateDictNamesAndRoundTrip) {
  manual_seed(4);
  TextClassifier model(small_classifier());
  std::set<std::string> names;
  for (const auto& [name, t] : model.state_dict()) names.insert(name);
  for (const char* expected :
       {"tok_embed.weight", "pos_embed.weight", "blocks.0.attn.qkv.weight", "blocks.1.mlp.fc2.bias",
        "norm.weight", "head.weight", "head.bias"}) {
    EXPECT_TRUE(names.count(expected)) << expected;
  }
  // The padding row starts at zero (and Embedding gives it no gradient).
  for (double v : model.tok_embed->weight.select(0, 0).to_vector<double>()) EXPECT_EQ(v, 0.0);
  manual_seed(5);
  TextClassifier other(small_classifier());
  const Tensor x = tokens({3, 4, 5, 0, 6, 7, 8, 9}, 2);
  other.load_state_dict(model.state_dict());
  EXPECT_EQ(other.forward(x).to_vector<double>(), model.forward(x).to_vector<double>());
}

TEST(TextClassifier, PresetsAndSizeErrors) {
  const TextClassifierConfig tiny = TextClassifierConfig::preset("tiny", 100, 8, 64);
  EXPECT_EQ(tiny.vocab_size, 100);
  EXPECT_EQ(tiny.num_classes, 8);
  EXPECT_LT(tiny.dim, TextClassifierConfig::preset("small", 100, 8, 64).dim);
  EXPECT_THROW(TextClassifierConfig::preset("huge", 100, 8, 64), Error);
}

}  // namespace
}  // namespace dtrain::models
