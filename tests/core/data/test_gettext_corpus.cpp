#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "core/data/gettext_corpus.h"
#include "core/data/vocab.h"
#include "core/data/mo_test_writer.h"
#include "data_test_util.h"

using namespace dtrain;
using namespace dtrain::data;
using namespace dtrain::data::testing;

namespace {

using ::dtrain::test::mo_bytes;

void write_catalog(const TempDir& dir, const std::string& language, const std::string& domain,
                   const std::vector<std::pair<std::string, std::string>>& raw) {
  const std::filesystem::path d = dir.path / language / "LC_MESSAGES";
  std::filesystem::create_directories(d);
  write_bytes((d / (domain + ".mo")).string(), mo_bytes(raw));
}

std::vector<TranslationPair> all_pairs(const GettextCorpus& c) {
  std::vector<TranslationPair> all = c.train;
  all.insert(all.end(), c.valid.begin(), c.valid.end());
  all.insert(all.end(), c.test.begin(), c.test.end());
  return all;
}

const std::string* target_of(const GettextCorpus& c, const std::string& source) {
  for (const auto* split : {&c.train, &c.valid, &c.test}) {
    for (const TranslationPair& p : *split) {
      if (p.source == source) return &p.target;
    }
  }
  return nullptr;
}

}  // namespace

TEST(GettextCorpus, CleaningSteps) {
  EXPECT_EQ(collapse_whitespace("  two\n\tlines  "), "two lines");
  EXPECT_EQ(strip_mnemonic("_Open"), "Open");
  EXPECT_EQ(strip_mnemonic("Save _As"), "Save As");
  EXPECT_EQ(strip_mnemonic("&File"), "File");
  EXPECT_EQ(strip_mnemonic("打开(_O)"), "打开");
  EXPECT_EQ(strip_mnemonic("Neu (&N)..."), "Neu...");
  EXPECT_EQ(strip_mnemonic("--ignore_case"), "--ignore_case");  // an option name, not a mnemonic
  EXPECT_EQ(strip_mnemonic("use a_b and c_d"), "use a_b and c_d");
  EXPECT_EQ(strip_mnemonic("E_xit"), "E_xit");
  EXPECT_EQ(strip_mnemonic("E_xit", true), "Exit");
  EXPECT_EQ(strip_mnemonic("Tom &amp; Jerry"), "Tom &amp; Jerry");
  EXPECT_TRUE(is_format_only("%s: %s"));
  EXPECT_TRUE(is_format_only("%1$s (%2$lu%%) ..."));
  EXPECT_TRUE(is_format_only("%s：%s"));  // fullwidth colon is punctuation, not a word
  EXPECT_TRUE(is_format_only("[%d] -> 42"));
  EXPECT_FALSE(is_format_only("%s: file not found"));
  EXPECT_FALSE(is_format_only("%s：文件"));
  EXPECT_FALSE(is_format_only("Größe"));
  EXPECT_TRUE(is_valid_utf8("文件 Größe"));
  EXPECT_FALSE(is_valid_utf8("\xe6\x96"));  // truncated
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));  // overlong "/"
  EXPECT_EQ(utf8_length("文件x"), 3);
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);  // the published FNV-1a 64 test vector
}

TEST(GettextCorpus, FiltersDedupsAndKeepsDomainOrder) {
  TempDir dir;
  write_catalog(dir, "de", "first",
                {{"", "Content-Type: text/plain; charset=UTF-8\n"},
                 {"Open", "Öffnen"},
                 {std::string("%d file\0%d files", 16), std::string("%d Datei\0%d Dateien", 19)},
                 {"menu\x04Quit", "Beenden"},
                 {"Untranslated", ""},
                 {"%s: %s", "%s: %s"},
                 {"OK", "OK"},
                 {"_Save", "_Speichern"},
                 {"C_reate", "_Erstellen"},
                 {"Name:", "Bezeichnung :"},
                 {"Size:", "Größe"},
                 {"x", "y"},
                 {std::string(300, 'a'), "lang"},
                 {"Bad bytes", "\xff\xfe"}});
  write_catalog(dir, "de", "second", {{"Open", "Aufmachen"}, {"Close", "Schließen"}});
  GettextCorpusOptions options;
  options.locale_dir = dir.path.string();
  options.language = "de";
  options.domains = {"first", "absent", "second"};
  const GettextCorpus c = load_gettext_corpus(options);

  ASSERT_EQ(c.domains.size(), 3u);
  EXPECT_EQ(c.domains[0].domain, "first");
  EXPECT_TRUE(c.domains[0].found);
  EXPECT_EQ(c.domains[0].entries, 13);  // the header is not an entry
  EXPECT_EQ(c.domains[0].pairs, 6);     // Open, Quit, Save, Create, Name, Size
  EXPECT_FALSE(c.domains[1].found);
  EXPECT_EQ(c.domains[2].pairs, 1);  // Close; its Open repeats the first domain's

  EXPECT_EQ(*target_of(c, "Open"), "Öffnen");   // the first domain in list order wins
  EXPECT_EQ(*target_of(c, "Quit"), "Beenden");  // context dropped, pair kept
  EXPECT_EQ(*target_of(c, "Save"), "Speichern");
  EXPECT_EQ(*target_of(c, "Create"), "Erstellen");  // the German marker shows "C_reate" has one
  EXPECT_EQ(*target_of(c, "Name"), "Bezeichnung");  // both had a colon: both lose it
  EXPECT_EQ(*target_of(c, "Size:"), "Größe");       // only one side had one: left alone
  EXPECT_EQ(*target_of(c, "Close"), "Schließen");
  EXPECT_EQ(target_of(c, "%d file"), nullptr);

  EXPECT_EQ(c.drops.plural, 1);
  EXPECT_EQ(c.drops.untranslated, 1);
  EXPECT_EQ(c.drops.format_only, 1);
  EXPECT_EQ(c.drops.identical, 1);
  EXPECT_EQ(c.drops.too_short, 1);
  EXPECT_EQ(c.drops.too_long, 1);
  EXPECT_EQ(c.drops.not_utf8, 1);
  EXPECT_EQ(c.drops.duplicate, 1);
  EXPECT_EQ(c.mnemonics_stripped, 2);
  EXPECT_EQ(c.colons_stripped, 1);
  EXPECT_EQ(all_pairs(c).size(), 7u);
}

