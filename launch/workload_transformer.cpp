#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/data/freedict.h"
#include "core/data/gettext_corpus.h"
#include "core/data/text_metrics.h"
#include "core/data/translation_dataset.h"
#include "models/transformer.h"

#include "core/ops/ops.h"
#include "launch/workload_util.h"

namespace dtrain::launch {

namespace {

// ---- Transformer on English->German word pairs (freedict) or English->Chinese/German UI messages
// (gettext-zh, gettext-de): token cross entropy, exact match and CER of greedy decodes (beam search
// with --beam above 1, under --length-penalty), and for gettext corpus BLEU and chrF of the same decodes.
//
// Target tokens are characters (BLEU's zh tokenizer scores Chinese by character, too). Source tokens
// are characters and --bpe-merges byte-pair merges learnt from the training sources
// (core/data/subword_vocab.h). Pairs with a side longer than --seq-len - 2 characters are dropped,
// for both datasets and whatever the source tokens, never truncated: a cut-off target would teach
// the model to stop mid-sentence, and a cut-off source to translate words it never saw.
class TransformerWorkload : public Workload {
 public:
  TransformerWorkload(const TrainConfig& c, Device device) {
    DTRAIN_CHECK(c.dataset == "freedict" || c.dataset == "gettext-zh" || c.dataset == "gettext-de",
                 "model transformer trains on --dataset freedict, gettext-zh or gettext-de, not '",
                 c.dataset, "'");
    DTRAIN_CHECK(c.seq_len >= 4, "--seq-len ", c.seq_len,
                 " is too short for model transformer: give at least 4 "
                 "(the longest source or target in characters is --seq-len - 2)");
    std::vector<data::TranslationPair> train_pairs, eval_pairs;
    if (c.dataset == "freedict") {
      data::FreeDictOptions options;
      if (!c.data_dir.empty()) options.path = c.data_dir + "/freedict-eng-deu.dict.dz";
      options.max_source_chars = c.seq_len - 2;
      options.max_target_chars = c.seq_len - 2;
      options.split_seed = 0;
      data::FreeDictSplits splits = data::load_freedict(options);
      train_pairs = std::move(splits.train), eval_pairs = std::move(splits.held_out);
      target_language_ = "German";
    } else {
      const data::GettextCorpusOptions options =
          data::gettext_dataset_options(c.dataset, c.seq_len, c.data_dir);
      data::GettextCorpus corpus = data::load_gettext_corpus(options);
      // Training evaluates on the valid split; `dtrain eval --split test` scores the test split,
      // kept apart for a final report.
      split_ = c.split;
      train_pairs = std::move(corpus.train);
      eval_pairs = std::move(c.split == "test" ? corpus.test : corpus.valid);
      const std::string where = options.locale_dir + "/" + options.language + "/LC_MESSAGES";
      DTRAIN_CHECK(!train_pairs.empty() && !eval_pairs.empty(), "--dataset ", c.dataset, " found ",
                   train_pairs.size(), " training and ", eval_pairs.size(), " ", split_,
                   " pairs of at most ", options.max_chars,
                   " characters in the catalogs (*.mo) of ", where, ": install packages with ",
                   options.language, " translations, or give a larger --seq-len");
      bleu_ = c.dataset == "gettext-zh" ? data::BleuTokenizer::kZh : data::BleuTokenizer::k13a;
      // The copy baseline: every English source left as it is, scored against its translation over
      // the whole held-out split. Placeholders, options and names pass through untranslated, so it is
      // not zero; a model has to beat it.
      std::vector<std::string> sources, targets;
      for (const data::TranslationPair& p : eval_pairs) {
        sources.push_back(p.source);
        targets.push_back(p.target);
      }
      copy_bleu_ = data::corpus_bleu(sources, targets, *bleu_).score;
      copy_chrf_ = data::corpus_chrf(sources, targets);
      target_language_ = c.dataset == "gettext-zh" ? "Chinese" : "German";
    }
    auto [src_vocab, tgt_vocab] = data::build_translation_vocabs(train_pairs, c.bpe_merges);
    auto train =
        std::make_shared<data::TranslationDataset>(std::move(train_pairs), src_vocab, tgt_vocab);
    auto held_out =
        std::make_shared<data::TranslationDataset>(std::move(eval_pairs), src_vocab, tgt_vocab);
    train_set = train, eval_set = held_out, eval_ = held_out;
    models::TransformerConfig m = models::TransformerConfig::preset(
        c.model_size == "fm" ? "small" : c.model_size, src_vocab.size(), tgt_vocab.size(),
        c.seq_len, data::CharVocab::kPad);
    override_sizes(c, m);
    if (c.depth) m.encoder_layers = m.decoder_layers = c.depth;
    model_ = std::make_shared<models::Transformer>(m);
    model_->checkpoint_activations = c.checkpoint_activations;
    model_->to(device);
    device_ = device;
    beam_ = c.beam, length_penalty_ = c.length_penalty;
    label_smoothing_ = c.label_smoothing;
  }
  std::shared_ptr<nn::Module> shared_model() override { return model_; }
  const char* unit() const override { return "tokens"; }
  int64_t items(const data::Batch& b) const override {
    const int64_t* ids = host_ids(b.target);
    return std::count_if(ids, ids + b.target.numel(),
                         [](int64_t id) { return id != data::CharVocab::kPad; });
  }
  void check_batch(const data::Batch& b) const override {
    const models::TransformerConfig& m = model_->config();
    check_ids(b.input, m.src_vocab, data::CharVocab::kPad, "source token");
    check_ids(b.decoder_input, m.tgt_vocab, data::CharVocab::kPad, "target token");
    check_ids(b.target, m.tgt_vocab, data::CharVocab::kPad, "target token");
  }
  Tensor loss(const data::Batch& b) override {
    Tensor logits = model_->forward(b.input, b.decoder_input).to(DType::f32);
    return cross_entropy(logits.flatten(0, 1), b.target.flatten(), data::CharVocab::kPad,
                         label_smoothing_);
  }
  std::vector<double> eval_sums(const data::Batch& b) override {
    Tensor logits = model_->forward(b.input, b.decoder_input).to(DType::f32);
    double loss_sum = cross_entropy(logits.flatten(0, 1), b.target.flatten(), data::CharVocab::kPad,
                                    0.0, Reduction::sum)
                          .item();
    // Non-padding targets (padding is id 0), compared on the targets' own device.
    double tokens =
        sum(gt(b.target, Tensor::zeros({}, DType::i64, b.target.device())).to(DType::f32)).item();
    // Each hypothesis is cut at its own reference's length + 4 characters (one id per character), not
    // the batch's: then a pair's score does not depend on which batch or rank it fell in. Greedy decodes
    // are cut afterwards (a longer greedy decode only adds tokens); beam search takes the limit per row,
    // since which hypothesis wins depends on where hypotheses are cut.
    std::vector<std::u32string> wanted;
    std::vector<int64_t> limits;
    for (size_t i = 0; i < b.indices.size(); ++i) {
      wanted.push_back(data::utf8_decode(eval_->pair(b.indices[i]).target));
      limits.push_back(static_cast<int64_t>(wanted.back().size()) + 4);
    }
    auto decoded = beam_ > 1
                       ? model_->beam_search(b.input, data::CharVocab::kBos, data::CharVocab::kEos,
                                             limits, beam_, length_penalty_)
                       : model_->greedy_decode(b.input, data::CharVocab::kBos,
                                               data::CharVocab::kEos, b.target.size(1) + 4);
    double exact = 0, edits = 0, chars = 0;
    std::vector<std::string> hypotheses, references;
    for (size_t i = 0; i < decoded.size(); ++i) {
      const std::u32string& want = wanted[i];
      decoded[i].resize(std::min(decoded[i].size(), want.size() + 4));
      std::u32string got = data::utf8_decode(eval_->target_vocab().decode(decoded[i]));
      exact += got == want;
      edits += static_cast<double>(edit_distance(got, want));
      chars += static_cast<double>(want.size());
      hypotheses.push_back(data::utf8_encode(got));
      references.push_back(eval_->pair(b.indices[i]).target);
    }
    std::vector<double> sums = {loss_sum, tokens, exact,
                                edits,    chars,  static_cast<double>(b.size())};
    if (bleu_) {
      // Corpus BLEU and chrF are not means of per-batch scores: their n-gram statistics are what
      // adds up across batches and ranks (exactly, in doubles, below 2^53), and eval_metrics scores the sums.
      const data::BleuScore bleu = data::corpus_bleu(hypotheses, references, *bleu_);
      for (int n = 0; n < 4; ++n) sums.push_back(static_cast<double>(bleu.counts[n]));
      for (int n = 0; n < 4; ++n) sums.push_back(static_cast<double>(bleu.totals[n]));
      sums.push_back(static_cast<double>(bleu.sys_len));
      sums.push_back(static_cast<double>(bleu.ref_len));
      for (const auto& order : data::chrf_statistics(hypotheses, references)) {
        for (int64_t v : order) sums.push_back(static_cast<double>(v));
      }
    }
    return sums;
  }
  // sums: loss, tokens, exact, edits, chars, pairs; then for gettext BLEU's counts[4], totals[4],
  // sys_len, ref_len and chrF's {hypothesis, reference, match} n-grams for orders 1..6.
  nlohmann::json eval_metrics(const std::vector<double>& s) const override {
    nlohmann::json metrics = {
        {"loss", s[0] / s[1]}, {"exact_match", s[2] / s[5]}, {"cer", s[3] / s[4]}};
    if (bleu_) {
      DTRAIN_CHECK(s.size() == kBleuAt + 10 + 3 * data::kChrfOrder, "transformer eval: ", s.size(),
                   " sums, expected ", kBleuAt + 10 + 3 * data::kChrfOrder);
      auto count = [&](size_t i) { return static_cast<int64_t>(std::llround(s[i])); };
      data::BleuScore bleu;
      for (int n = 0; n < 4; ++n)
        bleu.counts[n] = count(kBleuAt + n), bleu.totals[n] = count(kBleuAt + 4 + n);
      bleu.sys_len = count(kBleuAt + 8), bleu.ref_len = count(kBleuAt + 9);
      data::ChrfStatistics chrf = {};
      for (int n = 0; n < data::kChrfOrder; ++n) {
        for (int k = 0; k < 3; ++k) chrf[n][k] = count(kBleuAt + 10 + 3 * n + k);
      }
      metrics["bleu"] = data::bleu_from_statistics(bleu).score;
      metrics["chrf"] = data::chrf_from_statistics(chrf);
      metrics["copy_bleu"] = copy_bleu_;
      metrics["copy_chrf"] = copy_chrf_;
    }
    return metrics;
  }
  std::string headline_metric() const override { return bleu_ ? "bleu" : "cer"; }
  std::vector<std::string> samples() override {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < std::min<int64_t>(5, eval_->size()); ++i)
      idx.push_back(i * 7 % eval_->size());
    data::Batch b = eval_->get_batch(idx, 0);
    auto decoded = translate(b.input.to(device_), b.target.size(1) + 4);
    std::vector<std::string> out;
    if (bleu_) {
      out.push_back("baseline: copying the source scores BLEU " + format_score(copy_bleu_) +
                    ", chrF " + format_score(copy_chrf_) + " on the whole " + split_ + " split");
    }
    for (size_t i = 0; i < idx.size(); ++i) {
      const auto& pair = eval_->pair(idx[i]);
      out.push_back(pair.source + " -> " + eval_->target_vocab().decode(decoded[i]) +
                    "  (reference: " + pair.target + ")");
    }
    return out;
  }
  NamedTensors checkpoint_state() override { return model_->to_torch_state(); }
  void load_checkpoint_state(const NamedTensors& state) override {
    model_->from_torch_state(state);
  }
  // The sentence encoded as the dataset encodes a source (unknown characters become unk, then eos),
  // decoded (greedily, or by beam search) up to the model's length.
  std::vector<std::string> predict(const PredictInput& input) override {
    const models::TransformerConfig& m = model_->config();
    DTRAIN_CHECK(!input.text.empty(), "this checkpoint holds a transformer model (English -> ",
                 target_language_, "): give --text \"an English word or phrase\"");
    std::vector<int32_t> ids = eval_->source_vocab().encode(input.text);
    DTRAIN_CHECK(static_cast<int64_t>(ids.size()) + 1 <= m.max_len, "--text is ", ids.size(),
                 " tokens but this model reads at most ", m.max_len - 1,
                 " (its --seq-len minus the end token): give a shorter text");
    ids.push_back(data::CharVocab::kEos);
    Tensor source = Tensor::from_vector(std::vector<int64_t>(ids.begin(), ids.end()),
                                        {1, static_cast<int64_t>(ids.size())}, DType::i64, device_);
    auto decoded = translate(source, m.max_len);
    return {eval_->target_vocab().decode(decoded[0])};
  }

