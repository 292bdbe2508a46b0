// PGM, PNG and IDX images for `dtrain predict` (core/data/image_file.h). PNG files are written here from
// the standard: chunks with their CRC-32, rows filtered by each of the five filter types, compressed by
// zlib; decoding must give back the pixels, and every damaged file one line that names it.
#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <cstring>
#include <random>

#include "core/data/cifar10.h"
#include "core/data/fashion_mnist.h"
#include "core/data/image_file.h"
#include "data_test_util.h"

using namespace dtrain;
using namespace dtrain::data;
using namespace dtrain::data::testing;

namespace {

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string chunk(const std::string& type, const std::string& data) {
  const std::string body = type + data;
  const uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(body.data()),
                          static_cast<uInt>(body.size()));
  return be32(static_cast<uint32_t>(data.size())) + body + be32(static_cast<uint32_t>(crc));
}

std::string ihdr(uint32_t width, uint32_t height, int depth, int color, int interlace = 0) {
  return chunk("IHDR", be32(width) + be32(height) +
                           std::string{static_cast<char>(depth), static_cast<char>(color), 0, 0,
                                       static_cast<char>(interlace)});
}

std::string zlib_compress(const std::string& raw) {
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::string out(size, '\0');
  EXPECT_EQ(
      compress2(reinterpret_cast<Bytef*>(out.data()), &size,
                reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()), 9),
      Z_OK);
  out.resize(size);
  return out;
}

const std::string kSignature = "\x89PNG\r\n\x1a\n";

// PNG's filters applied as an encoder applies them (the definitions of the standard, section 9): row y
// of `pixels` (interleaved samples, `bpp` bytes per pixel) is stored with filter types[y % size].
std::string filter_rows(const std::vector<uint8_t>& pixels, size_t width, size_t height, size_t bpp,
                        const std::vector<int>& types) {
  const size_t stride = width * bpp;
  std::string out;
  for (size_t y = 0; y < height; ++y) {
    const int type = types[y % types.size()];
    out.push_back(static_cast<char>(type));
    for (size_t i = 0; i < stride; ++i) {
      const int x = pixels[y * stride + i];
      const int a = i >= bpp ? pixels[y * stride + i - bpp] : 0;
      const int b = y > 0 ? pixels[(y - 1) * stride + i] : 0;
      const int c = y > 0 && i >= bpp ? pixels[(y - 1) * stride + i - bpp] : 0;
      int predicted = 0;
      if (type == 1) predicted = a;
      if (type == 2) predicted = b;
      if (type == 3) predicted = (a + b) / 2;
      if (type == 4) {
        const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
        predicted = (pa <= pb && pa <= pc) ? a : (pb <= pc) ? b : c;
      }
      out.push_back(static_cast<char>((x - predicted) & 0xff));
    }
  }
  return out;
}

// A whole PNG of `pixels` (interleaved) with colour type `color`; the IDAT stream split into `parts`.
std::string make_png(const std::vector<uint8_t>& pixels, uint32_t width, uint32_t height, int color,
                     const std::vector<int>& filters, int parts = 1) {
  const size_t bpp = color == 0 ? 1 : color == 4 ? 2 : color == 2 ? 3 : 4;
  const std::string stream = zlib_compress(filter_rows(pixels, width, height, bpp, filters));
  std::string png =
      kSignature + ihdr(width, height, 8, color) + chunk("tEXt", std::string("Comment\0test", 12));
  const size_t step = (stream.size() + parts - 1) / parts;
  for (size_t at = 0; at < stream.size(); at += step) png += chunk("IDAT", stream.substr(at, step));
  return png + chunk("IEND", "");
}

// The one-line error of decoding `bytes`, checked to name the file.
std::string png_error(const std::string& bytes) {
  const std::string message = error_of([&] { decode_png(bytes, "test.png"); });
  EXPECT_NE(message, "(no error)");
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_NE(message.find("test.png"), std::string::npos) << message;
  return message;
}

std::string pgm_error(const std::string& bytes) {
  const std::string message = error_of([&] { decode_pgm(bytes, "test.pgm"); });
  EXPECT_NE(message, "(no error)");
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_NE(message.find("test.pgm"), std::string::npos) << message;
  return message;
}

