#include <gtest/gtest.h>

#include <algorithm>
#include <unordered_set>

#include "core/data/freedict.h"
#include "core/data/translation_dataset.h"
#include "core/data/vocab.h"
#include "core/error.h"
#include "data_test_util.h"

using namespace dtrain;
using namespace dtrain::data;
using namespace dtrain::data::testing;

namespace {

// dictd's base64 numbers: A-Z a-z 0-9 + / as digits 0..63, most significant first, "A" for zero.
std::string b64(uint64_t v) {
  const char* digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  do {
    out.insert(out.begin(), digits[v % 64]);
    v /= 64;
  } while (v);
  return out;
}

// A small dictd database: the entries' text gzip'd into .dict.dz and an index with one line per
// headword (plus the given extra lines).
void write_dictd(const TempDir& dir,
                 const std::vector<std::pair<std::string, std::string>>& entries,
                 const std::string& extra_index = "") {
  std::string dict, index = extra_index;
  for (const auto& [key, text] : entries) {
    index += key + "\t" + b64(dict.size()) + "\t" + b64(text.size()) + "\n";
    dict += text;
  }
  write_gzip(dir.file("tiny.dict.dz"), dict);
  write_bytes(dir.file("tiny.index"), index);
}

std::string lower(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}
}  // namespace

TEST(FreeDict, HeadwordDropsPronunciationAndTags) {
  EXPECT_EQ(freedict_headword("eel stock /ˈiːl stˈɒk/"), "eel stock");
  EXPECT_EQ(freedict_headword("edit /ˈɛdɪt/ <v>"), "edit");
  EXPECT_EQ(freedict_headword("snipe at sb./sth. /snˈaɪp at ˌɛsbˈiː/"), "snipe at sb./sth.");
  EXPECT_EQ(freedict_headword("he/she scalds /hiː ʃiː skˈɒldz/"), "he/she scalds");
  EXPECT_EQ(freedict_headword("nota bene /nˈəʊtə bˈɛnɪ/ (N.B. /ˈɛn bˈiː/, ) (NB /ˌɛnbˈiː/)"),
            "nota bene");
}

TEST(FreeDict, FirstTranslationIsCleaned) {
  EXPECT_EQ(freedict_first_translation("Aalmolche <pl>, Fischmolche <pl> [zool.]"), "Aalmolche");
  EXPECT_EQ(freedict_first_translation(" [coll.] das A und O [ugs.]"), "das A und O");
  EXPECT_EQ(freedict_first_translation(
                " [Am.]  [Austr.]  [NZ] nicht richtig funktionieren, fehlerhaft sein"),
            "nicht richtig funktionieren");
  EXPECT_EQ(freedict_first_translation("etw. (physisch) tauschen, austauschen <v, trans>"),
            "etw. tauschen");
  EXPECT_EQ(freedict_first_translation("Antwort <fem>Antw.,  /ˈantwə/ , Erwiderung <fem> [geh.]"),
            "Antwort");
  EXPECT_EQ(freedict_first_translation("Gabun <neut> [geogr.] GA,  /ɡˈɑː/"), "Gabun");
  EXPECT_EQ(freedict_first_translation("ohne ([+ acc]) <prep>, wenn nicht"), "ohne");
  EXPECT_EQ(freedict_first_translation("Ich lasse mich nicht unterkriegen."),
            "Ich lasse mich nicht unterkriegen.");
  EXPECT_EQ(freedict_first_translation("Aalräucherei <fem>"), "Aalräucherei");
  EXPECT_EQ(freedict_first_translation("  [coll.] "), "");
}

TEST(FreeDict, ReadsADictdDatabase) {
  TempDir dir;
  write_dictd(dir,
              {{"00databaseinfo", "00-database-info\nThis is a test dictionary\n"},
               {"eel", "eel /ˈiːl/\nAal <masc> [zool.]\n see: {eels}\n\n"},
               {"eels", "eels /ˈiːlz/\nAale <pl>, Aalartige <pl>\n         Note: Anguilliformes\n"},
               {"eel", "eel /ˈiːl/\nFlussaal <masc>\n"},  // a second entry for a headword
               {"scavenge", "scavenge /skˈavɪndʒ/ <v>\nAas fressen <v, intr> [zool.]\n"},
               {"nothing", "nothing /nˈʌθɪŋ/\n [coll.] \n"}});  // no translation left
  // Two index keys for the first "eel" entry (dictd indexes some entries under several spellings).
  const std::string index = read_bytes(dir.file("tiny.index"));
  const std::string eel_line = index.substr(
      index.find("eel\t"), index.find('\n', index.find("eel\t")) - index.find("eel\t") + 1);
  write_bytes(dir.file("tiny.index"), index + "Eel" + eel_line.substr(3));

  const auto pairs = read_freedict(dir.file("tiny.dict.dz"));
  ASSERT_EQ(pairs.size(), 3u);
  EXPECT_EQ(pairs[0].source, "eel");
  EXPECT_EQ(pairs[0].target, "Aal");
  EXPECT_EQ(pairs[1].source, "eels");
  EXPECT_EQ(pairs[1].target, "Aale");
  EXPECT_EQ(pairs[2].source, "scavenge");
  EXPECT_EQ(pairs[2].target, "Aas fressen");

  FreeDictOptions options;
  options.path = dir.file("tiny.dict.dz");
  options.held_out_fraction = 0.0;
  options.max_target_chars = 4;
  const FreeDictSplits s = load_freedict(options);
  ASSERT_EQ(s.train.size(), 2u);
  EXPECT_EQ(s.train[1].target, "Aale");
  EXPECT_TRUE(s.held_out.empty());
}

