#include "core/data/translation_dataset.h"

#include <algorithm>

#include "core/error.h"

namespace dtrain::data {

std::pair<SubwordVocab, CharVocab> build_translation_vocabs(
    const std::vector<TranslationPair>& pairs, int64_t source_merges) {
  std::vector<std::string> sources, targets;
  sources.reserve(pairs.size());
  targets.reserve(pairs.size());
  for (const auto& p : pairs) {
    sources.push_back(p.source);
    targets.push_back(p.target);
  }
  return {SubwordVocab::learn(sources, source_merges), CharVocab::build(targets, true)};
}

TranslationDataset::TranslationDataset(std::vector<TranslationPair> pairs,
                                       SubwordVocab source_vocab, CharVocab target_vocab)
    : pairs_(std::move(pairs)),
      source_vocab_(std::move(source_vocab)),
      target_vocab_(std::move(target_vocab)) {
  DTRAIN_CHECK(
      target_vocab_.has_specials(),
      "TranslationDataset: the target vocabulary needs the pad/bos/eos/unk specials; build "
      "it with with_specials = true");
  source_begin_.reserve(pairs_.size() + 1);
  target_begin_.reserve(pairs_.size() + 1);
  source_begin_.push_back(0);
  target_begin_.push_back(0);
  for (const auto& p : pairs_) {
    const auto s = source_vocab_.encode(p.source);
    const auto t = target_vocab_.encode(p.target);
    source_ids_.insert(source_ids_.end(), s.begin(), s.end());
    target_ids_.insert(target_ids_.end(), t.begin(), t.end());
    source_begin_.push_back(static_cast<int64_t>(source_ids_.size()));
    target_begin_.push_back(static_cast<int64_t>(target_ids_.size()));
    max_source_ = std::max<int64_t>(max_source_, static_cast<int64_t>(s.size()));
    max_target_ = std::max<int64_t>(max_target_, static_cast<int64_t>(t.size()));
  }
}

Batch TranslationDataset::get_batch(const std::vector<int64_t>& indices, uint64_t /*seed*/) const {
  check_batch_indices(indices, size(), "TranslationDataset");
  const int64_t b = static_cast<int64_t>(indices.size());
  int64_t s_len = 0, t_len = 0;
  for (int64_t i : indices) {
    s_len = std::max(s_len, source_begin_[i + 1] - source_begin_[i]);
    t_len = std::max(t_len, target_begin_[i + 1] - target_begin_[i]);
  }
  ++s_len;  // eos
  ++t_len;  // bos (decoder input) or eos (target)

  Batch batch;
  batch.input = Tensor::empty({b, s_len}, DType::i64);
  batch.decoder_input = Tensor::empty({b, t_len}, DType::i64);
  batch.target = Tensor::empty({b, t_len}, DType::i64);
  int64_t* src = batch.input.data<int64_t>();
  int64_t* dec = batch.decoder_input.data<int64_t>();
  int64_t* tgt = batch.target.data<int64_t>();
  std::fill(src, src + b * s_len, CharVocab::kPad);
  std::fill(dec, dec + b * t_len, CharVocab::kPad);
  std::fill(tgt, tgt + b * t_len, CharVocab::kPad);
  for (int64_t r = 0; r < b; ++r) {
    const int64_t i = indices[r];
    const int64_t sn = source_begin_[i + 1] - source_begin_[i];
    const int64_t tn = target_begin_[i + 1] - target_begin_[i];
    const int32_t* s = source_ids_.data() + source_begin_[i];
    const int32_t* t = target_ids_.data() + target_begin_[i];
    for (int64_t k = 0; k < sn; ++k) src[r * s_len + k] = s[k];
    src[r * s_len + sn] = CharVocab::kEos;
    dec[r * t_len] = CharVocab::kBos;
    for (int64_t k = 0; k < tn; ++k) {
      dec[r * t_len + k + 1] = t[k];
      tgt[r * t_len + k] = t[k];
    }
    tgt[r * t_len + tn] = CharVocab::kEos;
  }
  batch.indices = indices;
  return batch;
}

}  // namespace dtrain::data
