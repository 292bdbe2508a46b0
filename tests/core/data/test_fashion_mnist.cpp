#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "core/data/fashion_mnist.h"
#include "core/error.h"
#include "data_test_util.h"

using namespace dtrain;
using namespace dtrain::data;
using namespace dtrain::data::testing;

namespace {

void write_idx_u8(const std::string& path, const std::vector<uint32_t>& dims,
                  const std::vector<uint8_t>& data) {
  std::string out = {0, 0, 0x08, static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((d >> s) & 0xff));
  }
  out.append(data.begin(), data.end());
  write_bytes(path, out);
}

}  // namespace

TEST(FashionMnist, MissingDirectorySaysWhatToDo) {
  const std::string msg =
      error_of([] { FashionMnist(Split::train, "/nonexistent/fashion-mnist"); });
  EXPECT_NE(msg.find("/nonexistent/fashion-mnist"), std::string::npos) << msg;
  EXPECT_NE(msg.find("install dataset-fashion-mnist"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--data-dir"), std::string::npos) << msg;
}

TEST(FashionMnist, MissingFileInDirectory) {
  TempDir dir;
  write_idx_u8(dir.file("t10k-images-idx3-ubyte"), {1, 2, 2}, {0, 1, 2, 3});
  const std::string msg = error_of([&] { FashionMnist(Split::test, dir.path.string()); });
  EXPECT_NE(msg.find("t10k-labels-idx1-ubyte"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
}

TEST(FashionMnist, CountMismatchIsAnError) {
  TempDir dir;
  write_idx_u8(dir.file("train-images-idx3-ubyte"), {5, 2, 2}, std::vector<uint8_t>(20, 7));
  write_idx_u8(dir.file("train-labels-idx1-ubyte"), {4}, {0, 1, 2, 3});
  const std::string msg = error_of([&] { FashionMnist(Split::train, dir.path.string()); });
  EXPECT_NE(msg.find("5 images"), std::string::npos) << msg;
  EXPECT_NE(msg.find("4 labels"), std::string::npos) << msg;
}

TEST(FashionMnist, LabelOutOfRangeIsAnError) {
  TempDir dir;
  write_idx_u8(dir.file("train-images-idx3-ubyte"), {2, 1, 1}, {0, 0});
  write_idx_u8(dir.file("train-labels-idx1-ubyte"), {2}, {3, 10});
  EXPECT_NE(error_of([&] { FashionMnist(Split::train, dir.path.string()); }).find("label 10"),
            std::string::npos);
}

TEST(FashionMnist, BatchIsScaledNormalisedAndOrdered) {
  TempDir dir;
  // Three 2x3 images with known pixels.
  std::vector<uint8_t> pixels(18);
  std::iota(pixels.begin(), pixels.end(), 0);
  pixels[17] = 255;
  write_idx_u8(dir.file("t10k-images-idx3-ubyte"), {3, 2, 3}, pixels);
  write_idx_u8(dir.file("t10k-labels-idx1-ubyte"), {3}, {9, 0, 4});
  FashionMnist ds(Split::test, dir.path.string());
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.height(), 2);
  EXPECT_EQ(ds.width(), 3);

  const Batch b = ds.get_batch({2, 0}, 0);
  EXPECT_EQ(b.input.shape(), (Shape{2, 1, 2, 3}));
  EXPECT_EQ(b.input.dtype(), DType::f32);
  EXPECT_EQ(b.target.shape(), (Shape{2}));
  EXPECT_EQ(b.target.dtype(), DType::i64);
  EXPECT_EQ(b.target.data<int64_t>()[0], 4);
  EXPECT_EQ(b.target.data<int64_t>()[1], 9);
  const float* x = b.input.data<float>();
  for (int j = 0; j < 6; ++j) {
    const double p0 = pixels[12 + j], p1 = pixels[j];
    EXPECT_NEAR(x[j], (p0 / 255.0 - 0.2860) / 0.3530, 1e-5);
    EXPECT_NEAR(x[6 + j], (p1 / 255.0 - 0.2860) / 0.3530, 1e-5);
  }
  EXPECT_NEAR(x[5], (1.0 - 0.2860) / 0.3530, 1e-5);  // pixel 255
  EXPECT_EQ(b.indices, (std::vector<int64_t>{2, 0}));
  EXPECT_THROW(ds.get_batch({3}, 0), Error);
}

// The files dataset-fashion-mnist installs (scripts/bootstrap installs the package).
TEST(FashionMnist, RealDatasetSizesAndNormalisation) {
  FashionMnist train(Split::train);
  FashionMnist test(Split::test);
  EXPECT_EQ(train.size(), 60000);
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(train.height(), 28);
  EXPECT_EQ(train.width(), 28);
  // The classes are balanced: 6000 training images each.
  std::vector<int> per_class(10);
  for (uint8_t l : train.labels()) ++per_class[l];
  for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[c], 6000) << FashionMnist::class_names()[c];

  // 0.2860 / 0.3530 are the training set's statistics, so a large batch comes out near mean 0, std 1.
  std::vector<int64_t> idx(6000);
  for (int64_t i = 0; i < 6000; ++i) idx[i] = i * 10;
  const Batch b = train.get_batch(idx, 0);
  EXPECT_EQ(b.input.shape(), (Shape{6000, 1, 28, 28}));
  const float* x = b.input.data<float>();
  double sum = 0, sq = 0;
  const int64_t n = b.input.numel();
  for (int64_t i = 0; i < n; ++i) {
    sum += x[i];
    sq += static_cast<double>(x[i]) * x[i];
  }
  const double mean = sum / n, std = std::sqrt(sq / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(std, 1.0, 0.03);
}

// With augmentation on, each training image is one of the 5 x 5 x 2 transforms "pad by 2 with black, take
// the window at (dy, dx), maybe mirror left-right" of its source, chosen by the seed and the sample alone.
TEST(FashionMnist, AugmentationIsASeededPaddedCropOrFlip) {
  TempDir dir;
  const int n = 4, h = 6, w = 5;
  std::vector<uint8_t> pixels(n * h * w);
  for (size_t j = 0; j < pixels.size(); ++j)
    pixels[j] = static_cast<uint8_t>(1 + (j * 37) % 254);  // never 0
  write_idx_u8(dir.file("train-images-idx3-ubyte"), {n, h, w}, pixels);
  write_idx_u8(dir.file("train-labels-idx1-ubyte"), {n}, {1, 2, 3, 4});
  FashionMnist plain(Split::train, dir.path.string());
  FashionMnist aug(Split::train, dir.path.string(), {.augment = true});
  auto normalised = [](uint8_t p) { return (p / 255.0f - kFashionMnistMean) / kFashionMnistStd; };

  const std::vector<int64_t> idx = {0, 1, 2, 3};
  CropFlipsSeen seen;
  for (uint64_t seed = 0; seed < 16; ++seed) {
    const Batch b = aug.get_batch(idx, seed);
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(b.target.data<int64_t>()[i], i + 1);  // labels are never augmented
      const int matches = count_crop_flips(
          b.input.data<float>() + i * h * w, 1, h, w, 2,
          [&](int, int y, int x) { return pixels[(i * h + y) * w + x]; },
          [&](uint8_t p, int) { return normalised(p); }, seen);
      EXPECT_EQ(matches, 1) << "seed " << seed << " sample " << i;
    }
  }
  EXPECT_EQ(seen.flips.size(), 2u);
  EXPECT_GT(seen.offsets.size(), 12u);  // 64 draws over 25 offsets

  // Same seed, same images, whichever batch a sample is in; another seed, other images; off, the source.
  const Batch a = aug.get_batch({3, 1}, 7), again = aug.get_batch({1}, 7),
              other = aug.get_batch({3, 1}, 8);
  const float* pa = a.input.data<float>();
  EXPECT_TRUE(std::equal(pa + h * w, pa + 2 * h * w, again.input.data<float>()));
  EXPECT_FALSE(std::equal(pa, pa + 2 * h * w, other.input.data<float>()));
  const Batch p = plain.get_batch({3}, 7);
  for (int j = 0; j < h * w; ++j)
    EXPECT_EQ(p.input.data<float>()[j], normalised(pixels[3 * h * w + j]));
}
