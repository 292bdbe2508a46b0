// Single images from files, for `dtrain predict`: PGM (P2 plain or P5 binary, 8-bit), PNG (8-bit gray,
// gray + alpha, RGB or RGBA, not interlaced) and one image of an IDX file such as Fashion-MNIST's.
//
// PNG, as read here (ISO/IEC 15948): an 8-byte signature, then chunks of
//
//   [4 bytes]  data length n, big-endian        [4 bytes] type, e.g. IHDR, IDAT, IEND
//   [n bytes]  data                             [4 bytes] CRC-32 of type and data
//
// IHDR (first) gives width, height, bit depth, colour type and interlace method; the IDAT chunks,
// concatenated, are one zlib stream; inflated, it is `height` rows of one filter-type byte followed by
// width x channels bytes. Filters predict each byte x from its left neighbour a, the byte above b and
// the one above-left c (0 outside the image), and the row stores x - prediction (mod 256):
//   0 None: 0   1 Sub: a   2 Up: b   3 Average: floor((a + b) / 2)
//   4 Paeth: whichever of a, b, c is closest to p = a + b - c (ties prefer a, then b)
//
// Every malformed file is a dtrain::Error of one line naming the file and what is wrong with it.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dtrain::data {

struct Image {
  int64_t width = 0, height = 0;
  int64_t channels = 0;  // 1 (grayscale) or 3 (RGB)
  std::vector<uint8_t>
      pixels;  // [channels, height, width]: one plane per channel, as the datasets hold them

  // "28x28 grayscale", "32x32 RGB"
  std::string description() const;
};

// An image whose alpha channel (gray + alpha, RGBA) is composited over black: each colour value becomes
// round(value * alpha / 255), so transparent parts read as the black background Fashion-MNIST has.
Image decode_png(std::string_view bytes, const std::string& name);
// Sample values are scaled to 0..255 when the file's maxval is below 255; a maxval above 255 (16-bit)
// is an error.
Image decode_pgm(std::string_view bytes, const std::string& name);

// Whether `bytes` start as a PNG, a PGM, or an IDX file (what read_image_file accepts).
bool is_png(std::string_view bytes);
bool is_pgm(std::string_view bytes);
bool is_idx(std::string_view bytes);

// A PNG or PGM file, told apart by content. An IDX file here is an error that says to pick an image
// with `index_option` (e.g. "--index K").
Image read_image_file(const std::string& path, const std::string& index_option = "--index K");
// Image `index` of an IDX file of u8 images [N, H, W] (gzip'd or not), as grayscale.
Image read_idx_image(const std::string& path, int64_t index);

// What the datasets feed a model: out[c][i] = (pixels[c][i] / 255 - mean[c]) / std[c] in float, for
// `channels` planes of `plane` pixels each. Fashion-MNIST's and CIFAR-10's get_batch compute the same
// expression in the same order, so a file's image and the dataset's copy of it reach the model as the
// same bits (tests/core/data/test_image_file.cpp checks this).
void normalize_pixels(const uint8_t* pixels, int64_t channels, int64_t plane, const float* mean,
                      const float* std, float* out);

}  // namespace dtrain::data