#define EXPECT_HAS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

// The 3x2 grayscale image of the hand-filtered files below.
const std::vector<uint8_t> kSmall = {10, 11, 1, 12, 21, 40};

std::string small_png(const std::string& filtered_rows) {
  return kSignature + ihdr(3, 2, 8, 0) + chunk("IDAT", zlib_compress(filtered_rows)) +
         chunk("IEND", "");
}

}  // namespace

// Rows filtered by hand from the standard's definitions, so an error shared by the test's encoder and
// the decoder cannot hide: each file decodes to kSmall.
TEST(PngDecode, HandFilteredRows) {
  // Row 0 Sub: 10, 11-10, 1-11 = 246; row 1 Up: 12-10, 21-11, 40-1.
  const std::string sub_up = {1, 10, 1, static_cast<char>(246), 2, 2, 10, 39};
  // Row 0 None; row 1 Average: 12-(0+10)/2, 21-(12+11)/2, 40-(21+1)/2.
  const std::string none_average = {0, 10, 11, 1, 3, 7, 10, 29};
  // Row 1 Paeth: x0 predicts b=10 (p=10), x1 predicts a=12 (p=13: |1| < |2| < |3|), x2 predicts c=11
  // (a=21, b=1, p=11).
  const std::string none_paeth = {0, 10, 11, 1, 4, 2, 9, 29};
  for (const std::string& rows : {sub_up, none_average, none_paeth}) {
    Image image = decode_png(small_png(rows), "small.png");
    EXPECT_EQ(image.width, 3);
    EXPECT_EQ(image.height, 2);
    EXPECT_EQ(image.channels, 1);
    EXPECT_EQ(image.pixels, kSmall);
    EXPECT_EQ(image.description(), "3x2 grayscale");
  }
  // Paeth's tie rule: at x1 of row 1, a=4, b=1, c=2 give p=3 and |p-a| = |p-c| = 1 < |p-b|, so a (4)
  // is the prediction, not c (2): 50 is stored as 46.
  const std::string tie = "\x89PNG\r\n\x1a\n" + ihdr(2, 2, 8, 0) +
                          chunk("IDAT", zlib_compress(std::string({0, 2, 1, 4, 2, 46}))) +
                          chunk("IEND", "");
  EXPECT_EQ(decode_png(tie, "tie.png").pixels, (std::vector<uint8_t>{2, 1, 4, 50}));
}

// Every colour type the decoder reads, under every filter type and a mix of them, with the IDAT stream
// in one chunk or split over several; alpha is composited over black.
TEST(PngDecode, EveryColourTypeAndFilter) {
  std::mt19937 rng(7);
  const uint32_t width = 5, height = 4;
  for (int color : {0, 2, 4, 6}) {
    const size_t bpp = color == 0 ? 1 : color == 4 ? 2 : color == 2 ? 3 : 4;
    const bool alpha = color == 4 || color == 6;
    const size_t channels = alpha ? bpp - 1 : bpp;
    std::vector<uint8_t> pixels(width * height * bpp);
    for (auto& p : pixels) p = static_cast<uint8_t>(rng());
    if (alpha) {  // fully transparent, opaque and in between
      pixels[bpp - 1] = 0;
      pixels[2 * bpp - 1] = 255;
      pixels[3 * bpp - 1] = 128;
    }
    std::vector<uint8_t> want(width * height * channels);
    for (size_t i = 0; i < width * height; ++i) {
      const double a = alpha ? pixels[i * bpp + bpp - 1] : 255;
      for (size_t c = 0; c < channels; ++c) {
        want[c * width * height + i] =
            static_cast<uint8_t>(std::lround(pixels[i * bpp + c] * a / 255.0));
      }
    }
    for (const std::vector<int>& filters :
         std::vector<std::vector<int>>{{0}, {1}, {2}, {3}, {4}, {4, 3, 2, 1}}) {
      for (int parts : {1, 3}) {
        SCOPED_TRACE("colour type " + std::to_string(color) + ", filter " +
                     std::to_string(filters[0]) + (filters.size() > 1 ? " (mixed)" : "") + ", " +
                     std::to_string(parts) + " IDAT");
        Image image = decode_png(make_png(pixels, width, height, color, filters, parts), "x.png");
        EXPECT_EQ(image.width, width);
        EXPECT_EQ(image.height, height);
        EXPECT_EQ(image.channels, static_cast<int64_t>(channels));
        EXPECT_EQ(image.pixels, want);
      }
    }
  }
  const std::vector<uint8_t> rgb(2 * 3 * 3, 9);
  EXPECT_EQ(decode_png(make_png(rgb, 2, 3, 2, {0}), "x.png").description(), "2x3 RGB");
}

