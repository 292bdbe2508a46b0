// Fashion-MNIST (Xiao et al. 2017): 28x28 grey images of 10 kinds of clothing, 60000 for training and
// 10000 for testing, in IDX files. The Debian package dataset-fashion-mnist installs them gzip'd under
// /usr/share/datasets/fashion-mnist; uncompressed copies (the same names without .gz) work too.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "core/data/dataset.h"

namespace dtrain::data {

inline constexpr const char* kFashionMnistDefaultDir = "/usr/share/datasets/fashion-mnist";
// The training set's pixel statistics after scaling to [0, 1] (DESIGN.md); the model sees
// (pixel / 255 - mean) / std.
inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;

struct FashionMnistOptions {
  // Random crop after zero-padding by `crop_padding` and a random horizontal flip (core/data/augment.h),
  // drawn per sample from the seed get_batch receives. For the train split only.
  bool augment = false;
  int64_t crop_padding = 2;
};

class FashionMnist : public Dataset {
 public:
  // Loads the split from `dir` (train-* or t10k-* files). Errors name the directory or file and say to
  // install dataset-fashion-mnist or pass --data-dir.
  explicit FashionMnist(Split split, const std::string& dir = kFashionMnistDefaultDir,
                        FashionMnistOptions options = {});

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  // input f32 [B, 1, H, W] normalised, target i64 [B] class ids in [0, 10). With augmentation on, sample
  // i is transformed by crop_flip_sample(seed, i); otherwise `seed` is ignored.
  Batch get_batch(const std::vector<int64_t>& indices, uint64_t seed) const override;

  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  const std::vector<uint8_t>& images() const { return images_; }  // [N, H, W] row-major
  const std::vector<uint8_t>& labels() const { return labels_; }
  static constexpr int64_t num_classes() { return 10; }
  static const std::array<const char*, 10>& class_names();

 private:
  std::vector<uint8_t> images_;
  std::vector<uint8_t> labels_;
  int64_t height_ = 0, width_ = 0;
  FashionMnistOptions options_;
};

}  // namespace dtrain::data
