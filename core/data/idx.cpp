#include "core/data/idx.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "core/data/file_bytes.h"
#include "core/error.h"

namespace dtrain::data {

namespace {

bool known_type(uint8_t code) {
  switch (code) {
    case 0x08:
    case 0x09:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x0E:
      return true;
    default:
      return false;
  }
}

uint32_t read_be32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | static_cast<uint32_t>(p[3]);
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

}  // namespace

const char* idx_type_name(IdxType t) {
  switch (t) {
    case IdxType::u8:
      return "u8";
    case IdxType::i8:
      return "i8";
    case IdxType::i16:
      return "i16";
    case IdxType::i32:
      return "i32";
    case IdxType::f32:
      return "f32";
    case IdxType::f64:
      return "f64";
  }
  return "?";
}

size_t idx_type_size(IdxType t) {
  switch (t) {
    case IdxType::u8:
    case IdxType::i8:
      return 1;
    case IdxType::i16:
      return 2;
    case IdxType::i32:
    case IdxType::f32:
      return 4;
    case IdxType::f64:
      return 8;
  }
  return 0;
}

int64_t IdxArray::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

IdxArray parse_idx(const std::string& bytes, const std::string& name, const std::string& hint) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();

  DTRAIN_CHECK(n >= 4, with_hint(name + " is truncated: " + std::to_string(n) +
                                     " bytes, shorter than the 4-byte IDX magic",
                                 hint));
  DTRAIN_CHECK(
      p[0] == 0 && p[1] == 0 && known_type(p[2]),
      with_hint(name + " is not an IDX file: magic bytes " + std::to_string(p[0]) + " " +
                    std::to_string(p[1]) + " " + std::to_string(p[2]) + " " + std::to_string(p[3]) +
                    " (expected 0 0 <type 8/9/11/12/13/14> <ndims>)",
                hint));
  IdxArray out;
  out.type = static_cast<IdxType>(p[2]);
  const size_t ndims = p[3];
  const size_t header = 4 + 4 * ndims;
  DTRAIN_CHECK(n >= header,
               with_hint(name + " is truncated: its header names " + std::to_string(ndims) +
                             " dimensions (" + std::to_string(header) +
                             " header bytes) but the file has " + std::to_string(n) + " bytes",
                         hint));
  for (size_t i = 0; i < ndims; ++i) out.dims.push_back(read_be32(p + 4 + 4 * i));

  // Each dim is < 2^32; the product could overflow 64 bits only for absurd headers, which the
  // comparison with the actual size catches once a dimension makes it exceed the file.
  const size_t elem = idx_type_size(out.type);
  unsigned __int128 expected = elem;
  for (int64_t d : out.dims) expected *= static_cast<uint64_t>(d);
  const size_t found = n - header;
  const std::string what =
      std::string(idx_type_name(out.type)) + " data for shape " + dims_str(out.dims);
  DTRAIN_CHECK(expected <= found,
               with_hint(name + " is truncated: expected " +
                             std::to_string(static_cast<unsigned long long>(
                                 std::min<unsigned __int128>(expected, ~0ull))) +
                             " bytes of " + what + ", found " + std::to_string(found),
                         hint));
  DTRAIN_CHECK(expected == found,
               with_hint(name + " is corrupt: expected " +
                             std::to_string(static_cast<unsigned long long>(expected)) +
                             " bytes of " + what + ", found " + std::to_string(found) + " (" +
                             std::to_string(found - static_cast<size_t>(expected)) + " extra)",
                         hint));

  out.bytes.assign(p + header, p + n);
  // IDX is big-endian; swap each element into host (little-endian) order.
  static_assert(std::endian::native == std::endian::little,
                "IDX swapping assumes a little-endian host");
  if (elem > 1) {
    for (size_t i = 0; i < out.bytes.size(); i += elem)
      std::reverse(&out.bytes[i], &out.bytes[i] + elem);
  }
  return out;
}

IdxArray read_idx(const std::string& path, const std::string& hint) {
  return parse_idx(read_file_bytes(path, hint), path, hint);
}

}  // namespace dtrain::data