 private:
  // Greedy decoding, or beam search when --beam is above 1: target ids without bos and eos per row.
  std::vector<std::vector<int64_t>> translate(const Tensor& source, int64_t max_len) {
    if (beam_ > 1) {
      return model_->beam_search(source, data::CharVocab::kBos, data::CharVocab::kEos, max_len,
                                 beam_, length_penalty_);
    }
    return model_->greedy_decode(source, data::CharVocab::kBos, data::CharVocab::kEos, max_len);
  }
  static size_t edit_distance(const std::u32string& a, const std::u32string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
        diagonal = up;
      }
    }
    return row[b.size()];
  }
  static std::string format_score(double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", v);
    return text;
  }
  static constexpr size_t kBleuAt = 6;  // where BLEU's statistics start in eval_sums
  std::shared_ptr<models::Transformer> model_;
  std::shared_ptr<data::TranslationDataset> eval_;
  Device device_;
  double label_smoothing_ = 0.0;  // the training loss's; evaluation scores plain cross entropy
  int64_t beam_ = 1;              // --beam: 1 decodes greedily
  double length_penalty_ = 0.6;   // --length-penalty: beam search's alpha
  std::string target_language_;
  std::optional<data::BleuTokenizer>
      bleu_;                     // gettext: BLEU's tokenizer (zh for Chinese, 13a for German)
  std::string split_ = "valid";  // gettext: the held-out split scored (--split)
  double copy_bleu_ = 0.0, copy_chrf_ = 0.0;  // gettext: the copy baseline on that split
};

}  // namespace

std::unique_ptr<Workload> make_transformer_workload(const TrainConfig& config, Device device) {
  return std::make_unique<TransformerWorkload>(config, device);
}

}  // namespace dtrain::launch
