// Module: names and registration order, train/eval, freezing, zero_grad, to() keeping handles
// valid, state_dict and the errors of load_state_dict.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/nn/nn.h"
#include "core/ops/ops.h"
#include "error_message.h"

namespace dtrain::nn {
namespace {

// A small tree: own parameter, a child Linear, a buffer, a ModuleList of two layers, and a
// non-persistent buffer registered last.
class Toy : public Module {
 public:
  Toy() : Module("Toy") {
    scale = register_parameter("scale", Tensor::ones({3}));
    fc = register_module("fc", std::make_shared<Linear>(3, 2));
    steps = register_buffer("steps", Tensor::zeros({1}, DType::i64));
    blocks = register_module("blocks", std::make_shared<ModuleList>());
    blocks->push_back(std::make_shared<Linear>(2, 2, false));
    blocks->push_back(std::make_shared<LayerNorm>(2));
    table = register_buffer("table", Tensor::full({2}, 0.5), /*persistent=*/false);
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = fc->forward(x * scale);
    h = blocks->at<Linear>(0)->forward(h);
    return blocks->at<LayerNorm>(1)->forward(h) + table;
  }

  Tensor scale, steps, table;
  std::shared_ptr<Linear> fc;
  std::shared_ptr<ModuleList> blocks;
};

std::vector<std::string> names_of(const NamedTensors& named) {
  std::vector<std::string> out;
  for (const auto& entry : named) out.push_back(entry.first);
  return out;
}

using dtrain::testing::error_of;

TEST(Module, NamesFollowRegistrationOrder) {
  Toy toy;
  EXPECT_EQ(names_of(toy.named_parameters()),
            (std::vector<std::string>{"scale", "fc.weight", "fc.bias", "blocks.0.weight",
                                      "blocks.1.weight", "blocks.1.bias"}));
  EXPECT_EQ(names_of(toy.named_parameters(/*recurse=*/false)), (std::vector<std::string>{"scale"}));
  EXPECT_EQ(names_of(toy.named_buffers()), (std::vector<std::string>{"steps", "table"}));
  EXPECT_EQ(toy.parameters().size(), 6u);
  ASSERT_EQ(toy.named_children().size(), 2u);
  EXPECT_EQ(toy.named_children()[0].first, "fc");
  EXPECT_EQ(toy.named_children()[1].first, "blocks");
  EXPECT_EQ(toy.children()[0].get(), toy.fc.get());

  std::vector<std::string> modules;
  for (auto& [name, m] : toy.named_modules()) modules.push_back(name + ":" + m->type_name());
  EXPECT_EQ(modules, (std::vector<std::string>{":Toy", "fc:Linear", "blocks:ModuleList",
                                               "blocks.0:Linear", "blocks.1:LayerNorm"}));
  // The handles the module holds are the registered tensors themselves.
  EXPECT_TRUE(toy.tensor("fc.weight").same(toy.fc->weight));
  EXPECT_TRUE(toy.tensor("blocks.1.bias").same(toy.blocks->at<LayerNorm>(1)->bias));
  EXPECT_NE(error_of([&] { toy.tensor("fc.nope"); }).find("'fc.nope'"), std::string::npos);

  EXPECT_EQ(toy.num_parameters(), 3 + 6 + 2 + 4 + 2 + 2);
  EXPECT_TRUE(toy.fc->weight.requires_grad());
  EXPECT_TRUE(toy.fc->weight.is_leaf());
  EXPECT_FALSE(toy.steps.requires_grad());
}

TEST(Module, RejectsBadNames) {
  Toy toy;
  EXPECT_NE(error_of([&] {
              toy.register_parameter("fc", Tensor::ones({1}));
            }).find("'fc' is already registered as a module"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              toy.register_buffer("scale", Tensor::ones({1}));
            }).find("'scale' is already registered as a parameter"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              toy.register_module("steps", std::make_shared<Dropout>(0.1));
            }).find("'steps' is already registered as a buffer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { toy.register_parameter("a.b", Tensor::ones({1})); }).find("'a.b'"),
            std::string::npos);
  EXPECT_THROW(toy.register_parameter("", Tensor::ones({1})), Error);
  EXPECT_THROW(toy.register_parameter("ids", Tensor::zeros({2}, DType::i64)), Error);
  EXPECT_THROW(toy.register_module("none", std::shared_ptr<Linear>()), Error);
  EXPECT_NE(error_of([&] { toy.blocks->at<Dropout>(0); }).find("Linear"), std::string::npos);
  EXPECT_THROW((*toy.blocks)[2], Error);
  // Nothing was added by the failed registrations.
  EXPECT_EQ(toy.named_parameters().size(), 6u);
}

TEST(Module, ParameterFromAnOpBecomesALeaf) {
  Module m;
  Tensor base = Tensor::ones({2});
  base.set_requires_grad(true);
  Tensor p = m.register_parameter("p", base * 2.0);
  EXPECT_TRUE(p.is_leaf());
  EXPECT_TRUE(p.requires_grad());
  EXPECT_EQ(p.to_vector<float>(), (std::vector<float>{2.0f, 2.0f}));
}

TEST(Module, TrainAndEvalApplyToTheSubtree) {
  Toy toy;
  EXPECT_TRUE(toy.is_training());
  toy.eval();
  for (auto& [name, m] : toy.named_modules()) EXPECT_FALSE(m->is_training()) << name;
  toy.blocks->train();
  EXPECT_FALSE(toy.is_training());
  EXPECT_TRUE(toy.blocks->at<LayerNorm>(1)->is_training());
  toy.train();
  for (auto& [name, m] : toy.named_modules()) EXPECT_TRUE(m->is_training()) << name;
}

TEST(Module, FreezingStopsGradients) {
  Toy toy;
  toy.fc->set_requires_grad(false);
  EXPECT_EQ(toy.num_parameters(/*trainable_only=*/true), toy.num_parameters() - 8);
  Tensor x = Tensor::randn({4, 3});
  sum(toy.forward(x)).backward();
  EXPECT_FALSE(toy.fc->weight.grad().defined());
  EXPECT_FALSE(toy.fc->bias.grad().defined());
  EXPECT_TRUE(toy.scale.grad().defined());
  EXPECT_TRUE(toy.blocks->at<Linear>(0)->weight.grad().defined());

  // zero_grad in place keeps the gradient tensor, zeroed; the default drops it.
  Tensor g = toy.scale.grad();
  toy.zero_grad(/*set_to_none=*/false);
  ASSERT_TRUE(toy.scale.grad().defined());
  EXPECT_TRUE(toy.scale.grad().same(g));
  for (float v : g.to_vector<float>()) EXPECT_EQ(v, 0.0f);
  toy.zero_grad();
  for (const auto& [name, p] : toy.named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;

  toy.set_requires_grad(true);
  EXPECT_EQ(toy.num_parameters(true), toy.num_parameters());
}

TEST(Module, ToDTypeConvertsInPlaceAndKeepsHandles) {
  Toy toy;
  Tensor held = toy.fc->weight;  // e.g. an optimizer's handle
  std::vector<float> before = held.to_vector<float>();
  sum(toy.forward(Tensor::randn({2, 3}))).backward();
  ASSERT_TRUE(held.grad().defined());
  std::vector<float> grad_before = held.grad().to_vector<float>();

  toy.to(DType::f64);
  EXPECT_EQ(held.dtype(), DType::f64);
  EXPECT_TRUE(held.same(toy.fc->weight));
  EXPECT_TRUE(held.same(toy.named_parameters()[1].second));
  EXPECT_TRUE(held.requires_grad());
  std::vector<double> after = held.to_vector<double>();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) EXPECT_EQ(after[i], static_cast<double>(before[i]));
  EXPECT_EQ(held.grad().dtype(), DType::f64);
  std::vector<double> grad_after = held.grad().to_vector<double>();
  for (size_t i = 0; i < grad_after.size(); ++i)
    EXPECT_EQ(grad_after[i], static_cast<double>(grad_before[i]));
  EXPECT_EQ(toy.steps.dtype(), DType::i64);  // integer buffers keep their dtype
  EXPECT_EQ(toy.table.dtype(), DType::f64);

  // The converted module runs and trains in f64.
  toy.zero_grad();
  Tensor y = toy.forward(Tensor::randn({2, 3}, DType::f64));
  EXPECT_EQ(y.dtype(), DType::f64);
  sum(y).backward();
  EXPECT_EQ(held.grad().dtype(), DType::f64);

  toy.to(Device::cpu());  // same device: nothing changes
  EXPECT_TRUE(held.same(toy.fc->weight));
  EXPECT_EQ(held.device(), Device::cpu());
  EXPECT_THROW(toy.to(DType::i32), Error);
}

TEST(Module, FailedMoveLeavesTheModuleUnchanged) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present; Module.ToCudaKeepsHandles covers moves";
  Toy toy;
  Tensor held = toy.fc->weight;
  std::vector<float> before = held.to_vector<float>();
  EXPECT_THROW(toy.to(Device::cuda(0)), Error);
  for (const auto& [name, t] : toy.state_dict()) EXPECT_EQ(t.device(), Device::cpu()) << name;
  EXPECT_TRUE(held.same(toy.fc->weight));
  EXPECT_EQ(held.to_vector<float>(), before);
}

