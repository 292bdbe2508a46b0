// What the workloads share: each one's factory (launch/workload_<model>.cpp) and the checks of a
// host batch. make_workload (launch/workload.h) picks the factory by --model.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/ops/ops.h"
#include "launch/workload.h"

namespace dtrain::launch {

std::unique_ptr<Workload> make_vit_workload(const TrainConfig& config, Device device);
std::unique_ptr<Workload> make_transformer_workload(const TrainConfig& config, Device device);
std::unique_ptr<Workload> make_gpt_workload(const TrainConfig& config, Device device);
std::unique_ptr<Workload> make_classifier_workload(const TrainConfig& config, Device device);
std::unique_ptr<Workload> make_fusion_workload(const TrainConfig& config, Device device);

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
const int64_t* host_ids(const Tensor& t);

// Every id of `t` in [0, limit) or equal to `allowed` (padding, ignored targets); else a one-line
// error: the dataset does not fit the model.
void check_ids(const Tensor& t, int64_t limit, int64_t allowed, const char* what);

// Eval sums of a classifier's batch, {loss_sum, correct, count}, which add up across batches and
// ranks, and the metrics of their totals: {"loss", "accuracy"}.
std::vector<double> classification_sums(const Tensor& logits, const Tensor& target);
nlohmann::json classification_metrics(const std::vector<double>& sums);

// For predict: softmax of what `logits` computes, with `model` in eval mode and no gradients (its
// training mode is restored after), as doubles on the host.
template <class Logits>
std::vector<double> eval_probabilities(nn::Module& model, Logits&& logits) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  std::vector<double> p = softmax(Tensor(logits()).to(DType::f32), -1).to_vector<double>();
  model.train(was_training);
  return p;
}

// The `k` likeliest classes of `p`, likeliest first, as "0.1234  name" lines; ties keep class order,
// so the first line is the arg max.
std::vector<std::string> top_class_lines(const std::vector<double>& p,
                                         const std::function<std::string(size_t)>& name,
                                         size_t k = 5);

// "U+6CB3": a code point as Unicode writes it, for messages.
std::string code_point_name(char32_t c);

}  // namespace dtrain::launch
