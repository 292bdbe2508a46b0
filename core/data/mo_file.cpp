#include "core/data/mo_file.h"

#include <cstdio>
#include <utility>

#include "core/data/file_bytes.h"
#include "core/error.h"

namespace dtrain::data {

namespace {

constexpr uint32_t kMoMagic = 0x950412de;
constexpr uint64_t kHeaderBytes = 28;        // magic .. hash table offset, seven 32-bit words
constexpr uint64_t kSysdepHeaderBytes = 48;  // minor revision 1 adds five words after them

// The file's words in its own byte order, bounds-checked so a damaged file is an error, not a read
// past the buffer. Offsets are carried in 64 bits so offset + length never wraps.
class MoReader {
 public:
  MoReader(std::string_view bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(name_ + ": not a valid GNU MO file: " + what +
                "; reinstall the package that owns it or leave its domain out");
  }

  uint32_t word(uint64_t offset) const {
    if (offset + 4 > bytes_.size())
      fail("a 32-bit word at offset " + std::to_string(offset) + " is past the end");
    const auto* p = reinterpret_cast<const unsigned char*>(bytes_.data() + offset);
    if (big_endian_) {
      return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
             static_cast<uint32_t>(p[2]) << 8 | static_cast<uint32_t>(p[3]);
    }
    return static_cast<uint32_t>(p[3]) << 24 | static_cast<uint32_t>(p[2]) << 16 |
           static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[0]);
  }

  // The magic tells the byte order: read little endian, it is either the magic or the magic swapped.
  void detect_byte_order() {
    if (bytes_.size() < kHeaderBytes) {
      fail("it is " + std::to_string(bytes_.size()) + " bytes, shorter than the 28-byte header");
    }
    big_endian_ = false;
    const uint32_t magic = word(0);
    if (magic == kMoMagic) return;
    big_endian_ = true;
    if (word(0) == kMoMagic) return;
    char hex[16];
    std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(magic));
    fail(std::string("magic 0x") + hex + " (little endian) is not 0x950412de in either byte order");
  }

  bool big_endian() const { return big_endian_; }
  uint64_t size() const { return bytes_.size(); }

  // String i of the table at `table`: its descriptor's length and offset, checked to lie inside the
  // file, outside the header and the descriptor tables, and to end with a NUL.
  std::string_view string_at(uint64_t table, uint64_t i, const char* which) const {
    const uint64_t length = word(table + 8 * i);
    const uint64_t offset = word(table + 8 * i + 4);
    const std::string where = std::string(which) + " string " + std::to_string(i);
    if (offset + length + 1 > bytes_.size()) {
      fail(where + " (offset " + std::to_string(offset) + ", length " + std::to_string(length) +
           ") runs past the end of the file (" + std::to_string(bytes_.size()) + " bytes)");
    }
    for (const auto& [begin, end] : reserved_) {
      if (offset < end && offset + length + 1 > begin) {
        fail(where + " (offset " + std::to_string(offset) + ", length " + std::to_string(length) +
             ") overlaps the header or a string table");
      }
    }
    if (bytes_[offset + length] != '\0') fail(where + " is not terminated by a NUL");
    return bytes_.substr(offset, length);
  }

  void reserve(uint64_t begin, uint64_t end) { reserved_.push_back({begin, end}); }

 private:
  std::string_view bytes_;
  const std::string& name_;
  bool big_endian_ = false;
  std::vector<std::pair<uint64_t, uint64_t>> reserved_;  // [begin, end) ranges no string may touch
};

// Splits at every NUL: "a\0b" -> {"a", "b"}.
std::vector<std::string> split_nul(std::string_view s) {
  std::vector<std::string> parts;
  for (;;) {
    const size_t nul = s.find('\0');
    parts.emplace_back(s.substr(0, nul));
    if (nul == std::string_view::npos) return parts;
    s.remove_prefix(nul + 1);
  }
}

}  // namespace

