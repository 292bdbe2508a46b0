// Reading GNU gettext message catalogs (MO files, /usr/share/locale/<lang>/LC_MESSAGES/<domain>.mo),
// written from the format's description in the gettext manual ("The Format of GNU MO Files"):
//
//   offset  0  magic 0x950412de, stored in the byte order of the machine that wrote the file
//           4  revision: major << 16 | minor (major 0 or 1; minor 1 adds system-dependent strings)
//           8  N, the number of strings
//          12  O, offset of the table of original strings
//          16  T, offset of the table of translated strings
//          20  S, H: size and offset of a hash table (only a lookup accelerator: not read here)
//   O + 8i     length and offset of original string i (length without the terminating NUL)
//   T + 8i     length and offset of translation i
//
// An original string is "msgctxt \x04 msgid" when it has a context and "msgid \0 msgid_plural" when it
// has plural forms, whose translation then holds the forms separated by NUL. The entry whose msgid is
// empty is the catalog's header (Content-Type, Plural-Forms, ...): metadata, not a message.
// System-dependent strings (minor revision 1: messages with <PRIu64>-style macros) are not read; a
// reader that only knows minor 0 sees the same entries, as the format intends.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dtrain::data {

struct MoEntry {
  std::string context;                    // msgctxt; empty when the entry has none
  std::string msgid;                      // the English original
  std::string msgid_plural;               // empty unless the entry has plural forms
  std::vector<std::string> translations;  // one, or one per plural form

  bool has_context = false;  // an empty msgctxt differs from none
  bool is_plural() const { return !msgid_plural.empty(); }
};

struct MoFile {
  std::vector<MoEntry>
      entries;         // in file order (msgfmt sorts them by original string), header excluded
  std::string header;  // the translation of the empty msgid; empty when the file has none
  bool big_endian = false;
  uint32_t revision = 0;
};

// Parses MO bytes; `name` (a path) starts every error message. Every malformed input is a one-line
// dtrain::Error: a bad magic or major revision, a header, table or string past the end of the file, a
// table overlapping the header or the other table, a string overlapping either, a string whose
// terminating NUL is missing, or a string count that cannot fit in the file.
MoFile parse_mo(std::string_view bytes, const std::string& name);

// parse_mo of the file's bytes (read with read_file_bytes, so errors name the file).
MoFile read_mo_file(const std::string& path);

// The value of `field` ("Content-Type", "Language", ...) in a catalog header, trimmed; empty if absent.
std::string mo_header_field(const std::string& header, const std::string& field);

}  // namespace dtrain::data