TEST(GettextCorpus, SplitIsByHashOfTheEnglishAlone) {
  // 400 sources: the split of each depends on its text only, not on what else is in the corpus.
  std::vector<std::pair<std::string, std::string>> raw;
  for (int i = 0; i < 400; ++i)
    raw.push_back({"message number " + std::to_string(i), "Meldung " + std::to_string(i)});
  TempDir dir;
  write_catalog(dir, "de", "all", raw);
  write_catalog(dir, "de", "half", std::vector(raw.begin(), raw.begin() + 200));
  GettextCorpusOptions options;
  options.locale_dir = dir.path.string();
  options.language = "de";
  options.domains = {"all"};
  const GettextCorpus full = load_gettext_corpus(options);
  options.domains = {"half"};
  const GettextCorpus half = load_gettext_corpus(options);
  EXPECT_EQ(full.train.size() + full.valid.size() + full.test.size(), 400u);
  // About 5% each; generous bounds (a binomial with n = 400, p = 0.05 has sd ~ 4.4).
  EXPECT_GT(full.valid.size(), 5u);
  EXPECT_LT(full.valid.size(), 40u);
  EXPECT_GT(full.test.size(), 5u);
  EXPECT_LT(full.test.size(), 40u);
  for (const auto& [splits, name] :
       {std::pair{&half.valid, "valid"}, std::pair{&half.test, "test"}}) {
    for (const TranslationPair& p : *splits) {
      SCOPED_TRACE(name + (": " + p.source));
      const GettextSplit want =
          std::string(name) == "valid" ? GettextSplit::valid : GettextSplit::test;
      EXPECT_EQ(gettext_split_of(p.source, 0.05, 0.05), want);
      const auto& in_full = want == GettextSplit::valid ? full.valid : full.test;
      EXPECT_TRUE(std::any_of(in_full.begin(), in_full.end(),
                              [&](const auto& q) { return q.source == p.source; }));
    }
  }
  options.valid_fraction = 0.5;
  options.test_fraction = 0.6;
  EXPECT_NE(error_of([&] { load_gettext_corpus(options); }).find("sum to at most 1"),
            std::string::npos);
}

TEST(GettextCorpus, DamagedCatalogAndBadNamesAreErrors) {
  TempDir dir;
  std::filesystem::create_directories(dir.path / "zh_CN" / "LC_MESSAGES");
  write_bytes(dir.file("zh_CN/LC_MESSAGES/broken.mo"), "not an MO file at all, just text");
  GettextCorpusOptions options;
  options.locale_dir = dir.path.string();
  options.domains = {"broken"};
  const std::string message = error_of([&] { load_gettext_corpus(options); });
  EXPECT_NE(message.find("broken.mo: not a valid GNU MO file"), std::string::npos) << message;
  options.domains = {"../x"};
  EXPECT_NE(error_of([&] { load_gettext_corpus(options); }).find("bad domain"), std::string::npos);
  options.language = "";
  EXPECT_NE(error_of([&] { load_gettext_corpus(options); }).find("bad language"),
            std::string::npos);
}

TEST(GettextCorpus, RealZhCnCatalogs) {
  const std::string coreutils = std::string(kLocaleDir) + "/zh_CN/LC_MESSAGES/coreutils.mo";
  if (!std::filesystem::exists(coreutils)) {
    GTEST_SKIP() << coreutils
                 << " is absent: install coreutils' translations (a Debian image without "
                 << "/usr/share/locale, e.g. one with dpkg path-exclude, has none)";
  }
  const GettextCorpus c = load_gettext_corpus();
  const std::string* write_error = target_of(c, "write error");
  ASSERT_NE(write_error, nullptr);
  EXPECT_EQ(*write_error, "写入错误");  // coreutils' translation
  const size_t total = c.train.size() + c.valid.size() + c.test.size();
  EXPECT_GT(total, 1000u);
  EXPECT_GT(c.valid.size(), total / 40);  // 5% expected; 2.5% is far outside chance
  EXPECT_GT(c.test.size(), total / 40);
  EXPECT_GT(c.train.size(), total * 8 / 10);
  for (const TranslationPair& p : c.train) {
    ASSERT_FALSE(p.source.empty());
    ASSERT_NE(p.source, p.target);
  }
}

// --dataset names map to the catalog language, --seq-len leaves room for bos and eos, and an empty
// --data-dir keeps the system's locale directory.
TEST(GettextCorpus, DatasetOptionsFollowTheFlags) {
  const GettextCorpusOptions zh = gettext_dataset_options("gettext-zh", 80, "");
  EXPECT_EQ(zh.language, "zh_CN");
  EXPECT_EQ(zh.max_chars, 78);
  EXPECT_EQ(zh.locale_dir, GettextCorpusOptions{}.locale_dir);
  const GettextCorpusOptions de = gettext_dataset_options("gettext-de", 16, "/tmp/locale");
  EXPECT_EQ(de.language, "de");
  EXPECT_EQ(de.max_chars, 14);
  EXPECT_EQ(de.locale_dir, "/tmp/locale");
  EXPECT_THROW(gettext_dataset_options("freedict", 16, ""), Error);
}