TEST(Module, ToCudaKeepsHandles) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(5);
  Toy toy;
  Tensor x = Tensor::randn({4, 3});
  Tensor y_cpu = toy.forward(x);
  Tensor held = toy.fc->weight;
  sum(y_cpu).backward();
  toy.to(Device::cuda(0));
  EXPECT_TRUE(held.same(toy.fc->weight));
  EXPECT_EQ(held.device(), Device::cuda(0));
  EXPECT_EQ(held.grad().device(), Device::cuda(0));
  for (const auto& [name, t] : toy.named_buffers()) EXPECT_EQ(t.device(), Device::cuda(0)) << name;
  toy.zero_grad();
  Tensor y = toy.forward(x.to(Device::cuda(0)));
  sum(y).backward();
  EXPECT_EQ(held.grad().device(), Device::cuda(0));
  std::vector<float> a = y.to_vector<float>(), e = y_cpu.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], e[i], 1e-4);
  toy.to(Device::cpu());
  EXPECT_TRUE(held.same(toy.fc->weight));
  EXPECT_EQ(held.device(), Device::cpu());
}

TEST(Module, StateDictHasParametersThenPersistentBuffers) {
  Toy toy;
  NamedTensors state = toy.state_dict();
  EXPECT_EQ(names_of(state),
            (std::vector<std::string>{"scale", "fc.weight", "fc.bias", "blocks.0.weight",
                                      "blocks.1.weight", "blocks.1.bias", "steps"}));
  // Detached handles on the module's storage.
  EXPECT_FALSE(state[1].second.requires_grad());
  EXPECT_EQ(state[1].second.raw_data(), toy.fc->weight.raw_data());
}

