#include "core/data/file_bytes.h"

#include <filesystem>

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/io/durable_file.h"

namespace dtrain::data {

bool entry_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::symlink_status(path, ec));
}

bool is_directory_entry(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec);
}

namespace {

// Inflates every gzip member in `in`. The gzip trailer's ISIZE (uncompressed size mod 2^32, little
// endian, last 4 bytes) sizes the first buffer, so a single-member file is inflated without regrowing.
// In a truncated file those bytes are compressed data, so the hint is trusted only up to 64x the input
// (deflate rarely does better on data files), and the buffer is left uninitialised: pages that a bad
// hint reserves but inflate never writes cost nothing.
std::string gunzip(const std::string& path, const std::string& in, const std::string& hint) {
  size_t capacity = std::max<size_t>(4096, in.size() * 4);
  if (in.size() >= 18) {
    const auto* tail = reinterpret_cast<const unsigned char*>(in.data() + in.size() - 4);
    const uint32_t isize = static_cast<uint32_t>(tail[0]) | static_cast<uint32_t>(tail[1]) << 8 |
                           static_cast<uint32_t>(tail[2]) << 16 |
                           static_cast<uint32_t>(tail[3]) << 24;
    if (isize > 0 && isize <= in.size() * 64) capacity = isize;
  }
  std::unique_ptr<char[]> out(new char[capacity]);

  z_stream zs{};
  // windowBits 15 + 16: a gzip wrapper (header, CRC-32 and length checked by zlib), not raw deflate.
  DTRAIN_CHECK(inflateInit2(&zs, 15 + 16) == Z_OK, path, ": cannot initialise zlib");
  auto fail = [&](const std::string& message) {
    inflateEnd(&zs);
    throw Error(with_hint(message, hint));
  };
  size_t in_pos = 0;
  size_t out_pos = 0;
  for (;;) {
    if (out_pos == capacity) {
      std::unique_ptr<char[]> bigger(new char[capacity * 2]);
      std::memcpy(bigger.get(), out.get(), out_pos);
      out = std::move(bigger);
      capacity *= 2;
    }
    // avail_in/avail_out are 32-bit, so feed at most 1 GiB at a time.
    const size_t in_chunk = std::min<size_t>(in.size() - in_pos, 1u << 30);
    const size_t out_chunk = std::min<size_t>(capacity - out_pos, 1u << 30);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + in_pos));
    zs.avail_in = static_cast<uInt>(in_chunk);
    zs.next_out = reinterpret_cast<Bytef*>(out.get() + out_pos);
    zs.avail_out = static_cast<uInt>(out_chunk);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    in_pos += in_chunk - zs.avail_in;
    out_pos += out_chunk - zs.avail_out;
    if (rc == Z_STREAM_END) {
      // Another member may follow (cat a.gz b.gz > ab.gz); anything else after the end is an error.
      if (in_pos == in.size()) break;
      if (is_gzip(in.substr(in_pos, 2))) {
        inflateReset(&zs);
        continue;
      }
      fail(path + " is corrupt: " + std::to_string(in.size() - in_pos) +
           " bytes of garbage after the end of the gzip stream");
    }
    if (rc == Z_BUF_ERROR && in_pos == in.size() && zs.avail_out != 0) {
      fail(path + " is truncated: the gzip stream stops after " + std::to_string(in.size()) +
           " compressed bytes (" + std::to_string(out_pos) +
           " bytes decompressed) before its end marker");
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      fail(path + " is corrupt: zlib reports '" +
           (zs.msg ? std::string(zs.msg) : "error " + std::to_string(rc)) + "' after " +
           std::to_string(out_pos) + " decompressed bytes");
    }
  }
  inflateEnd(&zs);
  return std::string(out.get(), out_pos);
}

}  // namespace

std::string with_hint(const std::string& message, const std::string& hint) {
  return hint.empty() ? message : message + "; " + hint;
}

bool is_gzip(const std::string& bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
         static_cast<unsigned char>(bytes[1]) == 0x8b;
}

std::string read_file_bytes(const std::string& path, const std::string& hint) {
  std::string raw;
  try {
    raw = read_file(path);
  } catch (const Error& e) {
    throw Error(with_hint(e.what(), hint));
  }
  if (!is_gzip(raw)) return raw;
  return gunzip(path, raw, hint);
}

}  // namespace dtrain::data
