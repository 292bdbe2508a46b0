// Writes GNU MO bytes for tests of the MO reader, the gettext corpus and the translation workload.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dtrain::test {

// MO bytes written from the format's layout: the 28-byte header, the original table at 28, the
// translation table after it, then every string with its NUL. `raw` pairs are (original, translation)
// as stored: "ctxt\x04msgid", "msgid\0plural" and "form0\0form1".
inline std::string mo_bytes(const std::vector<std::pair<std::string, std::string>>& raw,
                            bool big_endian = false, uint32_t revision = 0) {
  std::string out;
  auto put = [&](uint32_t v) {
    for (int k = 0; k < 4; ++k) {
      const int shift = big_endian ? 24 - 8 * k : 8 * k;
      out += static_cast<char>((v >> shift) & 0xff);
    }
  };
  const uint32_t n = static_cast<uint32_t>(raw.size());
  // Minor revision 1 has five more header words (system-dependent string tables, left empty here).
  const uint32_t header = (revision & 0xffff) ? 48 : 28;
  const uint32_t originals = header, translations = header + 8 * n;
  put(0x950412de);
  put(revision);
  put(n);
  put(originals);
  put(translations);
  while (out.size() < header) put(0);
  uint32_t offset = translations + 8 * n;
  std::string strings;
  std::vector<std::pair<uint32_t, uint32_t>> descriptors[2];
  for (int side = 0; side < 2; ++side) {
    for (const auto& entry : raw) {
      const std::string& s = side == 0 ? entry.first : entry.second;
      descriptors[side].push_back({static_cast<uint32_t>(s.size()), offset});
      strings += s;
      strings += '\0';
      offset += static_cast<uint32_t>(s.size() + 1);
    }
  }
  for (const auto& table : descriptors) {
    for (const auto& [length, at] : table) {
      put(length);
      put(at);
    }
  }
  return out + strings;
}

}  // namespace dtrain::test
