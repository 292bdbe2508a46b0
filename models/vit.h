// Vision Transformer (Dosovitskiy et al., "An Image Is Worth 16x16 Words"), laid out like timm's
// VisionTransformer so checkpoints load there by name:
//   patches = conv(x, kernel = stride = patch)            patch_embed.proj.{weight,bias}
//     or, with stem "dwsep", conv(stem(x), ...) where stem is two 3x3 depthwise-separable
//     convolutions, each followed by GELU (a convolutional stem at full resolution; stem.conv1.*,
//     stem.conv2.*, not in timm's layout)
//   z0 = [cls; patches] + pos                               cls_token [1,1,D], pos_embed [1,N+1,D]
//   z_l = block_l(z_{l-1}), l = 1..depth (pre-LN)           blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}
//   logits = head(norm(z_L)[:, 0])                          norm.*, head.*
#pragma once
#include <memory>
#include <string>

#include "core/nn/nn.h"

namespace dtrain::models {

struct VitConfig {
  int64_t image_size = 28;
  int64_t in_channels = 1;
  int64_t num_classes = 10;
  int64_t patch_size = 4;
  int64_t dim = 128;
  int64_t depth = 6;
  int64_t heads = 4;
  int64_t mlp_dim = 512;
  double dropout = 0.0;
  std::string stem =
      "patch";  // "patch": the patch projection alone; "dwsep": a DwsepStem before it
  int64_t stem_channels = 32;  // the dwsep stem's output channels
  // fm (Fashion-MNIST: patch 4, dim 128, depth 6, heads 4, MLP 512), and the paper's tiny, small, base
  // (patch 16): dims 192/384/768, depth 12, heads 3/6/12, MLP 4x.
  static VitConfig preset(const std::string& name);
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

// The patch embedding: a convolution whose kernel and stride are the patch size.
class PatchEmbed : public nn::Module {
 public:
  PatchEmbed(int64_t in_channels, int64_t dim, int64_t patch_size);
  // [B, C, H, W] -> [B, N, D], patches in row-major order.
  Tensor forward(const Tensor& images) const;
  std::shared_ptr<nn::Conv2d> proj;
};

// A convolutional stem at the image's resolution: two 3x3 depthwise-separable convolutions (padding
// 1), each followed by GELU. [B, C, H, W] -> [B, channels, H, W]. Convolutions before the patch
// projection give the ViT local features it otherwise has to learn from whole patches (Xiao et al.,
// "Early Convolutions Help Transformers See Better", 2021); depthwise-separable ones cost
// C*9 + C*C' weights each instead of C*C'*9.
class DwsepStem : public nn::Module {
 public:
  DwsepStem(int64_t in_channels, int64_t channels);
  Tensor forward(const Tensor& images) const;
  std::shared_ptr<nn::DepthwiseSeparableConv2d> conv1, conv2;
};

class VisionTransformer : public nn::Module {
 public:
  explicit VisionTransformer(const VitConfig& config);
  // images f32 [B, C, H, W] -> logits [B, num_classes]
  Tensor forward(const Tensor& images) const;

  // Recompute each block's forward in backward instead of keeping its activations
  // (core/nn/checkpoint.h): the same gradients for less memory and about one more forward.
  bool checkpoint_activations = false;
  const VitConfig& config() const { return config_; }

  std::shared_ptr<DwsepStem> stem;  // null unless config.stem is "dwsep"
  std::shared_ptr<PatchEmbed> patch_embed;
  Tensor cls_token;
  Tensor pos_embed;
  std::shared_ptr<nn::ModuleList> blocks;
  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<nn::Linear> head;

 private:
  VitConfig config_;
};

// FLOPs of one forward pass for one image (multiply-adds count 2), for throughput and MFU figures.
double vit_forward_flops(const VitConfig& config);

}  // namespace dtrain::models