TEST(PngDecode, DamagedFilesAreOneLineErrors) {
  const std::string good = small_png({0, 10, 11, 1, 4, 2, 9, 29});
  ASSERT_EQ(decode_png(good, "test.png").pixels, kSmall);
  const size_t idat = good.find("IDAT");

  // A flipped bit in the compressed data (after the length and type).
  std::string flipped = good;
  flipped[idat + 6] ^= 0x10;
  EXPECT_HAS(png_error(flipped), "CRC");
  std::string bad_ihdr = good;
  bad_ihdr[8 + 8 + 3] ^= 1;  // the width's low byte
  EXPECT_HAS(png_error(bad_ihdr), "IHDR chunk fails the CRC check");

  // Cut anywhere: never a crash or a wrong image, always one line.
  for (size_t n = 0; n < good.size(); ++n) png_error(good.substr(0, n));
  // Any byte changed: the CRC (or the signature, or a length) catches it; a dtrain::Error, nothing else.
  for (size_t i = 0; i < good.size(); ++i) {
    for (int mask : {0x01, 0x80, 0xff}) {
      std::string changed = good;
      changed[i] = static_cast<char>(changed[i] ^ mask);
      try {
        decode_png(changed, "test.png");
        ADD_FAILURE() << "byte " << i << " ^ " << mask << " decoded";
      } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
      }
    }
  }
  EXPECT_HAS(png_error(good.substr(0, good.size() - 12)), "truncated");  // no IEND
  EXPECT_HAS(png_error(good.substr(0, idat + 10)), "truncated");         // mid IDAT
  EXPECT_HAS(png_error("GIF89a......"), "not a PNG");

  EXPECT_HAS(png_error(kSignature + ihdr(3, 2, 16, 0) + chunk("IEND", "")), "16-bit");
  EXPECT_HAS(png_error(kSignature + ihdr(3, 2, 4, 0) + chunk("IEND", "")), "4-bit");
  EXPECT_HAS(png_error(kSignature + ihdr(3, 2, 8, 3) + chunk("IEND", "")), "palette");
  EXPECT_HAS(png_error(kSignature + ihdr(3, 2, 8, 0, 1) + chunk("IEND", "")), "interlaced");
  EXPECT_HAS(png_error(kSignature + ihdr(3, 2, 8, 5) + chunk("IEND", "")), "colour type 5");
  EXPECT_HAS(png_error(kSignature + ihdr(0, 2, 8, 0) + chunk("IEND", "")), "0x2");
  EXPECT_HAS(png_error(kSignature + ihdr(3, 2, 8, 0) + chunk("IEND", "")), "no IDAT");
  EXPECT_HAS(png_error(kSignature + chunk("IDAT", "x") + chunk("IEND", "")), "first chunk is IDAT");

  // Image data: an unknown filter type, too little, too much, not zlib at all.
  EXPECT_HAS(png_error(small_png({0, 10, 11, 1, 5, 2, 9, 29})), "filter type 5");
  EXPECT_HAS(png_error(small_png({0, 10, 11, 1, 4, 2})), "inflates to 6 bytes");
  EXPECT_HAS(png_error(small_png({0, 10, 11, 1, 4, 2, 9, 29, 0})), "more than");
  EXPECT_HAS(png_error(kSignature + ihdr(3, 2, 8, 0) + chunk("IDAT", "not zlib at all") +
                       chunk("IEND", "")),
             "zlib");
  const std::string stream = zlib_compress(std::string({0, 10, 11, 1, 4, 2, 9, 29}));
  EXPECT_HAS(png_error(kSignature + ihdr(3, 2, 8, 0) +
                       chunk("IDAT", stream.substr(0, stream.size() - 6)) + chunk("IEND", "")),
             "truncated");

  // Chunk order and kinds: IDATs apart, an unknown critical chunk; ancillary ones are skipped.
  EXPECT_HAS(png_error(kSignature + ihdr(3, 2, 8, 0) + chunk("IDAT", stream.substr(0, 4)) +
                       chunk("tEXt", "a") + chunk("IDAT", stream.substr(4)) + chunk("IEND", "")),
             "not consecutive");
  EXPECT_HAS(png_error(kSignature + ihdr(3, 2, 8, 0) + chunk("ABCD", "") + chunk("IDAT", stream) +
                       chunk("IEND", "")),
             "critical chunk ABCD");
  EXPECT_EQ(decode_png(kSignature + ihdr(3, 2, 8, 0) + chunk("gAMA", be32(45455)) +
                           chunk("IDAT", stream) + chunk("IEND", "") + "trailing bytes",
                       "x.png")
                .pixels,
            kSmall);
}

