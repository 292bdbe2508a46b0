#include "core/data/fortune_files.h"

#include <algorithm>
#include <map>
#include <set>

#include "core/data/bag_of_words.h"
#include "core/data/file_bytes.h"
#include "core/data/seeding.h"
#include "core/error.h"

namespace dtrain::data {

const std::vector<std::string>& fortune_topic_files() {
  static const std::vector<std::string> files = {"computers", "education", "food",    "law",
                                                 "medicine",  "politics",  "science", "sports"};
  return files;
}

FortuneFiles load_fortune_files(const FortuneFilesOptions& options) {
  const std::string hint =
      "install fortunes (scripts/bootstrap) or pass --data-dir with the topic files";
  DTRAIN_CHECK(is_directory_entry(options.dir), "fortunes directory ", options.dir,
               " does not exist; ", hint);
  DTRAIN_CHECK(!options.files.empty(), "fortune-files: no topic files to read");
  DTRAIN_CHECK(options.val_fraction >= 0.0 && options.val_fraction < 1.0,
               "fortune-files: val_fraction ", options.val_fraction, " must be in [0, 1)");
  std::string names;
  for (const std::string& f : options.files) names += (names.empty() ? "" : ", ") + f;
  FortuneFiles data;
  data.class_names = options.files;
  // Every distinct fortune with the files it is in, in order of first appearance (file by file), so
  // the splits do not depend on hash-map order. A fortune repeated within one file counts once.
  std::vector<std::string> order;
  std::unordered_map<std::string, std::set<int32_t>> files_of;
  for (size_t label = 0; label < options.files.size(); ++label) {
    const std::string path = options.dir + "/" + options.files[label];
    DTRAIN_CHECK(entry_exists(path), "fortune file ", path, " is missing; ", hint, " (", names,
                 ")");
    for (std::string& f : split_fortunes(read_file_bytes(path, hint))) {
      auto [it, added] = files_of.try_emplace(std::move(f));
      if (added) order.push_back(it->first);
      it->second.insert(static_cast<int32_t>(label));
    }
  }
  for (const std::string& f : order) {
    const std::set<int32_t>& labels = files_of.at(f);
    if (labels.size() > 1) {
      ++data.ambiguous;
      continue;
    }
    if (lowercase_words(f).empty()) {
      ++data.without_words;
      continue;
    }
    const bool val =
        unit_interval(combine_seed(options.split_seed, fnv1a64(f))) < options.val_fraction;
    LabelledTexts& side = val ? data.valid : data.train;
    side.texts.push_back(f);
    side.labels.push_back(*labels.begin());
  }
  // A validation split may be empty only when none was asked for.
  DTRAIN_CHECK(data.train.size() > 0 && (data.valid.size() > 0 || options.val_fraction == 0.0),
               "fortunes directory ", options.dir, " gives ", data.train.size(), " training and ",
               data.valid.size(),
               " validation fortunes from its topic files; both need some: ", hint);
  data.vocab = WordVocab::build(data.train.texts, options.min_word_count);
  return data;
}

FortuneFilesDataset::FortuneFilesDataset(const LabelledTexts& texts, const WordVocab& vocab,
                                         int64_t seq_len)
    : labels_(texts.labels), seq_len_(seq_len) {
  DTRAIN_CHECK(seq_len > 0, "fortune-files: seq_len ", seq_len, " must be positive");
  DTRAIN_CHECK(texts.size() > 0, "fortune-files: no texts for a dataset");
  int64_t truncated = 0;
  tokens_.reserve(texts.texts.size());
  for (const std::string& text : texts.texts) {
    std::vector<int32_t> ids = vocab.encode(text);
    if (static_cast<int64_t>(ids.size()) > seq_len) {
      ids.resize(static_cast<size_t>(seq_len));
      ++truncated;
    }
    tokens_.push_back(std::move(ids));
  }
  truncated_fraction_ = static_cast<double>(truncated) / static_cast<double>(texts.size());
}

Batch FortuneFilesDataset::get_batch(const std::vector<int64_t>& indices, uint64_t /*seed*/) const {
  check_batch_indices(indices, size(), "FortuneFilesDataset");
  const int64_t b = static_cast<int64_t>(indices.size());
  Batch batch;
  batch.input = Tensor::zeros({b, seq_len_}, DType::i64);  // WordVocab::kPad is 0
  batch.target = Tensor::empty({b}, DType::i64);
  int64_t* x = batch.input.data<int64_t>();
  int64_t* y = batch.target.data<int64_t>();
  for (int64_t r = 0; r < b; ++r) {
    const std::vector<int32_t>& ids = tokens_[static_cast<size_t>(indices[r])];
    std::copy(ids.begin(), ids.end(), x + r * seq_len_);
    y[r] = labels_[static_cast<size_t>(indices[r])];
  }
  batch.indices = indices;
  return batch;
}

}  // namespace dtrain::data
