#include "distributed/zero.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "core/autograd/grad_mode.h"

namespace dtrain::dist {

namespace {

constexpr const char* kWho = "ZeroRedundancyOptimizer";

}  // namespace

ZeroRedundancyOptimizer::ZeroRedundancyOptimizer(std::vector<std::vector<Tensor>> param_groups,
                                                 std::shared_ptr<ProcessGroup> pg,
                                                 Factory make_optimizer)
    : pg_(std::move(pg)) {
  DTRAIN_CHECK(pg_ != nullptr, kWho, ": the process group is null");
  DTRAIN_CHECK(make_optimizer != nullptr, kWho, ": the optimizer factory is empty");
  const size_t num_groups = param_groups.size();
  for (std::vector<Tensor>& group : param_groups) add_group_params(std::move(group));
  params_ = parameters();

  // Lay the parameters end to end and find which parts fall in this rank's chunk.
  int64_t total = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    DTRAIN_CHECK(p.dtype() == DType::f32, kWho, ": parameter ", i, " is ", dtype_name(p.dtype()),
                 "; ZeRO-1 shards f32 master weights");
    DTRAIN_CHECK(p.device() == pg_->device(), kWho, ": parameter ", i, " is on ", p.device().str(),
                 " but the ", pg_->backend_name(), " process group serves ", pg_->device().str(),
                 " tensors");
    flat_offset_.push_back(total);
    total += p.numel();
  }
  const int64_t n = pg_->size();
  chunk_ = (total + n - 1) / n;
  const int64_t lo = pg_->rank() * chunk_, hi = lo + chunk_;

  NoGradGuard no_grad;
  std::vector<std::vector<Tensor>> piece_groups(num_groups);
  piece_of_.assign(params_.size(), -1);
  size_t i = 0;
  for (size_t g = 0; g < num_groups; ++g) {
    for (size_t j = 0; j < params(g).size(); ++j, ++i) {
      const int64_t a = std::max(lo, flat_offset_[i]);
      const int64_t b = std::min(hi, flat_offset_[i] + params_[i].numel());
      if (a >= b) continue;
      Piece piece{i, a - flat_offset_[i], a - lo,
                  Tensor::empty({b - a}, DType::f32, pg_->device())};
      piece.value.copy_(
          params_[i].reshape({params_[i].numel()}).narrow(0, piece.param_offset, b - a));
      piece.value.set_requires_grad(true);
      piece_groups[g].push_back(piece.value);
      piece_of_[i] = static_cast<int64_t>(pieces_.size());
      pieces_.push_back(std::move(piece));
    }
  }
  inner_ = make_optimizer(std::move(piece_groups));
  DTRAIN_CHECK(inner_ != nullptr, kWho, ": the optimizer factory returned null");
  const std::vector<Tensor> inner_params = inner_->parameters();
  bool same = inner_->num_groups() == num_groups && inner_params.size() == pieces_.size();
  for (size_t k = 0; same && k < pieces_.size(); ++k) same = inner_params[k].same(pieces_[k].value);
  DTRAIN_CHECK(
      same, kWho,
      ": the optimizer factory must build its optimizer over the pieces it is given, in the "
      "groups and order given (",
      num_groups, " groups)");
}

ZeroRedundancyOptimizer::ZeroRedundancyOptimizer(
    std::vector<Tensor> params, std::shared_ptr<ProcessGroup> pg,
    const std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>& make_optimizer)
    : ZeroRedundancyOptimizer(std::vector<std::vector<Tensor>>{std::move(params)}, std::move(pg),
                              [make_optimizer](std::vector<std::vector<Tensor>> groups) {
                                return make_optimizer(std::move(groups.at(0)));
                              }) {}

const char* ZeroRedundancyOptimizer::name() const { return inner_ ? inner_->name() : kWho; }

int64_t ZeroRedundancyOptimizer::local_numel() const {
  int64_t n = 0;
  for (const Piece& p : pieces_) n += p.value.numel();
  return n;
}

