// Transformer::beam_search against the model's own teacher-forced log-probabilities:
//   beam 1 is greedy_decode; with a beam as wide as every candidate of a tiny model it finds the
//   exhaustive best under the length penalty; a wider beam never scores below greedy here; and a row's
//   result does not depend on the rows beside it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "models/transformer.h"

#include "token_batch.h"

namespace dtrain::models {
namespace {

constexpr int64_t kPad = 0, kBos = 1, kEos = 2;

TransformerConfig tiny_transformer(int64_t tgt_vocab, double dropout = 0.0) {
  return {.src_vocab = 11,
          .tgt_vocab = tgt_vocab,
          .max_len = 12,
          .dim = 16,
          .encoder_layers = 1,
          .decoder_layers = 2,
          .heads = 2,
          .mlp_dim = 32,
          .dropout = dropout,
          .pad_id = kPad};
}

// Rows of 5, 3, 2 and 4 symbols, padded at the end.
const std::vector<std::vector<int64_t>> kSources = {
    {5, 7, 3, 9, 4}, {6, 10, 8}, {3, 4}, {9, 9, 5, 6}};

Tensor padded_batch(const std::vector<std::vector<int64_t>>& rows) {
  return testing::padded_batch(rows, kPad);
}

// A model in f64 with its generator's logits scaled up: Glorot-initialised weights give nearly flat
// next-token distributions, under which every search finds much the same; sharper ones make greedy,
// beam and exhaustive search disagree.
std::unique_ptr<Transformer> make_model(uint64_t seed, int64_t tgt_vocab,
                                        double logit_scale = 4.0) {
  manual_seed(seed);
  auto model = std::make_unique<Transformer>(tiny_transformer(tgt_vocab));
  model->to(DType::f64);
  NoGradGuard no_grad;
  mul_(model->generator->weight, logit_scale);
  return model;
}

double length_penalty(int64_t length, double alpha) {
  return std::pow((5.0 + length) / 6.0, alpha);
}

// The normalised score of a decode of `source` as beam_search defines it: the teacher-forced
// log-probability of the tokens, and of eos unless the decode was cut at max_len, over lp(length).
double score(const Transformer& model, const std::vector<int64_t>& source,
             const std::vector<int64_t>& tokens, int64_t max_len, double alpha) {
  const bool cut = static_cast<int64_t>(tokens.size()) == max_len;
  std::vector<int64_t> tgt_in = {kBos};
  tgt_in.insert(tgt_in.end(), tokens.begin(), tokens.end());
  std::vector<int64_t> tgt_out = tokens;
  if (cut) {
    tgt_in.pop_back();
  } else {
    tgt_out.push_back(kEos);
  }
  NoGradGuard no_grad;
  Tensor tgt = Tensor::from_vector(tgt_in, {1, static_cast<int64_t>(tgt_in.size())}, DType::i64);
  const Tensor logits = model.forward(padded_batch({source}), tgt).select(0, 0);
  const std::vector<double> log_probs = log_softmax(logits, -1).to_vector<double>();
  const int64_t vocab = model.config().tgt_vocab;
  double sum = 0;
  for (size_t i = 0; i < tgt_out.size(); ++i)
    sum += log_probs[i * static_cast<size_t>(vocab) + tgt_out[i]];
  return sum / length_penalty(static_cast<int64_t>(tgt_out.size()), alpha);
}

TEST(TransformerBeam, WidthOneIsGreedyDecoding) {
  for (uint64_t seed : {21, 22, 23}) {
    const auto model_ptr = make_model(seed, 11);
    Transformer& model = *model_ptr;
    for (int64_t max_len : {1, 4, 9}) {
      const auto greedy = model.greedy_decode(padded_batch(kSources), kBos, kEos, max_len);
      const auto beam = model.beam_search(padded_batch(kSources), kBos, kEos, max_len, 1, 0.6);
      EXPECT_EQ(beam, greedy) << "seed " << seed << ", max_len " << max_len;
    }
  }
}

// Every decode of `source` a search can return with `vocab` tokens and `max_len`: the sequences of
// 0 .. max_len - 1 tokens ended by eos, and those of max_len tokens (cut), each with its teacher-forced
// log-probability (tokens, and eos unless cut) and its length for the penalty. All are scored in one
// batched forward pass, right-padded: the decoder is causal, so padding after a prefix changes
// nothing before it.
struct Decode {
  std::vector<int64_t> tokens;
  double log_prob = 0;
  int64_t length = 0;
};
std::vector<Decode> every_decode(const Transformer& model, const std::vector<int64_t>& source,
                                 int64_t vocab, int64_t max_len) {
  std::vector<Decode> decodes;
  std::vector<int64_t> tokens;
  std::function<void()> enumerate = [&]() {
    decodes.push_back({tokens, 0.0, 0});
    if (static_cast<int64_t>(tokens.size()) == max_len) return;
    for (int64_t id = 0; id < vocab; ++id) {
      if (id == kEos) continue;
      tokens.push_back(id);
      enumerate();
      tokens.pop_back();
    }
  };
  enumerate();
  std::vector<std::vector<int64_t>>
      inputs;  // bos, then the tokens (a cut decode's last is never input)
  for (const Decode& d : decodes) {
    std::vector<int64_t> in = {kBos};
    in.insert(in.end(), d.tokens.begin(), d.tokens.end());
    if (static_cast<int64_t>(d.tokens.size()) == max_len) in.pop_back();
    inputs.push_back(in);
  }
  const auto n = static_cast<int64_t>(decodes.size());
  NoGradGuard no_grad;
  const Tensor sources =
      padded_batch({source}).expand({n, static_cast<int64_t>(source.size())}).contiguous();
  const Tensor logits = model.forward(sources, padded_batch(inputs));  // [n, max_len, vocab]
  const std::vector<double> log_probs = log_softmax(logits, -1).to_vector<double>();
  const auto width = static_cast<size_t>(logits.size(1)), v = static_cast<size_t>(vocab);
  for (size_t i = 0; i < decodes.size(); ++i) {
    Decode& d = decodes[i];
    std::vector<int64_t> out = d.tokens;
    if (static_cast<int64_t>(out.size()) < max_len) out.push_back(kEos);
    for (size_t t = 0; t < out.size(); ++t)
      d.log_prob += log_probs[(i * width + t) * v + static_cast<size_t>(out[t])];
    d.length = static_cast<int64_t>(out.size());
    // The batched scores are the one-at-a-time ones (checked on every 8th decode; alpha 0: no penalty).
    if (i % 8 == 0) {
      EXPECT_NEAR(d.log_prob, score(model, source, d.tokens, max_len, 0.0), 1e-9);
    }
  }
  return decodes;
}

// A beam as wide as the most candidates any step before the last has keeps them all, and the last
// step's candidates are all of one length, so its best kept is the best: the search must find the
// exhaustive arg max of every_decode under the penalty. Returns how often greedy decoding missed it.
int expect_exhaustive_best(int64_t vocab, int64_t max_len, int64_t beam) {
  int greedy_missed = 0;
  for (uint64_t seed : {31, 32, 33, 34}) {
    for (double logit_scale : {1.0, 4.0}) {
      const auto model_ptr = make_model(seed, vocab, logit_scale);
      const Transformer& model = *model_ptr;
      for (const auto& source : kSources) {
        const std::vector<Decode> decodes = every_decode(model, source, vocab, max_len);
        auto scored = [&](const std::vector<int64_t>& tokens, double alpha) {
          const auto it = std::find_if(decodes.begin(), decodes.end(),
                                       [&](const Decode& d) { return d.tokens == tokens; });
          EXPECT_NE(it, decodes.end())
              << "a decode of " << tokens.size() << " tokens that is no candidate";
          return it == decodes.end() ? -std::numeric_limits<double>::infinity()
                                     : it->log_prob / length_penalty(it->length, alpha);
        };
        const auto greedy =
            model_ptr->greedy_decode(padded_batch({source}), kBos, kEos, max_len)[0];
        // alpha 5 favours long hypotheses strongly: a search that stops too early shows there.
        for (double alpha : {0.0, 0.6, 2.0, 5.0}) {
          std::vector<int64_t> best;
          double best_score = -std::numeric_limits<double>::infinity(), second = best_score;
          for (const Decode& d : decodes) {
            const double s = d.log_prob / length_penalty(d.length, alpha);
            if (s > best_score) {
              second = best_score, best_score = s, best = d.tokens;
            } else {
              second = std::max(second, s);
            }
          }
          const auto found =
              model_ptr->beam_search(padded_batch({source}), kBos, kEos, max_len, beam, alpha)[0];
          const std::string what = "seed " + std::to_string(seed) + ", logit scale " +
                                   std::to_string(logit_scale) + ", alpha " + std::to_string(alpha);
          EXPECT_NEAR(scored(found, alpha), best_score, 1e-9) << what;
          // The arg max itself, where the runner-up is clearly behind (log-softmax runs in f64 here).
          if (best_score - second > 1e-9) {
            EXPECT_EQ(found, best) << what;
          }
          greedy_missed += scored(greedy, alpha) < best_score - 1e-9;
        }
      }
    }
  }
  return greedy_missed;
}

// 5 tokens to max_len 3: at most 4 live prefixes x 5 tokens = 20 candidates before the last step.
TEST(TransformerBeam, AWideBeamFindsTheExhaustiveBestOfFiveTokensToLength3) {
  // The search matters on these models: greedy decoding misses the best in some cases.
  EXPECT_GT(expect_exhaustive_best(5, 3, 20), 0);
}

// 4 tokens to max_len 4: at most 9 live prefixes x 4 tokens = 36 candidates before the last step.
TEST(TransformerBeam, AWideBeamFindsTheExhaustiveBestOfFourTokensToLength4) {
  EXPECT_GT(expect_exhaustive_best(4, 4, 36), 0);
}

// Equal log-probabilities go to the lower token id: with the generator's weight zeroed its logits are
// its bias on every row, exactly, and tokens 3 and 4 tie for the most probable.
TEST(TransformerBeam, TiesGoToTheLowerTokenId) {
  const auto model_ptr = make_model(71, 11);
  Transformer& model = *model_ptr;
  {
    NoGradGuard no_grad;
    model.generator->weight.zero_();
    model.generator->bias.zero_();
    model.generator->bias.narrow(0, 3, 2).fill_(5.0);
  }
  const std::vector<int64_t> threes(4, 3);
  for (int64_t beam : {1, 2, 3}) {
    for (const auto& row : model.beam_search(padded_batch(kSources), kBos, kEos, 4, beam, 0.6)) {
      EXPECT_EQ(row, threes) << "beam " << beam;
    }
  }
}

// Beam search can in principle lose the greedy path and end below it; on these models it never does,
// and a scoring or bookkeeping error would show as a wider beam scoring lower.
TEST(TransformerBeam, AWiderBeamScoresAtLeastAsHighAsGreedy) {
  constexpr int64_t kMaxLen = 8;
  int better = 0;
  for (uint64_t seed : {41, 42, 43, 44, 45}) {
    const auto model_ptr = make_model(seed, 11);
    Transformer& model = *model_ptr;
    const auto greedy = model.greedy_decode(padded_batch(kSources), kBos, kEos, kMaxLen);
    for (int64_t beam : {2, 4, 8}) {
      const auto found = model.beam_search(padded_batch(kSources), kBos, kEos, kMaxLen, beam, 0.6);
      ASSERT_EQ(found.size(), kSources.size());
      for (size_t b = 0; b < kSources.size(); ++b) {
        const double beam_score = score(model, kSources[b], found[b], kMaxLen, 0.6);
        const double greedy_score = score(model, kSources[b], greedy[b], kMaxLen, 0.6);
        EXPECT_GE(beam_score, greedy_score - 1e-9)
            << "seed " << seed << ", beam " << beam << ", row " << b;
        better += beam_score > greedy_score + 1e-9;
        for (int64_t id : found[b]) {
          EXPECT_NE(id, kEos);
          EXPECT_TRUE(id >= 0 && id < 11);
        }
      }
    }
  }
  EXPECT_GT(better, 0) << "beam search never improved on greedy decoding";
}

TEST(TransformerBeam, ARowsResultDoesNotDependOnItsBatch) {
  for (uint64_t seed : {51, 52}) {
    const auto model_ptr = make_model(seed, 11);
    Transformer& model = *model_ptr;
    const auto batched = model.beam_search(padded_batch(kSources), kBos, kEos, 7, 4, 0.6);
    // The rows again in reverse order, and each one alone (with no padding).
    std::vector<std::vector<int64_t>> reversed(kSources.rbegin(), kSources.rend());
    const auto backwards = model.beam_search(padded_batch(reversed), kBos, kEos, 7, 4, 0.6);
    for (size_t b = 0; b < kSources.size(); ++b) {
      const auto alone = model.beam_search(padded_batch({kSources[b]}), kBos, kEos, 7, 4, 0.6);
      EXPECT_EQ(batched[b], alone[0]) << "seed " << seed << ", row " << b;
      EXPECT_EQ(backwards[kSources.size() - 1 - b], alone[0]) << "seed " << seed << ", row " << b;
    }
    // Per-row limits: each row decoded under its own limit as if alone.
    const std::vector<int64_t> limits = {2, 7, 4, 5};
    const auto limited = model.beam_search(padded_batch(kSources), kBos, kEos, limits, 4, 0.6);
    for (size_t b = 0; b < kSources.size(); ++b) {
      EXPECT_EQ(limited[b],
                model.beam_search(padded_batch({kSources[b]}), kBos, kEos, limits[b], 4, 0.6)[0])
          << "seed " << seed << ", row " << b;
    }
  }
}

TEST(TransformerBeam, StopsAtEosAndAtTheLengthLimitAndLeavesTrainingMode) {
  manual_seed(61);
  Transformer model(tiny_transformer(11, /*dropout=*/0.3));  // f32, in training mode
  // eval() inside turns dropout off: the same decodes twice.
  EXPECT_EQ(model.beam_search(padded_batch(kSources), kBos, kEos, 6, 3, 0.6),
            model.beam_search(padded_batch(kSources), kBos, kEos, 6, 3, 0.6));
  NoGradGuard no_grad;
  model.generator->bias.narrow(0, kEos, 1).fill_(1e3);
  for (const auto& row : model.beam_search(padded_batch(kSources), kBos, kEos, 6, 3, 0.6))
    EXPECT_TRUE(row.empty());
  model.generator->bias.narrow(0, kEos, 1).fill_(-1e3);
  for (const auto& row : model.beam_search(padded_batch(kSources), kBos, kEos, 5, 3, 0.6))
    EXPECT_EQ(row.size(), 5u);
  // The limit is capped by the model's max_len; 0 gives empty rows.
  for (const auto& row : model.beam_search(padded_batch(kSources), kBos, kEos, 100, 3, 0.6)) {
    EXPECT_EQ(static_cast<int64_t>(row.size()), tiny_transformer(11).max_len);
  }
  for (const auto& row : model.beam_search(padded_batch(kSources), kBos, kEos, 0, 3, 0.6))
    EXPECT_TRUE(row.empty());
  EXPECT_TRUE(model.is_training());
  // A beam wider than the vocabulary keeps every token of every hypothesis.
  EXPECT_EQ(model.beam_search(padded_batch(kSources), kBos, kEos, 3, 64, 0.6).size(),
            kSources.size());
}

}  // namespace
}  // namespace dtrain::models
