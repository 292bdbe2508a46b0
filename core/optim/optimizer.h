// Optimizer: updates parameters from their gradients, one parameter group at a time.
//
// A parameter group is a list of parameters with its own lr, weight_decay and the optimizer's other
// hyper-parameters. Groups are how one model trains parts at different rates; for example,
// fine-tuning a pretrained backbone at a tenth of the head's learning rate:
//
//   AdamWOptions head{.lr = 1e-3, .weight_decay = 0.05};
//   AdamWOptions backbone = head;
//   backbone.lr = head.lr / 10;
//   AdamW opt({{backbone_params, backbone}, {head_params, head}});
//   LrScheduler sched(opt, warmup_cosine(500, 10000));  // scales both groups, keeping the ratio
//
// step() runs with autograd off and skips a parameter that is frozen (requires_grad false) or has
// no gradient this step: it is not updated and its state (including its step count) does not
// advance, as in PyTorch. The update rules are PyTorch 1.13's (torch.optim, single-tensor path),
// written with the in-place ops of core/ops, so they run on whichever device the parameter lives
// on. Optimizer state lives beside each parameter, on its device and in its dtype (f32 master
// weights; f64 is accepted too, f16/bf16 parameters are refused). SGD, Adam and AdamW also have a
// fused path (set_fused(true), as torch's fused=True): each group's parameters of one device and
// dtype are updated by one kernel call (one CUDA launch) with the same arithmetic, equal to the
// per-tensor path to rounding (tests/core/optim/test_fused_optim.cpp states the tolerance).
//
// state_dict() gives named tensors "state.<i>.<name>" (i = the parameter's index counted across the
// groups in order, name as in PyTorch: exp_avg, exp_avg_sq, momentum_buffer, ...) plus a JSON
// object with the optimizer's name, each group's options and each parameter's step count and scalar
// state. load_state_dict() restores both exactly, so training resumes on the same trajectory.
//
// An optimizer that keeps its state elsewhere - dist::ZeroRedundancyOptimizer (distributed/zero.h),
// which shards it over the ranks and steps an inner optimizer - derives from Optimizer too and
// overrides step(), state_dict() and load_state_dict(); the training loop and LrScheduler see only
// this interface, so they need no branch for it.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"

namespace dtrain::optim {

// One parameter's optimizer state.
struct ParamState {
  int64_t step = 0;  // updates applied so far (incremented before the update that uses it)
  std::map<std::string, Tensor> tensors;  // exp_avg, momentum_buffer, ... (the parameter's shape)
  std::map<std::string, double> scalars;  // per-parameter numbers, e.g. NAdam's mu_product

  // The state tensor `name`, created filled with `value` (shape, dtype and device of `param`) the
  // first time it is asked for.
  Tensor& tensor_or_fill(const std::string& name, const Tensor& param, double value = 0.0);
};

// What a checkpoint saves: the tensors by name and everything else as JSON. The tensors share
// storage with the live state; copy them before stepping again if a snapshot is needed.
struct OptimizerState {
  std::vector<std::pair<std::string, Tensor>> tensors;
  nlohmann::json scalars;
};

// A parameter index as state_dict() writes it (decimal, at most 9 digits); false on anything else.
bool parse_parameter_index(const std::string& digits, size_t& index);
// Splits a state_dict() tensor name "state.<i>.<name>" into (i, name); false for any other form.
bool parse_state_tensor_name(const std::string& full, size_t& index, std::string& key);

// One parameter of a group's update this step (Optimizer::update_group).
struct PendingUpdate {
  Tensor* param;
  Tensor grad;  // converted to the parameter's dtype
  ParamState* state;
};

// The pending updates split for fused kernel calls: lists of one device and dtype (in first-seen
// order), and the parameters the fused kernels do not take (not contiguous), for the per-tensor path.
struct FusedLists {
  std::vector<std::vector<const PendingUpdate*>> lists;
  std::vector<const PendingUpdate*> per_tensor;
};
FusedLists split_for_fused(const std::vector<PendingUpdate>& pending);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual const char* name() const = 0;  // "sgd", "adam", ... (as in a checkpoint)

  // One update of every parameter that has a gradient. A gradient in another floating dtype (say
  // bf16 from a mixed-precision backward) is converted to the parameter's dtype first.
  virtual void step();
  // Clears every parameter's gradient: to undefined by default (the next backward allocates fresh
  // ones, and step() skips a parameter that got none), or filled with zeros in place when
  // set_to_none is false (keeps the memory, e.g. when gradients are views into a DDP bucket).
  void zero_grad(bool set_to_none = true);

  size_t num_groups() const { return groups_.size(); }
  const std::vector<Tensor>& params(size_t group) const;
  std::vector<Tensor> parameters() const;  // all groups, in index order
  virtual double lr(size_t group) const = 0;
  virtual void set_lr(size_t group, double lr) = 0;
  virtual double weight_decay(size_t group) const = 0;

  // The state of parameter `index` (counted across groups), or nullptr before its first update.
  // Only state this object holds: an optimizer that overrides step() to keep it elsewhere (ZeRO's
  // shards) has none here, and its state_dict() is the way to read it.
  const ParamState* state(size_t index) const;

  // The fused path: each group's parameters of one device and dtype updated by one kernel call.
  // An execution choice, not state: state_dict() does not record it. Throws a dtrain::Error when
  // turned on for an optimizer without one (only SGD, Adam and AdamW have it).
  void set_fused(bool on);
  bool fused() const { return fused_; }
  virtual bool has_fused_path() const { return false; }

