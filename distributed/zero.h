// ZeRO stage 1 (Rajbhandari et al., 2020): the optimizer state is sharded over the ranks.
//
// The trainable parameters, taken in order, are laid end to end in one flat f32 vector of T elements,
// padded to P = N * ceil(T / N) and cut into N equal chunks; rank r owns chunk r. For every parameter
// whose range meets the chunk, the rank keeps a 1-D "piece" - a copy of that part of the parameter -
// and the real optimizer (built by the caller's factory) updates only these pieces, so its state
// (Adam's m and v: 2T floats) costs 2T/N per rank. One step:
//
//   1. the local gradients, flattened, are reduce-scattered with avg: rank r receives chunk r of the
//      mean gradient (replacing DDP's all-reduce; no DDP is needed for the gradients);
//   2. the inner optimizer steps the pieces;
//   3. the updated chunks are all-gathered and copied back into the parameters.
//
// Elementwise optimizers (SGD, Adam(W), Adagrad, RMSprop, Adamax, NAdam) treat every element
// independently given its group's options, so this is the same update as the unsharded optimizer, and
// a piece keeps its parameter's group. A parameter that got no gradient on any rank is skipped, as the
// unsharded optimizer would skip it.
//
// The parameters must start equal on every rank: call check_same_model + broadcast_module
// (distributed/model_sync.h) first. One step, with f16 loss scaling:
//
//   scaler.scale(loss).backward();          // local gradients only: no DDP
//   scaler.unscale(params);                 // BEFORE the reduce-scatter: it divides the local .grad
//   zero.clip_grad_norm(max_norm);          // reduce-scatters, then clips by the global norm
//   scaler.step(params, [&] { zero.step(); });
//   zero.zero_grad();
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/optim/optimizer.h"
#include "distributed/process_group.h"

namespace dtrain::dist {

class ZeroRedundancyOptimizer {
 public:
  // Builds the inner optimizer over this rank's pieces, one vector per parameter group (a group may
  // be empty on a rank whose chunk misses it).
  using Factory =
      std::function<std::unique_ptr<optim::Optimizer>(std::vector<std::vector<Tensor>> groups)>;

  ZeroRedundancyOptimizer(std::vector<std::vector<Tensor>> param_groups,
                          std::shared_ptr<ProcessGroup> pg, Factory make_optimizer);
  // One group.
  ZeroRedundancyOptimizer(std::vector<Tensor> params, std::shared_ptr<ProcessGroup> pg,
                          const std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>&
                              make_optimizer);

  // Reduce-scatters the gradients (once per step; step() calls it when the caller did not).
  void reduce_gradients();
  // The L2 norm of the mean gradient over all parameters; scales it by max_norm / (norm + 1e-6) when
  // that is below 1, as optim::clip_grad_norm does. Returns the norm before clipping.
  double clip_grad_norm(double max_norm);
  // Steps the pieces and all-gathers the parameters.
  void step();
  void zero_grad(bool set_to_none = true);

  optim::Optimizer& local_optimizer() { return *inner_; }
  const std::vector<Tensor>& parameters() const { return params_; }
  // Elements of the flat vector each rank owns, and how many of them are optimizer state here.
  int64_t chunk_numel() const { return chunk_; }
  int64_t local_numel() const;

 private:
  struct Piece {
    size_t param;        // index into params_
    int64_t param_offset;  // first element of the parameter it covers
    int64_t chunk_offset;  // where it sits in this rank's chunk
    Tensor value;          // 1-D leaf the inner optimizer updates
  };

  std::shared_ptr<ProcessGroup> pg_;
  std::vector<Tensor> params_;
  std::vector<int64_t> flat_offset_;  // per parameter
  int64_t chunk_ = 0;
  std::vector<Piece> pieces_;
  std::unique_ptr<optim::Optimizer> inner_;
  Tensor grad_chunk_;
  bool reduced_ = false;
  std::vector<char> globally_has_grad_;
};

}  // namespace dtrain::dist
