#include "launch/workload.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "core/ops/ops.h"
#include "launch/workload_util.h"

namespace dtrain::launch {

const int64_t* host_ids(const Tensor& t) {
  DTRAIN_CHECK(t.device().is_cpu() && t.dtype() == DType::i64 && t.is_contiguous(),
               "a batch's ids must be a contiguous i64 tensor on the host, got ",
               dtype_name(t.dtype()), " on ", t.device().str());
  return t.data<int64_t>();
}

void check_ids(const Tensor& t, int64_t limit, int64_t allowed, const char* what) {
  if (!t.defined()) return;
  const int64_t* ids = host_ids(t);
  for (int64_t i = 0; i < t.numel(); ++i) {
    DTRAIN_CHECK(ids[i] == allowed || (ids[i] >= 0 && ids[i] < limit), "a training batch holds ",
                 what, " ", ids[i], " at position ", i, ", outside the model's [0, ", limit,
                 "): the dataset does not fit the model; check --data-dir and --dataset");
  }
}

std::vector<double> classification_sums(const Tensor& logits, const Tensor& target) {
  const Tensor l = logits.to(DType::f32);
  const double loss_sum = cross_entropy(l, target, -100, 0.0, Reduction::sum).item();
  const double correct = sum(eq(argmax(l, -1), target).to(DType::f32)).item();
  return {loss_sum, correct, static_cast<double>(target.size(0))};
}

nlohmann::json classification_metrics(const std::vector<double>& s) {
  return {{"loss", s[0] / s[2]}, {"accuracy", s[1] / s[2]}};
}

std::vector<std::string> top_class_lines(const std::vector<double>& p,
                                         const std::function<std::string(size_t)>& name, size_t k) {
  std::vector<size_t> order(p.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  std::vector<std::string> lines;
  for (size_t i = 0; i < std::min(k, order.size()); ++i) {
    char probability[32];
    std::snprintf(probability, sizeof probability, "%.4f", p[order[i]]);
    lines.push_back(probability + ("  " + name(order[i])));
  }
  return lines;
}

std::string code_point_name(char32_t c) {
  char code[16];
  std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(c));
  return code;
}

std::unique_ptr<Workload> make_workload(const TrainConfig& c, Device device) {
  // Checked here, not with the options: `dtrain eval` learns the dataset from the checkpoint.
  DTRAIN_CHECK(c.split == "valid" || c.dataset == "gettext-zh" || c.dataset == "gettext-de",
               "--split test applies to gettext-zh and gettext-de; ", c.dataset,
               " has one held-out split, so leave it at valid");
  if (c.model == "vit") return make_vit_workload(c, device);
  if (c.model == "transformer") return make_transformer_workload(c, device);
  if (c.model == "gpt") return make_gpt_workload(c, device);
  if (c.model == "classifier") return make_classifier_workload(c, device);
  if (c.model == "fusion") return make_fusion_workload(c, device);
  throw Error("unknown model '" + c.model + "': use vit, transformer, gpt, classifier or fusion");
}

}  // namespace dtrain::launch
