#include "launch/workload.h"

#include <cmath>
#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "core/data/cifar10.h"
#include "core/data/fashion_mnist.h"
#include "core/data/freedict.h"
#include "core/data/gettext_corpus.h"
#include "core/data/text_corpus.h"
#include "core/data/text_metrics.h"
#include "core/data/translation_dataset.h"
#include "core/ops/ops.h"
#include "models/gpt.h"
#include "models/transformer.h"
#include "models/vit.h"

namespace dtrain::launch {

namespace {

// Sizes given on the command line override the preset's.
template <class Config>
void override_sizes(const TrainConfig& c, Config& m) {
  if (c.dim) m.dim = c.dim;
  if (c.heads) m.heads = c.heads;
  if (c.mlp_dim) m.mlp_dim = c.mlp_dim;
  m.dropout = c.dropout;
}

// The values of a host batch's i64 tensor `t` (undefined: nothing), read where they lie: the batch is
// still on the host, so this is no device read back.
const int64_t* host_ids(const Tensor& t) {
  DTRAIN_CHECK(t.device().is_cpu() && t.dtype() == DType::i64 && t.is_contiguous(),
               "a batch's ids must be a contiguous i64 tensor on the host, got ", dtype_name(t.dtype()),
               " on ", t.device().str());
  return t.data<int64_t>();
}

// Every id of `t` in [0, limit) or equal to `allowed` (padding, ignored targets).
void check_ids(const Tensor& t, int64_t limit, int64_t allowed, const char* what) {
  if (!t.defined()) return;
  const int64_t* ids = host_ids(t);
  for (int64_t i = 0; i < t.numel(); ++i) {
    DTRAIN_CHECK(ids[i] == allowed || (ids[i] >= 0 && ids[i] < limit), "a training batch holds ", what,
                 " ", ids[i], " at position ", i, ", outside the model's [0, ", limit,
                 "): the dataset does not fit the model; check --data-dir and --dataset");
  }
}

// ---- ViT on images: cross entropy over classes, top-1 accuracy.
class VitWorkload : public Workload {
 public:
  VitWorkload(const TrainConfig& c, Device device) {
    models::VitConfig m = models::VitConfig::preset(c.model_size);
    if (c.dataset == "fashion-mnist") {
      std::string dir = c.data_dir.empty() ? data::kFashionMnistDefaultDir : c.data_dir;
      auto train = std::make_shared<data::FashionMnist>(data::Split::train, dir,
                                                        data::FashionMnistOptions{.augment = c.augment});
      auto eval = std::make_shared<data::FashionMnist>(data::Split::test, dir);
      for (const data::FashionMnist* split : {train.get(), eval.get()}) {
        DTRAIN_CHECK(split->height() == 28 && split->width() == 28, "Fashion-MNIST images in ", dir, " are ",
                     split->height(), "x", split->width(), " pixels, not 28x28: check --data-dir");
      }
      train_set = train, eval_set = eval;
      m.image_size = 28, m.in_channels = 1, m.num_classes = 10;
    } else if (c.dataset == "cifar10") {
      DTRAIN_CHECK(!c.data_dir.empty(), "--dataset cifar10 needs --data-dir with the CIFAR-10 binary files");
      train_set = std::make_shared<data::Cifar10>(data::Split::train, c.data_dir,
                                                  data::Cifar10Options{.augment = c.augment});
      eval_set = std::make_shared<data::Cifar10>(data::Split::test, c.data_dir);
      m.image_size = 32, m.in_channels = 3, m.num_classes = 10;
    } else {
      throw Error("model vit trains on fashion-mnist or cifar10, not '" + c.dataset + "'");
    }
    override_sizes(c, m);
    if (c.depth) m.depth = c.depth;
    if (c.patch) m.patch_size = c.patch;
    model_ = std::make_shared<models::VisionTransformer>(m);
    model_->to(device);
    label_smoothing_ = c.label_smoothing;
    dataset_ = c.dataset;
    device_ = device;
  }
  std::shared_ptr<nn::Module> shared_model() override { return model_; }
  const char* unit() const override { return "images"; }
  int64_t items(const data::Batch& b) const override { return b.size(); }
  void check_batch(const data::Batch& b) const override {
    check_ids(b.target, model_->config().num_classes, -100, "class");
  }
  Tensor loss(const data::Batch& b) override {
    return cross_entropy(model_->forward(b.input).to(DType::f32), b.target, -100, label_smoothing_);
  }
  std::vector<double> eval_sums(const data::Batch& b) override {
    Tensor logits = model_->forward(b.input).to(DType::f32);
    double loss_sum = cross_entropy(logits, b.target, -100, 0.0, Reduction::sum).item();
    double correct = sum(eq(argmax(logits, -1), b.target).to(DType::f32)).item();
    return {loss_sum, correct, static_cast<double>(b.size())};
  }
  nlohmann::json eval_metrics(const std::vector<double>& s) const override {
    return {{"loss", s[0] / s[2]}, {"accuracy", s[1] / s[2]}};
  }
  std::string headline_metric() const override { return "accuracy"; }
  std::map<std::string, std::string> checkpoint_metadata() const override {
    const models::VitConfig& m = model_->config();
    return {{"model", "vit"},          {"image_size", std::to_string(m.image_size)},
            {"in_channels", std::to_string(m.in_channels)}, {"num_classes", std::to_string(m.num_classes)},
            {"patch_size", std::to_string(m.patch_size)},   {"dim", std::to_string(m.dim)},
            {"depth", std::to_string(m.depth)},             {"heads", std::to_string(m.heads)},
            {"mlp_dim", std::to_string(m.mlp_dim)}};
  }
  double train_flops_per_item() const override { return 3.0 * models::vit_forward_flops(model_->config()); }
  std::vector<std::string> predict(const PredictInput& input) override;

