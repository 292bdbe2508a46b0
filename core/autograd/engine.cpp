// The backward engine. Nodes run in reverse topological order: a node runs once every node that feeds
// it a gradient has run, and among ready nodes the most recently created runs first (the reverse of the
// forward order). Leaves' AccumulateGrad nodes therefore run as soon as their last use is done, which
// is what lets DDP start a bucket's all-reduce while the rest of backward is still running.
#include <queue>
#include <unordered_map>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/elementwise.h"
#include "core/profiler/module_scope.h"

namespace dtrain::autograd {

namespace {
struct LaterFirst {
  bool operator()(const Node* a, const Node* b) const {
    return a->sequence_nr() < b->sequence_nr();
  }
};
}  // namespace

void backward(const Tensor& root, const Tensor& gradient, bool retain_graph) {
  DTRAIN_CHECK(root.defined(), "backward() on an undefined tensor");
  DTRAIN_CHECK(root.requires_grad(),
               "backward() on a tensor that does not require grad: no input of the computation "
               "that produced it requires grad (or it was computed under NoGradGuard)");
  Tensor grad = gradient;
  if (!grad.defined()) {
    DTRAIN_CHECK(root.numel() == 1, "backward() on a non-scalar tensor of shape ",
                 shape_str(root.shape()),
                 " needs a gradient of that shape; reduce it to a scalar (e.g. sum) or pass one");
    grad = Tensor::ones(root.shape(), root.dtype(), root.device());
  }
  DTRAIN_CHECK(grad.shape() == root.shape(), "backward(): gradient of shape ",
               shape_str(grad.shape()), " does not match the tensor's shape ",
               shape_str(root.shape()));

  NoGradGuard no_grad;  // gradients are computed with ops, but not recorded
  // The trace (while the profiler records): one event for the whole pass, and inside it one per
  // module call, following the frames the nodes were created under.
  const bool profiling = profiler::recording();
  profiler::Scope whole_pass("backward", "backward");
  profiler::BackwardScopes module_events;
  std::shared_ptr<Node> root_node = root.grad_fn() ? root.grad_fn() : grad_accumulator(root);

  // Count, for every node reachable from the root, how many edges deliver a gradient into it.
  std::unordered_map<Node*, int> dependencies;
  std::vector<Node*> stack{root_node.get()};
  dependencies[root_node.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& next : n->next) {
      if (!next) continue;
      auto [it, inserted] = dependencies.try_emplace(next.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(next.get());
    }
  }

  std::unordered_map<Node*, Tensor> pending;  // gradient summed so far for each node
  std::priority_queue<Node*, std::vector<Node*>, LaterFirst> ready;
  pending[root_node.get()] = grad;
  ready.push(root_node.get());
  // Nodes must outlive their execution even if the graph drops them (release() frees captures).
  std::vector<std::shared_ptr<Node>> keep_alive{root_node};

  while (!ready.empty()) {
    Node* node = ready.top();
    ready.pop();
    Tensor node_grad;
    if (auto it = pending.find(node); it != pending.end()) {
      node_grad = std::move(it->second);
      pending.erase(it);
    }
    // A node that no gradient reached (every path into it gave none) does not run, but it still
    // counts as done for the nodes it feeds, so they become ready.
    std::vector<Tensor> input_grads;
    if (node_grad.defined()) {
      if (profiling) module_events.enter(node->module_frame);
      input_grads = node->apply(node_grad);
    }
    if (!retain_graph) node->release();
    for (size_t i = 0; i < node->next.size(); ++i) {
      const std::shared_ptr<Node>& next = node->next[i];
      if (!next) continue;
      Tensor g = i < input_grads.size() ? input_grads[i] : Tensor();
      if (g.defined()) {
        DTRAIN_CHECK(g.shape() == node->input_shapes[i], "backward of '", node->name(),
                     "' returned a gradient of shape ", shape_str(g.shape()), " for input ", i,
                     " of shape ", shape_str(node->input_shapes[i]));
        Tensor& slot = pending[next.get()];
        slot = slot.defined() ? add(slot, g) : g;
      }
      if (--dependencies[next.get()] == 0) {
        keep_alive.push_back(next);
        ready.push(next.get());
      }
    }
  }
}

}  // namespace dtrain::autograd