  virtual OptimizerState state_dict() const;
  // Restores group options and state from state_dict() of an optimizer of the same kind over
  // parameters of the same shapes, grouped the same way. State tensors are copied onto each
  // parameter's device and dtype. All checks run before anything changes.
  virtual void load_state_dict(const OptimizerState& saved);

 protected:
  Optimizer() = default;
  // The checks load_state_dict makes of a saved state's JSON before reading it: the optimizer's kind,
  // the number of groups and each group's number of parameters. Throws dtrain::Error naming the first
  // difference.
  void check_saved_layout(const nlohmann::json& scalars) const;
  // Appends a group's parameters (checked: defined, f32/f64, not already in another group).
  void add_group_params(std::vector<Tensor> params);
  // Applies one update to `param` with `grad` (same shape, dtype and device); state.step is already
  // incremented. Runs under NoGradGuard. Called by Optimizer::step() only.
  virtual void update(size_t group, Tensor& param, const Tensor& grad, ParamState& state) = 0;
  // Updates a group's parameters that have gradients this step: update() on each by default; an
  // optimizer with a fused path (one kernel call for the whole list) overrides it.
  virtual void update_group(size_t group, const std::vector<PendingUpdate>& pending);
  // Used by Optimizer::state_dict() and Optimizer::load_state_dict() only.
  virtual nlohmann::json group_options_json(size_t group) const = 0;
  // Parses and sets every group's options at once, or throws and changes nothing.
  virtual void set_group_options_json(const std::vector<nlohmann::json>& options) = 0;

 private:
  std::vector<std::vector<Tensor>> groups_;
  std::vector<std::optional<ParamState>> state_;  // by parameter index
  bool fused_ = false;
};

template <class Options>
struct ParamGroup {
  std::vector<Tensor> params;
  Options options;
};

// The part of every optimizer that depends only on its options type. Options has `lr` and
// `weight_decay` members, a `static constexpr const char* kName`, a `check()` that throws
// dtrain::Error on a bad value, and nlohmann to_json / from_json.
template <class Options>
class OptimizerWithOptions : public Optimizer {
 public:
  const char* name() const override { return Options::kName; }

  // Adds a group after construction (e.g. unfreezing layers mid-training).
  void add_param_group(ParamGroup<Options> group) {
    group.options.check();
    add_group_params(std::move(group.params));
    options_.push_back(group.options);
  }
  const Options& options(size_t group) const { return options_.at(group); }
  // Changed options take effect at the next step(); call check() after editing by hand.
  Options& options(size_t group) { return options_.at(group); }

  double lr(size_t group) const override { return options_.at(group).lr; }
  void set_lr(size_t group, double lr) override { options_.at(group).lr = lr; }
  double weight_decay(size_t group) const override { return options_.at(group).weight_decay; }

 protected:
  explicit OptimizerWithOptions(std::vector<ParamGroup<Options>> groups) {
    for (auto& g : groups) add_param_group(std::move(g));
  }
  nlohmann::json group_options_json(size_t group) const override { return options_.at(group); }
  void set_group_options_json(const std::vector<nlohmann::json>& options) override {
    std::vector<Options> parsed;
    for (const auto& j : options) {
      Options o;
      try {
        o = j.get<Options>();
      } catch (const nlohmann::json::exception& e) {
        throw Error(std::string(Options::kName) + ": bad group options in state_dict (" + e.what() +
                    "); pass the state_dict this optimizer kind wrote");
      }
      o.check();
      parsed.push_back(o);
    }
    options_ = std::move(parsed);
  }

 private:
  std::vector<Options> options_;
};

// One group of `params` with `options`.
template <class Options>
std::vector<ParamGroup<Options>> single_group(std::vector<Tensor> params, const Options& options) {
  return {ParamGroup<Options>{std::move(params), options}};
}

// Shared by the update rules: `grad` + weight_decay * `param` as a new tensor (L2 regularisation as
// PyTorch adds it), or `grad` itself when weight_decay is 0.
Tensor grad_with_weight_decay(const Tensor& grad, const Tensor& param, double weight_decay);

// Exponential moving averages kept as state, updated in place in PyTorch's order of operations
// (so trajectories match its): avg = decay * avg + (1 - decay) * x, and the same with x^2 in place
// of x (the Adam family's moments, RMSprop's square_avg and grad_avg).
void update_moving_average(Tensor& avg, const Tensor& x, double decay);
void update_moving_average_of_square(Tensor& avg, const Tensor& x, double decay);

// For Options::check(): throws "<optimizer>: <option> = <value> is invalid; it must be <rule>"
// unless `ok`.
void check_option(bool ok, const char* optimizer, const char* option, double value,
                  const char* rule);

// The options the Adam family (Adam, AdamW, Adamax, NAdam) has in common: lr, eps and
// weight_decay >= 0, beta1 and beta2 in [0, 1).
template <class Options>
void check_adam_family_options(const Options& o) {
  const char* name = Options::kName;
  check_option(o.lr >= 0, name, "lr", o.lr, ">= 0");
  check_option(o.eps >= 0, name, "eps", o.eps, ">= 0");
  check_option(o.beta1 >= 0 && o.beta1 < 1, name, "beta1", o.beta1, "in [0, 1)");
  check_option(o.beta2 >= 0 && o.beta2 < 1, name, "beta2", o.beta2, "in [0, 1)");
  check_option(o.weight_decay >= 0, name, "weight_decay", o.weight_decay, ">= 0");
}

}  // namespace dtrain::optim
