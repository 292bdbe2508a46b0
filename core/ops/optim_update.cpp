#include "core/ops/optim_update.h"

#include "core/backend/backend.h"

namespace dtrain {

namespace {

// Checks one tensor of entry `i` against the list's first parameter.
void check_tensor(const char* op, size_t i, const char* what, const Tensor& t,
                  const Tensor& first) {
  DTRAIN_CHECK(t.defined(), op, ": entry ", i, " has no ", what);
  DTRAIN_CHECK(t.dtype() == first.dtype() && t.device() == first.device(), op, ": entry ", i, "'s ",
               what, " is ", dtype_name(t.dtype()), " on ", t.device().str(), " but the list is ",
               dtype_name(first.dtype()), " on ", first.device().str(),
               "; call once per dtype and device");
  DTRAIN_CHECK(t.is_contiguous(), op, ": entry ", i, "'s ", what,
               " is not contiguous; pass contiguous tensors");
}

void check_param(const char* op, size_t i, const Tensor& param, const Tensor& first) {
  check_tensor(op, i, "parameter", param, first);
  DTRAIN_CHECK(param.dtype() == DType::f32 || param.dtype() == DType::f64, op, ": parameters are ",
               dtype_name(param.dtype()), "; fused updates take f32 or f64 master weights");
}

void check_shape(const char* op, size_t i, const char* what, const Tensor& t, const Tensor& param) {
  DTRAIN_CHECK(t.shape() == param.shape(), op, ": entry ", i, "'s ", what, " is ",
               shape_str(t.shape()), " but its parameter is ", shape_str(param.shape()));
}

}  // namespace

void adam_update_(const AdamUpdateArgs& args, const std::vector<AdamUpdateTensors>& list) {
  const char* op = "adam_update_";
  if (list.empty()) return;
  const Tensor& first = list.front().param;
  for (size_t i = 0; i < list.size(); ++i) {
    const AdamUpdateTensors& e = list[i];
    check_param(op, i, e.param, first);
    const std::pair<const char*, const Tensor*> parts[] = {
        {"gradient", &e.grad}, {"exp_avg", &e.exp_avg}, {"exp_avg_sq", &e.exp_avg_sq}};
    for (const auto& [what, t] : parts) {
      check_tensor(op, i, what, *t, first);
      check_shape(op, i, what, *t, e.param);
    }
    if (args.amsgrad) {
      check_tensor(op, i, "max_exp_avg_sq", e.max_exp_avg_sq, first);
      check_shape(op, i, "max_exp_avg_sq", e.max_exp_avg_sq, e.param);
    }
  }
  backend_for(first.device()).adam_update(args, list);
}

void sgd_update_(const SgdUpdateArgs& args, const std::vector<SgdUpdateTensors>& list) {
  const char* op = "sgd_update_";
  if (list.empty()) return;
  const Tensor& first = list.front().param;
  for (size_t i = 0; i < list.size(); ++i) {
    const SgdUpdateTensors& e = list[i];
    check_param(op, i, e.param, first);
    check_tensor(op, i, "gradient", e.grad, first);
    check_shape(op, i, "gradient", e.grad, e.param);
    if (args.momentum != 0.0) {
      check_tensor(op, i, "momentum buffer", e.momentum_buffer, first);
      check_shape(op, i, "momentum buffer", e.momentum_buffer, e.param);
    }
  }
  backend_for(first.device()).sgd_update(args, list);
}

}  // namespace dtrain
