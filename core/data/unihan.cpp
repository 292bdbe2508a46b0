#include "core/data/unihan.h"

#include <bzlib.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "core/data/file_bytes.h"
#include "core/data/seeding.h"
#include "core/error.h"

namespace dtrain::data {

namespace {

const char* kUnifontHint =
    "install unifont (scripts/bootstrap) or pass --data-dir with a good unifont.hex";
const char* kUnicodeHint =
    "install unicode-data (scripts/bootstrap) or pass --data-dir with good Unihan files";

// The lines of `text` with their 1-based numbers; a final line without '\n' counts.
template <class F>
void for_each_line(std::string_view text, F&& f) {
  int64_t number = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    f(line, ++number);
    start = end + 1;
  }
}

bool parse_hex(std::string_view digits, uint32_t& value) {
  if (digits.empty() || digits.size() > 8) return false;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value, 16);
  return ec == std::errc() && end == digits.data() + digits.size();
}

// "U+6CB3<TAB>field<TAB>value" of one Unihan file, calling f(codepoint, value) for lines of `field`.
template <class F>
void read_unihan_field(const std::string& path, std::string_view field, F&& f) {
  const std::string text = read_bzip2_file(path, kUnicodeHint);
  int64_t found = 0;
  for_each_line(text, [&](std::string_view line, int64_t number) {
    if (line.empty() || line.front() == '#') return;
    const size_t tab1 = line.find('\t');
    const size_t tab2 = tab1 == std::string_view::npos ? tab1 : line.find('\t', tab1 + 1);
    uint32_t codepoint = 0;
    DTRAIN_CHECK(tab2 != std::string_view::npos && line.starts_with("U+") &&
                     parse_hex(line.substr(2, tab1 - 2), codepoint),
                 path, " line ", number, " is not \"U+XXXX<TAB>field<TAB>value\"; ", kUnicodeHint);
    if (line.substr(tab1 + 1, tab2 - tab1 - 1) != field) return;
    ++found;
    f(static_cast<char32_t>(codepoint), line.substr(tab2 + 1), number);
  });
  DTRAIN_CHECK(found > 0, path, " has no ", field, " lines; ", kUnicodeHint);
}

}  // namespace

UnihanFiles UnihanFiles::in(const std::string& data_dir) {
  namespace fs = std::filesystem;
  const fs::path font = data_dir.empty() ? fs::path(kUnifontDefaultDir) : fs::path(data_dir);
  const fs::path unicode = data_dir.empty() ? fs::path(kUnicodeDataDefaultDir) : fs::path(data_dir);
  return {(font / "unifont.hex").string(), (unicode / "Unihan_IRGSources.txt.bz2").string(),
          (unicode / "Unihan_Readings.txt.bz2").string()};
}

std::string read_bzip2_file(const std::string& path, const std::string& hint) {
  DTRAIN_CHECK(entry_exists(path), "file ", path, " not found; ", hint);
  const std::string compressed = read_file_bytes(path, hint);
  DTRAIN_CHECK(compressed.size() >= 3 && compressed.compare(0, 3, "BZh") == 0, path,
               " is not a bzip2 file (it does not start with \"BZh\"); ", hint);
  std::string out;
  size_t consumed = 0;
  // One bz_stream per concatenated stream: BZ_STREAM_END ends a stream, not necessarily the file.
  while (consumed < compressed.size()) {
    bz_stream stream = {};
    DTRAIN_CHECK(BZ2_bzDecompressInit(&stream, 0, 0) == BZ_OK, "bzip2: cannot start decompressing ",
                 path, " (out of memory?)");
    // avail_in is an unsigned int: feed the input in pieces of at most 1 GiB.
    size_t fed = consumed;
    int rc = BZ_OK;
    char buffer[1 << 16];
    while (rc == BZ_OK) {
      if (stream.avail_in == 0 && fed < compressed.size()) {
        stream.next_in = const_cast<char*>(compressed.data() + fed);
        stream.avail_in =
            static_cast<unsigned>(std::min<size_t>(compressed.size() - fed, size_t{1} << 30));
        fed += stream.avail_in;
      }
      stream.next_out = buffer;
      stream.avail_out = sizeof buffer;
      rc = BZ2_bzDecompress(&stream);
      out.append(buffer, sizeof buffer - stream.avail_out);
      // Input used up without the end-of-stream marker: the file was cut short.
      if (rc == BZ_OK && stream.avail_in == 0 && fed == compressed.size() &&
          stream.avail_out != 0) {
        rc = BZ_UNEXPECTED_EOF;
      }
    }
    consumed = static_cast<size_t>(stream.next_in - compressed.data());
    BZ2_bzDecompressEnd(&stream);
    DTRAIN_CHECK(rc == BZ_STREAM_END, path,
                 rc == BZ_UNEXPECTED_EOF ? " is truncated" : " is corrupt", " (bzip2 error ", rc,
                 ")", "; ", hint);
    // Trailing bytes that do not open another stream are padding some writers leave; bunzip2 ignores them.
    if (compressed.compare(consumed, 3, "BZh") != 0) break;
  }
  return out;
}

