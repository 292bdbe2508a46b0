// ZeRO-1 as an optim::Optimizer, under mpiexec: the sharded optimizer steps, saves and loads exactly as
// the unsharded optimizer of the same kind over the same groups does, and holds ~1/N of its state.
#include <cstdio>

#include "core/optim/optim.h"
#include "ddp_test_util.h"
#include "distributed/ddp.h"
#include "distributed/zero.h"
#include "mpi_test_main.h"

namespace dtrain {
namespace {

using test::Batch;
using test::make_batch;
using test::Mlp;

constexpr int64_t kGlobalBatch = 24;  // divisible by every world size the tests run at (1..4)
constexpr uint64_t kSeed = 7;

// Builds an optimizer over parameter groups (the plain one over the parameters, ZeRO's inner one over
// the pieces).
using Make = std::function<std::unique_ptr<optim::Optimizer>(std::vector<std::vector<Tensor>>)>;

// The groups the trainer makes: weights decayed, biases not. `unused` (no gradient, ever) sits in the
// decayed group, so an optimizer that stepped it with a zero gradient would move it.
std::vector<std::vector<Tensor>> decay_groups(const Mlp& m) {
  return {{m.fc1->weight, m.fc2->weight, m.unused->weight},
          {m.fc1->bias, m.fc2->bias, m.unused->bias}};
}

std::unique_ptr<optim::Optimizer> adamw(std::vector<std::vector<Tensor>> g) {
  return std::make_unique<optim::AdamW>(std::vector<optim::ParamGroup<optim::AdamWOptions>>{
      {g.at(0), {.lr = 1e-2, .weight_decay = 0.05}}, {g.at(1), {.lr = 1e-2, .weight_decay = 0.0}}});
}
std::unique_ptr<optim::Optimizer> sgd_momentum(std::vector<std::vector<Tensor>> g) {
  return std::make_unique<optim::SGD>(std::vector<optim::ParamGroup<optim::SGDOptions>>{
      {g.at(0), {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3}},
      {g.at(1), {.lr = 0.05, .momentum = 0.9}}});
}
std::unique_ptr<optim::Optimizer> nadam(
    std::vector<std::vector<Tensor>> g) {  // per-parameter scalars
  return std::make_unique<optim::NAdam>(std::vector<optim::ParamGroup<optim::NAdamOptions>>{
      {g.at(0), {.lr = 1e-2, .weight_decay = 0.01}}, {g.at(1), {.lr = 2e-2}}});
}
std::unique_ptr<optim::Optimizer> rmsprop_centered(
    std::vector<std::vector<Tensor>> g) {  // 3 tensors
  return std::make_unique<optim::RMSprop>(std::vector<optim::ParamGroup<optim::RMSpropOptions>>{
      {g.at(0), {.lr = 1e-2, .momentum = 0.5, .centered = true}}, {g.at(1), {.lr = 1e-2}}});
}

struct Kind {
  const char* name;
  Make make;
};
const std::vector<Kind>& kinds() {
  static const std::vector<Kind> all = {
      {"adamw", adamw}, {"sgd", sgd_momentum}, {"nadam", nadam}, {"rmsprop", rmsprop_centered}};
  return all;
}

// One training run: a model, DDP over it or not, and an optimizer (plain or ZeRO over `pg`).
struct Training {
  std::shared_ptr<Mlp> model;
  std::unique_ptr<dist::DistributedDataParallel> ddp;
  std::unique_ptr<optim::Optimizer> opt;
};

// `model_seed` differs between ranks for DDP runs (DDP must broadcast rank 0's weights); runs without
// DDP build the same weights everywhere.
Training start(const Make& make, bool zero, bool with_ddp, std::shared_ptr<dist::ProcessGroup> pg,
               uint64_t model_seed = kSeed) {
  Training r;
  r.model = test::make_mlp(model_seed, 8, 16, 4, /*with_unused=*/true);
  if (with_ddp) {
    r.ddp = std::make_unique<dist::DistributedDataParallel>(
        r.model, test::world(), dist::DDPOptions{.find_unused_parameters = true});
  }
  if (zero) {
    r.opt = std::make_unique<dist::ZeroRedundancyOptimizer>(decay_groups(*r.model), pg, make);
  } else {
    r.opt = make(decay_groups(*r.model));
  }
  return r;
}

// Steps [first, first + steps). With DDP each rank takes its rows of the global batch and DDP averages
// the gradients; without, every rank takes the whole batch (identical gradients everywhere).
void train(Training& r, int first, int steps) {
  auto pg = test::world();
  for (int step = first; step < first + steps; ++step) {
    Batch b = make_batch(step, kGlobalBatch);
    if (r.ddp) {
      const int64_t local = kGlobalBatch / pg->size();
      b = b.rows(pg->rank() * local, (pg->rank() + 1) * local);
    }
    cross_entropy(r.model->forward(b.x), b.y).backward();
    if (r.ddp) r.ddp->finish_gradient_synchronization();
    optim::clip_grad_norm_tensor(r.opt->parameters(), 0.5);  // the full gradients, as without ZeRO
    r.opt->step();
    r.opt->zero_grad();
  }
}

std::vector<float> values(const Training& r) { return test::flat_values(r.model->parameters()); }

// The largest |a - b| over two optimizer states, after checking they have the same tensor names in the
// same order, the same shapes and dtypes, and equal JSON.
double state_difference(const optim::OptimizerState& a, const optim::OptimizerState& b) {
  EXPECT_EQ(a.scalars, b.scalars) << a.scalars.dump() << "\nvs\n" << b.scalars.dump();
  EXPECT_EQ(a.tensors.size(), b.tensors.size());
  if (a.tensors.size() != b.tensors.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].first, b.tensors[i].first);
    EXPECT_EQ(a.tensors[i].second.shape(), b.tensors[i].second.shape()) << a.tensors[i].first;
    EXPECT_EQ(a.tensors[i].second.dtype(), b.tensors[i].second.dtype()) << a.tensors[i].first;
    if (a.tensors[i].second.shape() != b.tensors[i].second.shape()) return INFINITY;
    worst = std::max(worst, test::max_abs_diff(a.tensors[i].second.to_vector<float>(),
                                               b.tensors[i].second.to_vector<float>()));
  }
  return worst;
}

