// Graph nodes. Every differentiable op has one output; its node maps the gradient of that output to
// one gradient per input (an undefined Tensor where an input needs none). Leaves that require grad get
// an AccumulateGrad node, shared by every use of that leaf, so the leaf's gradient is final exactly
// when that node runs: that is the moment the post-accumulate hooks (and so DDP's buckets) fire.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/profiler/module_scope.h"
#include "core/tensor/tensor.h"

namespace dtrain::autograd {

// Receives d(loss)/d(output) and which inputs need a gradient; returns one gradient per input.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output,
                                                     const std::vector<bool>& needs_grad)>;

class Node {
 public:
  explicit Node(std::string name);
  virtual ~Node() = default;
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  // Frees what backward saved (called after it ran unless retain_graph).
  virtual void release() {}
  const std::string& name() const { return name_; }
  uint64_t sequence_nr() const { return sequence_nr_; }
  // One entry per input: the node that receives that input's gradient, or null.
  std::vector<std::shared_ptr<Node>> next;
  // The shape and dtype each input had, so gradients are checked and summed to the right shape.
  std::vector<Shape> input_shapes;
  // The module whose forward made this node, set only while the profiler records: the backward
  // engine groups its trace events by it (core/profiler/module_scope.h).
  profiler::ModuleFramePtr module_frame;

 private:
  std::string name_;
  uint64_t sequence_nr_;
};

class FunctionNode : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : Node(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override;
  void release() override;

 private:
  BackwardFn fn_;
  std::vector<bool> needs_grad_;
  bool released_ = false;
  friend Tensor record(const char*, const std::vector<Tensor>&, const Tensor&, BackwardFn);
};

class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
      : Node("AccumulateGrad"), leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override;

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// The node that accumulates into `leaf` (created once, then shared).
std::shared_ptr<Node> grad_accumulator(const Tensor& leaf);

// Called by every op after computing `output` from `inputs`: when grad mode is on and an input requires
// grad, attaches a FunctionNode running `backward` and marks the output as requiring grad. Returns output.
// `backward` must not capture `output` itself (that would be a cycle); capture output.detach() instead.
// The vector form serves ops whose number of inputs is known only at run time (cat, stack).
Tensor record(const char* op, const std::vector<Tensor>& inputs, const Tensor& output,
              BackwardFn backward);
Tensor record(const char* op, std::initializer_list<Tensor> inputs, const Tensor& output,
              BackwardFn backward);
bool any_requires_grad(std::initializer_list<Tensor> inputs);

// Runs the backward pass from `root` (see Tensor::backward).
void backward(const Tensor& root, const Tensor& gradient, bool retain_graph);

}  // namespace dtrain::autograd