TEST(PgmDecode, BinaryAndPlainWithComments) {
  const std::string raster(reinterpret_cast<const char*>(kSmall.data()), kSmall.size());
  Image p5 = decode_pgm("P5\n# a comment\n3 2\n255\n" + raster, "a.pgm");
  EXPECT_EQ(p5.width, 3);
  EXPECT_EQ(p5.height, 2);
  EXPECT_EQ(p5.channels, 1);
  EXPECT_EQ(p5.pixels, kSmall);
  // P5 whose pixel bytes are whitespace and '#' (the raster is not parsed as text).
  EXPECT_EQ(decode_pgm(std::string("P5 2 1 255\n") + "# ", "b.pgm").pixels,
            (std::vector<uint8_t>{'#', ' '}));
  Image p2 = decode_pgm("P2\n3 2 # width height\n255\n10 11 1\n# row two\n12\t21 40\n", "c.pgm");
  EXPECT_EQ(p2.pixels, kSmall);
  // A maxval below 255 is scaled to 0..255: 7 of 15 is round(7 * 255 / 15) = 119.
  EXPECT_EQ(decode_pgm("P2 3 1 15 0 7 15", "d.pgm").pixels, (std::vector<uint8_t>{0, 119, 255}));
}

TEST(PgmDecode, DamagedFilesAreOneLineErrors) {
  EXPECT_HAS(pgm_error("P5\n3 2\n65535\n" + std::string(12, '\0')), "16-bit");
  EXPECT_HAS(pgm_error("P5\n3 2\n255\n" + std::string(5, '\0')), "truncated");
  EXPECT_HAS(pgm_error("P5\n3 2\n255\n" + std::string(7, '\0')), "1 bytes follow");
  EXPECT_HAS(pgm_error("P5\n3 2\n"), "maxval");
  EXPECT_HAS(pgm_error("P5\n3 x\n255\n"), "height");
  EXPECT_HAS(pgm_error("P5\n0 2\n255\n"), "0x2");
  EXPECT_HAS(pgm_error("P2 2 1 100 50 101"), "above maxval");
  EXPECT_HAS(pgm_error("P2 2 1 255 50"), "truncated");
  EXPECT_HAS(pgm_error("P2 2 1 255 50 60 70"), "more than");
  EXPECT_HAS(pgm_error("P2 2 1 0 0 0"), "maxval 0");
  EXPECT_HAS(pgm_error("P6 2 1 255 abcdef"), "not a PGM");
}

