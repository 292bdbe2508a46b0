#include "core/data/text_corpus.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <tuple>

#include "core/data/file_bytes.h"
#include "core/data/seeding.h"
#include "core/error.h"

namespace dtrain::data {

namespace {
const char* kHint = "install fortunes and fortunes-min (scripts/bootstrap) or pass --data-dir";
}  // namespace

std::string clean_text(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (char ch : raw) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\b') {
      // Backspace: the next character is printed over the previous one; keep the later. Remove a
      // whole UTF-8 character (its continuation bytes 10xxxxxx and its lead byte).
      while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xc0) == 0x80)
        out.pop_back();
      if (!out.empty() && out.back() != '\n') out.pop_back();
      continue;
    }
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) continue;
    out.push_back(ch);
  }
  return out;
}

std::vector<std::string> split_fortunes(std::string_view file_text) {
  std::vector<std::string> fortunes;
  std::string current;
  auto flush = [&] {
    std::string cleaned = clean_text(current);
    current.clear();
    // Keep a fortune only when it has something besides whitespace.
    if (cleaned.find_first_not_of(" \t\n") == std::string::npos) return;
    if (cleaned.back() != '\n') cleaned.push_back('\n');
    fortunes.push_back(std::move(cleaned));
  };
  size_t pos = 0;
  while (pos < file_text.size()) {
    size_t end = file_text.find('\n', pos);
    const bool last = end == std::string_view::npos;
    if (last) end = file_text.size();
    std::string_view line = file_text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == "%") {
      flush();
    } else {
      current.append(line);
      current.push_back('\n');
    }
  }
  flush();
  return fortunes;
}

TextCorpus load_fortunes(const TextCorpusOptions& options) {
  namespace fs = std::filesystem;
  DTRAIN_CHECK(is_directory_entry(options.dir), "fortunes directory ", options.dir,
               " does not exist; ", kHint);
  DTRAIN_CHECK(options.val_fraction >= 0.0 && options.val_fraction < 1.0, "fortunes: val_fraction ",
               options.val_fraction, " must be in [0, 1)");
  // (is a link, name, resolved path), sorted so that the corpus does not depend on directory order and
  // a file is read under its own name rather than through a link to it.
  std::vector<std::tuple<bool, std::string, fs::path>> candidates;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(options.dir, ec)) {
    const std::string name = entry.path().filename().string();
    // is_regular_file follows links; a broken or looping link is not a fortune file
    if (name.ends_with(".dat") || !entry.is_regular_file(ec)) continue;
    fs::path real = fs::canonical(entry.path(), ec);
    if (!ec) candidates.emplace_back(entry.is_symlink(ec), name, real);
  }
  DTRAIN_CHECK(!ec || !candidates.empty(), "fortunes directory ", options.dir,
               " cannot be read: ", ec.message());
  std::sort(candidates.begin(), candidates.end());

  TextCorpus corpus;
  std::set<fs::path> read;
  for (const auto& [is_link, name, real] : candidates) {
    (void)is_link;
    if (!read.insert(real).second) continue;  // foo.u8 -> foo, already read
    const std::string text = read_file_bytes(real.string(), kHint);
    if (text.find('\0') != std::string::npos) continue;  // a binary file, not fortunes
    corpus.files.push_back((fs::path(options.dir) / name).string());
    for (auto& f : split_fortunes(text)) {
      const uint64_t h = combine_seed(options.split_seed, fnv1a64(f));
      const bool val = unit_interval(h) < options.val_fraction;
      std::string& side = val ? corpus.val_text : corpus.train_text;
      side += f;
      side += "%\n";
      ++(val ? corpus.val_fortunes : corpus.train_fortunes);
    }
  }
  DTRAIN_CHECK(corpus.train_fortunes > 0, "fortunes directory ", options.dir,
               " holds no fortune files; ", kHint);
  corpus.vocab = CharVocab::build({corpus.train_text, corpus.val_text}, false);
  return corpus;
}

TextDataset::TextDataset(std::string_view text, const CharVocab& vocab, int64_t seq_len,
                         int64_t stride)
    : seq_len_(seq_len), stride_(stride == 0 ? seq_len : stride) {
  DTRAIN_CHECK(seq_len > 0 && stride_ > 0, "TextDataset: seq_len ", seq_len, " and stride ", stride,
               " must be positive");
  tokens_ = vocab.encode(text);
  const int64_t n = static_cast<int64_t>(tokens_.size());
  // A window needs seq_len + 1 tokens (inputs and the one-ahead targets).
  DTRAIN_CHECK(n >= seq_len + 1, "TextDataset: the text has ", n,
               " characters, fewer than seq_len + 1 = ", seq_len + 1,
               "; use a shorter seq_len or more text");
  num_windows_ = (n - seq_len - 1) / stride_ + 1;
}

Batch TextDataset::get_batch(const std::vector<int64_t>& indices, uint64_t /*seed*/) const {
  check_batch_indices(indices, size(), "TextDataset");
  const int64_t b = static_cast<int64_t>(indices.size());
  Batch batch;
  batch.input = Tensor::empty({b, seq_len_}, DType::i64);
  batch.target = Tensor::empty({b, seq_len_}, DType::i64);
  int64_t* x = batch.input.data<int64_t>();
  int64_t* y = batch.target.data<int64_t>();
  for (int64_t r = 0; r < b; ++r) {
    const int32_t* w = tokens_.data() + indices[r] * stride_;
    for (int64_t t = 0; t < seq_len_; ++t) {
      x[r * seq_len_ + t] = w[t];
      y[r * seq_len_ + t] = w[t + 1];
    }
  }
  batch.indices = indices;
  return batch;
}

}  // namespace dtrain::data