MoFile parse_mo(std::string_view bytes, const std::string& name) {
  MoReader r(bytes, name);
  r.detect_byte_order();
  MoFile mo;
  mo.big_endian = r.big_endian();
  mo.revision = r.word(4);
  const uint32_t major = mo.revision >> 16, minor = mo.revision & 0xffff;
  // The manual: an unknown major revision means stop reading; an unknown minor one is still readable.
  if (major > 1) r.fail("major revision " + std::to_string(major) + " is unknown (0 and 1 are)");
  const uint64_t header_bytes = minor >= 1 ? kSysdepHeaderBytes : kHeaderBytes;
  if (r.size() < header_bytes) {
    r.fail("minor revision " + std::to_string(minor) + " needs a " + std::to_string(header_bytes) +
           "-byte header but the file is " + std::to_string(r.size()) + " bytes");
  }
  const uint64_t count = r.word(8), originals = r.word(12), translations = r.word(16);
  // Each string needs an 8-byte descriptor in each table, so a count the file cannot hold is caught
  // here, before anything is allocated for it.
  for (const auto& [table, which] :
       {std::pair{originals, "original"}, std::pair{translations, "translation"}}) {
    if (table + 8 * count > r.size()) {
      r.fail("the " + std::string(which) + " table (offset " + std::to_string(table) + ", " +
             std::to_string(count) + " strings) runs past the end of the file (" +
             std::to_string(r.size()) + " bytes)");
    }
    if (count > 0 && table < header_bytes) {
      r.fail("the " + std::string(which) + " table at offset " + std::to_string(table) +
             " overlaps the header");
    }
  }
  if (count > 0 && originals < translations + 8 * count && translations < originals + 8 * count) {
    r.fail("the original table (offset " + std::to_string(originals) +
           ") and the translation table (offset " + std::to_string(translations) + ") overlap");
  }
  r.reserve(0, header_bytes);
  r.reserve(originals, originals + 8 * count);
  r.reserve(translations, translations + 8 * count);

  mo.entries.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    std::string_view original = r.string_at(originals, i, "original");
    const std::string_view translation = r.string_at(translations, i, "translation");
    MoEntry e;
    // The context is separated by EOT (\x04), which never occurs in a msgid.
    if (const size_t eot = original.find('\x04'); eot != std::string_view::npos) {
      e.context = std::string(original.substr(0, eot));
      e.has_context = true;
      original.remove_prefix(eot + 1);
    }
    if (const size_t nul = original.find('\0'); nul != std::string_view::npos) {
      e.msgid = std::string(original.substr(0, nul));
      e.msgid_plural = std::string(original.substr(nul + 1));
      if (e.msgid_plural.empty())
        r.fail("original string " + std::to_string(i) + " has an empty msgid_plural");
      e.translations = split_nul(translation);
    } else {
      e.msgid = std::string(original);
      e.translations.emplace_back(translation);
    }
    if (e.msgid.empty() && !e.has_context && !e.is_plural()) {
      mo.header = e.translations.front();
      continue;
    }
    mo.entries.push_back(std::move(e));
  }
  return mo;
}

MoFile read_mo_file(const std::string& path) { return parse_mo(read_file_bytes(path), path); }

std::string mo_header_field(const std::string& header, const std::string& field) {
  const std::string key = field + ":";
  size_t line = 0;
  while (line < header.size()) {
    size_t end = header.find('\n', line);
    if (end == std::string::npos) end = header.size();
    if (header.compare(line, key.size(), key) == 0) {
      size_t b = line + key.size(), e = end;
      while (b < e && (header[b] == ' ' || header[b] == '\t')) ++b;
      while (e > b && (header[e - 1] == ' ' || header[e - 1] == '\t' || header[e - 1] == '\r')) --e;
      return header.substr(b, e - b);
    }
    line = end + 1;
  }
  return "";
}

}  // namespace dtrain::data