TEST(Module, LoadStateDictCopiesIntoTheSameTensors) {
  manual_seed(1);
  Toy source;
  manual_seed(2);
  Toy target;
  Tensor held = target.fc->weight;
  ASSERT_NE(held.to_vector<float>(), source.fc->weight.to_vector<float>());
  {
    NoGradGuard no_grad;
    Tensor steps = source.steps;
    steps.fill_(7);
  }
  LoadResult r = target.load_state_dict(source.state_dict());
  EXPECT_TRUE(r.missing.empty());
  EXPECT_TRUE(r.unexpected.empty());
  EXPECT_TRUE(held.same(target.fc->weight));
  for (const auto& [name, t] : source.state_dict())
    EXPECT_EQ(target.tensor(name).to_vector<double>(), t.to_vector<double>()) << name;
  EXPECT_EQ(target.steps.to_vector<int64_t>(), (std::vector<int64_t>{7}));

  // dtype conversion on load: an f64 state into an f32 module.
  NamedTensors as_f64;
  for (const auto& [name, t] : source.state_dict())
    as_f64.emplace_back(name, is_floating(t.dtype()) ? t.to(DType::f64) : t);
  Toy third;
  third.load_state_dict(as_f64);
  EXPECT_EQ(third.fc->weight.dtype(), DType::f32);
  EXPECT_EQ(third.fc->weight.to_vector<float>(), source.fc->weight.to_vector<float>());
}

