// Translation batches from (source, target) text pairs, for an encoder-decoder Transformer trained
// with teacher forcing. Targets are characters; sources are subword tokens (SubwordVocab: characters
// when it has no merges). For a pair with source tokens s1..sm and target characters t1..tn:
//
//   input          s1 .. sm eos         (encoder)
//   decoder_input  bos t1 .. tn         (decoder, shifted right)
//   target         t1 .. tn eos         (what the decoder predicts at each position)
//
// Rows are padded with pad (id 0) to the longest row in the batch; losses should ignore pad.
#pragma once
#include <vector>

#include "core/data/dataset.h"
#include "core/data/freedict.h"
#include "core/data/subword_vocab.h"
#include "core/data/vocab.h"

namespace dtrain::data {

class TranslationDataset : public Dataset {
 public:
  // The target vocabulary needs specials (pad/bos/eos/unk). Characters missing from a vocabulary
  // (e.g. in a held-out split whose vocabulary came from the training split) become unk.
  TranslationDataset(std::vector<TranslationPair> pairs, SubwordVocab source_vocab,
                     CharVocab target_vocab);

  int64_t size() const override { return static_cast<int64_t>(pairs_.size()); }
  // input i64 [B, S], decoder_input and target i64 [B, T]; S and T are the longest in the batch + 1.
  Batch get_batch(const std::vector<int64_t>& indices, uint64_t seed) const override;

  const TranslationPair& pair(int64_t i) const { return pairs_.at(static_cast<size_t>(i)); }
  const SubwordVocab& source_vocab() const { return source_vocab_; }
  const CharVocab& target_vocab() const { return target_vocab_; }
  // The longest source / target in tokens (so the longest rows are these + 1).
  int64_t max_source_tokens() const { return max_source_; }
  int64_t max_target_tokens() const { return max_target_; }

 private:
  std::vector<TranslationPair> pairs_;
  SubwordVocab source_vocab_;
  CharVocab target_vocab_;
  // All pairs' ids back to back; pair i's source is source_ids_[source_begin_[i] .. source_begin_[i+1]).
  std::vector<int32_t> source_ids_, target_ids_;
  std::vector<int64_t> source_begin_, target_begin_;
  int64_t max_source_ = 0, max_target_ = 0;
};

// The source and target vocabularies of a training set: its sources' characters and
// `source_merges` byte-pair merges learnt from them, and every character of its targets, plus the
// specials.
std::pair<SubwordVocab, CharVocab> build_translation_vocabs(
    const std::vector<TranslationPair>& pairs, int64_t source_merges = 0);

}  // namespace dtrain::data
