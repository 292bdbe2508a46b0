// The IDX format of MNIST and Fashion-MNIST, plain or gzip'd (detected by content):
//
//   [2 bytes]  0x00 0x00
//   [1 byte]   element type: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
//   [1 byte]   number of dimensions d
//   [4d bytes] the sizes, u32 big-endian
//   [rest]     the elements, row-major and big-endian; exactly prod(sizes) of them
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dtrain::data {

enum class IdxType : uint8_t {
  u8 = 0x08,
  i8 = 0x09,
  i16 = 0x0B,
  i32 = 0x0C,
  f32 = 0x0D,
  f64 = 0x0E
};

const char* idx_type_name(IdxType t);  // "u8", "i8", ...
size_t idx_type_size(IdxType t);

struct IdxArray {
  IdxType type = IdxType::u8;
  std::vector<int64_t> dims;
  std::vector<uint8_t> bytes;  // the elements in host byte order, prod(dims) * idx_type_size(type)

  int64_t numel() const;
};

// Reads and checks an IDX file: the magic, a known element type, and that the data is exactly as long as
// the dimensions say (a shorter file is "truncated", a longer one "corrupt"). `hint` is appended to
// every error to say what to do (re-install the package, pass --data-dir, ...).
IdxArray read_idx(const std::string& path, const std::string& hint = "");

// The same, from the (already decompressed) bytes of a file; `name` stands for the file in messages.
IdxArray parse_idx(const std::string& bytes, const std::string& name, const std::string& hint = "");

}  // namespace dtrain::data
