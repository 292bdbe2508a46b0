#include <algorithm>
#include <filesystem>

#include "core/data/file_bytes.h"
#include "core/data/unihan.h"
#include "models/fusion.h"

#include "core/ops/ops.h"
#include "launch/workload_util.h"

namespace dtrain::launch {

namespace {

// ---- FusionClassifier on Unihan: a CJK ideograph's Kangxi radical from its glyph (batch.input), its
// definition (batch.decoder_input) or both; cross entropy over the 214 radicals, top-1 accuracy.
class FusionWorkload : public Workload {
 public:
  FusionWorkload(const TrainConfig& c, Device device) : device_(device), data_dir_(c.data_dir) {
    DTRAIN_CHECK(c.dataset == "unihan", "model fusion trains on --dataset unihan, not '", c.dataset,
                 "'");
    corpus_ = std::make_shared<const data::UnihanCorpus>(data::load_unihan(c.data_dir));
    train_set = std::make_shared<data::UnihanDataset>(corpus_, corpus_->train, c.seq_len);
    eval_set = std::make_shared<data::UnihanDataset>(corpus_, corpus_->valid, c.seq_len);
    models::FusionConfig m =
        models::FusionConfig::preset(c.model_size == "fm" ? "small" : c.model_size, c.modalities,
                                     corpus_->vocab.size(), c.seq_len, data::kUnihanRadicals);
    override_sizes(c, m);
    if (c.depth) m.depth = c.depth;
    if (c.patch) m.patch_size = c.patch;
    m.image_size = data::kGlyphSize;
    m.pad_id = data::WordVocab::kPad;
    model_ = std::make_shared<models::FusionClassifier>(m);
    model_->to(device);
    label_smoothing_ = c.label_smoothing;
  }
  std::shared_ptr<nn::Module> shared_model() override { return model_; }
  const char* unit() const override { return "characters"; }
  int64_t items(const data::Batch& b) const override { return b.size(); }
  void check_batch(const data::Batch& b) const override {
    check_ids(b.target, model_->config().num_classes, -100, "radical");
    check_ids(b.decoder_input, model_->config().vocab_size, data::WordVocab::kPad, "word");
  }
  Tensor loss(const data::Batch& b) override {
    return cross_entropy(logits(b), b.target, -100, label_smoothing_);
  }
  std::vector<double> eval_sums(const data::Batch& b) override {
    return classification_sums(logits(b), b.target);
  }
  nlohmann::json eval_metrics(const std::vector<double>& s) const override {
    return classification_metrics(s);
  }
  std::string headline_metric() const override { return "accuracy"; }
  std::map<std::string, std::string> checkpoint_metadata() const override {
    const models::FusionConfig& m = model_->config();
    return {{"model", "fusion"},
            {"modalities", m.modalities},
            {"num_classes", std::to_string(m.num_classes)},
            {"image_size", std::to_string(m.image_size)},
            {"patch_size", std::to_string(m.patch_size)},
            {"vocab_size", std::to_string(m.vocab_size)},
            {"seq_len", std::to_string(m.seq_len)},
            {"dim", std::to_string(m.dim)},
            {"depth", std::to_string(m.depth)},
            {"heads", std::to_string(m.heads)},
            {"mlp_dim", std::to_string(m.mlp_dim)}};
  }
  double train_flops_per_item() const override {
    return 3.0 * models::fusion_forward_flops(model_->config());
  }
  std::vector<std::string> predict(const PredictInput& input) override;

 private:
  // The modalities the model does not use are left out (undefined), so none is moved to the device.
  Tensor logits(const data::Batch& b) const {
    const models::FusionConfig& m = model_->config();
    return model_
        ->forward(m.uses_image() ? b.input : Tensor(), m.uses_text() ? b.decoder_input : Tensor())
        .to(DType::f32);
  }

  Device device_;
  std::string data_dir_;
  std::shared_ptr<const data::UnihanCorpus> corpus_;
  double label_smoothing_ = 0.0;  // the training loss's; evaluation scores plain cross entropy
  std::shared_ptr<models::FusionClassifier> model_;
};

// The character's glyph and definition as the dataset encodes them, and the five likeliest radicals,
// likeliest first, after a line naming the character and its radical in Unihan.
std::vector<std::string> FusionWorkload::predict(const PredictInput& input) {
  const std::u32string text = data::utf8_decode(input.text);
  DTRAIN_CHECK(text.size() == 1 && text[0] != 0xfffd,
               "this checkpoint holds a fusion model, which takes one "
               "character: give --text with a single CJK ideograph, e.g. --text 河 (got '",
               input.text, "')");
  const char32_t ch = text[0];
  const auto& entries = corpus_->entries;
  auto it =
      std::lower_bound(entries.begin(), entries.end(), ch,
                       [](const data::UnihanEntry& e, char32_t c) { return e.codepoint < c; });
  DTRAIN_CHECK(
      it != entries.end() && it->codepoint == ch, "'", input.text, "' (", code_point_name(ch),
      ") lacks a 16x16 glyph, a kRSUnicode or a kDefinition in the files under ",
      data_dir_.empty() ? std::string("/usr/share/unifont and /usr/share/unicode") : data_dir_,
      ": give a CJK ideograph that has all three, e.g. 河");
  data::Batch b = data::UnihanDataset::encode(*it, corpus_->vocab, model_->config().seq_len);
  b.input = b.input.to(device_);
  b.decoder_input = b.decoder_input.to(device_);
  const std::vector<double> probabilities = eval_probabilities(*model_, [&] { return logits(b); });
  namespace fs = std::filesystem;
  const fs::path local = fs::path(data_dir_) / "CJKRadicals.txt";
  const std::vector<std::string> radical_chars = data::read_radical_characters(
      !data_dir_.empty() && data::entry_exists(local.string())
          ? local.string()
          : (fs::path(data::kUnicodeDataDefaultDir) / "CJKRadicals.txt").string());
  auto radical_name = [&](int64_t radical) {
    std::string name = "radical " + std::to_string(radical);
    if (radical < static_cast<int64_t>(radical_chars.size()) && !radical_chars[radical].empty()) {
      name += " " + radical_chars[radical];
    }
    return name;
  };
  std::vector<std::string> lines = {input.text + " " + code_point_name(ch) + " (Unihan: " +
                                    radical_name(it->radical) + "): " + it->definition};
  const std::vector<std::string> top = top_class_lines(
      probabilities, [&](size_t c) { return radical_name(static_cast<int64_t>(c) + 1); });
  lines.insert(lines.end(), top.begin(), top.end());
  return lines;
}

}  // namespace

std::unique_ptr<Workload> make_fusion_workload(const TrainConfig& config, Device device) {
  return std::make_unique<FusionWorkload>(config, device);
}

}  // namespace dtrain::launch