TEST(Module, LoadStateDictErrorsNameTheTensor) {
  Toy target;
  Toy other;

  NamedTensors missing = other.state_dict();
  missing.erase(missing.begin() + 4);  // blocks.1.weight
  std::string msg = error_of([&] { target.load_state_dict(missing); });
  EXPECT_NE(msg.find("'blocks.1.weight' is missing"), std::string::npos) << msg;
  LoadResult loose = target.load_state_dict(missing, /*strict=*/false);
  EXPECT_EQ(loose.missing, (std::vector<std::string>{"blocks.1.weight"}));

  NamedTensors extra = other.state_dict();
  extra.emplace_back("head.weight", Tensor::zeros({2, 2}));
  msg = error_of([&] { target.load_state_dict(extra); });
  EXPECT_NE(msg.find("unexpected 'head.weight'"), std::string::npos) << msg;
  loose = target.load_state_dict(extra, /*strict=*/false);
  EXPECT_EQ(loose.unexpected, (std::vector<std::string>{"head.weight"}));

  NamedTensors wrong = other.state_dict();
  wrong[1].second = Tensor::zeros({3, 2});  // fc.weight is [2, 3]
  wrong[0].second = Tensor::full({3}, 9.0);
  for (bool strict : {true, false}) {
    Tensor scale_before = target.scale.clone();
    msg = error_of([&] { target.load_state_dict(wrong, strict); });
    EXPECT_NE(msg.find("'fc.weight' has shape [3, 2] in the state but [2, 3]"), std::string::npos)
        << msg;
    // Nothing was copied: not even the entries before the bad one.
    EXPECT_EQ(target.scale.to_vector<float>(), scale_before.to_vector<float>());
  }

  NamedTensors twice = other.state_dict();
  twice.push_back(twice[0]);
  EXPECT_NE(error_of([&] { target.load_state_dict(twice); }).find("'scale' appears twice"),
            std::string::npos);
}

TEST(Module, TiedWeightsAreListedOnce) {
  // Like GPT's output head sharing the token embedding.
  class Tied : public Module {
   public:
    Tied() : Module("Tied") {
      emb = register_module("emb", std::make_shared<Embedding>(5, 3));
      head = register_module("head", std::make_shared<Module>("Head"));
      head->register_parameter("weight", emb->weight);
    }
    std::shared_ptr<Embedding> emb;
    std::shared_ptr<Module> head;
  };
  Tied t;
  EXPECT_EQ(names_of(t.named_parameters()), (std::vector<std::string>{"emb.weight"}));
  EXPECT_EQ(t.num_parameters(), 15);
  EXPECT_EQ(names_of(t.state_dict()), (std::vector<std::string>{"emb.weight", "head.weight"}));
  t.to(DType::f64);
  EXPECT_EQ(t.head->tensor("weight").dtype(), DType::f64);
  EXPECT_TRUE(t.head->tensor("weight").same(t.emb->weight));
}

}  // namespace
}  // namespace dtrain::nn