void ZeroRedundancyOptimizer::step() {
  NoGradGuard no_grad;
  for (Piece& p : pieces_) {
    const Tensor& param = params_[p.param];
    const int64_t n = p.value.numel();
    p.value.copy_(param.reshape({param.numel()}).narrow(0, p.param_offset, n));
    const Tensor grad = param.grad();
    if (!param.requires_grad() || !grad.defined()) {  // frozen, or no gradient this step: skipped
      p.value.set_grad(Tensor());
      continue;
    }
    DTRAIN_CHECK(grad.shape() == param.shape(), name(), ": parameter ", p.param, " is ",
                 shape_str(param.shape()), " but its gradient is ", shape_str(grad.shape()));
    // A view: the inner optimizer reads it (and converts another dtype) without a copy here.
    p.value.set_grad(grad.reshape({grad.numel()}).narrow(0, p.param_offset, n));
  }
  inner_->step();
  for (Piece& p : pieces_) p.value.set_grad(Tensor());
  if (chunk_ == 0) return;  // no parameters on any rank

  Tensor chunk = Tensor::zeros({chunk_}, DType::f32, pg_->device());
  for (const Piece& p : pieces_) chunk.narrow(0, p.chunk_offset, p.value.numel()).copy_(p.value);
  Tensor flat = Tensor::empty({chunk_ * pg_->size()}, DType::f32, pg_->device());
  pg_->all_gather(flat, chunk)->wait();
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor param = params_[i];
    param.copy_(flat.narrow(0, flat_offset_[i], param.numel()).view(param.shape()));
  }
}

optim::OptimizerState ZeroRedundancyOptimizer::state_dict() const {
  NoGradGuard no_grad;
  const optim::OptimizerState local = inner_->state_dict();

  // 1. Which parameters have state, their JSON entry (step count and scalars, the same in every piece
  //    of a parameter) and the names of their state tensors: from the rank holding their first piece.
  nlohmann::json mine = nlohmann::json::object();
  for (size_t k = 0; k < pieces_.size(); ++k) {
    const optim::ParamState* st = inner_->state(k);
    if (st == nullptr) continue;
    std::vector<std::string> names;
    for (const auto& [key, t] : st->tensors) names.push_back(key);
    mine[std::to_string(pieces_[k].param)] = {
        {"state", local.scalars.at("state").at(std::to_string(k))}, {"tensors", names}};
  }
  const std::vector<std::string> texts = all_gather_strings(*pg_, mine.dump());
  nlohmann::json states = nlohmann::json::object();
  std::map<size_t, std::vector<std::string>> tensor_names;  // by parameter index
  std::set<std::string> keys;                               // over all parameters
  for (int r = 0; r < pg_->size(); ++r) {
    const nlohmann::json theirs = nlohmann::json::parse(texts[static_cast<size_t>(r)]);
    for (const auto& [index, entry] : theirs.items()) {
      const auto names = entry.at("tensors").get<std::vector<std::string>>();
      if (!states.contains(index)) {
        states[index] = entry.at("state");
        tensor_names[std::stoul(index)] = names;
        keys.insert(names.begin(), names.end());
      } else {
        // Every piece of a parameter was stepped the same times; anything else is a bug (or gradients
        // that differed between ranks), and the checkpoint would not be the unsharded state.
        DTRAIN_CHECK(states[index] == entry.at("state") && tensor_names[std::stoul(index)] == names,
                     kWho, ": the ranks' shards of parameter ", index, " disagree (",
                     states[index].dump(), " vs rank ", r, "'s ", entry.at("state").dump(),
                     "); were the gradients the same on every rank (DDP)?");
      }
    }
  }

  // 2. One all-gather per kind of state tensor (exp_avg, exp_avg_sq, ...): every rank puts its pieces'
  //    values at their place in its chunk, and each parameter's state is cut out of the flat result.
  std::map<size_t, std::map<std::string, Tensor>> gathered;
  for (const std::string& key : keys) {
    Tensor chunk = Tensor::zeros({chunk_}, DType::f32, pg_->device());
    for (size_t k = 0; k < pieces_.size(); ++k) {
      const optim::ParamState* st = inner_->state(k);
      if (st == nullptr) continue;
      auto it = st->tensors.find(key);
      if (it == st->tensors.end()) continue;
      const int64_t n = pieces_[k].value.numel();
      DTRAIN_CHECK(it->second.numel() == n, kWho, ": state '", key, "' of parameter ",
                   pieces_[k].param, " has ", it->second.numel(), " elements for a piece of ", n,
                   "; ZeRO-1 shards elementwise optimizers only");
      chunk.narrow(0, pieces_[k].chunk_offset, n).copy_(it->second.reshape({n}));
    }
    Tensor flat = Tensor::empty({chunk_ * pg_->size()}, DType::f32, pg_->device());
    pg_->all_gather(flat, chunk)->wait();
    for (const auto& [i, names] : tensor_names) {
      if (std::find(names.begin(), names.end(), key) == names.end()) continue;
      const Tensor& param = params_[i];
      gathered[i][key] = flat.narrow(0, flat_offset_[i], param.numel()).view(param.shape()).clone();
    }
  }

  // 3. The unsharded optimizer's layout: tensors by parameter index, then name; groups with their
  //    full sizes and the inner optimizer's options.
  optim::OptimizerState out;
  for (auto& [i, by_key] : gathered) {
    for (auto& [key, t] : by_key)
      out.tensors.emplace_back("state." + std::to_string(i) + "." + key, t);
  }
  nlohmann::json groups = nlohmann::json::array();
  for (size_t g = 0; g < num_groups(); ++g) {
    groups.push_back({{"num_params", params(g).size()},
                      {"options", local.scalars.at("param_groups").at(g).at("options")}});
  }
  out.scalars = {{"optimizer", name()}, {"param_groups", groups}, {"state", states}};
  return out;
}

