#include "core/data/image_file.h"

#include <zlib.h>

#include <cstdlib>
#include <cstring>

#include "core/data/file_bytes.h"
#include "core/data/idx.h"
#include "core/error.h"

namespace dtrain::data {

namespace {

// A predict input is one picture; this bounds what a damaged header can make us allocate (256 MiB).
constexpr uint64_t kMaxImageBytes = uint64_t{1} << 28;
const char* kPngSignature = "\x89PNG\r\n\x1a\n";
const char* kConvertHint = "save it as an 8-bit grayscale or RGB PNG, or as a PGM";

uint32_t read_be32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | static_cast<uint32_t>(p[3]);
}

// The row filters of PNG, undone in place: `row` holds the filtered bytes of one row (without its
// filter-type byte), `prev` the row above, already reconstructed (zeros above the first row).
void unfilter_row(uint8_t type, uint8_t* row, const uint8_t* prev, size_t length, size_t bpp) {
  switch (type) {
    case 0:  // None
      return;
    case 1:  // Sub: x + a
      for (size_t i = bpp; i < length; ++i) row[i] = static_cast<uint8_t>(row[i] + row[i - bpp]);
      return;
    case 2:  // Up: x + b
      for (size_t i = 0; i < length; ++i) row[i] = static_cast<uint8_t>(row[i] + prev[i]);
      return;
    case 3:  // Average: x + floor((a + b) / 2)
      for (size_t i = 0; i < length; ++i) {
        const int a = i >= bpp ? row[i - bpp] : 0;
        row[i] = static_cast<uint8_t>(row[i] + ((a + prev[i]) >> 1));
      }
      return;
    case 4:  // Paeth: x + whichever of a, b, c is nearest to a + b - c
      for (size_t i = 0; i < length; ++i) {
        const int a = i >= bpp ? row[i - bpp] : 0;
        const int b = prev[i];
        const int c = i >= bpp ? prev[i - bpp] : 0;
        const int p = a + b - c;
        const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
        const int predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        row[i] = static_cast<uint8_t>(row[i] + predictor);
      }
      return;
    default:
      return;  // checked by the caller
  }
}

// Inflates the zlib stream of the IDAT chunks into exactly `expected` bytes.
std::vector<uint8_t> inflate_exactly(const std::string& compressed, size_t expected,
                                     const std::string& name) {
  DTRAIN_CHECK(compressed.size() < (uint64_t{1} << 31), name, ": ", compressed.size(),
               " bytes of compressed image data is more than dtrain reads; ", kConvertHint);
  // One byte of room beyond `expected` tells "exactly as long" from "longer".
  std::vector<uint8_t> out(expected + 1);
  z_stream zs{};
  DTRAIN_CHECK(inflateInit(&zs) == Z_OK, name, ": cannot initialise zlib");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  zs.avail_in = static_cast<uInt>(compressed.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int status = inflate(&zs, Z_FINISH);
  const size_t produced = zs.total_out;
  const std::string zlib_message = zs.msg ? zs.msg : "";
  inflateEnd(&zs);
  const std::string need = std::to_string(expected) + " bytes of filtered rows";
  DTRAIN_CHECK(status != Z_DATA_ERROR, name,
               " is corrupt: its image data is not a valid zlib stream (", zlib_message, "); ",
               kConvertHint);
  DTRAIN_CHECK(status != Z_MEM_ERROR, name, ": out of memory while inflating its image data");
  DTRAIN_CHECK(produced <= expected, name, " is corrupt: its image data holds more than the ", need,
               " its size needs; ", kConvertHint);
  DTRAIN_CHECK(status == Z_STREAM_END, name, " is truncated: its image data ends after ", produced,
               " of ", need, "; ", kConvertHint);
  DTRAIN_CHECK(produced == expected, name, " is corrupt: its image data inflates to ", produced,
               " bytes but its size needs ", need, "; ", kConvertHint);
  out.resize(expected);
  return out;
}

// PGM's header tokens: whitespace and '#' comments (to the end of the line) between decimal numbers.
class PgmReader {
 public:
  PgmReader(std::string_view bytes, const std::string& name)
      : bytes_(bytes), name_(name), pos_(2) {}

  void skip_space_and_comments() {
    while (pos_ < bytes_.size()) {
      const char ch = bytes_[pos_];
      if (ch == '#') {
        while (pos_ < bytes_.size() && bytes_[pos_] != '\n' && bytes_[pos_] != '\r') ++pos_;
      } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f') {
        ++pos_;
      } else {
        return;
      }
    }
  }
  bool at_end() const { return pos_ >= bytes_.size(); }
  // A decimal number of at most 9 digits; `what` names it in errors.
  int64_t number(const char* what) {
    skip_space_and_comments();
    DTRAIN_CHECK(!at_end(), name_, " is truncated: it ends before its ", what, "; ", kConvertHint);
    int64_t value = 0;
    size_t digits = 0;
    while (pos_ < bytes_.size() && bytes_[pos_] >= '0' && bytes_[pos_] <= '9') {
      DTRAIN_CHECK(++digits <= 9, name_, " is corrupt: its ", what, " has more than 9 digits");
      value = value * 10 + (bytes_[pos_++] - '0');
    }
    DTRAIN_CHECK(digits > 0, name_, " is corrupt: expected its ", what,
                 " (a decimal number), found '", std::string(1, bytes_[pos_]), "'; ", kConvertHint);
    return value;
  }
  size_t pos() const { return pos_; }
  void advance(size_t n) { pos_ += n; }

 private:
  std::string_view bytes_;
  const std::string& name_;
  size_t pos_;
};

void check_size(int64_t width, int64_t height, int64_t channels, const std::string& name) {
  DTRAIN_CHECK(width > 0 && height > 0, name, " is corrupt: its size is ", width, "x", height);
  // Each side below 2^28 first, so that the product cannot overflow.
  const auto w = static_cast<uint64_t>(width), h = static_cast<uint64_t>(height);
  DTRAIN_CHECK(w <= kMaxImageBytes && h <= kMaxImageBytes &&
                   w * h * static_cast<uint64_t>(channels) <= kMaxImageBytes,
               name, " is ", width, "x", height, " pixels, larger than dtrain reads as one input (",
               kMaxImageBytes >> 20, " MiB)");
}

}  // namespace