std::vector<UnihanEntry> read_unihan(const UnihanFiles& files) {
  // All three are needed: say which is missing before spending seconds on the others.
  DTRAIN_CHECK(entry_exists(files.unifont_hex), "file ", files.unifont_hex, " not found; ",
               kUnifontHint);
  for (const std::string& path : {files.irg_sources, files.readings}) {
    DTRAIN_CHECK(entry_exists(path), "file ", path, " not found; ", kUnicodeHint);
  }
  std::unordered_map<char32_t, int32_t> radicals;
  read_unihan_field(
      files.irg_sources, "kRSUnicode", [&](char32_t cp, std::string_view value, int64_t line) {
        // "85.5", "35.6 66.6" (the first is the primary), "120'.3" (the simplified form of radical 120).
        const std::string_view first = value.substr(0, value.find(' '));
        const std::string_view number = first.substr(0, first.find_first_of("'."));
        int32_t radical = 0;
        auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), radical);
        DTRAIN_CHECK(ec == std::errc() && end == number.data() + number.size() && radical >= 1 &&
                         radical <= kUnihanRadicals,
                     files.irg_sources, " line ", line, ": kRSUnicode '", value,
                     "' does not start with a radical number 1..214; ", kUnicodeHint);
        radicals.emplace(cp, radical);
      });
  std::unordered_map<char32_t, std::string> definitions;
  read_unihan_field(files.readings, "kDefinition",
                    [&](char32_t cp, std::string_view value, int64_t) {
                      std::string text(value);
                      for (char& c : text)
                        c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
                      if (!text.empty() && radicals.count(cp))
                        definitions.emplace(cp, std::move(text));
                    });

  const std::string hex = read_file_bytes(files.unifont_hex, kUnifontHint);
  std::vector<UnihanEntry> entries;
  for_each_line(hex, [&](std::string_view line, int64_t number) {
    if (line.empty()) return;
    const size_t colon = line.find(':');
    uint32_t codepoint = 0;
    const std::string_view bits =
        colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    DTRAIN_CHECK(colon != std::string_view::npos && parse_hex(line.substr(0, colon), codepoint) &&
                     (bits.size() == 32 || bits.size() == 64),
                 files.unifont_hex, " line ", number, " is not \"XXXX:\" and 32 or 64 hex digits; ",
                 kUnifontHint);
    if (bits.size() != 64) return;  // a narrow 8x16 glyph: no ideograph
    auto definition = definitions.find(static_cast<char32_t>(codepoint));
    if (definition == definitions.end()) return;
    UnihanEntry e;
    e.codepoint = static_cast<char32_t>(codepoint);
    e.radical = radicals.at(e.codepoint);
    for (size_t i = 0; i < e.glyph.size(); ++i) {
      uint32_t byte = 0;
      DTRAIN_CHECK(parse_hex(bits.substr(2 * i, 2), byte), files.unifont_hex, " line ", number,
                   " has a glyph digit that is not hex; ", kUnifontHint);
      e.glyph[i] = static_cast<uint8_t>(byte);
    }
    e.definition = definition->second;
    entries.push_back(std::move(e));
  });
  std::sort(entries.begin(), entries.end(),
            [](const UnihanEntry& a, const UnihanEntry& b) { return a.codepoint < b.codepoint; });
  // unifont.hex lists each code point once; a repeat keeps the first.
  entries.erase(std::unique(entries.begin(), entries.end(),
                            [](const UnihanEntry& a, const UnihanEntry& b) {
                              return a.codepoint == b.codepoint;
                            }),
                entries.end());
  return entries;
}

UnihanSplit unihan_split_of(char32_t codepoint) {
  const uint64_t bucket = mix64(static_cast<uint64_t>(codepoint)) % 100;
  return bucket < 90 ? UnihanSplit::train : bucket < 95 ? UnihanSplit::valid : UnihanSplit::test;
}

UnihanCorpus load_unihan(const std::string& data_dir) {
  const UnihanFiles files = UnihanFiles::in(data_dir);
  UnihanCorpus corpus;
  corpus.entries = read_unihan(files);
  std::vector<std::string> train_texts;
  for (int64_t i = 0; i < static_cast<int64_t>(corpus.entries.size()); ++i) {
    switch (unihan_split_of(corpus.entries[i].codepoint)) {
      case UnihanSplit::train:
        corpus.train.push_back(i);
        train_texts.push_back(corpus.entries[i].definition);
        break;
      case UnihanSplit::valid:
        corpus.valid.push_back(i);
        break;
      case UnihanSplit::test:
        corpus.test.push_back(i);
        break;
    }
  }
  DTRAIN_CHECK(!corpus.train.empty() && !corpus.valid.empty(), "Unihan: ", corpus.entries.size(),
               " characters have a 16x16 glyph in ", files.unifont_hex, ", a kRSUnicode in ",
               files.irg_sources, " and a kDefinition in ", files.readings,
               ", too few for a train and a valid split (", corpus.train.size(), " and ",
               corpus.valid.size(), "); ", kUnicodeHint);
  corpus.vocab = WordVocab::build(train_texts, /*min_count=*/2);
  return corpus;
}