// Copies `from`'s parameter values into `to` (a resumed run starts from the saved weights).
void copy_weights(const Training& from, Training& to) {
  NoGradGuard no_grad;
  std::vector<Tensor> src = from.model->parameters(), dst = to.model->parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
}

// A group of one rank: ZeRO over it owns everything, i.e. "another world size" inside this job.
class OneRankGroup final : public dist::ProcessGroup {
 public:
  OneRankGroup() : ProcessGroup({}) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend_name() const override { return "one-rank"; }
  Device device() const override { return Device::cpu(); }
  dist::WorkPtr broadcast(const Tensor&, int) override { return done(); }
  dist::WorkPtr all_reduce(const Tensor&, dist::ReduceOp) override { return done(); }
  dist::WorkPtr reduce_scatter(const Tensor& out, const Tensor& in, dist::ReduceOp) override {
    Tensor(out).copy_(in);
    return done();
  }
  dist::WorkPtr all_gather(const Tensor& out, const Tensor& in) override {
    Tensor(out).copy_(in);
    return done();
  }
  dist::WorkPtr barrier() override { return done(); }
  void raw_all_reduce(const Tensor&) override {}

 private:
  struct Done final : dist::Work {
    bool is_completed() override { return true; }
    void wait() override {}
  };
  static dist::WorkPtr done() { return std::make_shared<Done>(); }
};

// ---- 1. the same trajectory as the unsharded optimizer

