// Writes Unihan-like data directories for tests: unifont.hex and the two bzip2'd Unihan files the
// reader takes (core/data/unihan.h), with a learnable radical: the glyph and the definition both name
// it.
#pragma once
#include <bzlib.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace dtrain::test {

// `text` compressed by libbz2 as bzip2(1) writes it (block size 9 x 100k).
inline std::string bzip2_bytes(const std::string& text) {
  // bzip2's documented bound: 1% more than the input plus 600 bytes.
  std::string out(text.size() + text.size() / 100 + 601, '\0');
  unsigned int size = static_cast<unsigned int>(out.size());
  const int rc = BZ2_bzBuffToBuffCompress(out.data(), &size, const_cast<char*>(text.data()),
                                          static_cast<unsigned int>(text.size()), 9, 0, 0);
  EXPECT_EQ(rc, BZ_OK);
  out.resize(size);
  return out;
}

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The radicals of the synthetic characters, and the word each one's definition starts with.
inline const std::vector<int>& synthetic_radicals() {
  static const std::vector<int> radicals = {9, 30, 61, 64, 75, 85, 86, 140};
  return radicals;
}
inline const std::vector<std::string>& synthetic_words() {
  static const std::vector<std::string> words = {"Person", "mouth", "heart", "hand",
                                                 "tree",   "water", "fire",  "grass"};
  return words;
}

// `count` characters from U+4E00 on; character i has radical synthetic_radicals()[i % 8], a glyph with
// rows 2k and 2k + 1 inked for that k plus a pixel pattern from i, and a definition of the radical's
// word and two filler syllables from i. Every third line of each file is another field, to be skipped.
inline void write_synthetic_unihan(const std::filesystem::path& dir, int count) {
  std::filesystem::create_directories(dir);
  const std::vector<std::string> fillers = {"ka", "lo", "mi", "nu", "pe", "ri", "so", "tu"};
  std::string hex = "0041:0000000018242442427E424242420000\n";  // a narrow glyph: not an ideograph
  std::string irg = "# Unihan_IRGSources.txt (synthetic)\n#\tkRSUnicode\n\n";
  std::string readings = "# Unihan_Readings.txt (synthetic)\n";
  for (int i = 0; i < count; ++i) {
    const int k = i % 8;
    char code[16];
    std::snprintf(code, sizeof code, "%04X", 0x4E00 + i);
    std::string bits;
    for (int row = 0; row < 16; ++row) {
      const unsigned value = row / 2 == k ? 0xFFFFu : ((i * 2654435761u) >> row) & 0x0101u;
      char digits[8];
      std::snprintf(digits, sizeof digits, "%04X", value);
      bits += digits;
    }
    hex += std::string(code) + ":" + bits + "\n";
    irg += "U+" + std::string(code) + "\tkIRG_GSource\tG0-" + code + "\n";
    // Every fifth character lists a second radical and marks the first a simplified form: the reader
    // takes the first, without the '.
    irg += "U+" + std::string(code) + "\tkRSUnicode\t" + std::to_string(synthetic_radicals()[k]) +
           (i % 5 == 0 ? "'.3 1.2" : ".4") + "\n";
    readings += "U+" + std::string(code) + "\tkMandarin\tyi\n";
    readings += "U+" + std::string(code) + "\tkDefinition\t" + synthetic_words()[k] + " " +
                fillers[i % 7] + fillers[(i / 7) % 8] + "\n";
  }
  write_file(dir / "unifont.hex", hex);
  write_file(dir / "Unihan_IRGSources.txt.bz2", bzip2_bytes(irg));
  write_file(dir / "Unihan_Readings.txt.bz2", bzip2_bytes(readings));
}

}  // namespace dtrain::test
