// The translation data that `dtrain train --model transformer --dataset gettext-zh|gettext-de` trains
// and evaluates on, written to JSON for a twin in another framework (bench/torch_translation.py), and
// dtrain's own BLEU and chrF (core/data/text_metrics.h) for that twin's hypotheses.
//
//   bench_translation_data --dataset gettext-zh|gettext-de --seq-len N [--bpe-merges M]
//                          [--data-dir D] --out FILE.json
//   bench_translation_data --score HYP.txt --ref REF.txt [--tokenize zh|13a|char|none]
//
// The pairs come from the same library calls as TransformerWorkload (launch/workload_transformer.cpp):
// load_gettext_corpus with max_chars = seq-len - 2 (locale_dir = --data-dir when given), the vocabularies
// from build_translation_vocabs over the training pairs and --bpe-merges, and every pair's ids from
// TranslationDataset::get_batch, one pair at a time (no padding). For each split (train, valid, test)
// and each pair: "source" and "target" (the cleaned English and translation, the BLEU reference),
// "source_ids" (the encoder input: tokens then eos) and "target_ids" (bos, the target characters, eos:
// the decoder input is target_ids[:-1] and what it predicts target_ids[1:]). Beside them: pad/bos/eos/
// unk ids, both vocabularies' sizes and token strings (specials as "<pad>", "<bos>", "<eos>", "<unk>"),
// and the BLEU tokenizer the workload scores with. The file is written to FILE.json.tmp, then renamed.
//
// --score reads one hypothesis and one reference per line (UTF-8, '\n'-terminated; the counts must
// agree) and prints {"bleu": ..., "chrf": ..., "tokenize": ..., "segments": ...} on one line, with the
// calls eval_sums makes: corpus_bleu (sacreBLEU's definition) and corpus_chrf.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/data/gettext_corpus.h"
#include "core/data/text_metrics.h"
#include "core/data/translation_dataset.h"
#include "core/error.h"

using namespace dtrain;

namespace {

const char* const kUsage =
    "usage: bench_translation_data --dataset gettext-zh|gettext-de --seq-len N [--bpe-merges M] "
    "[--data-dir D] --out FILE.json | --score HYP.txt --ref REF.txt [--tokenize zh|13a|char|none]";

// A flag's integer value, all of it a number at least `least`; anything else is an Error.
int64_t parse_int(const std::string& flag, const std::string& text, int64_t least) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < least) {
    throw Error(flag + " '" + text + "' is not an integer of at least " + std::to_string(least));
  }
  return value;
}

std::string special_name(int32_t id) {
  switch (id) {
    case data::CharVocab::kPad:
      return "<pad>";
    case data::CharVocab::kBos:
      return "<bos>";
    case data::CharVocab::kEos:
      return "<eos>";
    default:
      return "<unk>";
  }
}

std::vector<int64_t> row(const Tensor& ids) {  // a [1, T] i64 batch row
  return ids.contiguous().to_vector<int64_t>();
}

nlohmann::json export_split(const data::TranslationDataset& set) {
  nlohmann::json pairs = nlohmann::json::array();
  for (int64_t i = 0; i < set.size(); ++i) {
    const data::Batch b = set.get_batch({i}, 0);
    std::vector<int64_t> target = row(b.decoder_input);  // bos t1 .. tn
    const std::vector<int64_t> shifted = row(b.target);  // t1 .. tn eos
    DTRAIN_CHECK(target.size() == shifted.size() &&
                     std::equal(target.begin() + 1, target.end(), shifted.begin()),
                 "pair ", i, ": the decoder input is not the target shifted right");
    target.push_back(shifted.back());
    pairs.push_back({{"source", set.pair(i).source},
                     {"target", set.pair(i).target},
                     {"source_ids", row(b.input)},
                     {"target_ids", target}});
  }
  return pairs;
}

