#include "core/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/autograd/grad_mode.h"
#include "core/io/durable_file.h"

namespace dtrain {

// The format stores little-endian bytes and we copy them straight into tensors.
static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

namespace {

using ordered_json = nlohmann::ordered_json;

// Headers beyond this are refused before allocating for them (the Python reader's limit too).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::optional<DType> dtype_from_safetensors(const std::string& name) {
  if (name == "F32") return DType::f32;
  if (name == "F64") return DType::f64;
  if (name == "F16") return DType::f16;
  if (name == "BF16") return DType::bf16;
  if (name == "I32") return DType::i32;
  if (name == "I64") return DType::i64;
  return std::nullopt;
}

// A name as it appears in a message: JSON-quoted, so control characters or stray bytes in a corrupt
// file cannot break the one-line message.
std::string quoted(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error("safetensors: " + path + ": " + what);
}

// A structural defect: nothing to do but write the file again.
[[noreturn]] void corrupt(const std::string& path, const std::string& what) {
  fail(path, what + "; the file is corrupt, write it again");
}

std::string tensor_ref(const std::string& name) { return "tensor " + quoted(name); }

// Reads a non-negative integer that fits in uint64 from a JSON value, or fails with `what`.
uint64_t as_u64(const ordered_json& v, const std::string& path, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0)
    return static_cast<uint64_t>(v.get<int64_t>());
  corrupt(path, what + " is " + v.dump() + ", not a non-negative integer");
}

SafetensorsEntry parse_entry(const std::string& path, const std::string& name,
                             const ordered_json& e) {
  const std::string who = tensor_ref(name);
  if (!e.is_object()) corrupt(path, who + ": header entry is " + e.dump() + ", not an object");
  SafetensorsEntry out;
  out.name = name;

  auto dt = e.find("dtype");
  if (dt == e.end() || !dt->is_string()) corrupt(path, who + ": missing or non-string \"dtype\"");
  std::optional<DType> dtype = dtype_from_safetensors(dt->get<std::string>());
  if (!dtype) {
    fail(path,
         who + ": unsupported dtype " + quoted(dt->get<std::string>()) +
             " (dtrain reads F32, F64, F16, BF16, I32, I64; convert the tensor before saving)");
  }
  out.dtype = *dtype;

  auto sh = e.find("shape");
  if (sh == e.end() || !sh->is_array()) corrupt(path, who + ": missing or non-array \"shape\"");
  // numel is accumulated in 128 bits so a hostile shape cannot overflow into a plausible size.
  unsigned __int128 numel = 1;
  for (const auto& d : *sh) {
    uint64_t n = as_u64(d, path, who + ": a dimension of \"shape\"");
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail(path, who + ": dimension " + std::to_string(n) + " is too large");
    }
    out.shape.push_back(static_cast<int64_t>(n));
    numel *= n;
    if (numel > (static_cast<unsigned __int128>(1) << 64)) fail(path, who + ": shape is too large");
  }

  auto off = e.find("data_offsets");
  if (off == e.end() || !off->is_array() || off->size() != 2) {
    corrupt(path, who + ": missing \"data_offsets\" or it is not [begin, end]");
  }
  out.begin = as_u64((*off)[0], path, who + ": data_offsets begin");
  out.end = as_u64((*off)[1], path, who + ": data_offsets end");
  if (out.end < out.begin) {
    corrupt(path, who + ": data_offsets [" + std::to_string(out.begin) + ", " +
                      std::to_string(out.end) + "] end before they begin");
  }
  unsigned __int128 nbytes = numel * dtype_size(out.dtype);
  if (nbytes != out.end - out.begin) {
    corrupt(path, who + ": shape " + shape_str(out.shape) + " of " + dt->get<std::string>() +
                      " needs " + std::to_string(static_cast<uint64_t>(nbytes)) +
                      " bytes but data_offsets [" + std::to_string(out.begin) + ", " +
                      std::to_string(out.end) + "] hold " + std::to_string(out.end - out.begin));
  }
  return out;
}

SafetensorsHeader read_header(std::ifstream& in, const std::string& path, uint64_t file_size) {
  if (file_size < 8) {
    fail(path,
         "file is " + std::to_string(file_size) +
             " bytes, too short for the 8-byte header length (truncated, or not safetensors)");
  }
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  if (!in) fail(path, "cannot read the header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > file_size - 8) {
    fail(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                   std::to_string(file_size) + " bytes; truncated, or not safetensors)");
  }
  if (header_len > kMaxHeaderBytes) {
    fail(path, "header length " + std::to_string(header_len) + " exceeds the 100 MiB limit");
  }
  std::string text(header_len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  if (!in) fail(path, "cannot read the " + std::to_string(header_len) + "-byte header");

  // Duplicate top-level names would silently collapse into one entry; catch them while parsing.
  std::set<std::string> seen;
  std::string duplicate;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, ordered_json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && duplicate.empty()) {
      std::string key = parsed.get<std::string>();
      if (!seen.insert(key).second) duplicate = key;
    }
    return true;
  };
  ordered_json header;
  try {
    header = ordered_json::parse(text, on_event);
  } catch (const nlohmann::json::exception& e) {
    corrupt(path, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) {
    corrupt(path, "header is " + std::string(header.type_name()) + ", not a JSON object");
  }
  if (!duplicate.empty()) corrupt(path, tensor_ref(duplicate) + " appears twice in the header");

  SafetensorsHeader out;
  out.data_start = 8 + header_len;
  const uint64_t data_size = file_size - out.data_start;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) corrupt(path, "\"__metadata__\" is not an object of strings");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string())
          corrupt(path, "\"__metadata__\" value of " + quoted(k) + " is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    SafetensorsEntry e = parse_entry(path, name, value);
    if (e.end > data_size) {
      fail(path, tensor_ref(name) + ": data_offsets [" + std::to_string(e.begin) + ", " +
                     std::to_string(e.end) + "] run past the end of the data (" +
                     std::to_string(data_size) + " bytes; the file is truncated)");
    }
    out.entries.push_back(std::move(e));
  }

  // The tensors must tile [0, data_size) exactly: sorted by offset, each begins where the last ended.
  std::stable_sort(out.entries.begin(), out.entries.end(), [](const auto& a, const auto& b) {
    return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
  });
  uint64_t expected = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const auto& e : out.entries) {
    if (e.begin < expected) {
      corrupt(path, tensor_ref(e.name) + ": data_offsets [" + std::to_string(e.begin) + ", " +
                        std::to_string(e.end) + "] overlap " + tensor_ref(previous->name) +
                        " (which ends at " + std::to_string(expected) + ")");
    }
    if (e.begin > expected) {
      corrupt(path, tensor_ref(e.name) + ": data_offsets begin at " + std::to_string(e.begin) +
                        ", leaving a hole after byte " + std::to_string(expected) +
                        " (tensors must be packed back to back)");
    }
    expected = e.end;
    previous = &e;
  }
  if (expected != data_size) {
    corrupt(path, std::to_string(data_size - expected) + " bytes after the last tensor's data (" +
                      std::to_string(data_size) + "-byte data section, tensors end at " +
                      std::to_string(expected) + ")");
  }
  return out;
}