std::string Image::description() const {
  return std::to_string(width) + "x" + std::to_string(height) +
         (channels == 1 ? " grayscale" : " RGB");
}

bool is_png(std::string_view bytes) {
  return bytes.substr(0, 8) == std::string_view(kPngSignature, 8);
}

bool is_pgm(std::string_view bytes) {
  return bytes.size() >= 2 && bytes[0] == 'P' && (bytes[1] == '2' || bytes[1] == '5');
}

bool is_idx(std::string_view bytes) {
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0) return false;
  const auto type = static_cast<uint8_t>(bytes[2]);
  return type == 0x08 || type == 0x09 || type == 0x0B || type == 0x0C || type == 0x0D ||
         type == 0x0E;
}

Image decode_png(std::string_view bytes, const std::string& name) {
  DTRAIN_CHECK(is_png(bytes), name, " is not a PNG file (no PNG signature)");
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t pos = 8;
  int64_t width = 0, height = 0, channels = 0;
  bool alpha = false, seen_header = false, seen_end = false;
  int idat_runs = 0;  // runs of consecutive IDAT chunks: the standard allows one
  std::string last_type;
  std::string compressed;
  while (!seen_end) {
    DTRAIN_CHECK(pos + 12 <= bytes.size(), name, " is truncated: it ends ",
                 pos == bytes.size() ? "before its IEND chunk" : "in the middle of a chunk", "; ",
                 kConvertHint);
    const uint32_t length = read_be32(p + pos);
    const std::string type(bytes.substr(pos + 4, 4));
    for (char ch : type) {
      DTRAIN_CHECK((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z'), name,
                   " is corrupt: a chunk at byte ", pos, " has no valid type; ", kConvertHint);
    }
    DTRAIN_CHECK(length <= (uint32_t{1} << 31) - 1 && pos + 12 + length <= bytes.size(), name,
                 " is truncated: its ", type, " chunk says ", length,
                 " bytes but the file ends first; ", kConvertHint);
    const unsigned char* data = p + pos + 8;
    const uint32_t stored_crc = read_be32(data + length);
    const uint32_t crc =
        static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), p + pos + 4, length + 4));
    DTRAIN_CHECK(crc == stored_crc, name, " is corrupt: its ", type, " chunk fails the CRC check; ",
                 kConvertHint);
    DTRAIN_CHECK(seen_header || type == "IHDR", name, " is corrupt: its first chunk is ", type,
                 ", not IHDR");
    if (type == "IHDR") {
      DTRAIN_CHECK(!seen_header && length == 13, name, " is corrupt: a bad IHDR chunk");
      seen_header = true;
      width = read_be32(data);
      height = read_be32(data + 4);
      const int depth = data[8], color = data[9];
      DTRAIN_CHECK(color == 0 || color == 2 || color == 3 || color == 4 || color == 6, name,
                   " is corrupt: PNG colour type ", color, " does not exist");
      DTRAIN_CHECK(color != 3, name,
                   " is a palette PNG; dtrain reads grayscale and RGB PNGs: ", kConvertHint);
      DTRAIN_CHECK(depth == 8, name, " has ", depth,
                   "-bit samples; dtrain reads 8-bit PNGs: ", kConvertHint);
      DTRAIN_CHECK(data[10] == 0 && data[11] == 0, name,
                   " is corrupt: unknown compression or filter method in IHDR");
      DTRAIN_CHECK(data[12] == 0 || data[12] == 1, name, " is corrupt: unknown interlace method ",
                   int(data[12]));
      DTRAIN_CHECK(data[12] == 0, name,
                   " is interlaced (Adam7); dtrain reads non-interlaced PNGs: ", kConvertHint);
      alpha = color == 4 || color == 6;
      channels = (color == 2 || color == 6 ? 3 : 1) + (alpha ? 1 : 0);
      check_size(width, height, channels, name);
    } else if (type == "IDAT") {
      if (last_type != "IDAT") ++idat_runs;
      DTRAIN_CHECK(idat_runs == 1, name, " is corrupt: its IDAT chunks are not consecutive");
      compressed.append(reinterpret_cast<const char*>(data), length);
    } else if (type == "IEND") {
      seen_end = true;
    } else {
      // Ancillary chunks (lower-case first letter: text, gamma, ...) and a suggested palette may be
      // skipped; any other critical chunk changes how the image reads.
      DTRAIN_CHECK(type[0] >= 'a' || type == "PLTE", name, " has a critical chunk ", type,
                   " that dtrain does not know; ", kConvertHint);
    }
    last_type = type;
    pos += 12 + length;
  }
  DTRAIN_CHECK(!compressed.empty(), name, " is corrupt: it has no IDAT (image data) chunk");

  const size_t stride = static_cast<size_t>(width * channels);
  const size_t rows = static_cast<size_t>(height);
  std::vector<uint8_t> raw = inflate_exactly(compressed, rows * (stride + 1), name);
  std::vector<uint8_t> above(stride, 0);
  std::vector<uint8_t> interleaved(rows * stride);
  for (size_t y = 0; y < rows; ++y) {
    const uint8_t filter = raw[y * (stride + 1)];
    DTRAIN_CHECK(filter <= 4, name, " is corrupt: row ", y, " has filter type ", int(filter),
                 " (PNG has 0 to 4)");
    uint8_t* row = interleaved.data() + y * stride;
    std::memcpy(row, raw.data() + y * (stride + 1) + 1, stride);
    unfilter_row(filter, row, y == 0 ? above.data() : row - stride, stride,
                 static_cast<size_t>(channels));
  }

  // Interleaved samples to planes; alpha composited over black.
  Image image;
  image.width = width, image.height = height, image.channels = alpha ? channels - 1 : channels;
  const size_t plane = static_cast<size_t>(width * height);
  image.pixels.resize(plane * static_cast<size_t>(image.channels));
  for (size_t i = 0; i < plane; ++i) {
    const uint8_t* px = interleaved.data() + i * static_cast<size_t>(channels);
    const unsigned a = alpha ? px[channels - 1] : 255;
    for (int64_t c = 0; c < image.channels; ++c) {
      image.pixels[static_cast<size_t>(c) * plane + i] =
          static_cast<uint8_t>((px[c] * a + 127) / 255);
    }
  }
  return image;
}

