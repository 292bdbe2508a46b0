// Shared by the MPI tests of DDP and ZeRO: a small MLP of core/nn Linear layers, deterministic data
// that every rank can generate, and comparisons across ranks.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "core/nn/linear.h"
#include "core/optim/adam.h"
#include "core/optim/sgd.h"
#include "core/ops/ops.h"
#include "distributed/process_group.h"

namespace dtrain::test {

class Mlp : public nn::Module {
 public:
  Mlp(int64_t in, int64_t hidden, int64_t out, bool with_unused = false) : Module("Mlp") {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(in, hidden));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(hidden, out));
    if (with_unused) unused = register_module("unused", std::make_shared<nn::Linear>(hidden, out));
  }
  Tensor forward(const Tensor& x) const { return fc2->forward(relu(fc1->forward(x))); }

  std::shared_ptr<nn::Linear> fc1, fc2, unused;
};

// Builds an Mlp whose initial weights depend on `seed` (ranks pass different seeds; DDP must make them
// rank 0's).
inline std::shared_ptr<Mlp> make_mlp(uint64_t seed, int64_t in = 8, int64_t hidden = 16,
                                     int64_t out = 4, bool with_unused = false) {
  manual_seed(seed);
  return std::make_shared<Mlp>(in, hidden, out, with_unused);
}

// Global batch `step`: inputs [batch, in] ~ N(0, 1) and class targets in [0, classes), the same on
// every rank (a generator seeded by the step, not the global one).
struct Batch {
  Tensor x, y;
  Batch rows(int64_t begin, int64_t end) const {
    return {x.slice(0, begin, end).contiguous(), y.slice(0, begin, end).contiguous()};
  }
};
inline Batch make_batch(int64_t step, int64_t batch, int64_t in = 8, int64_t classes = 4) {
  Generator gen(1000 + static_cast<uint64_t>(step));
  std::vector<float> x(static_cast<size_t>(batch * in));
  for (float& v : x) v = static_cast<float>(gen.next_normal());
  std::vector<int64_t> y(static_cast<size_t>(batch));
  for (int64_t& v : y) v = static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(classes));
  return {Tensor::from_vector(x, {batch, in}), Tensor::from_vector(y, {batch}, DType::i64)};
}

inline std::vector<float> flat_values(const std::vector<Tensor>& tensors) {
  std::vector<float> out;
  for (const Tensor& t : tensors) {
    std::vector<float> v = t.to_vector<float>();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

inline std::vector<float> flat_grads(const std::vector<Tensor>& params) {
  std::vector<Tensor> grads;
  for (const Tensor& p : params) grads.push_back(p.grad());
  return flat_values(grads);
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
  }
  return m;
}

// True on every rank when every rank holds bitwise the same `values`.
inline bool same_on_all_ranks(dist::ProcessGroup& pg, const std::vector<float>& values) {
  const auto n = static_cast<int64_t>(values.size());
  Tensor mine = Tensor::from_vector(values, {n});
  Tensor all = Tensor::empty({n * pg.size()});
  pg.all_gather(all, mine)->wait();
  std::vector<float> v = all.to_vector<float>();
  bool same = true;
  for (int r = 0; r < pg.size(); ++r) {
    same = same && std::equal(v.begin() + r * n, v.begin() + (r + 1) * n, values.begin(),
                              [](float a, float b) { return std::memcmp(&a, &b, 4) == 0; });
  }
  return !dist::any_rank(pg, !same);
}

// The optimizers the DDP tests train with: SGD with momentum and AdamW, over any parameters.
inline std::unique_ptr<optim::Optimizer> sgd(std::vector<Tensor> params) {
  return std::make_unique<optim::SGD>(std::move(params),
                                      optim::SGDOptions{.lr = 0.1, .momentum = 0.9});
}
inline std::unique_ptr<optim::Optimizer> adamw(std::vector<Tensor> params) {
  return std::make_unique<optim::AdamW>(std::move(params),
                                        optim::AdamWOptions{.lr = 1e-2, .weight_decay = 0.01});
}

}  // namespace dtrain::test
