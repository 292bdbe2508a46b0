#include <algorithm>
#include <cmath>

#include "core/data/synthetic.h"
#include "core/data/text_corpus.h"
#include "models/gpt.h"

#include "core/ops/ops.h"
#include "launch/workload_util.h"

namespace dtrain::launch {

namespace {

// ---- GPT on the fortunes: next-character cross entropy, bits per character, a sample.
class GptWorkload : public Workload {
 public:
  GptWorkload(const TrainConfig& c, Device device) : device_(device) {
    DTRAIN_CHECK(c.dataset == "fortunes" || c.dataset == "synthetic",
                 "model gpt trains on --dataset fortunes or synthetic, not '", c.dataset, "'");
    int64_t vocab_size = 0;
    if (c.dataset == "synthetic") {
      // Random token windows, for benchmarks: GPT-2's 50,257-token vocabulary for --model-size
      // gpt2, bytes otherwise. There is no text to sample from or to read a prompt with.
      synthetic_ = true;
      vocab_size = c.model_size == "gpt2" ? 50257 : 256;
      const int64_t n = std::max<int64_t>(1024, c.batch_size);
      train_set = std::make_shared<data::SyntheticTokens>(n, c.seq_len, vocab_size, c.seed);
      eval_set = std::make_shared<data::SyntheticTokens>(64, c.seq_len, vocab_size, c.seed + 1);
    } else {
      data::TextCorpusOptions options;
      if (!c.data_dir.empty()) options.dir = c.data_dir;
      corpus_ = data::load_fortunes(options);
      train_set = std::make_shared<data::TextDataset>(corpus_.train_text, corpus_.vocab, c.seq_len);
      eval_set = std::make_shared<data::TextDataset>(corpus_.val_text, corpus_.vocab, c.seq_len);
      vocab_size = static_cast<int64_t>(corpus_.vocab.size());
    }
    models::GptConfig m = models::GptConfig::preset(c.model_size == "fm" ? "small" : c.model_size,
                                                    vocab_size, c.seq_len);
    override_sizes(c, m);
    if (c.depth) m.depth = c.depth;
    model_ = std::make_shared<models::Gpt>(m);
    model_->checkpoint_activations = c.checkpoint_activations;
    model_->to(device);
    label_smoothing_ = c.label_smoothing;
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
    return cross_entropy(logits.flatten(0, 1), b.target.flatten(), -100, label_smoothing_);
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
    if (synthetic_) return {};
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
    DTRAIN_CHECK(!synthetic_, "this gpt model was trained on --dataset synthetic: it has no text ",
                 "vocabulary to read a prompt with; train it on --dataset fortunes");
    DTRAIN_CHECK(!input.prompt.empty(),
                 "this checkpoint holds a gpt model: give --prompt \"text to continue\"");
    for (char32_t ch : data::utf8_decode(input.prompt)) {
      if (corpus_.vocab.contains(ch)) continue;
      std::string shown;
      data::utf8_append(shown, ch);
      throw Error(ch == 0xfffd
                      ? std::string("--prompt is not valid UTF-8: give UTF-8 text")
                      : "--prompt has the character '" + shown + "' (" + code_point_name(ch) +
                            "), which is not among the " + std::to_string(corpus_.vocab.size()) +
                            " characters this model was trained on: leave it out or replace it");
    }
    std::vector<int32_t> ids = corpus_.vocab.encode(input.prompt);
    Generator gen(input.seed);
    std::vector<int64_t> tokens =
        model_->generate(std::vector<int64_t>(ids.begin(), ids.end()), input.max_tokens,
                         input.temperature, input.top_k, gen);
    return {corpus_.vocab.decode(tokens)};
  }

 private:
  Device device_;
  data::TextCorpus corpus_;
  bool synthetic_ = false;
  double label_smoothing_ = 0.0;  // the training loss's; evaluation scores plain cross entropy
  std::shared_ptr<models::Gpt> model_;
};

}  // namespace

std::unique_ptr<Workload> make_gpt_workload(const TrainConfig& config, Device device) {
  return std::make_unique<GptWorkload>(config, device);
}

}  // namespace dtrain::launch
