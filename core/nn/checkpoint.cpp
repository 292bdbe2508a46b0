#include "core/nn/checkpoint.h"

#include "core/amp/autocast.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/tensor/random.h"

namespace dtrain::nn {

namespace {

// Autograd on for a scope (the backward engine runs nodes with it off).
class GradOn {
 public:
  GradOn() : previous_(autograd::grad_enabled()) { autograd::set_grad_enabled(true); }
  ~GradOn() { autograd::set_grad_enabled(previous_); }
  GradOn(const GradOn&) = delete;
  GradOn& operator=(const GradOn&) = delete;

 private:
  bool previous_;
};

// Replays a saved state of the default generator for a scope, then restores the state it found.
class ReplayRng {
 public:
  explicit ReplayRng(const std::array<uint64_t, 6>& saved) : now_(default_generator().state()) {
    default_generator().set_state(saved);
  }
  ~ReplayRng() { default_generator().set_state(now_); }
  ReplayRng(const ReplayRng&) = delete;
  ReplayRng& operator=(const ReplayRng&) = delete;

 private:
  std::array<uint64_t, 6> now_;
};

}  // namespace

Tensor checkpoint(CheckpointFn fn, const std::vector<Tensor>& inputs,
                  const std::vector<Tensor>& params) {
  std::vector<Tensor> edges = inputs;
  edges.insert(edges.end(), params.begin(), params.end());
  bool any = false;
  for (const Tensor& t : edges) any = any || (t.defined() && t.requires_grad());
  if (!autograd::grad_enabled() || !any) return fn(inputs);

  const std::array<uint64_t, 6> rng = default_generator().state();
  const bool cast = amp::autocast_enabled();
  const DType cast_dtype = cast ? amp::autocast_dtype() : DType::bf16;
  Tensor out;
  {
    NoGradGuard no_grad;
    out = fn(inputs).detach();  // detached: fn may return an input itself
  }
  std::vector<Tensor> saved;
  std::vector<bool> input_needs;
  for (const Tensor& x : inputs) {
    saved.push_back(x.defined() ? x.detach() : x);
    input_needs.push_back(x.defined() && x.requires_grad());
  }
  const size_t num_edges = edges.size();
  return autograd::record(
      "checkpoint", edges, out,
      [fn = std::move(fn), saved, input_needs, rng, cast, cast_dtype, num_edges](
          const Tensor& grad_out, const std::vector<bool>& needs) {
        (void)needs;  // the parameters' gradients accumulate inside; the inputs' are returned
        std::vector<Tensor> leaves;
        for (size_t i = 0; i < saved.size(); ++i) {
          Tensor x = saved[i].defined() ? saved[i].detach() : saved[i];
          if (input_needs[i]) x.set_requires_grad(true);
          leaves.push_back(x);
        }
        Tensor recomputed;
        {
          GradOn grad_on;
          ReplayRng replay(rng);
          amp::AutocastGuard autocast(cast_dtype, cast);
          recomputed = fn(leaves);
        }
        if (recomputed.requires_grad()) autograd::backward(recomputed, grad_out, false);
        std::vector<Tensor> grads(num_edges);
        for (size_t i = 0; i < leaves.size(); ++i) {
          if (input_needs[i]) grads[i] = leaves[i].grad();
        }
        return grads;
      });
}

Tensor maybe_checkpoint(bool enabled, const Module& module, const std::vector<Tensor>& inputs,
                        CheckpointFn fn) {
  if (!enabled || !autograd::grad_enabled()) return fn(inputs);
  return checkpoint(std::move(fn), inputs, module.parameters());
}

}  // namespace dtrain::nn