uint64_t size_of_file(const std::string& path) {
  std::error_code ec;
  uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) throw Error("safetensors: cannot open " + path + ": " + ec.message());
  return size;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::f16:
      return "F16";
    case DType::bf16:
      return "BF16";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
  }
  throw Error("safetensors: unknown DType value " + std::to_string(static_cast<int>(t)));
}

DType safetensors_dtype_from_name(const std::string& name) {
  std::optional<DType> t = dtype_from_safetensors(name);
  DTRAIN_CHECK(t.has_value(), "safetensors: unsupported dtype ", quoted(name),
               " (dtrain reads F32, F64, F16, BF16, I32, I64)");
  return *t;
}

SafetensorsFile::SafetensorsFile(std::string path, NamedTensors tensors,
                                 std::map<std::string, std::string> metadata)
    : path_(std::move(path)), tensors_(std::move(tensors)), metadata_(std::move(metadata)) {
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].first, i);
}

const Tensor& SafetensorsFile::at(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    throw Error("safetensors: " + path_ + ": no tensor " + quoted(name) + " (the file holds " +
                std::to_string(tensors_.size()) + " tensors)");
  }
  return tensors_[it->second].second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  uint64_t file_size = size_of_file(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("safetensors: cannot open " + path);
  return read_header(in, path, file_size);
}

SafetensorsFile load_safetensors(const std::string& path) {
  uint64_t file_size = size_of_file(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("safetensors: cannot open " + path);
  SafetensorsHeader header = read_header(in, path, file_size);

  NamedTensors tensors;
  tensors.reserve(header.entries.size());
  for (const auto& e : header.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype, Device::cpu());
    uint64_t nbytes = e.end - e.begin;
    if (nbytes > 0) {
      in.seekg(static_cast<std::streamoff>(header.data_start + e.begin));
      in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(nbytes));
      if (!in || static_cast<uint64_t>(in.gcount()) != nbytes) {
        fail(path,
             tensor_ref(e.name) + ": data ends early (was the file truncated while reading?)");
      }
    }
    tensors.emplace_back(e.name, std::move(t));
  }
  return SafetensorsFile(path, std::move(tensors), std::move(header.metadata));
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  NoGradGuard no_grad;
  std::set<std::string> names;
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json m = ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    DTRAIN_CHECK(!name.empty() && name != "__metadata__", "save_safetensors: ", path,
                 ": invalid tensor name ", quoted(name),
                 " (names must be non-empty and not __metadata__)");
    DTRAIN_CHECK(names.insert(name).second, "save_safetensors: ", path, ": tensor ", quoted(name),
                 " is given twice");
    DTRAIN_CHECK(t.defined(), "save_safetensors: ", path, ": tensor ", quoted(name),
                 " is undefined");
    Tensor h = t.detach();
    if (!h.device().is_cpu()) h = h.to(Device::cpu());
    if (!h.is_contiguous()) h = h.contiguous();
    uint64_t nbytes = static_cast<uint64_t>(h.numel()) * dtype_size(h.dtype());
    ordered_json entry = ordered_json::object();
    entry["dtype"] = safetensors_dtype_name(h.dtype());
    entry["shape"] = h.shape();
    entry["data_offsets"] = {offset, offset + nbytes};
    header[name] = std::move(entry);
    offset += nbytes;
    host.push_back(std::move(h));
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error("save_safetensors: " + path +
                ": cannot encode the header (names and metadata must be "
                "UTF-8): " +
                e.what());
  }
  // Pad with spaces so the data starts 8-byte aligned, as the Python writer does.
  text.append((8 - text.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp";
  try {
    DurableFile f(tmp);
    unsigned char len_bytes[8];
    uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(n >> (8 * i));
    f.write(len_bytes, 8);
    f.write(text.data(), text.size());
    for (const Tensor& h : host) {
      size_t nbytes = static_cast<size_t>(h.numel()) * dtype_size(h.dtype());
      if (nbytes > 0) f.write(h.raw_data(), nbytes);
    }
    f.close();
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    DTRAIN_CHECK(!ec, "save_safetensors: cannot rename ", tmp, " to ", path, ": ", ec.message());
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
  fsync_directory(std::filesystem::path(path).parent_path().string());
}

}  // namespace dtrain
