#include "core/autograd/node.h"

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"

namespace dtrain::autograd {

namespace {
std::atomic<uint64_t> g_next_sequence_nr{0};
}

Node::Node(std::string name) : name_(std::move(name)), sequence_nr_(g_next_sequence_nr++) {}

std::vector<Tensor> FunctionNode::apply(const Tensor& grad_output) {
  DTRAIN_CHECK(!released_, "backward through the graph of '", name(),
               "' a second time: its saved tensors were freed after the first backward; pass "
               "retain_graph=true to the first backward if you need to run it again");
  return fn_(grad_output, needs_grad_);
}

void FunctionNode::release() {
  fn_ = nullptr;  // drops the captured (saved) tensors
  released_ = true;
}

std::vector<Tensor> AccumulateGrad::apply(const Tensor& grad_output) {
  Tensor leaf(leaf_);
  if (!leaf.grad().defined()) {
    // One fresh contiguous buffer (a dtype conversion makes one too): the incoming gradient may be a
    // view of, or the same tensor as, a gradient another branch of the graph still uses, and later
    // accumulation writes into .grad in place.
    const Tensor& g = grad_output;
    leaf.set_grad(g.dtype() != leaf.dtype() ? g.to(leaf.dtype()) : g.clone());
  } else {
    Tensor acc = leaf.grad();
    add_(acc, grad_output);  // converts a gradient of another dtype on the fly
  }
  for (const auto& hook : leaf_->post_accumulate_hooks) hook(leaf);
  return {};
}

std::shared_ptr<Node> grad_accumulator(const Tensor& leaf) {
  std::shared_ptr<Node> acc = leaf.impl()->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(leaf.impl_ptr());
    leaf.impl()->grad_accumulator = acc;
  }
  return acc;
}

namespace {
template <class Range>
bool any_input_requires_grad(const Range& inputs) {
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}
}  // namespace

bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  return any_input_requires_grad(inputs);
}

Tensor record(const char* op, const std::vector<Tensor>& inputs, const Tensor& output,
              BackwardFn backward) {
  if (!grad_enabled() || !any_input_requires_grad(inputs)) return output;
  auto node = std::make_shared<FunctionNode>(op, std::move(backward));
  if (profiler::recording()) node->module_frame = profiler::current_module_frame();
  node->needs_grad_.reserve(inputs.size());
  node->input_shapes.reserve(inputs.size());
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    bool needs = t.defined() && t.requires_grad();
    node->needs_grad_.push_back(needs);
    node->input_shapes.push_back(t.defined() ? t.shape() : Shape{});
    if (!needs) {
      node->next.push_back(nullptr);
    } else if (t.grad_fn()) {
      node->next.push_back(t.grad_fn());
    } else {
      node->next.push_back(grad_accumulator(t));
    }
  }
  output.impl()->requires_grad = true;
  output.impl()->grad_fn = std::move(node);
  return output;
}

Tensor record(const char* op, std::initializer_list<Tensor> inputs, const Tensor& output,
              BackwardFn backward) {
  // Most calls run with nothing to record (no grad mode, or no input requiring grad): decide that
  // before copying the inputs into a vector.
  if (!grad_enabled() || !any_input_requires_grad(inputs)) return output;
  return record(op, std::vector<Tensor>(inputs), output, std::move(backward));
}

}  // namespace dtrain::autograd
