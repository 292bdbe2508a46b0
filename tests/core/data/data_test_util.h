// Helpers shared by the data tests: a scratch directory per test, and the message of an expected error.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <utility>

#include "core/error.h"
#include "error_message.h"

namespace dtrain::data::testing {

// A fresh directory named after the running test and the process, removed afterwards (ctest runs
// tests side by side).
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = std::filesystem::temp_directory_path() /
           ("dtrain-" + std::string(info->test_suite_name()) + "-" + info->name() + "-" +
            std::to_string(getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// `bytes` gzip'd by zlib, as gzip(1) would write them.
inline void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

using ::dtrain::testing::error_of;

// The crops and flips seen by count_crop_flips, over all the images it was given.
struct CropFlipsSeen {
  std::set<std::pair<int, int>> offsets;
  std::set<bool> flips;
};

// How many of the (2 pad + 1)^2 x 2 transforms "pad by `pad` with black, take the window at (dy, dx),
// maybe mirror left-right" of a [C, H, W] source give `out`, written out from that definition.
// `source(c, y, x)` is the source pixel, `normalised(p, c)` what the dataset makes of pixel p.
inline int count_crop_flips(const float* out, int channels, int height, int width, int pad,
                            const std::function<uint8_t(int, int, int)>& source,
                            const std::function<float(uint8_t, int)>& normalised,
                            CropFlipsSeen& seen) {
  int matches = 0;
  for (int dy = 0; dy <= 2 * pad; ++dy) {
    for (int dx = 0; dx <= 2 * pad; ++dx) {
      for (int flip = 0; flip < 2; ++flip) {
        bool same = true;
        for (int c = 0; c < channels && same; ++c) {
          for (int y = 0; y < height && same; ++y) {
            for (int x = 0; x < width && same; ++x) {
              const int sy = y + dy - pad, sx = (flip ? width - 1 - x : x) + dx - pad;
              const bool inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
              const uint8_t p = inside ? source(c, sy, sx) : 0;
              same = std::abs(out[(c * height + y) * width + x] - normalised(p, c)) < 1e-6f;
            }
          }
        }
        if (same) {
          ++matches;
          seen.offsets.insert({dy, dx});
          seen.flips.insert(flip != 0);
        }
      }
    }
  }
  return matches;
}

}  // namespace dtrain::data::testing
