// The safetensors format, read and written exactly as the Python `safetensors` package does, so that
// checkpoints move between dtrain, PyTorch and timm:
//
//   [8 bytes]  N, the header length, u64 little-endian
//   [N bytes]  JSON object: name -> {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//              plus an optional "__metadata__": {string: string}; padded with spaces
//   [rest]     the tensors' bytes, row-major and little-endian; offsets are relative to the start of
//              this buffer, and the tensors tile it exactly (no holes, no overlap, nothing after)
//
// dtypes: F32, F64, F16, BF16, I32, I64 (the DType set); any other is rejected with its name.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"

namespace dtrain {

// Ordered (name, tensor) pairs: the order a file is written in, and the order it is read back in.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `tensors` (copied to host and made contiguous; autograd is not involved) in the given order.
// The file is written to path + ".tmp", synced and renamed over `path`, so a crash leaves either the
// old file or the new one. Names must be unique, non-empty and not "__metadata__".
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// A loaded file: the tensors (CPU, contiguous, requires_grad false) in the order of their data in the
// file, and the metadata map.
class SafetensorsFile {
 public:
  SafetensorsFile() = default;
  SafetensorsFile(std::string path, NamedTensors tensors,
                  std::map<std::string, std::string> metadata);

  const std::string& path() const { return path_; }
  const NamedTensors& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t size() const { return tensors_.size(); }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // The tensor called `name`; a dtrain::Error naming the file and the tensor when there is none.
  const Tensor& at(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::string path_;
  NamedTensors tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Reads and validates a whole file. Every defect (too short, header past the end, bad JSON, a bad
// entry, unknown dtype, shape that disagrees with the byte range, holes, overlap, truncated data,
// trailing bytes) is a one-line dtrain::Error naming the file and, where one is at fault, the tensor.
SafetensorsFile load_safetensors(const std::string& path);

// Reads only the header: names, dtypes and shapes (tensors left undefined), for inspecting a file or
// checking a checkpoint against a model without reading the data.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte range within the data buffer
};
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in data order
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // file offset of the data buffer (8 + header length)
};
SafetensorsHeader read_safetensors_header(const std::string& path);

// The safetensors dtype string of `t` ("F32", "BF16", ...) and back; the latter throws on others.
const char* safetensors_dtype_name(DType t);
DType safetensors_dtype_from_name(const std::string& name);

}  // namespace dtrain