 private:
  std::shared_ptr<models::VisionTransformer> model_;
  double label_smoothing_ = 0.0;
  std::string dataset_;
  Device device_;
};

// The image normalised as the dataset normalises its own, the model's class probabilities, and the
// five likeliest classes, likeliest first.
std::vector<std::string> VitWorkload::predict(const PredictInput& input) {
  const models::VitConfig& m = model_->config();
  const bool gray = dataset_ == "fashion-mnist";
  const std::string wanted = std::to_string(m.image_size) + "x" + std::to_string(m.image_size) +
                             (m.in_channels == 1 ? " grayscale" : " RGB");
  DTRAIN_CHECK(input.image.has_value(), "this checkpoint holds a vit model for ", dataset_, " (", wanted,
               " images): give --image FILE");
  const data::Image& image = *input.image;
  DTRAIN_CHECK(image.width == m.image_size && image.height == m.image_size && image.channels == m.in_channels,
               input.image_name, " is a ", image.description(), " image but this ", dataset_, " model takes ",
               wanted, " images; dtrain does not resize or convert: give a ", wanted, " image");
  const std::array<float, 1> fm_mean = {data::kFashionMnistMean}, fm_std = {data::kFashionMnistStd};
  const int64_t plane = image.width * image.height;
  Tensor pixels = Tensor::empty({1, image.channels, image.height, image.width}, DType::f32);
  data::normalize_pixels(image.pixels.data(), image.channels, plane,
                         gray ? fm_mean.data() : data::kCifar10Mean.data(),
                         gray ? fm_std.data() : data::kCifar10Std.data(), pixels.data<float>());
  std::vector<float> probabilities;
  {
    NoGradGuard no_grad;
    const bool was_training = model_->is_training();
    model_->eval();
    Tensor logits = model_->forward(pixels.to(device_)).to(DType::f32);
    probabilities = softmax(logits, -1).to_vector<float>();
    model_->train(was_training);
  }
  const auto& names = gray ? data::FashionMnist::class_names() : data::Cifar10::class_names();
  std::vector<size_t> order(probabilities.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Ties keep class order, so the first line is the arg max.
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return probabilities[a] > probabilities[b]; });
  std::vector<std::string> lines;
  for (size_t i = 0; i < std::min<size_t>(5, order.size()); ++i) {
    const std::string name = order[i] < names.size() ? names[order[i]] : "class " + std::to_string(order[i]);
    char probability[32];
    std::snprintf(probability, sizeof probability, "%.4f", static_cast<double>(probabilities[order[i]]));
    lines.push_back(probability + ("  " + name));
  }
  return lines;
}

// ---- Transformer on English->German word pairs (freedict) or English->Chinese/German UI messages
// (gettext-zh, gettext-de): token cross entropy, exact match and CER of greedy decodes, and for gettext
// corpus BLEU and chrF of the same decodes.
//
// Characters are the tokens on both sides, for now: dtrain has no tokenizer learning (BPE,
// SentencePiece) yet, and a character vocabulary needs none. Pairs with a side longer than
// --seq-len - 2 characters are dropped, for both datasets, never truncated: a cut-off target would
// teach the model to stop mid-sentence, and a cut-off source to translate words it never saw.
class TransformerWorkload : public Workload {
 public:
  TransformerWorkload(const TrainConfig& c, Device device) {
    DTRAIN_CHECK(c.dataset == "freedict" || c.dataset == "gettext-zh" || c.dataset == "gettext-de",
                 "model transformer trains on --dataset freedict, gettext-zh or gettext-de, not '", c.dataset, "'");
    DTRAIN_CHECK(c.seq_len >= 4, "--seq-len ", c.seq_len, " is too short for model transformer: give at least 4 "
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
      data::GettextCorpusOptions options;
      if (!c.data_dir.empty()) options.locale_dir = c.data_dir;
      options.language = c.dataset == "gettext-zh" ? "zh_CN" : "de";
      options.max_chars = c.seq_len - 2;
      data::GettextCorpus corpus = data::load_gettext_corpus(options);
      // Evaluation is on the valid split; the test split is kept for a final report.
      train_pairs = std::move(corpus.train), eval_pairs = std::move(corpus.valid);
      const std::string where = options.locale_dir + "/" + options.language + "/LC_MESSAGES";
      DTRAIN_CHECK(!train_pairs.empty() && !eval_pairs.empty(), "--dataset ", c.dataset, " found ",
                   train_pairs.size(), " training and ", eval_pairs.size(), " validation pairs of at most ",
                   options.max_chars, " characters in the catalogs (*.mo) of ", where,
                   ": install packages with ", options.language, " translations, or give a larger --seq-len");
      bleu_ = c.dataset == "gettext-zh" ? data::BleuTokenizer::kZh : data::BleuTokenizer::k13a;
      target_language_ = c.dataset == "gettext-zh" ? "Chinese" : "German";
    }
    auto [src_vocab, tgt_vocab] = data::build_translation_vocabs(train_pairs);
    auto train = std::make_shared<data::TranslationDataset>(std::move(train_pairs), src_vocab, tgt_vocab);
    auto held_out = std::make_shared<data::TranslationDataset>(std::move(eval_pairs), src_vocab, tgt_vocab);
    train_set = train, eval_set = held_out, eval_ = held_out;
    models::TransformerConfig m = models::TransformerConfig::preset(
        c.model_size == "fm" ? "small" : c.model_size, src_vocab.size(), tgt_vocab.size(), c.seq_len,
        data::CharVocab::kPad);
    override_sizes(c, m);
    if (c.depth) m.encoder_layers = m.decoder_layers = c.depth;
    model_ = std::make_shared<models::Transformer>(m);
    model_->to(device);
    device_ = device;
  }
  std::shared_ptr<nn::Module> shared_model() override { return model_; }
  const char* unit() const override { return "tokens"; }
  int64_t items(const data::Batch& b) const override {
    const int64_t* ids = host_ids(b.target);
    return std::count_if(ids, ids + b.target.numel(), [](int64_t id) { return id != data::CharVocab::kPad; });
  }
  void check_batch(const data::Batch& b) const override {
    const models::TransformerConfig& m = model_->config();
    check_ids(b.input, m.src_vocab, data::CharVocab::kPad, "source token");
    check_ids(b.decoder_input, m.tgt_vocab, data::CharVocab::kPad, "target token");
    check_ids(b.target, m.tgt_vocab, data::CharVocab::kPad, "target token");
  }
  Tensor loss(const data::Batch& b) override {
    Tensor logits = model_->forward(b.input, b.decoder_input).to(DType::f32);
    return cross_entropy(logits.flatten(0, 1), b.target.flatten(), data::CharVocab::kPad);
  }
  std::vector<double> eval_sums(const data::Batch& b) override {
    Tensor logits = model_->forward(b.input, b.decoder_input).to(DType::f32);
    double loss_sum = cross_entropy(logits.flatten(0, 1), b.target.flatten(), data::CharVocab::kPad,
                                    0.0, Reduction::sum).item();
    // Non-padding targets (padding is id 0), compared on the targets' own device.
    double tokens = sum(gt(b.target, Tensor::zeros({}, DType::i64, b.target.device())).to(DType::f32)).item();
    auto decoded = model_->greedy_decode(b.input, data::CharVocab::kBos, data::CharVocab::kEos,
                                         b.target.size(1) + 4);
    double exact = 0, edits = 0, chars = 0;
    std::vector<std::string> hypotheses, references;
    for (size_t i = 0; i < decoded.size(); ++i) {
      std::u32string want = data::utf8_decode(eval_->pair(b.indices[i]).target);
      // Each hypothesis is cut at its own reference's length + 4 characters (one id per character),
      // not the batch's: then a pair's score does not depend on which batch or rank it fell in.
      decoded[i].resize(std::min(decoded[i].size(), want.size() + 4));
      std::u32string got = data::utf8_decode(eval_->target_vocab().decode(decoded[i]));
      exact += got == want;
      edits += static_cast<double>(edit_distance(got, want));
      chars += static_cast<double>(want.size());
      hypotheses.push_back(data::utf8_encode(got));
      references.push_back(eval_->pair(b.indices[i]).target);
    }
    std::vector<double> sums = {loss_sum, tokens, exact, edits, chars, static_cast<double>(b.size())};
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
    nlohmann::json metrics = {{"loss", s[0] / s[1]}, {"exact_match", s[2] / s[5]}, {"cer", s[3] / s[4]}};
    if (bleu_) {
      DTRAIN_CHECK(s.size() == kBleuAt + 10 + 3 * data::kChrfOrder, "transformer eval: ", s.size(),
                   " sums, expected ", kBleuAt + 10 + 3 * data::kChrfOrder);
      auto count = [&](size_t i) { return static_cast<int64_t>(std::llround(s[i])); };
      data::BleuScore bleu;
      for (int n = 0; n < 4; ++n) bleu.counts[n] = count(kBleuAt + n), bleu.totals[n] = count(kBleuAt + 4 + n);
      bleu.sys_len = count(kBleuAt + 8), bleu.ref_len = count(kBleuAt + 9);
      data::ChrfStatistics chrf = {};
      for (int n = 0; n < data::kChrfOrder; ++n) {
        for (int k = 0; k < 3; ++k) chrf[n][k] = count(kBleuAt + 10 + 3 * n + k);
      }
      metrics["bleu"] = data::bleu_from_statistics(bleu).score;
      metrics["chrf"] = data::chrf_from_statistics(chrf);
    }
    return metrics;
  }
  std::string headline_metric() const override { return bleu_ ? "bleu" : "cer"; }
  std::vector<std::string> samples() override {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < std::min<int64_t>(5, eval_->size()); ++i) idx.push_back(i * 7 % eval_->size());
    data::Batch b = eval_->get_batch(idx, 0);
    auto decoded = model_->greedy_decode(b.input.to(device_), data::CharVocab::kBos,
                                         data::CharVocab::kEos, b.target.size(1) + 4);
    std::vector<std::string> out;
    for (size_t i = 0; i < idx.size(); ++i) {
      const auto& pair = eval_->pair(idx[i]);
      out.push_back(pair.source + " -> " + eval_->target_vocab().decode(decoded[i]) + "  (reference: " +
                    pair.target + ")");
    }
    return out;
  }
  NamedTensors checkpoint_state() override { return model_->to_torch_state(); }
  void load_checkpoint_state(const NamedTensors& state) override { model_->from_torch_state(state); }
  // The sentence encoded as the dataset encodes a source (unknown characters become unk, then eos),
  // greedily decoded up to the model's length.
  std::vector<std::string> predict(const PredictInput& input) override {
    const models::TransformerConfig& m = model_->config();
    DTRAIN_CHECK(!input.text.empty(), "this checkpoint holds a transformer model (English -> ", target_language_,
                 "): give --text \"an English word or phrase\"");
    std::vector<int32_t> ids = eval_->source_vocab().encode(input.text);
    DTRAIN_CHECK(static_cast<int64_t>(ids.size()) + 1 <= m.max_len, "--text is ", ids.size(),
                 " characters but this model reads at most ", m.max_len - 1,
                 " (its --seq-len minus the end token): give a shorter text");
    ids.push_back(data::CharVocab::kEos);
    Tensor source = Tensor::from_vector(std::vector<int64_t>(ids.begin(), ids.end()),
                                        {1, static_cast<int64_t>(ids.size())}, DType::i64, device_);
    auto decoded = model_->greedy_decode(source, data::CharVocab::kBos, data::CharVocab::kEos, m.max_len);
    return {eval_->target_vocab().decode(decoded[0])};
  }