void ZeroRedundancyOptimizer::load_state_dict(const optim::OptimizerState& saved) {
  // The checks are those of optim::Optimizer::load_state_dict against the full parameters (so every
  // rank reports the same error); then each state is cut down to this rank's piece of its parameter
  // and handed to the inner optimizer, which copies it.
  const char* me = name();
  const nlohmann::json& j = saved.scalars;
  nlohmann::json local_groups = nlohmann::json::array();
  nlohmann::json local_state = nlohmann::json::object();
  std::vector<char> has_state(params_.size(), 0);
  try {
    check_saved_layout(j);
    for (size_t g = 0; g < num_groups(); ++g) {
      local_groups.push_back({{"num_params", inner_->params(g).size()},
                              {"options", j.at("param_groups")[g].at("options")}});
    }
    for (const auto& [key, s] : j.at("state").items()) {
      size_t i = 0;
      DTRAIN_CHECK(optim::parse_parameter_index(key, i) && i < params_.size(), me,
                   ": saved state for parameter '", key, "' but this optimizer has ",
                   params_.size(), " parameters");
      has_state[i] = 1;
      if (piece_of_[i] >= 0) local_state[std::to_string(piece_of_[i])] = s;
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string(me) + ": malformed optimizer state_dict (" + e.what() +
                "); pass the object state_dict() wrote");
  }

  NoGradGuard no_grad;
  std::vector<std::pair<std::string, Tensor>> local_tensors;
  for (const auto& [full, t] : saved.tensors) {
    size_t i = 0;
    std::string key;
    DTRAIN_CHECK(optim::parse_state_tensor_name(full, i, key), me, ": saved tensor '", full,
                 "' is not named state.<index>.<name>");
    DTRAIN_CHECK(i < params_.size() && has_state[i], me, ": saved tensor '", full,
                 "' has no matching parameter state in the saved scalars");
    DTRAIN_CHECK(t.defined() && t.shape() == params_[i].shape(), me, ": saved tensor '", full,
                 "' is ", t.defined() ? shape_str(t.shape()) : std::string("undefined"),
                 " but parameter ", i, " is ", shape_str(params_[i].shape()),
                 "; the model does not match the checkpoint");
    if (piece_of_[i] < 0) continue;
    const Piece& p = pieces_[static_cast<size_t>(piece_of_[i])];
    local_tensors.emplace_back("state." + std::to_string(piece_of_[i]) + "." + key,
                               t.reshape({t.numel()}).narrow(0, p.param_offset, p.value.numel()));
  }
  inner_->load_state_dict(
      {std::move(local_tensors),
       {{"optimizer", me}, {"param_groups", local_groups}, {"state", local_state}}});
}

nlohmann::json ZeroRedundancyOptimizer::group_options_json(size_t group) const {
  return inner_->state_dict().scalars.at("param_groups").at(group).at("options");
}

void ZeroRedundancyOptimizer::update(size_t, Tensor&, const Tensor&, optim::ParamState&) {
  throw Error(std::string(kWho) + "::update is not used: step() steps the shards");
}

void ZeroRedundancyOptimizer::set_group_options_json(const std::vector<nlohmann::json>&) {
  throw Error(std::string(kWho) +
              "::set_group_options_json is not used: load_state_dict() loads the shards");
}

}  // namespace dtrain::dist
