// core/io/safetensors: reading and writing (bitwise round trips, a file written by the Python
// package, every kind of corruption). Checkpoint directories are in test_checkpoint.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
#include "tests/core/io/io_test_util.h"

namespace dtrain {
namespace {

namespace fs = std::filesystem;

class SafetensorsIo : public testing::IoTest {};

std::vector<unsigned char> raw_bytes(const Tensor& t) {
  const auto* p = static_cast<const unsigned char*>(t.raw_data());
  return std::vector<unsigned char>(p, p + t.numel() * static_cast<int64_t>(dtype_size(t.dtype())));
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good());
}

// A safetensors file by hand: the 8-byte length (`declared_len`, or the header's real length), the
// header text and the data bytes.
std::string make_file(const std::string& header, const std::string& data,
                      int64_t declared_len = -1) {
  uint64_t n = declared_len < 0 ? header.size() : static_cast<uint64_t>(declared_len);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// Loads `path` expecting a dtrain::Error whose one-line message contains the file name and each of
// `parts`.
void expect_load_error(const std::string& path, const std::vector<std::string>& parts) {
  try {
    load_safetensors(path);
    ADD_FAILURE() << "loading " << path << " did not fail";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
    for (const auto& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << msg;
  }
}

// ------------------------------------------------------------------------------------- safetensors

TEST_F(SafetensorsIo, RoundTripEveryDTypeBitwise) {
  Generator gen(7);
  NamedTensors tensors;
  // Random bit patterns, including NaN payloads, infinities and subnormals, must survive unchanged.
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64}) {
    Tensor t = Tensor::empty({3, 5, 2}, dt);
    auto* p = static_cast<unsigned char*>(t.raw_data());
    for (int64_t i = 0; i < t.numel() * static_cast<int64_t>(dtype_size(dt)); ++i) {
      p[i] = static_cast<unsigned char>(gen.next_u64());
    }
    tensors.emplace_back(std::string("t_") + dtype_name(dt), t);
  }
  tensors.emplace_back("scalar", Tensor::scalar(3.5, DType::f64));
  tensors.emplace_back("empty", Tensor::empty({0, 3}, DType::bf16));
  std::map<std::string, std::string> meta{{"step", "12"}, {"note", "a \"quoted\" value\n"}};
  save_safetensors(path("a.safetensors"), tensors, meta);
  EXPECT_FALSE(fs::exists(path("a.safetensors.tmp")));

  SafetensorsFile f = load_safetensors(path("a.safetensors"));
  ASSERT_EQ(f.size(), tensors.size());
  EXPECT_EQ(f.metadata(), meta);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, expected] = tensors[i];
    EXPECT_EQ(f.tensors()[i].first, name) << "written order is kept";
    const Tensor& got = f.at(name);
    EXPECT_EQ(got.dtype(), expected.dtype()) << name;
    EXPECT_EQ(got.shape(), expected.shape()) << name;
    EXPECT_EQ(raw_bytes(got), raw_bytes(expected)) << name;
  }
}

