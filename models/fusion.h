// A two-modality classifier: an image encoder over a glyph, a text encoder over its definition, and
// (modalities "both") each side attending to the other before their pooled summaries are fused:
//   image:  p = patches(x) + image_pos;  p = image_blocks(p);  p = image_norm(p)      [B, N, D]
//   text:   t = embed(ids) + text_pos;   t = text_blocks(t | padding masked);  t = text_norm(t)  [B, T, D]
//   both:   p' = p + image_to_text(p, t | padding masked)    image tokens query the text
//           t' = t + text_to_image(t, p)                      text tokens query the image
//           z  = fuse(mean_N p', mean_T t' over non-padding)   GatedFusion: g z_p + (1 - g) z_t
//   image or text alone: z = the mean of that encoder's tokens
//   logits = head(norm(z))                                    [B, num_classes]
// Only the parts a modality uses are built, so every parameter gets a gradient (DDP waits for each).
#pragma once
#include <memory>
#include <string>

#include "core/nn/cross_modal_attention.h"
#include "core/nn/gated_fusion.h"
#include "core/nn/nn.h"
#include "models/vit.h"

namespace dtrain::models {

struct FusionConfig {
  std::string modalities = "both";  // image | text | both
  int64_t num_classes = 214;
  int64_t image_size = 16;
  int64_t in_channels = 1;
  int64_t patch_size = 4;
  int64_t vocab_size = 64;
  int64_t seq_len = 48;  // text positions
  int64_t pad_id = 0;
  int64_t dim = 64;
  int64_t depth = 2;  // blocks in each encoder
  int64_t heads = 4;
  int64_t mlp_dim = 128;
  double dropout = 0.0;
  // tiny (dim 64, depth 1, heads 4, MLP 128) and small (dim 96, depth 2, heads 4, MLP 192): sized
  // for a few minutes on two CPU cores.
  static FusionConfig preset(const std::string& name, const std::string& modalities,
                             int64_t vocab_size, int64_t seq_len, int64_t num_classes);
  bool uses_image() const { return modalities != "text"; }
  bool uses_text() const { return modalities != "image"; }
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

class FusionClassifier : public nn::Module {
 public:
  explicit FusionClassifier(const FusionConfig& config);
  // images f32 [B, C, H, W] and text ids i64 [B, T] (T <= seq_len, pad_id where empty; either may be
  // undefined when the modality is unused) -> logits [B, num_classes].
  Tensor forward(const Tensor& images, const Tensor& text) const;
  const FusionConfig& config() const { return config_; }

  // Image encoder (image and both).
  std::shared_ptr<PatchEmbed> patch_embed;
  Tensor image_pos;  // [1, N, D]
  std::shared_ptr<nn::ModuleList> image_blocks;
  std::shared_ptr<nn::LayerNorm> image_norm;
  // Text encoder (text and both).
  std::shared_ptr<nn::Embedding> token_embed;
  Tensor text_pos;  // [1, seq_len, D]
  std::shared_ptr<nn::ModuleList> text_blocks;
  std::shared_ptr<nn::LayerNorm> text_norm;
  // Fusion (both).
  std::shared_ptr<nn::CrossModalAttention> image_to_text;
  std::shared_ptr<nn::CrossModalAttention> text_to_image;
  std::shared_ptr<nn::GatedFusion> fuse;
  // Classifier.
  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<nn::Linear> head;

 private:
  Tensor encode_image(const Tensor& images) const;                  // [B, N, D]
  Tensor encode_text(const Tensor& text, const Tensor& pad) const;  // [B, T, D]
  FusionConfig config_;
};

// FLOPs of one forward pass for one sample (multiply-adds count 2), for throughput and MFU figures.
double fusion_forward_flops(const FusionConfig& config);

}  // namespace dtrain::models
