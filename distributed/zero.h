// ZeRO stage 1 (Rajbhandari et al., 2020): the optimizer state is sharded over the ranks. Like
// PyTorch's ZeroRedundancyOptimizer it is an optim::Optimizer like any other, so the training loop
// has no branch for it:
//
//   DistributedDataParallel ddp(model, pg);  // gradients averaged during backward, as usual
//   std::unique_ptr<optim::Optimizer> opt = std::make_unique<ZeroRedundancyOptimizer>(
//       groups, pg, [](std::vector<std::vector<Tensor>> pieces) {  // grouped like `groups`
//         return std::make_unique<optim::AdamW>(...);  // the optimizer of a plain run, over the pieces
//       });
//   ...
//   scaler.scale(loss).backward();
//   scaler.unscale(opt->parameters());
//   optim::clip_grad_norm_tensor(opt->parameters(), max_norm);   // the full, averaged gradients
//   scaler.step(opt->parameters(), [&] { opt->step(); });
//   opt->zero_grad();
//
// The parameters, taken in group order, are laid end to end in one flat f32 vector of T elements,
// padded to N * ceil(T / N) and cut into N equal chunks; rank r owns chunk r. For every parameter
// whose range meets the chunk, the rank keeps a 1-D "piece" - a copy of that part of the parameter -
// and the inner optimizer (built by the caller's factory over the pieces, grouped like the
// parameters) updates only the pieces. step():
//
//   1. copies the owned part of each parameter into its piece (so weights loaded into the model since
//      the last step are what gets updated), and gives the piece the owned part of the gradient (a
//      view) as its .grad;
//   2. steps the inner optimizer;
//   3. all-gathers the updated chunks and copies them back into the parameters.
//
// Elementwise optimizers (SGD, Adam(W), Adagrad, RMSprop, Adamax, NAdam) treat every element
// independently given its group's options, so this is the unsharded optimizer's update. A parameter
// without a gradient (after DDP, the same on every rank) or frozen is skipped as the unsharded
// optimizer skips it. The gradients must be the same on every rank (DDP's averaged ones), and so
// must the parameters at the start: DDP broadcasts rank 0's.
//
// Cost per rank, with T parameters and N ranks:
//   memory: the inner optimizer's state over ~T/N elements (Adam: 2T/N floats instead of 2T), plus
//           the pieces (T/N) and, during step(), the gathered flat vector (T);
//   communication per step: DDP's all-reduce of the gradients (2 (N-1)/N T elements per rank, ring)
//           plus one all-gather of the parameters ((N-1)/N T), as in PyTorch's ZeroRedundancyOptimizer.
//
// Checkpoints: state_dict() is a collective (every rank must call it, in the same order as the other
// collectives) that gathers the shards into exactly what the unsharded optimizer of the same kind over
// the same groups returns - the same "state.<i>.<name>" tensors and JSON (name() is the inner
// optimizer's) - on every rank. load_state_dict() takes such a full state, written by a ZeRO run at any
// world size or by a plain run, and keeps this rank's part; it is not a collective. So a run resumes
// with or without ZeRO, and at another world size. Gathering costs one exchange of the per-parameter
// JSON and one all-gather of T elements per kind of state tensor (Adam: exp_avg, exp_avg_sq), and the
// full state is held on every rank until the caller drops it: checkpoints only.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/optim/optimizer.h"
#include "distributed/process_group.h"

namespace dtrain::dist {

class ZeroRedundancyOptimizer : public optim::Optimizer {
 public:
  // Builds the inner optimizer over this rank's pieces, one vector per parameter group (a group may
  // be empty on a rank whose chunk misses it).
  using Factory =
      std::function<std::unique_ptr<optim::Optimizer>(std::vector<std::vector<Tensor>> groups)>;

  ZeroRedundancyOptimizer(std::vector<std::vector<Tensor>> param_groups,
                          std::shared_ptr<ProcessGroup> pg, Factory make_optimizer);
  // One group.
  ZeroRedundancyOptimizer(
      std::vector<Tensor> params, std::shared_ptr<ProcessGroup> pg,
      const std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>& make_optimizer);

  // The inner optimizer's name ("adamw", ...), so checkpoints are interchangeable with plain runs.
  const char* name() const override;
  // Collective: every rank calls it with the same (averaged) gradients.
  void step() override;
  // Collective; see the header comment.
  optim::OptimizerState state_dict() const override;
  void load_state_dict(const optim::OptimizerState& saved) override;

  double lr(size_t group) const override { return inner_->lr(group); }
  void set_lr(size_t group, double lr) override { inner_->set_lr(group, lr); }
  double weight_decay(size_t group) const override { return inner_->weight_decay(group); }

  // The optimizer over this rank's pieces (its state is this rank's shard), to inspect.
  const optim::Optimizer& local_optimizer() const { return *inner_; }
  // Elements of the flat vector each rank owns, and how many of them are parameters here (the
  // pieces' total; the last ranks' chunks hold the padding).
  int64_t chunk_numel() const { return chunk_; }
  int64_t local_numel() const;

 protected:
  // Not used: step() and load_state_dict() are overridden and never reach them.
  void update(size_t group, Tensor& param, const Tensor& grad, optim::ParamState& state) override;
  void set_group_options_json(const std::vector<nlohmann::json>& options) override;
  // The inner optimizer's options for `group`.
  nlohmann::json group_options_json(size_t group) const override;

 private:
  struct Piece {
    size_t param;          // index into params_ (counted across the groups)
    int64_t param_offset;  // first element of the parameter it covers
    int64_t chunk_offset;  // where it sits in this rank's chunk
    Tensor value;  // 1-D leaf the inner optimizer updates; its index there is its index here
  };

  std::shared_ptr<ProcessGroup> pg_;
  std::vector<Tensor> params_;        // all groups, in index order
  std::vector<int64_t> flat_offset_;  // per parameter
  int64_t chunk_ = 0;
  std::vector<Piece> pieces_;
  std::vector<int64_t> piece_of_;  // per parameter: its piece here, or -1
  std::unique_ptr<optim::Optimizer> inner_;
};

}  // namespace dtrain::dist