 private:
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
  static constexpr size_t kBleuAt = 6;  // where BLEU's statistics start in eval_sums
  std::shared_ptr<models::Transformer> model_;
  std::shared_ptr<data::TranslationDataset> eval_;
  Device device_;
  std::string target_language_;
  std::optional<data::BleuTokenizer> bleu_;  // gettext: BLEU's tokenizer (zh for Chinese, 13a for German)
};

// ---- GPT on the fortunes: next-character cross entropy, bits per character, a sample.
class GptWorkload : public Workload {
 public:
  GptWorkload(const TrainConfig& c, Device device) : device_(device) {
    DTRAIN_CHECK(c.dataset == "fortunes", "model gpt trains on --dataset fortunes, not '", c.dataset, "'");
    data::TextCorpusOptions options;
    if (!c.data_dir.empty()) options.dir = c.data_dir;
    corpus_ = data::load_fortunes(options);
    train_set = std::make_shared<data::TextDataset>(corpus_.train_text, corpus_.vocab, c.seq_len);
    eval_set = std::make_shared<data::TextDataset>(corpus_.val_text, corpus_.vocab, c.seq_len);
    models::GptConfig m = models::GptConfig::preset(c.model_size == "fm" ? "small" : c.model_size,
                                                    corpus_.vocab.size(), c.seq_len);
    override_sizes(c, m);
    if (c.depth) m.depth = c.depth;
    model_ = std::make_shared<models::Gpt>(m);
    model_->to(device);
  }
  std::shared_ptr<nn::Module> shared_model() override { return model_; }
  const char* unit() const override { return "tokens"; }
  int64_t items(const data::Batch& b) const override { return b.target.numel(); }
  void check_batch(const data::Batch& b) const override {
    check_ids(b.input, model_->config().vocab_size, -1, "token");
    check_ids(b.target, model_->config().vocab_size, -1, "token");
  }
  Tensor loss(const data::Batch& b) override {
    Tensor logits = model_->forward(b.input).to(DType::f32);
    return cross_entropy(logits.flatten(0, 1), b.target.flatten());
  }
  std::vector<double> eval_sums(const data::Batch& b) override {
    Tensor logits = model_->forward(b.input).to(DType::f32);
    double loss_sum =
        cross_entropy(logits.flatten(0, 1), b.target.flatten(), -100, 0.0, Reduction::sum).item();
    return {loss_sum, static_cast<double>(b.target.numel())};
  }
  nlohmann::json eval_metrics(const std::vector<double>& s) const override {
    double loss = s[0] / s[1];
    return {{"loss", loss}, {"bpc", loss / std::log(2.0)}};
  }
  std::string headline_metric() const override { return "bpc"; }
  std::vector<std::string> samples() override {
    Generator gen(7);
    // "The " where the corpus has those characters; otherwise the validation text's first character.
    std::u32string prompt_text;
    for (char32_t ch : std::u32string(U"The ")) {
      if (corpus_.vocab.contains(ch)) prompt_text += ch;
    }
    if (prompt_text.empty()) prompt_text = data::utf8_decode(corpus_.val_text).substr(0, 1);
    std::vector<int32_t> prompt32 = corpus_.vocab.encode(data::utf8_encode(prompt_text));
    std::vector<int64_t> prompt(prompt32.begin(), prompt32.end());
    return {corpus_.vocab.decode(model_->generate(prompt, 160, 0.8, 20, gen))};
  }
  double train_flops_per_item() const override {
    return 3.0 * models::gpt_forward_flops_per_token(model_->config(), model_->config().max_len);
  }
  // The prompt and its continuation. The vocabulary is the corpus's characters with no unk token, so a
  // character the corpus lacks cannot be fed to the model.
  std::vector<std::string> predict(const PredictInput& input) override {
    DTRAIN_CHECK(!input.prompt.empty(), "this checkpoint holds a gpt model: give --prompt \"text to continue\"");
    for (char32_t ch : data::utf8_decode(input.prompt)) {
      if (corpus_.vocab.contains(ch)) continue;
      std::string shown;
      data::utf8_append(shown, ch);
      char code[16];
      std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(ch));
      throw Error(ch == 0xfffd ? std::string("--prompt is not valid UTF-8: give UTF-8 text")
                               : "--prompt has the character '" + shown + "' (" + code +
                                     "), which is not among the " + std::to_string(corpus_.vocab.size()) +
                                     " characters this model was trained on: leave it out or replace it");
    }
    std::vector<int32_t> ids = corpus_.vocab.encode(input.prompt);
    Generator gen(input.seed);
    std::vector<int64_t> tokens = model_->generate(std::vector<int64_t>(ids.begin(), ids.end()),
                                                   input.max_tokens, input.temperature, input.top_k, gen);
    return {corpus_.vocab.decode(tokens)};
  }

 private:
  Device device_;
  data::TextCorpus corpus_;
  std::shared_ptr<models::Gpt> model_;
};

}  // namespace

std::unique_ptr<Workload> make_workload(const TrainConfig& c, Device device) {
  if (c.model == "vit") return std::make_unique<VitWorkload>(c, device);
  if (c.model == "transformer") return std::make_unique<TransformerWorkload>(c, device);
  if (c.model == "gpt") return std::make_unique<GptWorkload>(c, device);
  throw Error("unknown model '" + c.model + "': use vit, transformer or gpt");
}

}  // namespace dtrain::launch
