// CrossModalAttention, GatedFusion and DepthwiseSeparableConv2d: finite-difference gradchecks in
// f64 of every parameter and input, and PyTorch parity (tests/reference/fusion_modules.py wrote
// fusion_modules.json: weights, inputs, outputs and gradients of torch twins). Loading the
// fixture's weights by name also checks that the parameter names are torch's.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/nn/nn.h"
#include "core/ops/ops.h"
#include "error_message.h"
#include "gradcheck.h"

namespace dtrain::nn {
namespace {

using nlohmann::json;
using Inputs = std::map<std::string, Tensor>;
using Forward = std::function<Tensor(const Inputs& inputs)>;

// ---------------------------------------------------------------- gradcheck of a whole module

// Central differences of L = sum(f(inputs) * w) for every element of every floating input and of
// every parameter of `module` (converted to f64), against backward().
void expect_module_gradcheck(Module& module, const std::vector<std::string>& names,
                             std::vector<Tensor> inputs,
                             const std::function<Tensor(const std::vector<Tensor>&)>& f,
                             double eps = 1e-6, double tol = 1e-7) {
  module.to(DType::f64);
  module.zero_grad();
  std::vector<std::pair<std::string, Tensor>> checked;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!is_floating(inputs[i].dtype())) continue;
    ASSERT_EQ(inputs[i].dtype(), DType::f64);
    inputs[i] = inputs[i].contiguous().detach().clone();
    inputs[i].set_requires_grad(true);
    checked.emplace_back("input " + names[i], inputs[i]);
  }
  for (const auto& [name, p] : module.named_parameters()) {
    ASSERT_TRUE(p.is_contiguous()) << name;
    checked.emplace_back(name, p);
  }
  Tensor out = f(inputs);
  Generator gen(4321);
  std::vector<double> w(static_cast<size_t>(out.numel()));
  for (auto& wi : w) wi = gen.next_double() * 2.0 - 1.0;
  out.backward(Tensor::from_vector(w, out.shape(), DType::f64));

  NoGradGuard no_grad;
  for (auto& [name, x] : checked) {
    ASSERT_TRUE(x.grad().defined()) << name << " got no gradient";
    std::vector<double> analytic = x.grad().to_vector<double>();
    double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      double saved = p[i];
      p[i] = saved + eps;
      double plus = testing::weighted_sum(f(inputs), w);
      p[i] = saved - eps;
      double minus = testing::weighted_sum(f(inputs), w);
      p[i] = saved;
      double numeric = (plus - minus) / (2 * eps);
      EXPECT_NEAR(analytic[static_cast<size_t>(i)], numeric, tol * (1.0 + std::fabs(numeric)))
          << name << " element " << i;
    }
  }
}

TEST(GradCheck, FusionCrossModalAttention) {
  manual_seed(31);
  for (bool with_mask : {true, false}) {
    CrossModalAttention attn(4, 2, {.kdim = 3, .vdim = 5});
    // torch's init leaves the biases at zero; make them non-zero so their paths are exercised.
    attn.to(DType::f64);
    {
      NoGradGuard no_grad;
      init::uniform_(attn.in_proj_bias, -0.5, 0.5);
      init::uniform_(attn.out_proj->bias, -0.5, 0.5);
    }
    Tensor pad = Tensor::from_vector(std::vector<int64_t>{0, 0, 1, 0, 0, 0}, {2, 3}, DType::i64);
    expect_module_gradcheck(
        attn, {"query", "key", "value"},
        {Tensor::randn({2, 2, 4}, DType::f64), Tensor::randn({2, 3, 3}, DType::f64),
         Tensor::randn({2, 3, 5}, DType::f64)},
        [&](const std::vector<Tensor>& in) {
          return attn.forward(in[0], in[1], in[2], with_mask ? pad : Tensor());
        });
  }
}

TEST(GradCheck, FusionCrossModalAttentionSharedContext) {
  manual_seed(32);
  CrossModalAttention attn(4, 1, {.kdim = 3});
  expect_module_gradcheck(
      attn, {"query", "context"},
      {Tensor::randn({1, 2, 4}, DType::f64), Tensor::randn({1, 3, 3}, DType::f64)},
      [&](const std::vector<Tensor>& in) { return attn.forward(in[0], in[1]); });
}

