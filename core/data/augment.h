// Image augmentation for training: the random crop with zero padding and the horizontal flip used for
// CIFAR-10 since the ResNet paper (Fashion-MNIST uses it with 2 pixels of padding). Works on u8 images in
// [C, H, W] layout before normalisation, so the padding is black (pixel 0), as torchvision's
// RandomCrop(padding=p) + RandomHorizontalFlip give.
#pragma once
#include <cstdint>

#include "core/tensor/random.h"

namespace dtrain::data {

struct CropFlip {
  int64_t dy = 0, dx = 0;  // top-left corner of the crop inside the padded image, in [0, 2 * pad]
  bool flip = false;
};

// Draws one crop position and flip from `gen`: dy, then dx (each uniform in [0, 2 * pad]), then the
// flip (probability 1/2).
CropFlip draw_crop_flip(Generator& gen, int64_t pad);

// dst = flip(crop(pad(src))): out(c, y, x) = src(c, y + dy - pad, x' + dx - pad) with
// x' = W - 1 - x when flipping, else x; 0 where that falls outside src. src and dst are [C, H, W].
void apply_crop_flip(const uint8_t* src, uint8_t* dst, int64_t channels, int64_t height,
                     int64_t width, int64_t pad, const CropFlip& t);

// The training-time transform of sample `index` in an epoch whose augmentation seed is `seed`: draws a
// CropFlip from a Generator seeded with combine_seed(seed, index), writes the transformed image to
// `scratch` (C * H * W bytes) and returns it. A sample's transform thus depends on the seed and the sample
// only, never on its batch or rank.
const uint8_t* crop_flip_sample(const uint8_t* src, uint8_t* scratch, int64_t channels,
                                int64_t height, int64_t width, int64_t pad, uint64_t seed,
                                int64_t index);

}  // namespace dtrain::data