std::vector<std::string> read_radical_characters(const std::string& path) {
  if (!entry_exists(path)) return {};
  std::istringstream in(read_file_bytes(path));
  std::vector<std::string> characters(kUnihanRadicals + 1);
  for (std::string line; std::getline(in, line);) {
    // "1; 2F00; 4E00": radical number, the Kangxi radical symbol, the unified ideograph.
    if (line.empty() || line.front() == '#') continue;
    const size_t semi1 = line.find(';'), semi2 = line.rfind(';');
    if (semi1 == std::string::npos || semi1 == semi2) continue;
    int radical = 0;
    auto [end, ec] = std::from_chars(line.data(), line.data() + semi1, radical);
    if (ec != std::errc() || end != line.data() + semi1 || radical < 1 || radical > kUnihanRadicals)
      continue;
    std::string digits = line.substr(semi2 + 1);
    digits.erase(std::remove(digits.begin(), digits.end(), ' '), digits.end());
    uint32_t codepoint = 0;
    if (!parse_hex(digits, codepoint)) continue;
    std::string character;
    utf8_append(character, static_cast<char32_t>(codepoint));
    characters[radical] = character;
  }
  return characters;
}

UnihanDataset::UnihanDataset(std::shared_ptr<const UnihanCorpus> corpus,
                             std::vector<int64_t> indices, int64_t seq_len)
    : corpus_(std::move(corpus)), indices_(std::move(indices)), seq_len_(seq_len) {
  DTRAIN_CHECK(seq_len_ >= 1, "UnihanDataset: seq_len must be positive, got ", seq_len_);
}

Batch UnihanDataset::encode(const UnihanEntry& entry, const WordVocab& vocab, int64_t seq_len) {
  Batch batch;
  batch.input = Tensor::empty({1, 1, kGlyphSize, kGlyphSize}, DType::f32);
  batch.decoder_input = Tensor::zeros({1, seq_len}, DType::i64);
  batch.target = Tensor::empty({1}, DType::i64);
  batch.indices = {0};
  // Ink 1 and paper 0, centred by a fixed 0.5 rather than the train split's statistics: the pixels
  // are binary, the patch projection and the pre-LN blocks absorb any scale, and a constant keeps a
  // checkpoint independent of which glyphs the installed files held when it was trained.
  float* x = batch.input.data<float>();
  for (int64_t r = 0; r < kGlyphSize; ++r) {
    for (int64_t c = 0; c < kGlyphSize; ++c) x[r * kGlyphSize + c] = entry.ink(r, c) ? 0.5f : -0.5f;
  }
  // Definitions run from one word to a few dozen; the first seq_len words hold the leading gloss,
  // which carries most of the meaning, and a fixed length bounds attention's cost.
  const std::vector<int32_t> ids = vocab.encode(entry.definition);
  int64_t* t = batch.decoder_input.data<int64_t>();
  for (int64_t j = 0; j < std::min<int64_t>(seq_len, static_cast<int64_t>(ids.size())); ++j)
    t[j] = ids[j];
  batch.target.data<int64_t>()[0] = entry.radical - 1;
  return batch;
}

Batch UnihanDataset::get_batch(const std::vector<int64_t>& indices, uint64_t /*seed*/) const {
  check_batch_indices(indices, size(), "UnihanDataset");
  const int64_t b = static_cast<int64_t>(indices.size());
  constexpr int64_t kPixels = kGlyphSize * kGlyphSize;
  Batch batch;
  batch.input = Tensor::empty({b, 1, kGlyphSize, kGlyphSize}, DType::f32);
  batch.decoder_input = Tensor::zeros({b, seq_len_}, DType::i64);
  batch.target = Tensor::empty({b}, DType::i64);
  batch.indices = indices;
  float* x = batch.input.data<float>();
  int64_t* t = batch.decoder_input.data<int64_t>();
  int64_t* y = batch.target.data<int64_t>();
  for (int64_t i = 0; i < b; ++i) {
    const Batch one = encode(corpus_->entries[indices_[indices[i]]], corpus_->vocab, seq_len_);
    std::copy_n(one.input.data<float>(), kPixels, x + i * kPixels);
    std::copy_n(one.decoder_input.data<int64_t>(), seq_len_, t + i * seq_len_);
    y[i] = one.target.data<int64_t>()[0];
  }
  return batch;
}

}  // namespace dtrain::data
