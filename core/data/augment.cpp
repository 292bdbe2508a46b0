#include "core/data/augment.h"

#include "core/data/seeding.h"
#include "core/error.h"

namespace dtrain::data {

CropFlip draw_crop_flip(Generator& gen, int64_t pad) {
  DTRAIN_CHECK(pad >= 0, "random crop: padding ", pad, " must be >= 0");
  CropFlip t;
  t.dy = static_cast<int64_t>(uniform_below(gen, static_cast<uint64_t>(2 * pad + 1)));
  t.dx = static_cast<int64_t>(uniform_below(gen, static_cast<uint64_t>(2 * pad + 1)));
  t.flip = (gen.next_u64() >> 63) != 0;
  return t;
}

void apply_crop_flip(const uint8_t* src, uint8_t* dst, int64_t channels, int64_t height,
                     int64_t width, int64_t pad, const CropFlip& t) {
  for (int64_t c = 0; c < channels; ++c) {
    const uint8_t* s = src + c * height * width;
    uint8_t* d = dst + c * height * width;
    for (int64_t y = 0; y < height; ++y) {
      const int64_t sy = y + t.dy - pad;
      for (int64_t x = 0; x < width; ++x) {
        const int64_t sx = (t.flip ? width - 1 - x : x) + t.dx - pad;
        const bool inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
        d[y * width + x] = inside ? s[sy * width + sx] : 0;
      }
    }
  }
}

const uint8_t* crop_flip_sample(const uint8_t* src, uint8_t* scratch, int64_t channels,
                                int64_t height, int64_t width, int64_t pad, uint64_t seed,
                                int64_t index) {
  Generator gen(combine_seed(seed, static_cast<uint64_t>(index)));
  apply_crop_flip(src, scratch, channels, height, width, pad, draw_crop_flip(gen, pad));
  return scratch;
}

}  // namespace dtrain::data