// read_image_file tells the formats apart by content, and names what it cannot read.
TEST(ImageFile, ReadsByContentAndNamesOtherFormats) {
  TempDir dir;
  write_bytes(dir.file("a.png"), small_png({0, 10, 11, 1, 4, 2, 9, 29}));
  write_bytes(dir.file("b.pgm"), "P2 3 2 255 10 11 1 12 21 40");
  write_bytes(dir.file("c.ppm"), "P6 1 1 255 abc");
  write_bytes(dir.file("d.jpg"), "\xff\xd8\xff\xe0 JFIF");
  write_bytes(dir.file("e.txt"), "hello");
  write_bytes(dir.file("f-idx"), std::string{0, 0, 8, 3} + be32(1) + be32(1) + be32(1) + "x");
  EXPECT_EQ(read_image_file(dir.file("a.png")).pixels, kSmall);
  EXPECT_EQ(read_image_file(dir.file("b.pgm")).pixels, kSmall);
  for (const auto& [file, says] :
       std::vector<std::pair<std::string, std::string>>{{"c.ppm", "P6"},
                                                        {"d.jpg", "JPEG"},
                                                        {"e.txt", "not a PNG or PGM"},
                                                        {"f-idx", "--index K"},
                                                        {"missing.png", "missing.png"}}) {
    const std::string message = error_of([&] { read_image_file(dir.file(file)); });
    EXPECT_HAS(message, says);
    EXPECT_HAS(message, dir.file(file));
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(ImageFile, IdxImageByIndex) {
  TempDir dir;
  // Three 2x2 images whose pixels are 10 * image + position.
  std::string payload;
  for (int i = 0; i < 3; ++i)
    for (int p = 0; p < 4; ++p) payload.push_back(static_cast<char>(10 * i + p));
  const std::string idx = std::string{0, 0, 8, 3} + be32(3) + be32(2) + be32(2) + payload;
  write_bytes(dir.file("images"), idx);
  write_gzip(dir.file("images.gz"), idx);
  for (const char* name : {"images", "images.gz"}) {
    Image image = read_idx_image(dir.file(name), 1);
    EXPECT_EQ(image.width, 2);
    EXPECT_EQ(image.height, 2);
    EXPECT_EQ(image.channels, 1);
    EXPECT_EQ(image.pixels, (std::vector<uint8_t>{10, 11, 12, 13}));
  }
  EXPECT_HAS(error_of([&] { read_idx_image(dir.file("images"), 3); }),
             "--index 3 is outside the 3 images");
  EXPECT_HAS(error_of([&] { read_idx_image(dir.file("images"), -1); }), "give 0 to 2");
  write_bytes(dir.file("labels"), std::string{0, 0, 8, 1} + be32(2) + "ab");
  EXPECT_HAS(error_of([&] { read_idx_image(dir.file("labels"), 0); }), "1 dimensions");
}

// A file's image reaches the model as the same bits as the data set's copy of it.
TEST(ImageFile, NormalisedAsTheDatasetsDo) {
  TempDir dir;
  std::string pixels;
  for (int i = 0; i < 2 * 28 * 28; ++i) pixels.push_back(static_cast<char>(i * 7 % 256));
  write_bytes(dir.file("t10k-images-idx3-ubyte"),
              std::string{0, 0, 8, 3} + be32(2) + be32(28) + be32(28) + pixels);
  write_bytes(dir.file("t10k-labels-idx1-ubyte"),
              std::string{0, 0, 8, 1} + be32(2) + std::string{3, 4});
  FashionMnist fashion(Split::test, dir.path.string());
  Tensor want = fashion.get_batch({1}, 0).input;
  Image image = read_idx_image(dir.file("t10k-images-idx3-ubyte"), 1);
  std::vector<float> got(28 * 28);
  normalize_pixels(image.pixels.data(), 1, 28 * 28, &kFashionMnistMean, &kFashionMnistStd,
                   got.data());
  EXPECT_EQ(std::memcmp(got.data(), want.data<float>(), got.size() * sizeof(float)), 0);

  std::string records;
  for (int r = 0; r < 2; ++r) {
    records.push_back(static_cast<char>(r));
    for (int i = 0; i < 3 * 32 * 32; ++i)
      records.push_back(static_cast<char>((i * 13 + r * 5) % 256));
  }
  write_bytes(dir.file("test_batch.bin"), records);
  Cifar10 cifar(Split::test, dir.path.string());
  Tensor want_rgb = cifar.get_batch({1}, 0).input;
  std::vector<uint8_t> planes(records.begin() + 3073 + 1, records.end());
  std::vector<float> got_rgb(3 * 32 * 32);
  normalize_pixels(planes.data(), 3, 32 * 32, kCifar10Mean.data(), kCifar10Std.data(),
                   got_rgb.data());
  EXPECT_EQ(std::memcmp(got_rgb.data(), want_rgb.data<float>(), got_rgb.size() * sizeof(float)), 0);
}
