#include <gtest/gtest.h>

#include <cstring>

#include "core/data/file_bytes.h"
#include "core/data/idx.h"
#include "core/error.h"
#include "data_test_util.h"

using namespace dtrain;
using namespace dtrain::data;
using namespace dtrain::data::testing;

namespace {

void put_be32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((v >> s) & 0xff));
}

// An IDX file's bytes, written out by hand: 0 0 type ndims, big-endian dims, then `payload` (already
// big-endian).
std::string idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const std::string& payload) {
  std::string out = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) put_be32(out, d);
  return out + payload;
}

std::string u8_payload(size_t n) {
  std::string p;
  for (size_t i = 0; i < n; ++i) p.push_back(static_cast<char>((i * 37 + 5) & 0xff));
  return p;
}

}  // namespace

TEST(Idx, PlainU8RoundTrip) {
  TempDir dir;
  const std::string payload = u8_payload(3 * 4 * 5);
  write_bytes(dir.file("a-idx3-ubyte"), idx_bytes(0x08, {3, 4, 5}, payload));
  const IdxArray a = read_idx(dir.file("a-idx3-ubyte"));
  EXPECT_EQ(a.type, IdxType::u8);
  EXPECT_EQ(a.dims, (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(a.numel(), 60);
  ASSERT_EQ(a.bytes.size(), 60u);
  EXPECT_EQ(std::string(a.bytes.begin(), a.bytes.end()), payload);
}

TEST(Idx, GzipRoundTripSameAsPlain) {
  TempDir dir;
  const std::string bytes = idx_bytes(0x08, {7, 3}, u8_payload(21));
  write_bytes(dir.file("plain"), bytes);
  write_gzip(dir.file("packed.gz"), bytes);
  ASSERT_NE(read_bytes(dir.file("packed.gz")), bytes);  // it really is compressed
  const IdxArray plain = read_idx(dir.file("plain"));
  const IdxArray packed = read_idx(dir.file("packed.gz"));
  EXPECT_EQ(packed.dims, plain.dims);
  EXPECT_EQ(packed.bytes, plain.bytes);
}

TEST(Idx, WideTypesAreSwappedToHostOrder) {
  TempDir dir;
  // i32 values -2, 258 and f32 1.5, big-endian.
  std::string ints;
  put_be32(ints, static_cast<uint32_t>(-2));
  put_be32(ints, 258);
  write_gzip(dir.file("ints.gz"), idx_bytes(0x0C, {2}, ints));
  const IdxArray a = read_idx(dir.file("ints.gz"));
  ASSERT_EQ(a.type, IdxType::i32);
  int32_t v[2];
  std::memcpy(v, a.bytes.data(), 8);
  EXPECT_EQ(v[0], -2);
  EXPECT_EQ(v[1], 258);

  float one_and_half = 1.5f;
  uint32_t bits;
  std::memcpy(&bits, &one_and_half, 4);
  std::string floats;
  put_be32(floats, bits);
  write_bytes(dir.file("floats"), idx_bytes(0x0D, {1, 1}, floats));
  const IdxArray f = read_idx(dir.file("floats"));
  float back;
  std::memcpy(&back, f.bytes.data(), 4);
  EXPECT_EQ(back, 1.5f);
}

TEST(Idx, TruncatedDataNamesFileAndSizes) {
  TempDir dir;
  std::string bytes = idx_bytes(0x08, {2, 3, 2}, u8_payload(12));
  bytes.resize(bytes.size() - 2);
  write_bytes(dir.file("short"), bytes);
  const std::string msg = error_of([&] { read_idx(dir.file("short"), "re-install the package"); });
  EXPECT_NE(msg.find(dir.file("short") + " is truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected 12 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("found 10"), std::string::npos) << msg;
  EXPECT_NE(msg.find("re-install the package"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
}

TEST(Idx, TruncatedHeaderAndGzipStream) {
  TempDir dir;
  write_bytes(dir.file("header"), idx_bytes(0x08, {2, 3, 2}, "").substr(0, 9));
  EXPECT_NE(error_of([&] { read_idx(dir.file("header")); }).find("is truncated"),
            std::string::npos);

  const std::string bytes = idx_bytes(0x08, {100, 50}, u8_payload(5000));
  write_gzip(dir.file("whole.gz"), bytes);
  const std::string gz = read_bytes(dir.file("whole.gz"));
  write_bytes(dir.file("cut.gz"), gz.substr(0, gz.size() / 2));
  const std::string msg = error_of([&] { read_idx(dir.file("cut.gz")); });
  EXPECT_NE(msg.find(dir.file("cut.gz") + " is truncated"), std::string::npos) << msg;
}

TEST(Idx, CorruptFilesAreRejected) {
  TempDir dir;
  // Not IDX at all.
  write_bytes(dir.file("text"), "hello, this is not an IDX file");
  EXPECT_NE(error_of([&] { read_idx(dir.file("text")); }).find("is not an IDX file"),
            std::string::npos);
  // Unknown element type 0x07.
  write_bytes(dir.file("type"), idx_bytes(0x07, {1}, "x"));
  EXPECT_NE(error_of([&] { read_idx(dir.file("type")); }).find("is not an IDX file"),
            std::string::npos);
  // More data than the dims say.
  write_bytes(dir.file("long"), idx_bytes(0x08, {2}, "abc"));
  const std::string long_msg = error_of([&] { read_idx(dir.file("long")); });
  EXPECT_NE(long_msg.find("is corrupt"), std::string::npos) << long_msg;
  EXPECT_NE(long_msg.find("1 extra"), std::string::npos) << long_msg;
  // A damaged deflate stream: zlib's CRC-32 or its decoder notices.
  write_gzip(dir.file("good.gz"), idx_bytes(0x08, {100, 50}, u8_payload(5000)));
  std::string gz = read_bytes(dir.file("good.gz"));
  for (size_t i = 20; i < 40; ++i) gz[i] = static_cast<char>(~gz[i]);
  write_bytes(dir.file("bad.gz"), gz);
  const std::string bad_msg = error_of([&] { read_idx(dir.file("bad.gz")); });
  EXPECT_NE(bad_msg.find(dir.file("bad.gz") + " is "), std::string::npos) << bad_msg;
  EXPECT_TRUE(bad_msg.find("corrupt") != std::string::npos ||
              bad_msg.find("truncated") != std::string::npos)
      << bad_msg;
}

TEST(Idx, MissingFileNamesIt) {
  const std::string msg =
      error_of([] { read_idx("/nonexistent/dir/file-idx1-ubyte", "pass --data-dir"); });
  EXPECT_NE(msg.find("cannot open /nonexistent/dir/file-idx1-ubyte"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pass --data-dir"), std::string::npos) << msg;
}

TEST(Idx, ConcatenatedGzipMembersReadInOrder) {
  TempDir dir;
  write_gzip(dir.file("a.gz"), "first ");
  write_gzip(dir.file("b.gz"), "second");
  write_bytes(dir.file("ab.gz"), read_bytes(dir.file("a.gz")) + read_bytes(dir.file("b.gz")));
  EXPECT_EQ(read_file_bytes(dir.file("ab.gz")), "first second");
}
