#include "core/data/cifar10.h"

#include <filesystem>

#include "core/data/augment.h"
#include "core/data/file_bytes.h"
#include "core/data/seeding.h"
#include "core/error.h"
#include "core/tensor/random.h"

namespace dtrain::data {

namespace {
const char* kHint = "pass --data-dir with the folder of cifar-10-batches-bin";
}

const std::array<const char*, 10>& Cifar10::class_names() {
  static const std::array<const char*, 10> names = {
      "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  return names;
}

Cifar10::Cifar10(Split split, const std::string& dir, Cifar10Options options) : options_(options) {
  DTRAIN_CHECK(is_directory_entry(dir), "CIFAR-10 directory ", dir, " does not exist; ", kHint);
  std::vector<std::string> names;
  if (split == Split::train) {
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else {
    names.push_back("test_batch.bin");
  }
  for (const auto& name : names) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    DTRAIN_CHECK(entry_exists(path), "CIFAR-10 file ", path, " not found; ", kHint);
    append_file(path);
  }
}

void Cifar10::append_file(const std::string& path) {
  const std::string bytes = read_file_bytes(path, kHint);
  const size_t n = bytes.size() / kRecordBytes;
  DTRAIN_CHECK(
      bytes.size() % kRecordBytes == 0 && n > 0, path, " is truncated or corrupt: ", bytes.size(),
      " bytes is not a positive multiple of the ", kRecordBytes, "-byte CIFAR-10 record; ", kHint);
  const size_t first = labels_.size();
  labels_.resize(first + n);
  images_.resize((first + n) * kImageBytes);
  for (size_t r = 0; r < n; ++r) {
    const auto* rec = reinterpret_cast<const uint8_t*>(bytes.data()) + r * kRecordBytes;
    DTRAIN_CHECK(
        rec[0] < 10, path, ": record ", r, " has label ", int(rec[0]),
        ", not a class in [0, 10); the file is corrupt or not CIFAR-10 (CIFAR-100 records have two"
        " label bytes)");
    labels_[first + r] = rec[0];
    std::copy(rec + 1, rec + kRecordBytes, images_.data() + (first + r) * kImageBytes);
  }
}

Batch Cifar10::get_batch(const std::vector<int64_t>& indices, uint64_t seed) const {
  check_batch_indices(indices, size(), "Cifar10");
  // Per channel c, a table for the 256 pixel values: (p / 255 - mean_c) / std_c.
  float lut[kChannels][256];
  for (int64_t c = 0; c < kChannels; ++c) {
    for (int p = 0; p < 256; ++p)
      lut[c][p] = (static_cast<float>(p) / 255.0f - kCifar10Mean[c]) / kCifar10Std[c];
  }
  const int64_t b = static_cast<int64_t>(indices.size());
  const int64_t plane = kHeight * kWidth;
  Batch batch;
  batch.input = Tensor::empty({b, kChannels, kHeight, kWidth}, DType::f32);
  batch.target = Tensor::empty({b}, DType::i64);
  float* x = batch.input.data<float>();
  int64_t* y = batch.target.data<int64_t>();
  uint8_t augmented[kImageBytes];
  for (int64_t i = 0; i < b; ++i) {
    const uint8_t* src = images_.data() + indices[i] * kImageBytes;
    if (options_.augment)
      src = crop_flip_sample(src, augmented, kChannels, kHeight, kWidth, options_.crop_padding,
                             seed, indices[i]);
    for (int64_t c = 0; c < kChannels; ++c) {
      for (int64_t j = 0; j < plane; ++j)
        x[(i * kChannels + c) * plane + j] = lut[c][src[c * plane + j]];
    }
    y[i] = labels_[indices[i]];
  }
  batch.indices = indices;
  return batch;
}

}  // namespace dtrain::data
