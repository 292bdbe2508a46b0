// An English -> Chinese (zh_CN) or English -> German (de) parallel corpus from the gettext catalogs
// that installed packages ship (/usr/share/locale/<language>/LC_MESSAGES/<domain>.mo): human
// translations of UI strings and messages. From a fixed, ordered list of text domains:
//
//   - the header entry is metadata, not a pair;
//   - an entry with a context becomes a plain pair (the context only disambiguates the English);
//   - plural entries are skipped on purpose: their forms are counted variants ("%d file" / "%d files")
//     whose translation depends on a number the pair does not carry;
//   - whitespace is trimmed and collapsed, mnemonic markers ("_Open", "&Open", and zh's trailing
//     "(_O)"; "E_xit" too when the other side shows a marker) are removed, and a trailing ":" is removed when both sides have one;
//   - untranslated, identical (copied, e.g. "OK"), non-UTF-8, format-only (nothing but printf
//     directives, digits and punctuation) and too short or too long pairs are dropped;
//   - a repeated English source keeps its first translation in domain-list order;
//   - the split is by a hash of the English text (FNV-1a 64 of its UTF-8 bytes, then mixed), so a sentence's split
//     does not depend on which packages happen to be installed.
// A domain whose file is missing is skipped and reported; a file that is present but damaged is an error.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/data/freedict.h"  // TranslationPair

namespace dtrain::data {

inline constexpr const char* kLocaleDir = "/usr/share/locale";

// The default domains, in priority order (it decides which translation a repeated source keeps):
// Debian base packages first, then the toolchain that scripts/bootstrap installs, then desktop and
// server packages that are often present. Catalogs of names (iso-codes: countries, languages,
// currencies) are left out: they are proper nouns, not sentences.
const std::vector<std::string>& default_gettext_domains();

struct GettextCorpusOptions {
  std::string locale_dir = kLocaleDir;
  std::string language = "zh_CN";  // the LC_MESSAGES directory: "zh_CN" or "de"
  std::vector<std::string> domains = default_gettext_domains();
  int64_t min_chars = 2;    // per side, in Unicode code points, after cleaning
  int64_t max_chars = 200;  // 0: no upper limit
  bool strip_mnemonics = true;
  bool strip_trailing_colon = true;
  double valid_fraction = 0.05;
  double test_fraction = 0.05;
};

struct GettextDomainCount {
  std::string domain;
  bool found = false;
  int64_t entries = 0;  // messages in the catalog, header excluded
  int64_t pairs = 0;    // pairs it contributed after every filter and deduplication
};

// Why entries were dropped, each counted once (the first reason that applies, in this order).
struct GettextDrops {
  int64_t plural = 0;
  int64_t untranslated = 0;  // empty translation
  int64_t not_utf8 = 0;
  int64_t format_only = 0;
  int64_t identical = 0;  // translation equals the source after cleaning
  int64_t too_short = 0;
  int64_t too_long = 0;
  int64_t duplicate = 0;  // English source already taken from an earlier entry or domain
};

struct GettextCorpus {
  std::vector<TranslationPair> train, valid, test;
  std::vector<GettextDomainCount> domains;  // one per requested domain, in the requested order
  GettextDrops drops;
  int64_t mnemonics_stripped = 0;  // pairs where a mnemonic marker was removed from either side
  int64_t colons_stripped = 0;     // pairs whose shared trailing colon was removed
};

// Reads the catalogs and builds the corpus. Throws dtrain::Error for a bad language or domain name
// and for a damaged catalog (naming the file).
GettextCorpus load_gettext_corpus(const GettextCorpusOptions& options = {});

// The options of `--dataset gettext-zh|gettext-de` at `--seq-len`: language zh_CN or de, pairs with a
// side over seq_len - 2 characters dropped (room for bos and eos), `locale_dir` when not empty.
// Throws dtrain::Error for another dataset name.
GettextCorpusOptions gettext_dataset_options(const std::string& dataset, int64_t seq_len,
                                             const std::string& locale_dir);

enum class GettextSplit { train, valid, test };

// FNV-1a 64 of the bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
uint64_t fnv1a64(std::string_view bytes);
// The split of an English source: fnv1a64, mixed by MurmurHash3's 64-bit finaliser, its top 53 bits
// as u in [0, 1); valid below
// valid_fraction, test below valid_fraction + test_fraction, train otherwise.
GettextSplit gettext_split_of(std::string_view english, double valid_fraction,
                              double test_fraction);

// The cleaning steps, exposed for tests. Lengths are counted with utf8_length (core/data/vocab.h),
// in code points, as the character vocabularies count them.
std::string collapse_whitespace(std::string_view s);  // trim, and runs of whitespace -> one space
// "_Open" -> "Open", "打开(_O)" -> "打开"; a single "_"/"&" inside a word ("E_xit") only when
// `inside_words` (the corpus sets it when the other side of the pair shows a marker).
std::string strip_mnemonic(std::string_view s, bool inside_words = false);
bool is_format_only(std::string_view s);  // no letters once printf directives go
bool is_valid_utf8(std::string_view s);

}  // namespace dtrain::data
