// A two-layer MLP by hand: forward, backward, and one gradient printed.
#include <iostream>

#include "core/ops/ops.h"

using namespace dtrain;

int main() {
  manual_seed(0);
  Tensor x = Tensor::randn({4, 3});  // a batch of 4 inputs
  Tensor w1 = (Tensor::randn({8, 3}) * 0.5).set_requires_grad(true);
  Tensor b1 = Tensor::zeros({8}).set_requires_grad(true);
  Tensor w2 = (Tensor::randn({2, 8}) * 0.5).set_requires_grad(true);
  Tensor target = Tensor::from_vector(std::vector<int64_t>{0, 1, 1, 0}, {4}, DType::i64);

  Tensor hidden = relu(linear(x, w1, b1));                  // [4, 8]
  Tensor loss = cross_entropy(linear(hidden, w2), target);  // mean over the batch
  loss.backward();

  std::cout << "loss " << loss.item() << "\n"
            << "d loss / d w2:\n"
            << w2.grad();
}
