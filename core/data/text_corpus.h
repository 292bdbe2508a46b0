// A character-level text corpus for language models: the fortune cookie files of the Debian packages
// fortunes and fortunes-min (/usr/share/games/fortunes). Each file is a run of fortunes separated by
// lines holding only "%"; beside each file lie a .dat (strfile's binary index, skipped) and a .u8
// symlink to the file itself (read once: files are identified by their resolved path).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/data/dataset.h"
#include "core/data/vocab.h"

namespace dtrain::data {

inline constexpr const char* kFortunesDir = "/usr/share/games/fortunes";

struct TextCorpusOptions {
  std::string dir = kFortunesDir;
  // About this fraction of fortunes goes to validation, chosen by a seeded hash of each fortune's
  // text, so a fortune that appears in two files lands on one side only.
  double val_fraction = 0.1;
  uint64_t split_seed = 0;
};

struct TextCorpus {
  // Cleaned UTF-8 text, each fortune followed by a "%" line as in the files.
  std::string train_text;
  std::string val_text;
  // Every character of train and validation text (no specials: nothing is unknown).
  CharVocab vocab;
  std::vector<std::string> files;  // the files read, sorted by name
  int64_t train_fortunes = 0, val_fortunes = 0;
};

TextCorpus load_fortunes(const TextCorpusOptions& options = {});

// The fortunes of one file's text, each cleaned and ending in a newline; empty ones are dropped.
std::vector<std::string> split_fortunes(std::string_view file_text);
// Terminal overstrike sequences become the character they show ("_\bx" and "x\bx" are "x"); other
// control characters but newline and tab are dropped.
std::string clean_text(std::string_view raw);

// Fixed-length windows of a token sequence for next-character prediction: sample i is the window
// starting at i * stride; input is tokens[start, start + T) and target tokens[start + 1, start + T + 1).
class TextDataset : public Dataset {
 public:
  // stride 0 means stride = seq_len (windows that tile the text without overlap).
  TextDataset(std::string_view text, const CharVocab& vocab, int64_t seq_len, int64_t stride = 0);

  int64_t size() const override { return num_windows_; }
  // input and target i64 [B, T]. Ignores `seed`.
  Batch get_batch(const std::vector<int64_t>& indices, uint64_t seed) const override;

  int64_t seq_len() const { return seq_len_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }

 private:
  std::vector<int32_t> tokens_;
  int64_t seq_len_ = 0, stride_ = 0, num_windows_ = 0;
};

}  // namespace dtrain::data
