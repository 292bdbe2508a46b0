// A workload is what `dtrain train` trains: a model, its datasets, its loss and its evaluation. The
// trainer loop knows nothing of images or tokens; it asks the workload.
#pragma once
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/data/dataset.h"
#include "core/data/image_file.h"
#include "core/nn/module.h"
#include "launch/config.h"

namespace dtrain::launch {

// One input for `dtrain predict` (launch/predict.h), of the kind the workload's model takes.
struct PredictInput {
  std::optional<data::Image> image;  // vit: pixels as read from the file
  std::string image_name;            // where the image came from, for messages
  std::string text;                  // transformer: the sentence to translate
  std::string prompt;                // gpt: the text to continue
  int64_t max_tokens = 200;          // gpt: characters to generate
  double temperature = 1.0;          // gpt: 0 is greedy
  int64_t top_k = 0;                 // gpt: sample among the k likeliest (0: all)
  uint64_t seed = 0;                 // gpt: the sampling generator's seed
};

class Workload {
 public:
  virtual ~Workload() = default;
  nn::Module& model() { return *shared_model(); }
  virtual std::shared_ptr<nn::Module> shared_model() = 0;
  std::shared_ptr<const data::Dataset> train_set;
  std::shared_ptr<const data::Dataset> eval_set;
  // "images" or "tokens": what throughput counts.
  virtual const char* unit() const = 0;
  // Images, or target tokens that are not padding, in a batch (on the host).
  virtual int64_t items(const data::Batch& batch) const = 0;
  // Checks a batch on the host, before it is copied to the model's device: every class target and
  // token id within the model's range. Device kernels do not stop on a bad index (reading indices
  // back would stall every step), so a dataset that does not fit the model is caught here.
  virtual void check_batch(const data::Batch& batch) const = 0;
  // Mean loss of a batch (already on the model's device), differentiable.
  virtual Tensor loss(const data::Batch& batch) = 0;
  // Sums over one eval batch that add up across batches and ranks, e.g. {loss_sum, correct, count}.
  virtual std::vector<double> eval_sums(const data::Batch& batch) = 0;
  // The metrics of summed eval_sums: {"loss": ..., "accuracy": ...}; and which one the summary shows.
  virtual nlohmann::json eval_metrics(const std::vector<double>& sums) const = 0;
  virtual std::string headline_metric() const = 0;
  // A few human-readable samples after the final evaluation (translations, generated text).
  virtual std::vector<std::string> samples() { return {}; }
  // The model's tensors under their checkpoint names (timm's for ViT, torch.nn.Transformer's).
  virtual NamedTensors checkpoint_state() { return model().state_dict(); }
  // Written into model.safetensors' metadata: what a reader needs to rebuild the model (heads, ...).
  virtual std::map<std::string, std::string> checkpoint_metadata() const { return {}; }
  virtual void load_checkpoint_state(const NamedTensors& state) { model().load_state_dict(state); }
  // What the trained model makes of one input (in eval mode, no gradients), as lines to print: the
  // top classes with their probabilities (vit), the translation (transformer), the prompt and its
  // continuation (gpt). Throws a one-line dtrain::Error when the input does not fit the model.
  virtual std::vector<std::string> predict(const PredictInput& input) = 0;
  // Model FLOPs of one training step per item (forward + backward = 3x forward), for MFU.
  virtual double train_flops_per_item() const { return 0.0; }
};

// Builds the workload `config` names, with its data loaded and its model initialised from the
// default generator (seed it first), on `device`.
std::unique_ptr<Workload> make_workload(const TrainConfig& config, Device device);

}  // namespace dtrain::launch