TEST(MpiZero, IdenticalGradientsGiveThePlainTrajectory) {
  auto pg = test::world();
  for (const Kind& kind : {kinds()[0], kinds()[1]}) {
    SCOPED_TRACE(kind.name);
    Training plain = start(kind.make, false, false, pg);
    Training zero = start(kind.make, true, false, pg);
    const std::vector<float> unused_before = zero.model->unused->weight.to_vector<float>();
    train(plain, 0, 10);
    train(zero, 0, 10);
    // The same elementwise update on every element: only the kernels' vector/tail split may differ.
    const double diff = test::max_abs_diff(values(plain), values(zero));
    EXPECT_LE(diff, 1e-6);
    if (pg->rank() == 0)
      std::printf("[zero] %s, identical gradients, 10 steps: max |zero - plain| = %.3g\n",
                  kind.name, diff);
    EXPECT_TRUE(test::same_on_all_ranks(*pg, values(zero)));
    EXPECT_EQ(test::max_abs_diff(unused_before, zero.model->unused->weight.to_vector<float>()),
              0.0);
    EXPECT_FALSE(zero.model->unused->weight.grad().defined());
  }
}

TEST(MpiZero, WithDdpEqualsPlainOptimizerOnOneRank) {
  auto pg = test::world();
  for (const Kind& kind : {kinds()[0], kinds()[1]}) {
    SCOPED_TRACE(kind.name);
    // The one-rank reference: the whole batch, no communication, rank 0's initial weights.
    Training one = start(kind.make, false, false, pg, kSeed);
    train(one, 0, 20);
    Training ddp_plain =
        start(kind.make, false, true, pg, kSeed + static_cast<uint64_t>(pg->rank()));
    train(ddp_plain, 0, 20);
    Training ddp_zero = start(kind.make, true, true, pg, kSeed + static_cast<uint64_t>(pg->rank()));
    const std::vector<float> unused_before = ddp_zero.model->unused->weight.to_vector<float>();
    train(ddp_zero, 0, 20);
    // DDP's mean of the ranks' means vs one mean over the batch: float summation order only.
    const double vs_one_rank = test::max_abs_diff(values(one), values(ddp_zero));
    EXPECT_LT(vs_one_rank, 1e-5);
    // From the same averaged gradients, ZeRO and the plain optimizer do the same arithmetic.
    const double vs_ddp = test::max_abs_diff(values(ddp_plain), values(ddp_zero));
    EXPECT_LE(vs_ddp, 1e-6);
    if (pg->rank() == 0) {
      std::printf(
          "[zero] %s, DDP, 20 steps: max |zero - one rank| = %.3g, max |zero - plain DDP| = %.3g\n",
          kind.name, vs_one_rank, vs_ddp);
    }
    EXPECT_TRUE(test::same_on_all_ranks(*pg, values(ddp_zero)));
    EXPECT_EQ(test::max_abs_diff(unused_before, ddp_zero.model->unused->weight.to_vector<float>()),
              0.0);
  }
}

TEST(MpiZero, FrozenParameterIsSkipped) {
  auto pg = test::world();
  Training plain = start(adamw, false, false, pg);
  Training zero = start(adamw, true, false, pg);
  for (Training* r : {&plain, &zero}) r->model->fc1->bias.set_requires_grad(false);
  const std::vector<float> before = zero.model->fc1->bias.to_vector<float>();
  train(plain, 0, 5);
  train(zero, 0, 5);
  EXPECT_EQ(test::max_abs_diff(before, zero.model->fc1->bias.to_vector<float>()), 0.0);
  EXPECT_LE(test::max_abs_diff(values(plain), values(zero)), 1e-6);
  EXPECT_EQ(zero.opt->state_dict().scalars, plain.opt->state_dict().scalars);
}