Image decode_pgm(std::string_view bytes, const std::string& name) {
  DTRAIN_CHECK(is_pgm(bytes), name, " is not a PGM file (it does not start with P2 or P5)");
  const bool plain = bytes[1] == '2';
  PgmReader in(bytes, name);
  const int64_t width = in.number("width");
  const int64_t height = in.number("height");
  const int64_t maxval = in.number("maxval");
  check_size(width, height, 1, name);
  DTRAIN_CHECK(maxval >= 1 && maxval <= 65535, name, " is corrupt: maxval ", maxval,
               " is outside 1..65535");
  DTRAIN_CHECK(maxval <= 255, name, " has 16-bit samples (maxval ", maxval,
               "); dtrain reads 8-bit PGMs: ", kConvertHint);
  const size_t count = static_cast<size_t>(width * height);
  Image image;
  image.width = width, image.height = height, image.channels = 1;
  image.pixels.resize(count);
  if (plain) {
    for (size_t i = 0; i < count; ++i) {
      const int64_t v = in.number("pixel values");
      DTRAIN_CHECK(v <= maxval, name, " is corrupt: pixel ", i, " is ", v, ", above maxval ",
                   maxval);
      image.pixels[i] = static_cast<uint8_t>(v);
    }
    in.skip_space_and_comments();
    DTRAIN_CHECK(in.at_end(), name, " is corrupt: it holds more than the ", count,
                 " pixel values of a ", width, "x", height, " image");
  } else {
    // Exactly one whitespace byte separates maxval from the binary raster.
    DTRAIN_CHECK(!in.at_end(), name, " is truncated: it ends after its header; ", kConvertHint);
    const char separator = bytes[in.pos()];
    DTRAIN_CHECK(separator == ' ' || separator == '\t' || separator == '\n' || separator == '\r',
                 name, " is corrupt: no whitespace between maxval and the pixels");
    in.advance(1);
    const size_t left = bytes.size() - in.pos();
    DTRAIN_CHECK(left >= count, name, " is truncated: ", left, " bytes of pixels, a ", width, "x",
                 height, " image needs ", count, "; ", kConvertHint);
    DTRAIN_CHECK(left == count, name, " is corrupt: ", left - count, " bytes follow the ", width,
                 "x", height, " image (dtrain reads one image per file)");
    std::memcpy(image.pixels.data(), bytes.data() + in.pos(), count);
    for (size_t i = 0; i < count; ++i) {
      DTRAIN_CHECK(image.pixels[i] <= maxval, name, " is corrupt: pixel ", i, " is ",
                   int(image.pixels[i]), ", above maxval ", maxval);
    }
  }
  if (maxval != 255) {
    for (uint8_t& v : image.pixels) v = static_cast<uint8_t>((v * 255 + maxval / 2) / maxval);
  }
  return image;
}

