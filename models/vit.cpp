#include "models/vit.h"

#include "core/ops/ops.h"

namespace dtrain::models {

VitConfig VitConfig::preset(const std::string& name) {
  VitConfig c;
  if (name == "fm") return c;
  c.image_size = 224;
  c.in_channels = 3;
  c.num_classes = 1000;
  c.patch_size = 16;
  c.depth = 12;
  if (name == "tiny") {
    c.dim = 192, c.heads = 3;
  } else if (name == "small") {
    c.dim = 384, c.heads = 6;
  } else if (name == "base" || name == "b16") {
    c.dim = 768, c.heads = 12;
  } else {
    throw Error("unknown ViT size '" + name + "': use fm, tiny, small or base");
  }
  c.mlp_dim = 4 * c.dim;
  return c;
}

PatchEmbed::PatchEmbed(int64_t in_channels, int64_t dim, int64_t patch_size)
    : Module("PatchEmbed") {
  proj = register_module("proj", std::make_shared<nn::Conv2d>(in_channels, dim, patch_size,
                                                              /*stride=*/patch_size));
}

Tensor PatchEmbed::forward(const Tensor& images) const {
  auto scope = forward_scope();
  Tensor maps = proj->forward(images);     // [B, D, H/p, W/p]
  return maps.flatten(2).transpose(1, 2);  // [B, N, D]
}

DwsepStem::DwsepStem(int64_t in_channels, int64_t channels) : Module("DwsepStem") {
  const nn::DepthwiseSeparableConv2dOptions same{.stride = 1, .padding = 1};
  conv1 = register_module(
      "conv1", std::make_shared<nn::DepthwiseSeparableConv2d>(in_channels, channels, 3, same));
  conv2 = register_module(
      "conv2", std::make_shared<nn::DepthwiseSeparableConv2d>(channels, channels, 3, same));
}

Tensor DwsepStem::forward(const Tensor& images) const {
  auto scope = forward_scope();
  return gelu(conv2->forward(gelu(conv1->forward(images))));
}

VisionTransformer::VisionTransformer(const VitConfig& c) : Module("VisionTransformer"), config_(c) {
  DTRAIN_CHECK(c.image_size % c.patch_size == 0, "ViT: image size ", c.image_size,
               " is not a multiple of the patch size ", c.patch_size);
  DTRAIN_CHECK(c.dim % c.heads == 0, "ViT: dim ", c.dim, " is not divisible by ", c.heads,
               " heads");
  DTRAIN_CHECK(c.stem == "patch" || c.stem == "dwsep", "ViT: unknown stem '", c.stem,
               "': use patch or dwsep");
  if (c.stem == "dwsep")
    stem = register_module("stem", std::make_shared<DwsepStem>(c.in_channels, c.stem_channels));
  patch_embed = register_module(
      "patch_embed",
      std::make_shared<PatchEmbed>(stem ? c.stem_channels : c.in_channels, c.dim, c.patch_size));
  cls_token = register_parameter("cls_token", Tensor::zeros({1, 1, c.dim}));
  pos_embed = register_parameter("pos_embed", Tensor::zeros({1, c.num_patches() + 1, c.dim}));
  blocks = register_module("blocks", std::make_shared<nn::ModuleList>());
  nn::TransformerLayerOptions block_options{.pre_norm = true, .dropout = c.dropout, .eps = 1e-6};
  for (int64_t i = 0; i < c.depth; ++i) {
    blocks->push_back(std::make_shared<nn::EncoderLayer>(c.dim, c.heads, c.mlp_dim, block_options));
  }
  norm = register_module("norm", std::make_shared<nn::LayerNorm>(c.dim, 1e-6));
  head = register_module("head", std::make_shared<nn::Linear>(c.dim, c.num_classes));

  // timm's initialisation: positions and linear weights ~ truncated N(0, 0.02^2), biases zero,
  // the class token ~ N(0, 1e-6^2).
  nn::init::trunc_normal_(pos_embed, 0.02);
  nn::init::normal_(cls_token, 0.0, 1e-6);
  for (auto& [name, module] : named_modules()) {
    if (auto* linear = dynamic_cast<nn::Linear*>(module)) {
      nn::init::trunc_normal_(linear->weight, 0.02);
      if (linear->bias.defined()) {
        NoGradGuard no_grad;
        linear->bias.zero_();
      }
    }
  }
}

Tensor VisionTransformer::forward(const Tensor& images) const {
  auto scope = forward_scope();
  DTRAIN_CHECK(images.dim() == 4 && images.size(1) == config_.in_channels &&
                   images.size(2) == config_.image_size && images.size(3) == config_.image_size,
               "ViT expects images [B, ", config_.in_channels, ", ", config_.image_size, ", ",
               config_.image_size, "], got ", shape_str(images.shape()));
  Tensor x = patch_embed->forward(stem ? stem->forward(images) : images);  // [B, N, D]
  int64_t batch = x.size(0);
  Tensor cls = cls_token.to(x.dtype()).expand({batch, 1, config_.dim});
  x = add(cat({cls, x}, 1), pos_embed.to(x.dtype()));  // [B, N+1, D]
  for (size_t i = 0; i < blocks->size(); ++i) {
    auto block = blocks->at<nn::EncoderLayer>(i);
    x = nn::maybe_checkpoint(
        checkpoint_activations, *block, {x},
        [block](const std::vector<Tensor>& in) { return block->forward(in[0]); });
  }
  x = norm->forward(x);
  return head->forward(x.select(1, 0));  // the class token
}

double vit_forward_flops(const VitConfig& c) {
  double n = static_cast<double>(c.num_patches() + 1), d = static_cast<double>(c.dim);
  const double pixels = static_cast<double>(c.image_size) * c.image_size;
  const double k =
      c.stem == "dwsep" ? static_cast<double>(c.stem_channels) : static_cast<double>(c.in_channels);
  const double stem =
      c.stem != "dwsep"
          ? 0.0
          : 2.0 * pixels * (9.0 * c.in_channels + c.in_channels * k + 9.0 * k + k * k);
  double patch = stem + 2.0 * c.num_patches() * d * k * c.patch_size * c.patch_size;
  double per_block = 2.0 * n * d * 3 * d             // qkv
                     + 2.0 * n * n * d * 2           // q k^T and attn v
                     + 2.0 * n * d * d               // proj
                     + 2.0 * n * d * c.mlp_dim * 2;  // fc1, fc2
  return patch + c.depth * per_block + 2.0 * d * c.num_classes;
}

}  // namespace dtrain::models