// LrScheduler sees only optim::Optimizer's interface (num_groups, lr, set_lr): it drives the shards'
// lrs, keeping the groups' ratio, as it drives a plain optimizer's.
TEST(MpiZero, LrSchedulerDrivesTheShards) {
  auto pg = test::world();
  Training plain = start(sgd_momentum, false, false, pg);
  Training zero = start(sgd_momentum, true, false, pg);
  optim::LrScheduler plain_schedule(*plain.opt, optim::warmup_cosine(3, 8));
  optim::LrScheduler zero_schedule(*zero.opt, optim::warmup_cosine(3, 8));
  for (int step = 0; step < 8; ++step) {
    train(plain, step, 1);
    train(zero, step, 1);
    plain_schedule.step();
    zero_schedule.step();
    const auto& inner = static_cast<dist::ZeroRedundancyOptimizer&>(*zero.opt).local_optimizer();
    for (size_t g = 0; g < 2; ++g) {
      EXPECT_EQ(zero.opt->lr(g), plain.opt->lr(g));
      EXPECT_EQ(inner.lr(g), plain.opt->lr(g));
    }
  }
  EXPECT_NE(plain.opt->lr(0), 0.1);  // the schedule really moved the lr
  EXPECT_LE(test::max_abs_diff(values(plain), values(zero)), 1e-6);
}

// ---- 2. state_dict() gathers exactly the unsharded optimizer's state

TEST(MpiZero, StateDictEqualsThePlainOptimizers) {
  auto pg = test::world();
  for (const Kind& kind : kinds()) {
    SCOPED_TRACE(kind.name);
    Training plain = start(kind.make, false, false, pg);
    Training zero = start(kind.make, true, false, pg);
    train(plain, 0, 6);
    train(zero, 0, 6);
    const optim::OptimizerState expected = plain.opt->state_dict();
    const optim::OptimizerState got = zero.opt->state_dict();  // collective
    EXPECT_STREQ(zero.opt->name(), plain.opt->name());
    // unused.weight and unused.bias (indices 2 and 5): never stepped, no state
    EXPECT_FALSE(got.scalars.at("state").contains("2"));
    EXPECT_FALSE(got.scalars.at("state").contains("5"));
    EXPECT_TRUE(got.scalars.at("state").contains("4"));
    EXPECT_GE(got.tensors.size(), 4u);
    EXPECT_LE(state_difference(expected, got), 1e-6);
    std::vector<Tensor> tensors;
    for (const auto& [name, t] : got.tensors) tensors.push_back(t);
    EXPECT_TRUE(test::same_on_all_ranks(*pg, test::flat_values(tensors)));
  }
}

// ---- 3. checkpoints move between ZeRO and plain runs, and between world sizes

TEST(MpiZero, ResumesAcrossZeroPlainAndWorldSizes) {
  auto pg = test::world();
  auto one_rank = std::make_shared<OneRankGroup>();
  constexpr int kHalf = 5;
  for (const Kind& kind : kinds()) {
    SCOPED_TRACE(kind.name);
    Training uninterrupted = start(kind.make, false, false, pg);
    train(uninterrupted, 0, 2 * kHalf);
    const std::vector<float> expected = values(uninterrupted);

    // Saved by `save` after kHalf steps, loaded into `resume` (fresh, with the saved weights), which
    // takes the other kHalf.
    auto resumed = [&](bool save_zero, std::shared_ptr<dist::ProcessGroup> save_pg,
                       bool resume_zero, std::shared_ptr<dist::ProcessGroup> resume_pg) {
      Training save = start(kind.make, save_zero, false, save_pg);
      train(save, 0, kHalf);
      const optim::OptimizerState state = save.opt->state_dict();
      Training resume = start(kind.make, resume_zero, false, resume_pg, kSeed + 100);
      copy_weights(save, resume);
      resume.opt->load_state_dict(state);
      train(resume, kHalf, kHalf);
      return values(resume);
    };
    // A fresh optimizer that loads nothing starts its moments and step counts over: far off.
    EXPECT_GT(test::max_abs_diff(expected,
                                 [&] {
                                   Training save = start(kind.make, true, false, pg);
                                   train(save, 0, kHalf);
                                   Training resume = start(kind.make, true, false, pg);
                                   copy_weights(save, resume);
                                   train(resume, kHalf, kHalf);
                                   return values(resume);
                                 }()),
              1e-4);
    EXPECT_LE(test::max_abs_diff(expected, resumed(true, pg, false, pg)), 1e-6) << "ZeRO -> plain";
    EXPECT_LE(test::max_abs_diff(expected, resumed(false, pg, true, pg)), 1e-6) << "plain -> ZeRO";
    EXPECT_LE(test::max_abs_diff(expected, resumed(true, pg, true, one_rank)), 1e-6)
        << "ZeRO at N ranks -> ZeRO at 1";
    EXPECT_LE(test::max_abs_diff(expected, resumed(true, one_rank, true, pg)), 1e-6)
        << "ZeRO at 1 rank -> ZeRO at N";
  }
}