TEST(GradCheck, FusionGatedFusion) {
  manual_seed(33);
  GatedFusion fusion(3);
  expect_module_gradcheck(
      fusion, {"x_a", "x_b"},
      {Tensor::randn({2, 2, 3}, DType::f64), Tensor::randn({2, 2, 3}, DType::f64)},
      [&](const std::vector<Tensor>& in) { return fusion.forward(in[0], in[1]); });
}

TEST(GradCheck, FusionDepthwiseSeparableConv2d) {
  manual_seed(34);
  DepthwiseSeparableConv2d conv(2, 3, 3, {.stride = 2, .padding = 1});
  expect_module_gradcheck(conv, {"x"}, {Tensor::randn({2, 2, 5, 4}, DType::f64)},
                          [&](const std::vector<Tensor>& in) { return conv.forward(in[0]); });
  DepthwiseSeparableConv2d plain(2, 2, 2, {.depthwise_bias = false, .pointwise_bias = false});
  expect_module_gradcheck(plain, {"x"}, {Tensor::randn({1, 2, 3, 3}, DType::f64)},
                          [&](const std::vector<Tensor>& in) { return plain.forward(in[0]); });
}

// ---------------------------------------------------------------- names, shapes, initialisation

std::vector<std::string> names_and_shapes(const Module& m) {
  std::vector<std::string> out;
  for (const auto& [name, p] : m.named_parameters()) out.push_back(name + shape_str(p.shape()));
  return out;
}

TEST(FusionModules, ParameterNamesFollowTorch) {
  CrossModalAttention attn(8, 2, {.kdim = 6, .vdim = 5});
  EXPECT_EQ(
      names_and_shapes(attn),
      (std::vector<std::string>{"q_proj_weight[8, 8]", "k_proj_weight[8, 6]", "v_proj_weight[8, 5]",
                                "in_proj_bias[24]", "out_proj.weight[8, 8]", "out_proj.bias[8]"}));
  CrossModalAttention no_bias(8, 2, {.kdim = 6, .bias = false});
  EXPECT_EQ(no_bias.vdim(), 6);
  EXPECT_EQ(no_bias.named_parameters().size(), 4u);  // no in_proj_bias, no out_proj.bias

  GatedFusion fusion(6);
  EXPECT_EQ(names_and_shapes(fusion),
            (std::vector<std::string>{"gate.weight[6, 12]", "gate.bias[6]"}));

  DepthwiseSeparableConv2d conv(3, 5, 3, {.stride = 2, .padding = 1});
  EXPECT_EQ(names_and_shapes(conv),
            (std::vector<std::string>{"depthwise.weight[3, 1, 3, 3]", "depthwise.bias[3]",
                                      "pointwise.weight[5, 3, 1, 1]", "pointwise.bias[5]"}));
  DepthwiseSeparableConv2d bare(3, 5, 3, {.depthwise_bias = false, .pointwise_bias = false});
  EXPECT_EQ(bare.named_parameters().size(), 2u);
}

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::fabs(v));
  return m;
}

TEST(FusionModules, InitialisationLikeTorch) {
  manual_seed(5);
  CrossModalAttention attn(8, 2, {.kdim = 6});
  EXPECT_EQ(max_abs(attn.in_proj_bias), 0.0);
  EXPECT_EQ(max_abs(attn.out_proj->bias), 0.0);
  EXPECT_LE(max_abs(attn.k_proj_weight), std::sqrt(6.0 / (8 + 6)));  // xavier bound
  EXPECT_GT(max_abs(attn.k_proj_weight), 0.5 * std::sqrt(6.0 / (8 + 6)));
  EXPECT_LE(max_abs(attn.out_proj->weight), 1.0 / std::sqrt(8.0));  // kaiming a = sqrt(5)

  DepthwiseSeparableConv2d conv(4, 2, 3);
  // The depthwise fan-in is 1 * 3 * 3 (one input channel per group), the pointwise one 4.
  EXPECT_LE(max_abs(conv.depthwise->weight), 1.0 / 3.0);
  EXPECT_GT(max_abs(conv.depthwise->weight), 0.5 / 3.0);
  EXPECT_LE(max_abs(conv.pointwise->weight), 0.5);
  EXPECT_LE(max_abs(conv.depthwise->bias), 1.0 / 3.0);

  GatedFusion fusion(8);
  EXPECT_LE(max_abs(fusion.gate->weight), 0.25);  // 1 / sqrt(16)
}