TEST(FreeDict, BadIndexIsAnError) {
  TempDir dir;
  write_dictd(dir, {{"eel", "eel /ˈiːl/\nAal\n"}}, "broken line without tabs\n");
  try {
    read_freedict(dir.file("tiny.dict.dz"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tiny.index:1 is not a dictd index line"),
              std::string::npos)
        << e.what();
  }
  write_dictd(dir, {{"eel", "eel /ˈiːl/\nAal\n"}}, "far\tBAAA\tB\n");
  try {
    read_freedict(dir.file("tiny.dict.dz"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("beyond the"), std::string::npos) << e.what();
  }
}

TEST(FreeDict, HeldOutSplitIsByHeadword) {
  int held = 0;
  for (int i = 0; i < 20000; ++i) held += is_held_out("word" + std::to_string(i), 0.1, 5);
  EXPECT_NEAR(held, 2000, 200);
  // Case does not move a headword across the split; the seed does move some.
  int moved = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string w = "Term" + std::to_string(i);
    EXPECT_EQ(is_held_out(w, 0.3, 1), is_held_out(lower(w), 0.3, 1));
    moved += is_held_out(w, 0.3, 1) != is_held_out(w, 0.3, 2);
  }
  EXPECT_GT(moved, 100);
}

// The dictionary dict-freedict-eng-deu installs (scripts/bootstrap installs the package).
TEST(FreeDict, RealDictionaryPairsAndSplit) {
  FreeDictOptions options;
  options.held_out_fraction = 0.05;
  options.split_seed = 11;
  const std::vector<TranslationPair> all = read_freedict(kFreeDictEngDeuPath);
  const FreeDictSplits s = split_freedict(all, options);
  const size_t total = s.train.size() + s.held_out.size();
  EXPECT_EQ(total, all.size());
  EXPECT_GT(total, 300000u);
  EXPECT_NEAR(static_cast<double>(s.held_out.size()) / total, 0.05, 0.01);

  // Disjoint by (lower-cased) headword, and one pair per headword.
  std::unordered_set<std::string> train_heads;
  train_heads.reserve(s.train.size());
  for (const auto& p : s.train) train_heads.insert(lower(p.source));
  for (const auto& p : s.held_out) EXPECT_EQ(train_heads.count(lower(p.source)), 0u) << p.source;
  std::vector<std::string_view> sources;
  for (const auto& p : all) sources.push_back(p.source);
  std::sort(sources.begin(), sources.end());
  const auto dup = std::adjacent_find(sources.begin(), sources.end());
  EXPECT_EQ(dup, sources.end()) << "duplicate headword " << *dup;
  // Known entries, their first translation without annotations.
  auto target_of = [&](const std::string& source) {
    auto it = std::find_if(all.begin(), all.end(),
                           [&](const TranslationPair& p) { return p.source == source; });
    return it == all.end() ? std::string("<missing>") : it->target;
  };
  EXPECT_EQ(target_of("eelskin"), "Aalhaut");
  EXPECT_EQ(target_of("eel trap"), "Aalreuse");
  EXPECT_EQ(target_of("carrion fly"), "Aasfliege");
  EXPECT_EQ(target_of("I won't let it get me down."), "Ich lasse mich nicht unterkriegen.");
  // Nothing left of the markup.
  size_t marked = 0;
  for (const auto& p : s.train) {
    marked += p.target.find_first_of("<>[]{}") != std::string::npos ||
              p.source.find(" /") != std::string::npos;
  }
  EXPECT_LT(marked, total / 1000) << marked << " pairs still carry annotations";

  // Length limits, in characters (ä is one).
  options.max_source_chars = 12;
  options.max_target_chars = 10;
  const FreeDictSplits short_pairs = split_freedict(all, options);
  EXPECT_GT(short_pairs.train.size(), 10000u);
  EXPECT_LT(short_pairs.train.size(), s.train.size());
  for (const auto& p : short_pairs.train) {
    ASSERT_LE(utf8_length(p.source), 12) << p.source;
    ASSERT_LE(utf8_length(p.target), 10) << p.target;
  }
  // Vocabularies and a batch from the real pairs.
  const auto [src_vocab, tgt_vocab] = build_translation_vocabs(short_pairs.train);
  EXPECT_TRUE(tgt_vocab.contains(U'ä') && tgt_vocab.contains(U'ß'));
  TranslationDataset ds(short_pairs.train, src_vocab, tgt_vocab);
  const Batch b = ds.get_batch({0, 1, 2, 3}, 0);
  EXPECT_LE(b.input.size(1), 13);
  EXPECT_LE(b.target.size(1), 11);
  std::vector<int64_t> row(b.target.data<int64_t>(), b.target.data<int64_t>() + b.target.size(1));
  EXPECT_EQ(tgt_vocab.decode(row), ds.pair(0).target);
}

TEST(FreeDict, MissingFilesSayWhatToInstall) {
  try {
    read_freedict("/nonexistent/freedict-eng-deu.dict.dz");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dict-freedict-eng-deu"), std::string::npos) << e.what();
  }
}

TEST(CharVocab, SpecialsIdsAndRoundTrip) {
  const CharVocab v = CharVocab::build({"bca", "äb"}, true);
  EXPECT_EQ(v.size(), 4 + 4);
  EXPECT_EQ(v.id(U'a'), 4);  // specials first, then code point order
  EXPECT_EQ(v.id(U'b'), 5);
  EXPECT_EQ(v.id(U'c'), 6);
  EXPECT_EQ(v.id(U'ä'), 7);
  EXPECT_EQ(v.id(U'z'), CharVocab::kUnk);
  EXPECT_EQ(v.encode("aäz"), (std::vector<int32_t>{4, 7, CharVocab::kUnk}));
  EXPECT_EQ(v.decode({CharVocab::kBos, 6, 7, 4, CharVocab::kEos, 5}), "cäa");
  EXPECT_EQ(CharVocab::from_utf8(v.chars_utf8(), true).chars_utf8(), v.chars_utf8());

  const CharVocab plain = CharVocab::build({"ab"}, false);
  EXPECT_EQ(plain.size(), 2);
  EXPECT_EQ(plain.id(U'a'), 0);
  EXPECT_THROW(plain.id(U'q'), Error);
}

TEST(CharVocab, Utf8DecodeEncode) {
  const std::string s = "Grüße, 日本 🙂";
  const std::u32string cps = utf8_decode(s);
  EXPECT_EQ(cps.size(), 11u);
  EXPECT_EQ(utf8_length(s), 11);
  EXPECT_EQ(utf8_encode(cps), s);
  // A stray continuation byte and a truncated sequence become U+FFFD.
  EXPECT_EQ(utf8_decode("a\x80"
                        "b\xc3"),
            (std::u32string{U'a', 0xfffd, U'b', 0xfffd}));
}

TEST(TranslationDataset, BatchLayoutWithPadding) {
  std::vector<TranslationPair> pairs = {{"ab", "xyz"}, {"abba", "y"}, {"b", "zq"}};
  const SubwordVocab src = SubwordVocab::learn({"ab"}, 0);  // a=4 b=5
  const CharVocab tgt = CharVocab::build({"xyz"}, true);    // x=4 y=5 z=6; q is unknown
  TranslationDataset ds(pairs, src, tgt);
  const Batch b = ds.get_batch({0, 1, 2}, 0);
  const int64_t P = CharVocab::kPad, B = CharVocab::kBos, E = CharVocab::kEos, U = CharVocab::kUnk;
  ASSERT_EQ(b.input.shape(), (Shape{3, 5}));
  ASSERT_EQ(b.decoder_input.shape(), (Shape{3, 4}));
  ASSERT_EQ(b.target.shape(), (Shape{3, 4}));
  EXPECT_EQ(b.input.to_vector<int64_t>(),
            (std::vector<int64_t>{4, 5, E, P, P, 4, 5, 5, 4, E, 5, E, P, P, P}));
  EXPECT_EQ(b.decoder_input.to_vector<int64_t>(),
            (std::vector<int64_t>{B, 4, 5, 6, B, 5, P, P, B, 6, U, P}));
  EXPECT_EQ(b.target.to_vector<int64_t>(),
            (std::vector<int64_t>{4, 5, 6, E, 5, E, P, P, 6, U, E, P}));
}
