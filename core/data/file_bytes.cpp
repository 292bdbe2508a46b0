#include "core/data/file_bytes.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/error.h"

namespace dtrain::data {

namespace {

std::string with_hint(const std::string& message, const std::string& hint) {
  return hint.empty() ? message : message + "; " + hint;
}

std::string read_raw(const std::string& path, const std::string& hint) {
  std::ifstream in(path, std::ios::binary);
  DTRAIN_CHECK(in.good(), with_hint(path + ": cannot open (" + std::strerror(errno) + ")", hint));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  std::string bytes(static_cast<size_t>(std::max<std::streamoff>(size, 0)), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  DTRAIN_CHECK(in.gcount() == static_cast<std::streamsize>(bytes.size()),
               with_hint(path + ": read error after " + std::to_string(in.gcount()) + " of " +
                             std::to_string(bytes.size()) + " bytes",
                         hint));
  return bytes;
}

// Inflates every gzip member in `in`. The gzip trailer's ISIZE (uncompressed size mod 2^32, little
// endian, last 4 bytes) sizes the first allocation, so a single-member file is inflated without
// regrowing the buffer.
std::string gunzip(const std::string& path, const std::string& in, const std::string& hint) {
  std::string out;
  if (in.size() >= 18) {
    const auto* tail = reinterpret_cast<const unsigned char*>(in.data() + in.size() - 4);
    const uint32_t isize = static_cast<uint32_t>(tail[0]) | static_cast<uint32_t>(tail[1]) << 8 |
                           static_cast<uint32_t>(tail[2]) << 16 | static_cast<uint32_t>(tail[3]) << 24;
    out.resize(std::max<size_t>(isize, in.size()));
  } else {
    out.resize(4096);
  }

  z_stream zs{};
  // windowBits 15 + 16: a gzip wrapper (header, CRC-32 and length checked by zlib), not raw deflate.
  DTRAIN_CHECK(inflateInit2(&zs, 15 + 16) == Z_OK, path, ": cannot initialise zlib");
  size_t in_pos = 0;
  size_t out_pos = 0;
  int rc = Z_OK;
  for (;;) {
    if (out_pos == out.size()) out.resize(out.size() * 2);
    // avail_in/avail_out are 32-bit, so feed at most 1 GiB at a time.
    const size_t in_chunk = std::min<size_t>(in.size() - in_pos, 1u << 30);
    const size_t out_chunk = std::min<size_t>(out.size() - out_pos, 1u << 30);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + in_pos));
    zs.avail_in = static_cast<uInt>(in_chunk);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + out_pos);
    zs.avail_out = static_cast<uInt>(out_chunk);
    rc = inflate(&zs, Z_NO_FLUSH);
    in_pos += in_chunk - zs.avail_in;
    out_pos += out_chunk - zs.avail_out;
    if (rc == Z_STREAM_END) {
      // Another member may follow (gzip -c a b > ab.gz); anything else after the end is an error.
      if (in_pos == in.size()) break;
      if (in.size() - in_pos >= 2 && static_cast<unsigned char>(in[in_pos]) == 0x1f &&
          static_cast<unsigned char>(in[in_pos + 1]) == 0x8b) {
        inflateReset(&zs);
        continue;
      }
      const std::string msg = path + " is corrupt: " + std::to_string(in.size() - in_pos) +
                              " bytes of garbage after the end of the gzip stream";
      inflateEnd(&zs);
      throw Error(with_hint(msg, hint));
    }
    if (rc == Z_BUF_ERROR && in_pos == in.size() && zs.avail_out != 0) {
      inflateEnd(&zs);
      throw Error(with_hint(path + " is truncated: the gzip stream stops after " +
                                std::to_string(in.size()) + " compressed bytes (" +
                                std::to_string(out_pos) + " bytes decompressed) before its end marker",
                            hint));
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      const std::string msg = path + " is corrupt: zlib reports '" +
                              (zs.msg ? std::string(zs.msg) : "error " + std::to_string(rc)) +
                              "' after " + std::to_string(out_pos) + " decompressed bytes";
      inflateEnd(&zs);
      throw Error(with_hint(msg, hint));
    }
  }
  inflateEnd(&zs);
  out.resize(out_pos);
  return out;
}

}  // namespace

bool is_gzip(const std::string& bytes) {
  return bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f &&
         static_cast<unsigned char>(bytes[1]) == 0x8b;
}

std::string read_file_bytes(const std::string& path, const std::string& hint) {
  std::string raw = read_raw(path, hint);
  if (!is_gzip(raw)) return raw;
  return gunzip(path, raw, hint);
}

}  // namespace dtrain::data
