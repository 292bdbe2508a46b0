#include "core/data/fashion_mnist.h"
#include "core/data/file_bytes.h"

#include <filesystem>

#include "core/data/augment.h"
#include "core/data/idx.h"
#include "core/error.h"

namespace dtrain::data {

namespace {

const char* kHint = "re-install dataset-fashion-mnist (scripts/bootstrap) or pass --data-dir";

// The gzip'd name the package installs, or the same name uncompressed.
std::string find_file(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path gz = fs::path(dir) / (name + ".gz");
  const fs::path plain = fs::path(dir) / name;
  if (entry_exists(gz.string())) return gz.string();
  if (entry_exists(plain.string())) return plain.string();
  throw Error("Fashion-MNIST file " + gz.string() + " not found (nor " + plain.string() + "); " +
              kHint);
}

}  // namespace

const std::array<const char*, 10>& FashionMnist::class_names() {
  static const std::array<const char*, 10> names = {
      "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

FashionMnist::FashionMnist(Split split, const std::string& dir, FashionMnistOptions options)
    : options_(options) {
  DTRAIN_CHECK(
      is_directory_entry(dir), "Fashion-MNIST directory ", dir,
      " does not exist; install dataset-fashion-mnist (scripts/bootstrap) or pass --data-dir");
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const std::string images_path = find_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_file(dir, prefix + "-labels-idx1-ubyte");

  IdxArray images = read_idx(images_path, kHint);
  IdxArray labels = read_idx(labels_path, kHint);
  DTRAIN_CHECK(images.type == IdxType::u8 && images.dims.size() == 3, images_path, " holds ",
               idx_type_name(images.type), " data with ", images.dims.size(),
               " dims; Fashion-MNIST images are u8 [N, H, W]; ", kHint);
  DTRAIN_CHECK(labels.type == IdxType::u8 && labels.dims.size() == 1, labels_path, " holds ",
               idx_type_name(labels.type), " data with ", labels.dims.size(),
               " dims; Fashion-MNIST labels are u8 [N]; ", kHint);
  DTRAIN_CHECK(images.dims[0] == labels.dims[0], "Fashion-MNIST ", split_name(split),
               " split: ", images_path, " holds ", images.dims[0], " images but ", labels_path,
               " holds ", labels.dims[0], " labels; ", kHint);
  for (size_t i = 0; i < labels.bytes.size(); ++i) {
    DTRAIN_CHECK(labels.bytes[i] < num_classes(), labels_path, ": label ", int(labels.bytes[i]),
                 " of sample ", i, " is not a class in [0, 10); ", kHint);
  }
  height_ = images.dims[1];
  width_ = images.dims[2];
  images_ = std::move(images.bytes);
  labels_ = std::move(labels.bytes);
}

Batch FashionMnist::get_batch(const std::vector<int64_t>& indices, uint64_t seed) const {
  check_batch_indices(indices, size(), "FashionMnist");
  // One table for the 256 pixel values: (p / 255 - mean) / std.
  float lut[256];
  for (int p = 0; p < 256; ++p)
    lut[p] = (static_cast<float>(p) / 255.0f - kFashionMnistMean) / kFashionMnistStd;

  const int64_t b = static_cast<int64_t>(indices.size());
  const int64_t pixels = height_ * width_;
  Batch batch;
  batch.input = Tensor::empty({b, 1, height_, width_}, DType::f32);
  batch.target = Tensor::empty({b}, DType::i64);
  float* x = batch.input.data<float>();
  int64_t* y = batch.target.data<int64_t>();
  std::vector<uint8_t> augmented(options_.augment ? pixels : 0);
  for (int64_t i = 0; i < b; ++i) {
    const uint8_t* src = images_.data() + indices[i] * pixels;
    if (options_.augment)
      src = crop_flip_sample(src, augmented.data(), 1, height_, width_, options_.crop_padding, seed,
                             indices[i]);
    for (int64_t j = 0; j < pixels; ++j) x[i * pixels + j] = lut[src[j]];
    y[i] = labels_[indices[i]];
  }
  batch.indices = indices;
  return batch;
}

}  // namespace dtrain::data