TEST(FusionModules, GateMixesTheInputs) {
  // A gate of zero weights and bias b gives g = sigmoid(b) everywhere.
  GatedFusion fusion(2);
  {
    NoGradGuard no_grad;
    fusion.gate->weight.zero_();
    fusion.gate->bias.fill_(std::log(3.0));  // g = 0.75
  }
  Tensor a = Tensor::from_vector(std::vector<float>{4, 8}, {1, 2});
  Tensor b = Tensor::from_vector(std::vector<float>{0, -4}, {1, 2});
  std::vector<float> out = fusion.forward(a, b).to_vector<float>();
  EXPECT_NEAR(out[0], 3.0f, 1e-6);
  EXPECT_NEAR(out[1], 5.0f, 1e-6);
}

void expect_one_line_naming(const std::string& message, const std::string& module,
                            const std::string& shape) {
  EXPECT_NE(message.find(module), std::string::npos) << message;
  EXPECT_NE(message.find(shape), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
}

TEST(FusionModules, ShapeErrorsNameTheModuleAndShapes) {
  using testing::error_of;
  CrossModalAttention attn(4, 2, {.kdim = 3, .vdim = 5});
  Tensor q = Tensor::randn({2, 2, 4}), k = Tensor::randn({2, 3, 3}), v = Tensor::randn({2, 3, 5});
  expect_one_line_naming(error_of([&] {
                           attn.forward(Tensor::randn({2, 2, 5}), k, v, Tensor());
                         }),
                         "CrossModalAttention", "[2, 2, 5]");
  expect_one_line_naming(error_of([&] {
                           attn.forward(q, Tensor::randn({2, 3, 4}), v, Tensor());
                         }),
                         "CrossModalAttention", "[2, 3, 4]");
  expect_one_line_naming(error_of([&] {
                           attn.forward(q, k, Tensor::randn({2, 4, 5}), Tensor());
                         }),
                         "CrossModalAttention", "[2, 4, 5]");
  Tensor wide_mask = Tensor::zeros({2, 4}, DType::i64);
  expect_one_line_naming(error_of([&] { attn.forward(q, k, v, wide_mask); }), "CrossModalAttention",
                         "[2, 4]");
  EXPECT_NE(error_of([&] { attn.forward(q, k); }).find("forward(query, key, value, mask)"),
            std::string::npos);

  GatedFusion fusion(3);
  expect_one_line_naming(error_of([&] {
                           fusion.forward(Tensor::randn({2, 3}), Tensor::randn({3, 3}));
                         }),
                         "GatedFusion", "[3, 3]");
  expect_one_line_naming(error_of([&] {
                           fusion.forward(Tensor::randn({2, 4}), Tensor::randn({2, 4}));
                         }),
                         "GatedFusion", "[2, 4]");

  DepthwiseSeparableConv2d conv(3, 4, 3);
  expect_one_line_naming(error_of([&] {
                           conv.forward(Tensor::randn({1, 2, 5, 5}));
                         }),
                         "DepthwiseSeparableConv2d", "[1, 2, 5, 5]");
  expect_one_line_naming(error_of([&] {
                           conv.forward(Tensor::randn({3, 5, 5}));
                         }),
                         "DepthwiseSeparableConv2d", "[3, 5, 5]");
}

// ---------------------------------------------------------------- parity with PyTorch

const json& fixture() {
  static const json doc = [] {
    std::ifstream in(std::string(DTRAIN_SOURCE_DIR) + "/tests/reference/fusion_modules.json");
    EXPECT_TRUE(in.good()) << "tests/reference/fusion_modules.json is missing";
    std::stringstream s;
    s << in.rdbuf();
    return json::parse(s.str());
  }();
  return doc;
}

Tensor tensor_of(const json& j) {
  Shape shape = j.at("shape").get<Shape>();
  if (j.at("dtype") == "i64")
    return Tensor::from_vector(j.at("data").get<std::vector<int64_t>>(), shape, DType::i64);
  return Tensor::from_vector(j.at("data").get<std::vector<double>>(), shape, DType::f64);
}

// max over elements of |a - e| / (1 + |e|); NaN counts as infinite.
double worst_error(const Tensor& actual, const Tensor& expected, const std::string& what) {
  EXPECT_TRUE(actual.defined()) << what << " is undefined";
  if (!actual.defined()) return INFINITY;
  EXPECT_EQ(actual.shape(), expected.shape()) << what;
  if (actual.shape() != expected.shape()) return INFINITY;
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    double err = std::fabs(a[i] - e[i]) / (1.0 + std::fabs(e[i]));
    if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : err;
  }
  return worst;
}