Image read_image_file(const std::string& path, const std::string& index_option) {
  const std::string bytes = read_file_bytes(path, "give the path of a PNG or PGM image");
  if (is_png(bytes)) return decode_png(bytes, path);
  if (is_pgm(bytes)) return decode_pgm(bytes, path);
  if (bytes.size() >= 2 && bytes[0] == 'P' &&
      std::string_view("13467").find(bytes[1]) != std::string::npos) {
    throw Error(path + " is a Netpbm P" + bytes[1] +
                " file (PBM, PPM or PAM); dtrain reads PGM (P2, P5) and PNG: " + kConvertHint);
  }
  if (is_idx(bytes)) {
    throw Error(path + " is an IDX file of many images: pick one with " + index_option);
  }
  if (bytes.size() >= 3 && static_cast<uint8_t>(bytes[0]) == 0xff &&
      static_cast<uint8_t>(bytes[1]) == 0xd8) {
    throw Error(path + " is a JPEG; dtrain reads PNG and PGM: " + kConvertHint);
  }
  throw Error(path + " is not a PNG or PGM image: " + kConvertHint);
}

Image read_idx_image(const std::string& path, int64_t index) {
  const std::string hint =
      "--index reads u8 images [N, H, W], like Fashion-MNIST's *-images-idx3-ubyte";
  IdxArray idx = read_idx(path, hint);
  DTRAIN_CHECK(idx.type == IdxType::u8 && idx.dims.size() == 3, path, " holds ",
               idx_type_name(idx.type), " data with ", idx.dims.size(), " dimensions; ", hint);
  const int64_t count = idx.dims[0];
  DTRAIN_CHECK(index >= 0 && index < count, "--index ", index, " is outside the ", count,
               " images of ", path, ": give 0 to ", count - 1);
  Image image;
  image.height = idx.dims[1], image.width = idx.dims[2], image.channels = 1;
  check_size(image.width, image.height, 1, path);
  const size_t plane = static_cast<size_t>(image.width * image.height);
  const auto first =
      idx.bytes.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(index) * plane);
  image.pixels.assign(first, first + static_cast<std::ptrdiff_t>(plane));
  return image;
}

void normalize_pixels(const uint8_t* pixels, int64_t channels, int64_t plane, const float* mean,
                      const float* std, float* out) {
  for (int64_t c = 0; c < channels; ++c) {
    float table[256];
    for (int p = 0; p < 256; ++p) table[p] = (static_cast<float>(p) / 255.0f - mean[c]) / std[c];
    for (int64_t i = 0; i < plane; ++i) out[c * plane + i] = table[pixels[c * plane + i]];
  }
}

}  // namespace dtrain::data