int export_data(const std::map<std::string, std::string>& flags) {
  for (const char* needed : {"--dataset", "--seq-len", "--out"}) {
    if (!flags.count(needed)) throw Error(std::string("give ") + needed + " (" + kUsage + ")");
  }
  for (const char* other : {"--ref", "--tokenize"}) {
    if (flags.count(other)) throw Error(std::string(other) + " goes with --score, not --dataset");
  }
  const std::string dataset = flags.at("--dataset");
  if (dataset != "gettext-zh" && dataset != "gettext-de") {
    throw Error("--dataset '" + dataset + "': give gettext-zh or gettext-de");
  }
  const int64_t seq_len = parse_int("--seq-len", flags.at("--seq-len"), 4);
  const int64_t merges =
      flags.count("--bpe-merges") ? parse_int("--bpe-merges", flags.at("--bpe-merges"), 0) : 0;
  const std::string out = flags.at("--out");

  // As TransformerWorkload builds its data for a gettext dataset.
  const data::GettextCorpusOptions options = data::gettext_dataset_options(
      dataset, seq_len, flags.count("--data-dir") ? flags.at("--data-dir") : std::string());
  data::GettextCorpus corpus = data::load_gettext_corpus(options);
  DTRAIN_CHECK(!corpus.train.empty() && !corpus.valid.empty(), "--dataset ", dataset, " found ",
               corpus.train.size(), " training and ", corpus.valid.size(), " valid pairs in ",
               options.locale_dir, "/", options.language, "/LC_MESSAGES");
  auto [src_vocab, tgt_vocab] = data::build_translation_vocabs(corpus.train, merges);
  const data::TranslationDataset train(std::move(corpus.train), src_vocab, tgt_vocab);
  const data::TranslationDataset valid(std::move(corpus.valid), src_vocab, tgt_vocab);
  const data::TranslationDataset test(std::move(corpus.test), src_vocab, tgt_vocab);

  nlohmann::json source_tokens = nlohmann::json::array(), target_tokens = nlohmann::json::array();
  for (int32_t id = 0; id < data::CharVocab::kNumSpecials; ++id) {
    source_tokens.push_back(special_name(id));
    target_tokens.push_back(special_name(id));
  }
  for (auto id = static_cast<int32_t>(data::CharVocab::kNumSpecials); id < src_vocab.size(); ++id)
    source_tokens.push_back(src_vocab.token(id));
  for (auto id = static_cast<int32_t>(data::CharVocab::kNumSpecials); id < tgt_vocab.size(); ++id) {
    std::string c;
    data::utf8_append(c, tgt_vocab.char_of(id));
    target_tokens.push_back(c);
  }
  const nlohmann::json doc = {
      {"dataset", dataset},
      {"language", options.language},
      {"locale_dir", options.locale_dir},
      {"seq_len", seq_len},
      {"max_chars", options.max_chars},
      {"bpe_merges", merges},
      {"bpe_merges_learnt", src_vocab.merges()},
      {"bleu_tokenize", dataset == "gettext-zh" ? "zh" : "13a"},
      {"pad_id", data::CharVocab::kPad},
      {"bos_id", data::CharVocab::kBos},
      {"eos_id", data::CharVocab::kEos},
      {"unk_id", data::CharVocab::kUnk},
      {"source_vocab", {{"size", src_vocab.size()}, {"tokens", source_tokens}}},
      {"target_vocab", {{"size", tgt_vocab.size()}, {"tokens", target_tokens}}},
      {"splits",
       {{"train", export_split(train)},
        {"valid", export_split(valid)},
        {"test", export_split(test)}}},
  };

  const std::string tmp = out + ".tmp";
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    DTRAIN_CHECK(file.good(), "cannot write ", tmp);
    file << doc.dump() << '\n';
    file.close();
    DTRAIN_CHECK(file.good(), "writing ", tmp, " failed (disk full?)");
  }
  std::error_code error;
  std::filesystem::rename(tmp, out, error);
  if (error) {
    std::filesystem::remove(tmp);
    throw Error("cannot rename " + tmp + " to " + out + ": " + error.message());
  }
  std::printf(
      "%s: %s, seq-len %lld, %lld merges: %lld train, %lld valid, %lld test pairs; "
      "vocab %lld source, %lld target\n",
      out.c_str(), dataset.c_str(), static_cast<long long>(seq_len), static_cast<long long>(merges),
      static_cast<long long>(train.size()), static_cast<long long>(valid.size()),
      static_cast<long long>(test.size()), static_cast<long long>(src_vocab.size()),
      static_cast<long long>(tgt_vocab.size()));
  return 0;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  DTRAIN_CHECK(file.good(), "cannot read ", path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(file, line);) lines.push_back(line);
  return lines;
}

int score(const std::map<std::string, std::string>& flags) {
  if (!flags.count("--ref"))
    throw Error(std::string("--score needs --ref REF.txt (") + kUsage + ")");
  for (const char* other : {"--dataset", "--seq-len", "--bpe-merges", "--data-dir", "--out"}) {
    if (flags.count(other)) throw Error(std::string(other) + " goes with --dataset, not --score");
  }
  const std::string name = flags.count("--tokenize") ? flags.at("--tokenize") : "13a";
  const data::BleuTokenizer tokenizer = data::bleu_tokenizer_from_name(name);
  const std::vector<std::string> hypotheses = read_lines(flags.at("--score"));
  const std::vector<std::string> references = read_lines(flags.at("--ref"));
  DTRAIN_CHECK(hypotheses.size() == references.size(), flags.at("--score"), " has ",
               hypotheses.size(), " lines but ", flags.at("--ref"), " has ", references.size());
  const double bleu = data::corpus_bleu(hypotheses, references, tokenizer).score;
  const double chrf = data::corpus_chrf(hypotheses, references);
  const nlohmann::json result = {
      {"bleu", bleu}, {"chrf", chrf}, {"tokenize", name}, {"segments", hypotheses.size()}};
  std::printf("%s\n", result.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::map<std::string, std::string> flags;
    for (int i = 1; i < argc; ++i) {
      const std::string flag = argv[i];
      static const char* const kKnown[] = {"--dataset", "--seq-len", "--bpe-merges", "--data-dir",
                                           "--out",     "--score",   "--ref",        "--tokenize"};
      if (std::find(std::begin(kKnown), std::end(kKnown), flag) == std::end(kKnown)) {
        throw Error("unknown argument '" + flag + "' (" + kUsage + ")");
      }
      if (i + 1 >= argc) throw Error(flag + " needs a value");
      if (flags.count(flag)) throw Error(flag + " is given twice");
      flags[flag] = argv[++i];
    }
    if (flags.count("--score")) return score(flags);
    return export_data(flags);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_translation_data: %s\n", e.what());
    return 1;
  }
}