// Loads the case's weights into `module` (in `dtype`), runs `forward` on its inputs, backpropagates
// grad_output, and compares the output, every parameter gradient and every input gradient.
void check_against_torch(Module& module, const std::string& name, DType dtype, double tol,
                         const Forward& forward) {
  const json& c = fixture().at("cases").at(name);
  module.eval();
  module.to(dtype);
  NamedTensors state;
  for (const auto& [pname, value] : c.at("params").items())
    state.emplace_back(pname, tensor_of(value));
  module.load_state_dict(state);  // strict: the names are torch's
  module.zero_grad();

  Inputs inputs;
  for (const auto& [iname, value] : c.at("inputs").items()) {
    Tensor t = tensor_of(value);
    if (is_floating(t.dtype())) {
      t = t.to(dtype);
      t.set_requires_grad(true);
    }
    inputs[iname] = t;
  }
  Tensor out = forward(inputs);
  EXPECT_EQ(out.dtype(), dtype);
  double worst = worst_error(out, tensor_of(c.at("output")), name + " output");
  out.backward(tensor_of(c.at("grad_output")).to(dtype));

  size_t grads = 0;
  for (const auto& [pname, p] : module.named_parameters()) {
    worst = std::max(worst, worst_error(p.grad(), tensor_of(c.at("grads").at(pname)),
                                        name + " grad of " + pname));
    ++grads;
  }
  EXPECT_EQ(grads, c.at("grads").size()) << name;
  size_t input_grads = 0;
  for (const auto& [iname, t] : inputs) {
    if (!t.requires_grad()) continue;
    worst = std::max(worst, worst_error(t.grad(), tensor_of(c.at("input_grads").at(iname)),
                                        name + " grad of input " + iname));
    ++input_grads;
  }
  EXPECT_EQ(input_grads, c.at("input_grads").size()) << name;
  EXPECT_LE(worst, tol) << name << " in " << dtype_name(dtype);
  std::cout << "[ torch    ] " << name << " " << dtype_name(dtype)
            << ": largest relative difference " << worst << "\n";
}

constexpr double kTolF64 = 1e-10;
constexpr double kTolF32 = 1e-5;

double tol_for(DType dtype) { return dtype == DType::f64 ? kTolF64 : kTolF32; }

TEST(FusionReference, CrossModalAttentionWithContextPadding) {
  for (DType dtype : {DType::f64, DType::f32}) {
    CrossModalAttention attn(8, 2, {.kdim = 6, .vdim = 6, .bias = true});
    check_against_torch(
        attn, "cross_attention_padding", dtype, tol_for(dtype), [&](const Inputs& in) {
          return attn.forward(in.at("query"), in.at("key"), in.at("key_padding_mask"));
        });
  }
}

TEST(FusionReference, CrossModalAttentionSeparateKeyValueWidths) {
  for (DType dtype : {DType::f64, DType::f32}) {
    CrossModalAttention attn(6, 3, {.kdim = 5, .vdim = 7, .bias = false});
    check_against_torch(attn, "cross_attention_kv", dtype, tol_for(dtype), [&](const Inputs& in) {
      return attn.forward(in.at("query"), in.at("key"), in.at("value"), Tensor());
    });
  }
}

TEST(FusionReference, GatedFusion) {
  for (DType dtype : {DType::f64, DType::f32}) {
    GatedFusion fusion(6);
    check_against_torch(fusion, "gated_fusion", dtype, tol_for(dtype), [&](const Inputs& in) {
      return fusion.forward(in.at("x_a"), in.at("x_b"));
    });
  }
}

TEST(FusionReference, DepthwiseSeparableConv2d) {
  for (DType dtype : {DType::f64, DType::f32}) {
    DepthwiseSeparableConv2d with_bias(3, 4, 3, {.stride = 2, .padding = 1});
    check_against_torch(with_bias, "depthwise_separable_bias", dtype, tol_for(dtype),
                        [&](const Inputs& in) { return with_bias.forward(in.at("x")); });
    DepthwiseSeparableConv2d no_bias(
        2, 3, 2, {.stride = 1, .padding = 0, .depthwise_bias = false, .pointwise_bias = false});
    check_against_torch(no_bias, "depthwise_separable_nobias", dtype, tol_for(dtype),
                        [&](const Inputs& in) { return no_bias.forward(in.at("x")); });
  }
}

}  // namespace
}  // namespace dtrain::nn
