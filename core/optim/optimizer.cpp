#include "core/optim/optimizer.h"

#include <set>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"

namespace dtrain::optim {

Tensor& ParamState::tensor_or_fill(const std::string& name, const Tensor& param, double value) {
  auto it = tensors.find(name);
  if (it == tensors.end()) {
    it = tensors.emplace(name, Tensor::full(param.shape(), value, param.dtype(), param.device()))
             .first;
  }
  return it->second;
}

Tensor grad_with_weight_decay(const Tensor& grad, const Tensor& param, double weight_decay) {
  if (weight_decay == 0.0) return grad;
  Tensor g = grad.clone();
  add_(g, param, weight_decay);
  return g;
}

void update_moving_average(Tensor& avg, const Tensor& x, double decay) {
  mul_(avg, decay);
  add_(avg, x, 1.0 - decay);
}

void update_moving_average_of_square(Tensor& avg, const Tensor& x, double decay) {
  mul_(avg, decay);
  addcmul_(avg, x, x, 1.0 - decay);
}

void check_option(bool ok, const char* optimizer, const char* option, double value,
                  const char* rule) {
  DTRAIN_CHECK(ok, optimizer, ": ", option, " = ", value, " is invalid; it must be ", rule);
}

void Optimizer::add_group_params(std::vector<Tensor> params) {
  std::set<const TensorImpl*> seen;
  for (const auto& group : groups_)
    for (const auto& p : group) seen.insert(p.impl());
  const size_t first = state_.size();
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    const size_t index = first + i;
    DTRAIN_CHECK(p.defined(), name(), ": parameter ", index, " (group ", groups_.size(),
                 ") is an undefined tensor; pass the module's parameters");
    DTRAIN_CHECK(
        p.dtype() == DType::f32 || p.dtype() == DType::f64, name(), ": parameter ", index, " is ",
        dtype_name(p.dtype()), " ", shape_str(p.shape()),
        "; optimizers update f32 (or f64) master weights, keep half-precision copies in amp");
    DTRAIN_CHECK(seen.insert(p.impl()).second, name(), ": parameter ", index, " ",
                 shape_str(p.shape()), " appears twice; each parameter belongs to one group");
  }
  state_.resize(first + params.size());
  groups_.push_back(std::move(params));
}

const std::vector<Tensor>& Optimizer::params(size_t group) const {
  DTRAIN_CHECK(group < groups_.size(), name(), ": group ", group, " out of range (", groups_.size(),
               " groups)");
  return groups_[group];
}

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> all;
  for (const auto& group : groups_) all.insert(all.end(), group.begin(), group.end());
  return all;
}

const ParamState* Optimizer::state(size_t index) const {
  DTRAIN_CHECK(index < state_.size(), name(), ": parameter index ", index, " out of range (",
               state_.size(), " parameters)");
  return state_[index] ? &*state_[index] : nullptr;
}

void Optimizer::step() {
  NoGradGuard no_grad;
  size_t index = 0;
  std::vector<PendingUpdate> pending;
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (Tensor& param : groups_[g]) {
      const size_t i = index++;
      if (!param.requires_grad()) continue;  // frozen
      Tensor grad = param.grad();
      if (!grad.defined()) continue;  // no gradient this step
      DTRAIN_CHECK(grad.shape() == param.shape(), name(), ": parameter ", i, " is ",
                   shape_str(param.shape()), " but its gradient is ", shape_str(grad.shape()));
      DTRAIN_CHECK(grad.device() == param.device(), name(), ": parameter ", i, " is on ",
                   param.device().str(), " but its gradient is on ", grad.device().str());
      if (grad.dtype() != param.dtype()) grad = grad.to(param.dtype());
      if (!state_[i]) state_[i].emplace();
      ParamState& st = *state_[i];
      ++st.step;
      pending.push_back({&param, grad, &st});
    }
    if (!pending.empty()) update_group(g, pending);
    pending.clear();
  }
}

FusedLists split_for_fused(const std::vector<PendingUpdate>& pending) {
  FusedLists out;
  std::vector<std::pair<Device, DType>> keys;
  for (const PendingUpdate& u : pending) {
    const Tensor& p = *u.param;
    if (!p.is_contiguous() || !u.grad.is_contiguous()) {
      out.per_tensor.push_back(&u);
      continue;
    }
    const std::pair<Device, DType> key{p.device(), p.dtype()};
    size_t k = 0;
    while (k < keys.size() && keys[k] != key) ++k;
    if (k == keys.size()) {
      keys.push_back(key);
      out.lists.emplace_back();
    }
    out.lists[k].push_back(&u);
  }
  return out;
}

void Optimizer::set_fused(bool on) {
  DTRAIN_CHECK(!on || has_fused_path(), name(),
               " has no fused path; use sgd, adam or adamw, or turn the fused optimizer off");
  fused_ = on;
}

void Optimizer::update_group(size_t group, const std::vector<PendingUpdate>& pending) {
  for (const PendingUpdate& u : pending) update(group, *u.param, u.grad, *u.state);
}

