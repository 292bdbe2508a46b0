#include "distributed/zero.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace dtrain::dist {

ZeroRedundancyOptimizer::ZeroRedundancyOptimizer(std::vector<std::vector<Tensor>> param_groups,
                                                 std::shared_ptr<ProcessGroup> pg,
                                                 Factory make_optimizer)
    : pg_(std::move(pg)) {
  DTRAIN_CHECK(pg_ != nullptr, "ZeroRedundancyOptimizer: the process group is null");
  // Lay the parameters end to end and find which parts fall in this rank's chunk.
  std::vector<size_t> group_of;
  int64_t total = 0;
  for (size_t g = 0; g < param_groups.size(); ++g) {
    for (const Tensor& p : param_groups[g]) {
      DTRAIN_CHECK(p.defined() && p.dtype() == DType::f32, "ZeroRedundancyOptimizer: parameter ",
                   params_.size(), " is ", p.defined() ? dtype_name(p.dtype()) : "undefined",
                   "; ZeRO-1 shards f32 master weights");
      DTRAIN_CHECK(p.device() == pg_->device(), "ZeroRedundancyOptimizer: parameter ", params_.size(),
                   " is on ", p.device().str(), " but the ", pg_->backend_name(),
                   " process group serves ", pg_->device().str(), " tensors");
      params_.push_back(p);
      group_of.push_back(g);
      flat_offset_.push_back(total);
      total += p.numel();
    }
  }
  const int64_t n = pg_->size();
  chunk_ = (total + n - 1) / n;
  const int64_t lo = pg_->rank() * chunk_, hi = lo + chunk_;

  NoGradGuard no_grad;
  std::vector<std::vector<Tensor>> piece_groups(param_groups.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t a = std::max(lo, flat_offset_[i]);
    const int64_t b = std::min(hi, flat_offset_[i] + params_[i].numel());
    if (a >= b) continue;
    Piece piece{i, a - flat_offset_[i], a - lo, Tensor::empty({b - a}, DType::f32, pg_->device())};
    piece.value.copy_(params_[i].reshape({params_[i].numel()}).narrow(0, piece.param_offset, b - a));
    piece.value.set_requires_grad(true);
    piece_groups[group_of[i]].push_back(piece.value);
    pieces_.push_back(std::move(piece));
  }
  inner_ = make_optimizer(std::move(piece_groups));
  DTRAIN_CHECK(inner_ != nullptr, "ZeroRedundancyOptimizer: the optimizer factory returned null");
  grad_chunk_ = Tensor::zeros({chunk_}, DType::f32, pg_->device());
  globally_has_grad_.assign(params_.size(), 0);
}

ZeroRedundancyOptimizer::ZeroRedundancyOptimizer(
    std::vector<Tensor> params, std::shared_ptr<ProcessGroup> pg,
    const std::function<std::unique_ptr<optim::Optimizer>(std::vector<Tensor>)>& make_optimizer)
    : ZeroRedundancyOptimizer(std::vector<std::vector<Tensor>>{std::move(params)}, std::move(pg),
                              [make_optimizer](std::vector<std::vector<Tensor>> groups) {
                                return make_optimizer(std::move(groups.at(0)));
                              }) {}

int64_t ZeroRedundancyOptimizer::local_numel() const {
  int64_t n = 0;
  for (const Piece& p : pieces_) n += p.value.numel();
  return n;
}

void ZeroRedundancyOptimizer::reduce_gradients() {
  if (reduced_) return;
  NoGradGuard no_grad;
  Tensor flat = Tensor::zeros({chunk_ * pg_->size()}, DType::f32, pg_->device());
  std::vector<int32_t> has_grad(params_.size(), 0);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    has_grad[i] = 1;
    flat.narrow(0, flat_offset_[i], g.numel()).copy_(g.reshape({g.numel()}));
  }
  // Which parameters got a gradient anywhere: those that did not are skipped, not stepped with zeros.
  Tensor any = Tensor::from_vector(has_grad, {static_cast<int64_t>(has_grad.size())}, DType::i32,
                                   pg_->device());
  WorkPtr flags = pg_->all_reduce(any, ReduceOp::max);
  WorkPtr grads = pg_->reduce_scatter(grad_chunk_, flat, ReduceOp::avg);
  flags->wait();
  grads->wait();
  std::vector<int32_t> used = any.to_vector<int32_t>();
  for (size_t i = 0; i < used.size(); ++i) globally_has_grad_[i] = used[i] != 0;
  for (Piece& p : pieces_) {
    if (globally_has_grad_[p.param]) {
      p.value.set_grad(grad_chunk_.narrow(0, p.chunk_offset, p.value.numel()));
    } else {
      p.value.set_grad(Tensor());
    }
  }
  reduced_ = true;
}

double ZeroRedundancyOptimizer::clip_grad_norm(double max_norm) {
  reduce_gradients();
  NoGradGuard no_grad;
  // The chunks partition the flat mean gradient (padding is zero), so the squared norms add up.
  const double local = sum(square(grad_chunk_)).item();
  const double norm = std::sqrt(all_reduce_value(*pg_, local, ReduceOp::sum));
  const double coef = max_norm / (norm + 1e-6);
  if (!(coef >= 1.0)) mul_(grad_chunk_, coef);  // NaN coef propagates, like clip_grad_norm
  return norm;
}

void ZeroRedundancyOptimizer::step() {
  reduce_gradients();
  NoGradGuard no_grad;
  // Re-read the pieces from the parameters, so a checkpoint loaded into the model since the last step
  // is what gets updated.
  for (Piece& p : pieces_) {
    const Tensor& param = params_[p.param];
    p.value.copy_(param.reshape({param.numel()}).narrow(0, p.param_offset, p.value.numel()));
  }
  inner_->step();

  Tensor chunk = Tensor::zeros({chunk_}, DType::f32, pg_->device());
  for (const Piece& p : pieces_) chunk.narrow(0, p.chunk_offset, p.value.numel()).copy_(p.value);
  Tensor flat = Tensor::empty({chunk_ * pg_->size()}, DType::f32, pg_->device());
  pg_->all_gather(flat, chunk)->wait();
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor param = params_[i];
    param.copy_(flat.narrow(0, flat_offset_[i], param.numel()).view(param.shape()));
  }
  reduced_ = false;
}

void ZeroRedundancyOptimizer::zero_grad(bool set_to_none) {
  for (Tensor& p : params_) {
    if (!p.grad().defined()) continue;
    if (set_to_none) {
      p.set_grad(Tensor());
    } else {
      Tensor g = p.grad();
      g.zero_();
    }
  }
  for (Piece& p : pieces_) p.value.set_grad(Tensor());
  reduced_ = false;
}

}  // namespace dtrain::dist
