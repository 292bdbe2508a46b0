#include "models/fusion.h"

#include "core/ops/ops.h"

namespace dtrain::models {

FusionConfig FusionConfig::preset(const std::string& name, const std::string& modalities,
                                  int64_t vocab_size, int64_t seq_len, int64_t num_classes) {
  FusionConfig c;
  if (name == "tiny") {
    c.dim = 64, c.depth = 1, c.heads = 4, c.mlp_dim = 128;
  } else if (name == "small") {
    c.dim = 96, c.depth = 2, c.heads = 4, c.mlp_dim = 192;
  } else {
    throw Error("unknown fusion model size '" + name + "': use tiny or small");
  }
  c.modalities = modalities;
  c.vocab_size = vocab_size;
  c.seq_len = seq_len;
  c.num_classes = num_classes;
  return c;
}

FusionClassifier::FusionClassifier(const FusionConfig& c) : Module("FusionClassifier"), config_(c) {
  DTRAIN_CHECK(c.modalities == "image" || c.modalities == "text" || c.modalities == "both",
               "FusionClassifier: modalities must be image, text or both, got '", c.modalities,
               "'");
  DTRAIN_CHECK(c.image_size % c.patch_size == 0, "FusionClassifier: image size ", c.image_size,
               " is not a multiple of the patch size ", c.patch_size);
  DTRAIN_CHECK(c.dim % c.heads == 0, "FusionClassifier: dim ", c.dim, " is not divisible by ",
               c.heads, " heads");
  nn::TransformerLayerOptions block_options{.pre_norm = true, .dropout = c.dropout, .eps = 1e-6};
  if (c.uses_image()) {
    patch_embed = register_module("patch_embed",
                                  std::make_shared<PatchEmbed>(c.in_channels, c.dim, c.patch_size));
    image_pos = register_parameter("image_pos", Tensor::zeros({1, c.num_patches(), c.dim}));
    image_blocks = register_module("image_blocks", std::make_shared<nn::ModuleList>());
    for (int64_t i = 0; i < c.depth; ++i) {
      image_blocks->push_back(
          std::make_shared<nn::EncoderLayer>(c.dim, c.heads, c.mlp_dim, block_options));
    }
    image_norm = register_module("image_norm", std::make_shared<nn::LayerNorm>(c.dim, 1e-6));
    nn::init::trunc_normal_(image_pos, 0.02);
  }
  if (c.uses_text()) {
    token_embed = register_module("token_embed",
                                  std::make_shared<nn::Embedding>(c.vocab_size, c.dim, c.pad_id));
    text_pos = register_parameter("text_pos", Tensor::zeros({1, c.seq_len, c.dim}));
    text_blocks = register_module("text_blocks", std::make_shared<nn::ModuleList>());
    for (int64_t i = 0; i < c.depth; ++i) {
      text_blocks->push_back(
          std::make_shared<nn::EncoderLayer>(c.dim, c.heads, c.mlp_dim, block_options));
    }
    text_norm = register_module("text_norm", std::make_shared<nn::LayerNorm>(c.dim, 1e-6));
    nn::init::trunc_normal_(text_pos, 0.02);
  }
  if (c.uses_image() && c.uses_text()) {
    nn::CrossModalAttentionOptions cross{.dropout = c.dropout};
    image_to_text = register_module(
        "image_to_text", std::make_shared<nn::CrossModalAttention>(c.dim, c.heads, cross));
    text_to_image = register_module(
        "text_to_image", std::make_shared<nn::CrossModalAttention>(c.dim, c.heads, cross));
    fuse = register_module("fuse", std::make_shared<nn::GatedFusion>(c.dim));
  }
  norm = register_module("norm", std::make_shared<nn::LayerNorm>(c.dim, 1e-6));
  head = register_module("head", std::make_shared<nn::Linear>(c.dim, c.num_classes));
}

Tensor FusionClassifier::encode_image(const Tensor& images) const {
  const FusionConfig& c = config_;
  DTRAIN_CHECK(images.defined() && images.dim() == 4 && images.size(1) == c.in_channels &&
                   images.size(2) == c.image_size && images.size(3) == c.image_size,
               "FusionClassifier expects images [B, ", c.in_channels, ", ", c.image_size, ", ",
               c.image_size, "], got ",
               images.defined() ? shape_str(images.shape()) : std::string("none"));
  Tensor x = add(patch_embed->forward(images), image_pos.to(images.dtype()));  // [B, N, D]
  for (size_t i = 0; i < image_blocks->size(); ++i)
    x = image_blocks->at<nn::EncoderLayer>(i)->forward(x);
  return image_norm->forward(x);
}

Tensor FusionClassifier::encode_text(const Tensor& text, const Tensor& pad) const {
  Tensor x = token_embed->forward(text);  // [B, T, D]
  x = add(x, text_pos.narrow(1, 0, text.size(1)).to(x.dtype()));
  nn::AttentionMask mask{.key_padding_mask = pad};
  for (size_t i = 0; i < text_blocks->size(); ++i)
    x = text_blocks->at<nn::EncoderLayer>(i)->forward(x, mask);
  return text_norm->forward(x);
}

Tensor FusionClassifier::forward(const Tensor& images, const Tensor& text) const {
  auto scope = forward_scope();
  const FusionConfig& c = config_;
  Tensor pad, keep;  // [B, T] f32: 1 at padding, and 1 at characters
  if (c.uses_text()) {
    DTRAIN_CHECK(text.defined() && text.dim() == 2 && text.size(1) >= 1 &&
                     text.size(1) <= c.seq_len &&
                     (!c.uses_image() || text.size(0) == images.size(0)),
                 "FusionClassifier expects text ids [B, T] with 1 <= T <= ", c.seq_len, ", got ",
                 text.defined() ? shape_str(text.shape()) : std::string("none"));
    NoGradGuard no_grad;
    pad = nn::token_padding_mask(text, c.pad_id);
    keep = rsub(1.0, pad);
  }
  Tensor pooled;  // [B, D]
  if (c.modalities == "image") {
    pooled = mean(encode_image(images), {1});
  } else {
    Tensor t = encode_text(text, pad);
    const Tensor weights = keep.to(t.dtype()).unsqueeze(-1);  // [B, T, 1]
    // Mean over the characters only: sum_t keep_t x_t / sum_t keep_t.
    auto text_mean = [&](const Tensor& x) {
      return div(sum(mul(x, weights), {1}), sum(weights, {1}));
    };
    if (c.modalities == "text") {
      pooled = text_mean(t);
    } else {
      Tensor p = encode_image(images);
      Tensor p_fused = add(p, image_to_text->forward(p, t, pad));  // image tokens query the text
      Tensor t_fused = add(t, text_to_image->forward(t, p));       // text tokens query the image
      pooled = fuse->forward(mean(p_fused, {1}), text_mean(t_fused));
    }
  }
  return head->forward(norm->forward(pooled));
}

double fusion_forward_flops(const FusionConfig& c) {
  const double d = static_cast<double>(c.dim);
  auto block = [&](double n) {
    return 2.0 * n * d * 3 * d + 2.0 * n * n * d * 2 + 2.0 * n * d * d +
           2.0 * n * d * c.mlp_dim * 2;
  };
  const double n = static_cast<double>(c.num_patches()), t = static_cast<double>(c.seq_len);
  double flops = 2.0 * d * c.num_classes;
  if (c.uses_image())
    flops += 2.0 * n * d * c.in_channels * c.patch_size * c.patch_size + c.depth * block(n);
  if (c.uses_text()) flops += c.depth * block(t);
  if (c.uses_image() && c.uses_text()) {
    // Each direction: q, k, v and output projections, scores and the weighted sum.
    flops += 2 * (2.0 * (n + t) * d * d * 2 + 2.0 * n * t * d * 2) + 2.0 * 2 * d * d;
  }
  return flops;
}

}  // namespace dtrain::models
