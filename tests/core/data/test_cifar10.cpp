#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "core/data/augment.h"
#include "core/data/cifar10.h"
#include "core/error.h"
#include "data_test_util.h"

namespace fs = std::filesystem;
using namespace dtrain;
using namespace dtrain::data;
using namespace dtrain::data::testing;

namespace {

// Pixel (c, y, x) of record r of file f: never 0, so the zero padding of a crop is recognisable.
uint8_t pixel(int f, int r, int c, int y, int x) {
  return static_cast<uint8_t>(1 + (f * 97 + r * 31 + c * 13 + y * 7 + x * 3) % 255);
}
uint8_t label(int f, int r) { return static_cast<uint8_t>((f * 3 + r) % 10); }

// CIFAR-10 binary files as the distribution has them: five training files and a test file.
void write_cifar_dir(const TempDir& dir, int records_per_file) {
  for (int f = 0; f <= 5; ++f) {
    std::string bytes;
    for (int r = 0; r < records_per_file; ++r) {
      bytes.push_back(static_cast<char>(label(f, r)));
      for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 32; ++y)
          for (int x = 0; x < 32; ++x) bytes.push_back(static_cast<char>(pixel(f, r, c, y, x)));
    }
    const std::string name =
        f < 5 ? "data_batch_" + std::to_string(f + 1) + ".bin" : "test_batch.bin";
    write_bytes(dir.file(name), bytes);
  }
}

float normalised(uint8_t p, int c) { return (p / 255.0f - kCifar10Mean[c]) / kCifar10Std[c]; }

}  // namespace

TEST(Cifar10, ReadsGeneratedFiles) {
  TempDir dir;
  write_cifar_dir(dir, 3);
  Cifar10 train(Split::train, dir.path.string());
  Cifar10 test(Split::test, dir.path.string());
  ASSERT_EQ(train.size(), 15);
  ASSERT_EQ(test.size(), 3);
  // Training record 7 is record 1 of data_batch_3.bin.
  const Batch b = train.get_batch({7, 0}, 123);
  EXPECT_EQ(b.input.shape(), (Shape{2, 3, 32, 32}));
  EXPECT_EQ(b.target.data<int64_t>()[0], label(2, 1));
  EXPECT_EQ(b.target.data<int64_t>()[1], label(0, 0));
  const float* x = b.input.data<float>();
  for (int c = 0; c < 3; ++c) {
    for (int y = 0; y < 32; y += 5) {
      for (int xx = 0; xx < 32; xx += 3) {
        EXPECT_NEAR(x[(c * 32 + y) * 32 + xx], normalised(pixel(2, 1, c, y, xx), c), 1e-6);
      }
    }
  }
  const Batch t = test.get_batch({2}, 0);
  EXPECT_EQ(t.target.data<int64_t>()[0], label(5, 2));
  EXPECT_NEAR(t.input.data<float>()[32 * 32 + 33], normalised(pixel(5, 2, 1, 1, 1), 1), 1e-6);
}

TEST(Cifar10, TruncatedAndMissingFiles) {
  TempDir dir;
  write_cifar_dir(dir, 2);
  fs::resize_file(dir.file("data_batch_4.bin"), 3073 + 100);
  const std::string msg = error_of([&] { Cifar10(Split::train, dir.path.string()); });
  EXPECT_NE(msg.find("data_batch_4.bin is truncated"), std::string::npos) << msg;
  fs::remove(dir.file("test_batch.bin"));
  EXPECT_NE(
      error_of([&] { Cifar10(Split::test, dir.path.string()); }).find("test_batch.bin not found"),
      std::string::npos);
  EXPECT_NE(error_of([] { Cifar10(Split::test, "/nonexistent/cifar"); }).find("does not exist"),
            std::string::npos);
}

TEST(Cifar10, AugmentationIsSeeded) {
  TempDir dir;
  write_cifar_dir(dir, 4);
  Cifar10 train(Split::train, dir.path.string(), {.augment = true});
  const std::vector<int64_t> idx = {0, 5, 10, 19, 3, 3};
  const Batch a = train.get_batch(idx, 42);
  const Batch b = train.get_batch(idx, 42);
  const Batch c = train.get_batch(idx, 43);
  const int64_t n = a.input.numel();
  EXPECT_TRUE(std::equal(a.input.data<float>(), a.input.data<float>() + n, b.input.data<float>()));
  EXPECT_FALSE(std::equal(a.input.data<float>(), a.input.data<float>() + n, c.input.data<float>()));
  // Labels are never augmented.
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.target.data<int64_t>()[i], c.target.data<int64_t>()[i]);
  // A sample's augmentation depends on the seed and the sample, not on the batch it is in: the same
  // image comes out for sample 19 alone and at position 3 of the batch above.
  const Batch alone = train.get_batch({19}, 42);
  const int64_t image = 3 * 32 * 32;
  EXPECT_TRUE(std::equal(alone.input.data<float>(), alone.input.data<float>() + image,
                         a.input.data<float>() + 3 * image));
  // ... and the repeated sample 3 gets the same transform twice within one seed.
  EXPECT_TRUE(std::equal(a.input.data<float>() + 4 * image, a.input.data<float>() + 5 * image,
                         a.input.data<float>() + 5 * image));
}

// Every augmented image is one of the 9 x 9 x 2 crop/flip transforms of its source, written out here
// from the definition: pad by 4 with black, take the 32x32 window at (dy, dx), mirror left-right.
TEST(Cifar10, AugmentedImageIsAPaddedCropOrFlip) {
  TempDir dir;
  write_cifar_dir(dir, 1);
  Cifar10 plain(Split::train, dir.path.string());
  Cifar10 aug(Split::train, dir.path.string(), {.augment = true});
  const std::vector<int64_t> idx = {0, 1, 2, 3, 4};
  CropFlipsSeen seen;
  for (uint64_t seed = 0; seed < 12; ++seed) {
    const Batch b = aug.get_batch(idx, seed);
    for (int i = 0; i < 5; ++i) {
      const int matches = count_crop_flips(
          b.input.data<float>() + i * 3 * 32 * 32, 3, 32, 32, 4,
          [i](int c, int y, int x) { return pixel(i, 0, c, y, x); }, normalised, seen);
      EXPECT_EQ(matches, 1) << "seed " << seed << " sample " << i;
    }
  }
  EXPECT_EQ(seen.flips.size(), 2u);
  EXPECT_GT(seen.offsets.size(), 20u);  // 60 draws over 81 offsets
}

TEST(Cifar10, CropDrawsCoverTheRange) {
  Generator gen(7);
  std::vector<int> dy_count(9), dx_count(9);
  int flips = 0;
  const int n = 9000;
  for (int i = 0; i < n; ++i) {
    const CropFlip t = draw_crop_flip(gen, 4);
    ASSERT_TRUE(t.dy >= 0 && t.dy <= 8 && t.dx >= 0 && t.dx <= 8);
    ++dy_count[t.dy];
    ++dx_count[t.dx];
    flips += t.flip;
  }
  for (int k = 0; k <= 8; ++k) {
    EXPECT_NEAR(dy_count[k], n / 9, 150) << k;
    EXPECT_NEAR(dx_count[k], n / 9, 150) << k;
  }
  EXPECT_NEAR(flips, n / 2, 200);
}
