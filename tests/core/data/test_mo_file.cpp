#include <gtest/gtest.h>

#include "core/data/mo_file.h"
#include "core/data/mo_test_writer.h"
#include "data_test_util.h"

using namespace dtrain;
using namespace dtrain::data;
using namespace dtrain::data::testing;
using dtrain::test::mo_bytes;

namespace {

const std::vector<std::pair<std::string, std::string>> kCatalog = {
    {"", "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n != 1);\n"},
    {std::string("%d file\0%d files", 16), std::string("%d Datei\0%d Dateien", 19)},
    {"Open", "Öffnen"},
    {"menu\x04Quit", "Beenden"},
    {"\x04"
     "Empty context",
     "Leerer Kontext"},  // split: \x04E would be one escape
};

void patch32(std::string& bytes, size_t at, uint32_t v) {
  for (int k = 0; k < 4; ++k) bytes[at + k] = static_cast<char>((v >> (8 * k)) & 0xff);
}

std::string mo_error(const std::string& bytes) {
  return error_of([&] { parse_mo(bytes, "/x/de.mo"); });
}

}  // namespace

TEST(MoFile, ReadsBothByteOrdersWithContextsAndPlurals) {
  for (bool big : {false, true}) {
    SCOPED_TRACE(big ? "big endian" : "little endian");
    const MoFile mo = parse_mo(mo_bytes(kCatalog, big), "test.mo");
    EXPECT_EQ(mo.big_endian, big);
    EXPECT_EQ(mo.revision, 0u);
    EXPECT_EQ(mo_header_field(mo.header, "Content-Type"), "text/plain; charset=UTF-8");
    EXPECT_EQ(mo_header_field(mo.header, "Language"), "");
    ASSERT_EQ(mo.entries.size(), 4u);  // the header is metadata, not an entry

    const MoEntry& plural = mo.entries[0];
    EXPECT_EQ(plural.msgid, "%d file");
    EXPECT_EQ(plural.msgid_plural, "%d files");
    EXPECT_TRUE(plural.is_plural());
    EXPECT_EQ(plural.translations, (std::vector<std::string>{"%d Datei", "%d Dateien"}));

    EXPECT_EQ(mo.entries[1].msgid, "Open");
    EXPECT_FALSE(mo.entries[1].has_context);
    EXPECT_EQ(mo.entries[1].translations, std::vector<std::string>{"Öffnen"});

    EXPECT_EQ(mo.entries[2].context, "menu");
    EXPECT_TRUE(mo.entries[2].has_context);
    EXPECT_EQ(mo.entries[2].msgid, "Quit");
    EXPECT_EQ(mo.entries[2].translations.front(), "Beenden");

    EXPECT_TRUE(mo.entries[3].has_context);  // an empty context is still a context
    EXPECT_EQ(mo.entries[3].context, "");
    EXPECT_EQ(mo.entries[3].msgid, "Empty context");
  }
}

TEST(MoFile, ReadsAFileFromDiskAndAcceptsMinorRevisionOne) {
  TempDir dir;
  const std::string bytes = mo_bytes({{"Open", "打开(_O)"}}, false, 1);
  ASSERT_EQ(bytes.substr(12, 4), std::string("\x30\0\0\0", 4));  // the original table at 48
  write_bytes(dir.file("zh.mo"), bytes);
  const MoFile mo = read_mo_file(dir.file("zh.mo"));
  ASSERT_EQ(mo.entries.size(), 1u);
  EXPECT_EQ(mo.revision, 1u);
  EXPECT_EQ(mo.entries[0].msgid, "Open");
  EXPECT_EQ(mo.entries[0].translations.front(), "打开(_O)");
}

TEST(MoFile, EmptyCatalogHasNoEntries) {
  const MoFile mo = parse_mo(mo_bytes({}, true), "empty.mo");
  EXPECT_TRUE(mo.entries.empty());
  EXPECT_TRUE(mo.header.empty());
}

TEST(MoFile, MalformedFilesAreOneLineErrorsNamingTheFile) {
  const std::string good = mo_bytes(kCatalog, false);
  const uint32_t n = static_cast<uint32_t>(kCatalog.size());
  struct Case {
    const char* name;
    std::string bytes;
    const char* says;
  };
  std::vector<Case> cases;
  cases.push_back({"short", good.substr(0, 20), "shorter than the 28-byte header"});
  std::string magic = good;
  magic[0] = 'X';
  cases.push_back({"magic", magic, "in either byte order"});
  std::string major = good;
  patch32(major, 4, 2u << 16);
  cases.push_back({"major revision", major, "major revision 2 is unknown"});
  std::string count = good;
  patch32(count, 8, 0x7fffffff);
  cases.push_back({"absurd count", count, "runs past the end of the file"});
  std::string table = good;
  patch32(table, 16, static_cast<uint32_t>(good.size()) - 4);
  cases.push_back({"table past end", table, "translation table"});
  std::string overlap = good;
  patch32(overlap, 16, 28 + 8);
  cases.push_back({"tables overlap", overlap, "overlap"});
  std::string in_header = good;
  patch32(in_header, 12, 4);
  cases.push_back({"table in header", in_header, "overlaps the header"});
  std::string length = good;
  patch32(length, 28 + 8 * 2, 1000000);  // original 2's length
  cases.push_back({"string past end", length, "original string 2"});
  std::string offset = good;
  patch32(offset, 28 + 8 * n + 4, 0xfffffff0u);  // translation 0's offset, near 2^32
  cases.push_back({"offset past end", offset, "translation string 0"});
  std::string unterminated = good;
  patch32(unterminated, 28 + 8 * 2, 3);  // "Open" cut to "Ope": the next byte is 'n', not NUL
  cases.push_back({"unterminated", unterminated, "not terminated by a NUL"});
  std::string into_table = good;
  patch32(into_table, 28 + 8 * 2 + 4, 28 + 2);  // original 2 now starts inside the original table
  cases.push_back({"string overlaps table", into_table, "overlaps the header or a string table"});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string message = mo_error(c.bytes);
    EXPECT_EQ(message.rfind("/x/de.mo: not a valid GNU MO file: ", 0), 0u) << message;
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  TempDir dir;
  EXPECT_NE(error_of([&] { read_mo_file(dir.file("missing.mo")); }).find("missing.mo"),
            std::string::npos);
}

TEST(MoFile, HeaderFields) {
  const std::string header =
      "Project-Id-Version: x\nLanguage: de\nContent-Type: text/plain; charset=UTF-8\n";
  EXPECT_EQ(mo_header_field(header, "Language"), "de");
  EXPECT_EQ(mo_header_field(header, "Project-Id-Version"), "x");
  EXPECT_EQ(mo_header_field(header, "Lang"), "");
}