void Optimizer::zero_grad(bool set_to_none) {
  for (auto& group : groups_) {
    for (Tensor& p : group) {
      if (set_to_none) {
        p.set_grad(Tensor());
      } else if (p.grad().defined()) {
        Tensor g = p.grad();
        g.zero_();
      }
    }
  }
}

OptimizerState Optimizer::state_dict() const {
  OptimizerState out;
  nlohmann::json groups = nlohmann::json::array();
  for (size_t g = 0; g < groups_.size(); ++g) {
    groups.push_back({{"num_params", groups_[g].size()}, {"options", group_options_json(g)}});
  }
  nlohmann::json states = nlohmann::json::object();
  for (size_t i = 0; i < state_.size(); ++i) {
    if (!state_[i]) continue;
    const ParamState& st = *state_[i];
    nlohmann::json s = {{"step", st.step}};
    for (const auto& [key, value] : st.scalars) s["scalars"][key] = value;
    states[std::to_string(i)] = s;
    for (const auto& [key, t] : st.tensors) {
      out.tensors.emplace_back("state." + std::to_string(i) + "." + key, t);
    }
  }
  out.scalars = {{"optimizer", name()}, {"param_groups", groups}, {"state", states}};
  return out;
}

bool parse_parameter_index(const std::string& digits, size_t& index) {
  if (digits.empty() || digits.size() > 9) return false;
  if (digits.find_first_not_of("0123456789") != std::string::npos) return false;
  index = std::stoul(digits);
  return true;
}

bool parse_state_tensor_name(const std::string& full, size_t& index, std::string& key) {
  const std::string prefix = "state.";
  if (full.compare(0, prefix.size(), prefix) != 0) return false;
  const size_t dot = full.find('.', prefix.size());
  if (dot == std::string::npos || dot + 1 == full.size()) return false;
  key = full.substr(dot + 1);
  return parse_parameter_index(full.substr(prefix.size(), dot - prefix.size()), index);
}

void Optimizer::check_saved_layout(const nlohmann::json& j) const {
  const char* me = name();
  DTRAIN_CHECK(
      j.is_object() && j.contains("optimizer") && j.contains("param_groups") && j.contains("state"),
      me, ": load_state_dict needs the object state_dict() wrote (optimizer, param_groups, state)");
  const std::string kind = j.at("optimizer").get<std::string>();
  DTRAIN_CHECK(kind == me, me, ": the saved state belongs to optimizer '", kind,
               "'; build the same optimizer as the run that saved it");
  const auto& groups = j.at("param_groups");
  DTRAIN_CHECK(groups.is_array() && groups.size() == num_groups(), me, ": the saved state has ",
               groups.size(), " parameter groups but this optimizer has ", num_groups());
  for (size_t g = 0; g < num_groups(); ++g) {
    const size_t n = groups[g].at("num_params").get<size_t>();
    DTRAIN_CHECK(n == params(g).size(), me, ": saved group ", g, " has ", n,
                 " parameters but this optimizer's has ", params(g).size());
  }
}

void Optimizer::load_state_dict(const OptimizerState& saved) {
  const nlohmann::json& j = saved.scalars;
  const char* me = name();
  std::vector<nlohmann::json> options;
  std::vector<std::optional<ParamState>> state(state_.size());
  try {
    check_saved_layout(j);
    for (size_t g = 0; g < groups_.size(); ++g)
      options.push_back(j.at("param_groups")[g].at("options"));
    for (const auto& [key, s] : j.at("state").items()) {
      size_t i = 0;
      DTRAIN_CHECK(parse_parameter_index(key, i) && i < state_.size(), me,
                   ": saved state for parameter '", key, "' but this optimizer has ", state_.size(),
                   " parameters");
      ParamState st;
      st.step = s.at("step").get<int64_t>();
      if (s.contains("scalars")) {
        for (const auto& [sk, sv] : s.at("scalars").items()) st.scalars[sk] = sv.get<double>();
      }
      state[i] = std::move(st);
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string(me) + ": malformed optimizer state_dict (" + e.what() +
                "); pass the object state_dict() wrote");
  }

  std::vector<Tensor> params = parameters();
  NoGradGuard no_grad;
  for (const auto& [full, t] : saved.tensors) {
    size_t i = 0;
    std::string key;
    DTRAIN_CHECK(parse_state_tensor_name(full, i, key), me, ": saved tensor '", full,
                 "' is not named state.<index>.<name>");
    DTRAIN_CHECK(i < state.size() && state[i], me, ": saved tensor '", full,
                 "' has no matching parameter state in the saved scalars");
    DTRAIN_CHECK(t.defined() && t.shape() == params[i].shape(), me, ": saved tensor '", full,
                 "' is ", t.defined() ? shape_str(t.shape()) : std::string("undefined"),
                 " but parameter ", i, " is ", shape_str(params[i].shape()),
                 "; the model does not match the checkpoint");
    Tensor copy = Tensor::empty(params[i].shape(), params[i].dtype(), params[i].device());
    copy.copy_(t);
    state[i]->tensors[key] = copy;
  }
  set_group_options_json(options);  // parses and checks all groups before changing any
  state_ = std::move(state);
}

}  // namespace dtrain::optim