TEST(MpiZero, LoadStateDictRejectsMismatches) {
  auto pg = test::world();
  Training zero = start(adamw, true, false, pg);
  Training sgd = start(sgd_momentum, false, false, pg);
  train(sgd, 0, 1);
  EXPECT_THROW(zero.opt->load_state_dict(sgd.opt->state_dict()), Error);  // another kind

  Training plain = start(adamw, false, false, pg);
  train(plain, 0, 1);
  optim::OptimizerState state = plain.opt->state_dict();
  state.tensors[0].second = Tensor::zeros({3});  // a shape of another model
  EXPECT_THROW(zero.opt->load_state_dict(state), Error);
  state = plain.opt->state_dict();
  state.scalars["param_groups"][0]["num_params"] = 2;
  EXPECT_THROW(zero.opt->load_state_dict(state), Error);
  // Nothing was loaded: the first step still starts every state at step 1.
  train(zero, 0, 1);
  EXPECT_EQ(zero.opt->state_dict().scalars, plain.opt->state_dict().scalars);
}

// ---- 4. the state is sharded

TEST(MpiZero, EachRankHoldsAboutOneNthOfTheState) {
  auto pg = test::world();
  // Every parameter trained, so that the state (Adam's m and v) covers the whole flat vector.
  auto model = test::make_mlp(kSeed);
  auto zero_model = test::make_mlp(kSeed);
  dist::ZeroRedundancyOptimizer zero(zero_model->parameters(), pg, test::adamw);
  std::unique_ptr<optim::Optimizer> plain = test::adamw(model->parameters());
  const int64_t total = model->num_parameters();
  const int64_t n = pg->size();
  EXPECT_EQ(zero.chunk_numel(), (total + n - 1) / n);
  EXPECT_LE(zero.local_numel(), zero.chunk_numel());
  EXPECT_EQ(
      dist::all_reduce_value(*pg, static_cast<double>(zero.local_numel()), dist::ReduceOp::sum),
      static_cast<double>(total));

  Batch b = make_batch(0, kGlobalBatch);
  cross_entropy(model->forward(b.x), b.y).backward();
  plain->step();
  cross_entropy(zero_model->forward(b.x), b.y).backward();
  zero.step();
  auto state_numel = [](const optim::Optimizer& opt) {
    int64_t count = 0;
    for (size_t i = 0; i < opt.parameters().size(); ++i) {
      if (const optim::ParamState* st = opt.state(i)) {
        for (const auto& [key, t] : st->tensors) count += t.numel();
      }
    }
    return count;
  };
  const int64_t mine = state_numel(zero.local_optimizer());
  const int64_t unsharded = state_numel(*plain);
  EXPECT_EQ(unsharded, 2 * total);
  EXPECT_EQ(mine, 2 * zero.local_numel());
  EXPECT_LE(mine, 2 * zero.chunk_numel());  // ceil(1/N) of the unsharded state
  EXPECT_EQ(dist::all_reduce_value(*pg, static_cast<double>(mine), dist::ReduceOp::sum),
            static_cast<double>(unsharded));
  const double largest =
      dist::all_reduce_value(*pg, static_cast<double>(mine), dist::ReduceOp::max);
  if (pg->rank() == 0) {
    std::printf("[zero] %d rank(s): AdamW state per rank <= %.0f of %lld elements (%.1f%%)\n",
                pg->size(), largest, static_cast<long long>(unsharded),
                100.0 * largest / static_cast<double>(unsharded));
  }
}

}  // namespace
}  // namespace dtrain

int main(int argc, char** argv) { return dtrain::test::mpi_test_main(argc, argv); }
