// CIFAR-10 in its binary distribution (cifar-10-batches-bin): data_batch_1.bin ... data_batch_5.bin for
// training and test_batch.bin for testing, each a run of 3073-byte records:
//
//   [1 byte]     label in [0, 10)
//   [3072 bytes] the 32x32 image as three planes (red, green, blue), each row-major
//
// No Debian package ships CIFAR-10, so there is no default directory: pass the folder that holds the
// .bin files.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "core/data/dataset.h"

namespace dtrain::data {

// Per-channel mean and std of the training set's pixels scaled to [0, 1].
inline constexpr std::array<float, 3> kCifar10Mean = {0.4914f, 0.4822f, 0.4465f};
inline constexpr std::array<float, 3> kCifar10Std = {0.2470f, 0.2435f, 0.2616f};

struct Cifar10Options {
  // Random crop after zero-padding by `crop_padding` and a random horizontal flip, drawn per sample
  // from the seed get_batch receives. Usually on for the train split only.
  bool augment = false;
  int64_t crop_padding = 4;
};

class Cifar10 : public Dataset {
 public:
  static constexpr int64_t kChannels = 3, kHeight = 32, kWidth = 32;
  static constexpr int64_t kImageBytes = kChannels * kHeight * kWidth;
  static constexpr int64_t kRecordBytes = 1 + kImageBytes;

  Cifar10(Split split, const std::string& dir, Cifar10Options options = {});

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  // input f32 [B, 3, 32, 32] normalised per channel, target i64 [B]. With augmentation on, sample i
  // is transformed by draw_crop_flip from a Generator seeded with combine_seed(seed, i).
  Batch get_batch(const std::vector<int64_t>& indices, uint64_t seed) const override;

  const std::vector<uint8_t>& images() const { return images_; }  // [N, 3, 32, 32]
  const std::vector<uint8_t>& labels() const { return labels_; }
  static const std::array<const char*, 10>& class_names();

 private:
  void append_file(const std::string& path);

  Cifar10Options options_;
  std::vector<uint8_t> images_;
  std::vector<uint8_t> labels_;
};

}  // namespace dtrain::data
