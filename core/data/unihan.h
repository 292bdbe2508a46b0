// CJK ideographs with their glyph, radical and English definition, from three files Debian installs:
//   unifont.hex (package unifont): "XXXX:hexbits" per code point; 64 hex digits are a 16x16 glyph,
//     row by row, most significant bit leftmost (32 digits are an 8x16 glyph, which no ideograph has);
//   Unihan_IRGSources.txt.bz2 (unicode-data): "U+6CB3<TAB>kRSUnicode<TAB>85.5", radical.strokes, where
//     a trailing ' marks the simplified form of a radical (the same Kangxi radical number) and several
//     space-separated values list alternatives (the first is the primary one);
//   Unihan_Readings.txt.bz2 (unicode-data): "U+6CB3<TAB>kDefinition<TAB>river; ...".
// A sample is a code point with all three: its glyph, its definition's words and its Kangxi radical
// (1..214) as the class radical - 1.
//
// The definition is read as lowercase words (WordVocab), not characters. Measured on the installed
// files: the text-only fusion model (examples/fusion_unihan.ini) names the radical of 41% of the
// valid split from the first 16 words, and of 16% from the first 32 characters. Definitions gloss a
// meaning ("river; stream", "to wash"), and the radical is most often the meaning's class (water),
// so a word is the unit that carries it; a character model must first learn to spell the words out.
// On all 22,903 characters with a radical and a definition (a random 5% held out): a multinomial
// naive Bayes over the words reaches 59%; a definition has a median of 4 words and 28 characters,
// and 16 words cover 95% of them whole; words seen at least twice (the vocabulary) number about
// 7,800, and about 6% of the held-out words are then unk.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "core/data/dataset.h"
#include "core/data/vocab.h"

namespace dtrain::data {

inline constexpr const char* kUnifontDefaultDir = "/usr/share/unifont";
inline constexpr const char* kUnicodeDataDefaultDir = "/usr/share/unicode";
inline constexpr int64_t kUnihanRadicals = 214;  // the Kangxi radicals
inline constexpr int64_t kGlyphSize = 16;        // unifont's wide glyphs are 16x16

struct UnihanEntry {
  char32_t codepoint = 0;
  int32_t radical = 0;                 // Kangxi radical, 1..214
  std::array<uint8_t, 32> glyph = {};  // 16 rows of 2 bytes, the leftmost pixel in the top bit
  std::string definition;              // lowercased (ASCII) kDefinition, UTF-8
  bool ink(int64_t row, int64_t col) const {
    return (glyph[row * 2 + col / 8] >> (7 - col % 8)) & 1;
  }
};

// Where the three files are: `data_dir` holding all of them, or (empty) the Debian locations.
struct UnihanFiles {
  std::string unifont_hex, irg_sources, readings;
  static UnihanFiles in(const std::string& data_dir);
};

// A bzip2 file's decompressed bytes (concatenated streams one after another, as bunzip2 reads them).
// Errors are one line naming the file, with `hint` appended.
std::string read_bzip2_file(const std::string& path, const std::string& hint);

// Every code point that has a 16x16 glyph, a kRSUnicode and a kDefinition, in code point order.
std::vector<UnihanEntry> read_unihan(const UnihanFiles& files);

// The train/valid/test split of a code point: 90/5/5 by a hash of the code point alone, so a
// character's split stays the same whichever other characters the installed files hold.
enum class UnihanSplit { train, valid, test };
UnihanSplit unihan_split_of(char32_t codepoint);

// The entries read once, split, and the word vocabulary of the train split's definitions.
struct UnihanCorpus {
  std::vector<UnihanEntry> entries;         // all, in code point order
  std::vector<int64_t> train, valid, test;  // indices into entries
  WordVocab vocab;  // pad 0 fills short definitions, unk stands for a word seen less than twice
};
UnihanCorpus load_unihan(const std::string& data_dir);

// The radical's character for display, indexed by radical number (1..214, [0] is empty): the
// unified ideograph column of CJKRadicals.txt ("1; 2F00; 4E00"), skipping the simplified (') forms.
// Empty when the file is absent, so that callers fall back to numbers alone.
std::vector<std::string> read_radical_characters(const std::string& path);

class UnihanDataset : public Dataset {
 public:
  // Samples entries[indices[i]] of `corpus`, whose definitions are cut to `seq_len` words.
  UnihanDataset(std::shared_ptr<const UnihanCorpus> corpus, std::vector<int64_t> indices,
                int64_t seq_len);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  // input f32 [B, 1, 16, 16] the glyphs (ink 0.5, paper -0.5); decoder_input i64 [B, seq_len] the
  // definitions' word ids, padded with 0 (Batch has no second input field: decoder_input is the
  // one that carries token ids beside `input`, as for translation); target i64 [B] radical - 1.
  // Deterministic: `seed` is ignored.
  Batch get_batch(const std::vector<int64_t>& indices, uint64_t seed) const override;
  // One entry as a batch of one (for predict).
  static Batch encode(const UnihanEntry& entry, const WordVocab& vocab, int64_t seq_len);

 private:
  std::shared_ptr<const UnihanCorpus> corpus_;
  std::vector<int64_t> indices_;
  int64_t seq_len_;
};

}  // namespace dtrain::data