TEST_F(SafetensorsIo, LayoutMatchesTheFormat) {
  save_safetensors(path("b.safetensors"),
                   {{"w", Tensor::from_vector<float>({1, 2, 3}, {3}, DType::f32)}});
  std::ifstream in(path("b.safetensors"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  EXPECT_EQ((8 + n) % 8, 0u) << "data starts 8-byte aligned";
  ASSERT_EQ(bytes.size(), 8 + n + 12);
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["w"]["dtype"], "F32");
  EXPECT_EQ(header["w"]["shape"], nlohmann::json::array({3}));
  EXPECT_EQ(header["w"]["data_offsets"], nlohmann::json::array({0, 12}));
  EXPECT_FALSE(header.contains("__metadata__")) << "no metadata, no key";
  float second;
  std::memcpy(&second, bytes.data() + 8 + n + 4, 4);
  EXPECT_EQ(second, 2.0f);
}

TEST_F(SafetensorsIo, SavesViewsInLogicalOrder) {
  Tensor m = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f32);
  save_safetensors(path("t.safetensors"), {{"mt", m.transpose(0, 1)}, {"row", m.select(0, 1)}});
  SafetensorsFile f = load_safetensors(path("t.safetensors"));
  EXPECT_EQ(f.at("mt").shape(), (Shape{3, 2}));
  EXPECT_EQ(f.at("mt").to_vector<float>(), (std::vector<float>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(f.at("row").to_vector<float>(), (std::vector<float>{4, 5, 6}));
}

TEST_F(SafetensorsIo, ReadsFilesWrittenByPython) {
  const std::string fixture =
      std::string(DTRAIN_SOURCE_DIR) + "/tests/reference/fixtures/python_safetensors.safetensors";
  SafetensorsFile f = load_safetensors(fixture);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("producer"), "python-safetensors");
  EXPECT_EQ(f.size(), 9u);

  EXPECT_EQ(f.at("f32").dtype(), DType::f32);
  EXPECT_EQ(f.at("f32").shape(), (Shape{2, 3}));
  EXPECT_EQ(f.at("f32").to_vector<float>(),
            (std::vector<float>{-0.5f, -0.25f, 0.f, 0.25f, 0.5f, 0.75f}));
  EXPECT_EQ(f.at("f64").to_vector<double>(), (std::vector<double>{1.0 / 3.0, -1e300, 2.5}));
  EXPECT_EQ(f.at("f16").dtype(), DType::f16);
  EXPECT_EQ(
      f.at("f16").to_vector<double>(),
      (std::vector<double>{1.0, -2.5, 65504.0, std::ldexp(1.0, -14), std::ldexp(1.0, -24), 0.0}));
  EXPECT_EQ(f.at("bf16").dtype(), DType::bf16);
  EXPECT_EQ(f.at("bf16").shape(), (Shape{2, 2}));
  EXPECT_EQ(f.at("bf16").to_vector<double>(), (std::vector<double>{1.0, -3.0, 0.0078125, 256.0}));
  EXPECT_EQ(f.at("i32").dtype(), DType::i32);
  EXPECT_EQ(f.at("i32").to_vector<int32_t>(), (std::vector<int32_t>{INT32_MIN, 0, INT32_MAX}));
  EXPECT_EQ(f.at("i64").to_vector<int64_t>(),
            (std::vector<int64_t>{(int64_t{1} << 53) + 1, -1, INT64_MIN}));
  EXPECT_EQ(f.at("scalar").shape(), Shape{});
  EXPECT_EQ(f.at("scalar").item(), 7.0);
  EXPECT_EQ(f.at("empty").shape(), (Shape{0, 4}));
  EXPECT_EQ(f.at("layer.0.weight").to_vector<float>(), (std::vector<float>{1, 2, 3, 4}));

  // Python orders by alignment, then name; the reader keeps the file's (data) order.
  EXPECT_EQ(f.tensors().front().first, "i64");
  EXPECT_EQ(f.tensors().back().first, "f16");
  try {
    f.at("missing");
    ADD_FAILURE() << "at() of a missing name did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"missing\""), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsIo, HeaderOnly) {
  save_safetensors(path("h.safetensors"), {{"a", Tensor::zeros({2, 2}, DType::bf16)},
                                           {"b", Tensor::zeros({5}, DType::i64)}});
  SafetensorsHeader h = read_safetensors_header(path("h.safetensors"));
  ASSERT_EQ(h.entries.size(), 2u);
  EXPECT_EQ(h.entries[1].name, "b");
  EXPECT_EQ(h.entries[1].dtype, DType::i64);
  EXPECT_EQ(h.entries[1].shape, Shape{5});
  EXPECT_EQ(h.entries[1].begin, 8u);
  EXPECT_EQ(h.entries[1].end, 48u);
}

TEST_F(SafetensorsIo, WriterRejectsBadNames) {
  Tensor t = Tensor::zeros({1});
  EXPECT_THROW(save_safetensors(path("x"), {{"a", t}, {"a", t}}), Error);
  EXPECT_THROW(save_safetensors(path("x"), {{"", t}}), Error);
  EXPECT_THROW(save_safetensors(path("x"), {{"__metadata__", t}}), Error);
  EXPECT_THROW(save_safetensors(path("x"), {{"u", Tensor()}}), Error);
  EXPECT_FALSE(fs::exists(path("x")));
  EXPECT_THROW(save_safetensors(path("no/such/dir/x"), {{"a", t}}), Error);
}

TEST_F(SafetensorsIo, CorruptFilesAreRejected) {
  const std::string f32x2 = R"({"dtype":"F32","shape":[2],"data_offsets":)";
  const std::string eight(8, '\1');
  struct Case {
    const char* name;
    std::string bytes;
    std::vector<std::string> parts;
  };
  std::vector<Case> cases = {
      {"short", std::string("\x10\0\0", 3), {"3 bytes", "too short"}},
      {"header_past_end",
       make_file(R"({"a":1})", "", 1000),
       {"header length 1000", "past the end"}},
      {"invalid_json", make_file(R"({"a": {"dtype": )", ""), {"not valid JSON"}},
      {"not_object", make_file("[1, 2]", ""), {"not a JSON object"}},
      {"unknown_dtype",
       make_file(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", eight),
       {"\"a\"", "unsupported dtype \"U8\""}},
      {"shape_size",
       make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight),
       {"\"a\"", "[3]", "needs 12 bytes", "hold 8"}},
      {"overlap",
       make_file(R"({"a":)" + f32x2 + R"([0,8]},"b":)" + f32x2 + "[4,12]}}", eight + "1234"),
       {"\"b\"", "overlap", "\"a\""}},
      {"hole",
       make_file(R"({"a":)" + f32x2 + R"([0,8]},"b":)" + f32x2 + "[12,20]}}",
                 eight + eight + "1234"),
       {"\"b\"", "hole"}},
      {"out_of_range",
       make_file(R"({"a":)" + f32x2 + "[0,8]}}", "1234"),
       {"\"a\"", "[0, 8]", "past the end of the data", "truncated"}},
      {"trailing", make_file(R"({"a":)" + f32x2 + "[0,8]}}", eight + "xx"), {"2 bytes after"}},
      {"reversed_offsets",
       make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", eight),
       {"\"a\"", "end before they begin"}},
      {"negative_dim",
       make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight),
       {"\"a\"", "not a non-negative integer"}},
      {"duplicate",
       make_file(R"({"a":)" + f32x2 + R"([0,8]},"a":)" + f32x2 + "[0,8]}}", eight),
       {"\"a\"", "twice"}},
      {"bad_metadata", make_file(R"({"__metadata__":{"k":1}})", ""), {"__metadata__", "\"k\""}},
      {"missing_offsets",
       make_file(R"({"a":{"dtype":"F32","shape":[2]}})", eight),
       {"\"a\"", "data_offsets"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string p = path(std::string(c.name) + ".safetensors");
    write_bytes(p, c.bytes);
    expect_load_error(p, c.parts);
  }

  // A real file cut short: the tensor whose data is missing is named.
  std::string p = path("cut.safetensors");
  save_safetensors(p, {{"first", Tensor::ones({4})}, {"second", Tensor::ones({16})}});
  fs::resize_file(p, fs::file_size(p) - 5);
  expect_load_error(p, {"\"second\"", "truncated"});

  expect_load_error(path("does_not_exist.safetensors"), {"cannot open"});
}

TEST_F(SafetensorsIo, ValidFileWithZeroSizedTensorsLoads) {
  // Zero-sized tensors sit at any packed offset, including between others and at the very end.
  const std::string f32x2 = R"({"dtype":"F32","shape":[2],"data_offsets":)";
  std::string p = path("z.safetensors");
  write_bytes(
      p, make_file(R"({"z0":{"dtype":"I64","shape":[0,3],"data_offsets":[8,8]},"a":)" + f32x2 +
                       R"([0,8]},"b":)" + f32x2 + R"([8,16]},"z1":{"dtype":"F16","shape":[0],)" +
                       R"("data_offsets":[16,16]}}   )",
                   std::string(16, '\0')));
  SafetensorsFile f = load_safetensors(p);
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "z0", "b", "z1"}));
  EXPECT_EQ(f.at("z0").shape(), (Shape{0, 3}));
}

}  // namespace
}  // namespace dtrain
