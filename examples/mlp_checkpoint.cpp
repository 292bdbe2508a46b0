// Train a small MLP with AdamW, save a checkpoint, load it into a fresh model, compare outputs.
#include <iostream>

#include "core/io/checkpoint.h"
#include "core/nn/nn.h"
#include "core/ops/ops.h"
#include "core/optim/optim.h"

using namespace dtrain;

struct Mlp : nn::Module {
  std::shared_ptr<nn::Linear> fc1 = register_module("fc1", std::make_shared<nn::Linear>(2, 32));
  std::shared_ptr<nn::Linear> fc2 = register_module("fc2", std::make_shared<nn::Linear>(32, 2));
  Tensor forward(const Tensor& x) const { return fc2->forward(relu(fc1->forward(x))); }
};

int main() {
  manual_seed(0);
  Tensor x = Tensor::randn({256, 2});
  Tensor y =
      gt(x.select(1, 0) * x.select(1, 1), Tensor::scalar(0.0)).to(DType::i64);  // XOR of signs
  Mlp model;
  optim::AdamW opt(model.parameters(), {.lr = 0.01});
  for (int step = 0; step < 200; ++step) {
    Tensor loss = cross_entropy(model.forward(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step % 50 == 0) std::cout << "step " << step << " loss " << loss.item() << "\n";
  }
  CheckpointWriter writer("mlp_checkpoint");
  writer.write_tensors(kCheckpointModelFile, model.state_dict());
  writer.commit();

  Mlp fresh;
  fresh.load_state_dict(Checkpoint("mlp_checkpoint").tensors().tensors());
  NoGradGuard no_grad;
  bool same = max(abs(model.forward(x) - fresh.forward(x))).item() == 0.0;
  std::cout << "outputs identical after reload: " << (same ? "yes" : "no") << "\n";
  return same ? 0 : 1;
}
