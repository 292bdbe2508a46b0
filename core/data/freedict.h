// English -> German word and phrase pairs from the FreeDict dictionary (Debian: dict-freedict-eng-deu).
// It is a dictd database: freedict-eng-deu.dict.dz (dictzip, i.e. gzip) holds the entries as text and
// freedict-eng-deu.index lists "headword \t offset \t length" with offset and length in dictd's base64
// (digits A-Z a-z 0-9 + /, most significant first). An entry reads
//
//   cam-and-roller steering gear /kˈam and ɹˈəʊlə .../ <v>      headword, pronunciation, part of speech
//   Schneckenrollenlenkung <fem>, Lenkung <fem> [auto]          translations with annotations
//   ...                                                         notes, examples, synonyms, see-alsos
//
// and becomes the pair ("cam-and-roller steering gear", "Schneckenrollenlenkung").
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dtrain::data {

inline constexpr const char* kFreeDictEngDeuPath = "/usr/share/dictd/freedict-eng-deu.dict.dz";

struct TranslationPair {
  std::string source;  // English headword
  std::string target;  // its first German translation
};

struct FreeDictOptions {
  std::string path = kFreeDictEngDeuPath;  // the .dict.dz (or .dict); the .index must lie beside it
  // Pairs whose source or target is longer than this many characters are dropped; 0 keeps all.
  int64_t max_source_chars = 0;
  int64_t max_target_chars = 0;
  // About this fraction of headwords goes to the held-out split, chosen by a seeded hash of the
  // lower-cased headword, so one headword never lands on both sides.
  double held_out_fraction = 0.05;
  uint64_t split_seed = 0;
};

struct FreeDictSplits {
  std::vector<TranslationPair> train;
  std::vector<TranslationPair> held_out;
};

// Every (headword, first translation) pair of the dictionary in entry order, one per distinct
// headword (its first entry), with the database's own "00-database-*" entries left out.
std::vector<TranslationPair> read_freedict(const std::string& dict_path);

// read_freedict(options.path), then split_freedict.
FreeDictSplits load_freedict(const FreeDictOptions& options = {});
// The length filter and the held-out split of `options` (its path is not used), order kept.
FreeDictSplits split_freedict(const std::vector<TranslationPair>& pairs,
                              const FreeDictOptions& options);

// The headword of an entry's first line: the text before the pronunciation " /.../".
std::string freedict_headword(std::string_view first_line);
// The first translation of an entry's translation line, cleaned: leading usage labels ("[coll.]"),
// grammar tags ("<fem>"), trailing labels ("[geh.]"), parenthesised optional parts and abbreviations
// after the first translation are dropped and spaces collapsed. Empty when nothing is left.
std::string freedict_first_translation(std::string_view line);
// Whether `headword` falls in the held-out split.
bool is_held_out(std::string_view headword, double held_out_fraction, uint64_t seed);

}  // namespace dtrain::data
