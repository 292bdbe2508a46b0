#include "core/data/gettext_corpus.h"

#include <algorithm>
#include <unordered_set>

#include "core/data/file_bytes.h"
#include "core/data/mo_file.h"
#include "core/data/vocab.h"
#include "core/error.h"

namespace dtrain::data {

const std::vector<std::string>& default_gettext_domains() {
  static const std::vector<std::string> domains = {
      // Debian base (priority required / important / standard)
      "coreutils",
      "bash",
      "dpkg",
      "apt",
      "libapt-pkg6.0",
      "tar",
      "shadow",
      "diffutils",
      "findutils",
      "grep",
      "sed",
      "Linux-PAM",
      "adduser",
      "systemd",
      "procps-ng",
      "man-db",
      "man-db-gnulib",
      "libc",
      "gettext-runtime",
      "wget",
      "wget-gnulib",
      "xz",
      // the toolchain scripts/bootstrap installs (build-essential: make, binutils) and its neighbours
      "make",
      "ld",
      "opcodes",
      "m4",
      "gettext-tools",
      "git",
      // libraries and tools often present on a Debian machine
      "glib20",
      "gnupg2",
      "gnutls30",
      "libidn2",
      "psmisc",
      "polkit-1",
      "python-apt",
      "software-properties",
      "PackageKit",
      "appstream",
      "shared-mime-info",
      "xdg-user-dirs",
      "avahi",
      "at-spi2-core",
      "gdk-pixbuf",
      "gtk20",
      "gtk20-properties",
      "gsettings-desktop-schemas",
      "gstreamer-1.0",
      "xkeyboard-config",
      // PostgreSQL 15 (client and server messages)
      "libpq5-15",
      "psql-15",
      "pg_dump-15",
      "pgscripts-15",
      "pg_amcheck-15",
      "pg_config-15",
      "pg_verifybackup-15",
      "initdb-15",
      "pg_ctl-15",
      "pg_controldata-15",
      "pg_resetwal-15",
      "pg_rewind-15",
      "pg_upgrade-15",
      "pg_archivecleanup-15",
      "pg_test_timing-15",
      "plpgsql-15",
      "postgres-15",
  };
  return domains;
}

uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

GettextSplit gettext_split_of(std::string_view english, double valid_fraction,
                              double test_fraction) {
  // FNV-1a's last multiply moves the last byte only into bits 0-15 and 40-55, so texts that differ in
  // their last character ("item 1", "item 2") would share their top bits. A finaliser (MurmurHash3's
  // fmix64, a bijection) spreads every bit over all 64 before the top 53 become u in [0, 1).
  uint64_t h = fnv1a64(english);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53;
  if (u < valid_fraction) return GettextSplit::valid;
  if (u < valid_fraction + test_fraction) return GettextSplit::test;
  return GettextSplit::train;
}

namespace {

// Decodes the code point at s[i] and advances i; -1 for a malformed sequence (overlong, surrogate,
// past U+10FFFF, truncated), leaving i past the bad lead byte.
int32_t next_code_point(std::string_view s, size_t& i) {
  const auto lead = static_cast<unsigned char>(s[i++]);
  if (lead < 0x80) return lead;
  int extra = 0;
  int32_t cp = 0, min = 0;
  if ((lead & 0xe0) == 0xc0)
    extra = 1, cp = lead & 0x1f, min = 0x80;
  else if ((lead & 0xf0) == 0xe0)
    extra = 2, cp = lead & 0x0f, min = 0x800;
  else if ((lead & 0xf8) == 0xf0)
    extra = 3, cp = lead & 0x07, min = 0x10000;
  else
    return -1;
  for (int k = 0; k < extra; ++k) {
    if (i >= s.size() || (static_cast<unsigned char>(s[i]) & 0xc0) != 0x80) return -1;
    cp = cp << 6 | (static_cast<unsigned char>(s[i++]) & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  return cp;
}

// Whether a code point reads as part of a word: ASCII letters, and non-ASCII outside the punctuation,
// symbol and space blocks that translations use around directives ("%s：%s", "%s…", "«%s»").
bool is_word_char(int32_t cp) {
  if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  if (cp < 0xc0 || cp == 0xd7 || cp == 0xf7) return false;  // Latin-1 punctuation, × ÷
  if (cp >= 0x2000 && cp <= 0x2bff) return false;           // punctuation, arrows, symbols
  if (cp >= 0x3000 && cp <= 0x303f) return false;           // CJK punctuation
  if (cp >= 0xff00 && cp <= 0xff20) return false;           // fullwidth punctuation, digits
  if ((cp >= 0xff3b && cp <= 0xff40) || (cp >= 0xff5b && cp <= 0xff65)) return false;
  return true;
}

bool is_ascii_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Removes the one marker `m` when the string has exactly one and it starts a word before a letter or
// digit ("_Open", "Save _As"). A marker inside a word is left alone unless `inside_words`: on its own
// "ignore_case" (an option name) cannot be told from "E_xit" (a mnemonic), and mangling option names
// would teach wrong text.
bool strip_word_start_marker(std::string& s, char m, bool inside_words) {
  const size_t pos = s.find(m);
  if (pos == std::string::npos || s.find(m, pos + 1) != std::string::npos) return false;
  if (pos + 1 >= s.size() || !is_ascii_alnum(s[pos + 1])) return false;
  if (!inside_words && pos > 0 && s[pos - 1] != ' ' && s[pos - 1] != '"' && s[pos - 1] != '(')
    return false;
  if (m == '&' && s.find(';', pos) != std::string::npos)
    return false;  // "&amp;": an entity, not a marker
  s.erase(pos, 1);
  return true;
}

// Drops a trailing ":" (or the fullwidth "：" that zh_CN uses) and the spaces before it (fr-style " :").
bool strip_colon(std::string& s) {
  size_t n = s.size();
  if (n >= 1 && s[n - 1] == ':')
    n -= 1;
  else if (n >= 3 && s.compare(n - 3, 3, "\xef\xbc\x9a") == 0)
    n -= 3;
  else
    return false;
  while (n > 0 && s[n - 1] == ' ') --n;
  s.resize(n);
  return true;
}

bool ends_with_colon(const std::string& s) {
  return (!s.empty() && s.back() == ':') ||
         (s.size() >= 3 && s.compare(s.size() - 3, 3, "\xef\xbc\x9a") == 0);
}

void check_name(const std::string& what, const std::string& name) {
  DTRAIN_CHECK(!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..",
               "gettext corpus: bad ", what, " '", name, "': give a plain name such as ",
               what == "language" ? "zh_CN or de" : "coreutils");
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (next_code_point(s, i) < 0) return false;
  }
  return true;
}

std::string collapse_whitespace(std::string_view s) {
  std::string out;
  bool pending_space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += c;
  }
  return out;
}

std::string strip_mnemonic(std::string_view text, bool inside_words) {
  std::string s(text);
  // zh_CN (and other CJK catalogs) append the English mnemonic: "打开(_O)", "保存(&S)...".
  size_t pos = 0;
  while ((pos = s.find('(', pos)) != std::string::npos) {
    if (pos + 3 < s.size() && (s[pos + 1] == '_' || s[pos + 1] == '&') &&
        is_ascii_alnum(s[pos + 2]) && s[pos + 3] == ')') {
      size_t begin = pos;
      while (begin > 0 && s[begin - 1] == ' ') --begin;
      s.erase(begin, pos + 4 - begin);
      pos = begin;
    } else {
      ++pos;
    }
  }
  strip_word_start_marker(s, '_', inside_words);
  strip_word_start_marker(s, '&', inside_words);
  return s;
}

bool is_format_only(std::string_view s) {
  std::string rest;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      rest += s[i];
      continue;
    }
    // A printf directive: % [n$] [flags] [width] [.precision] [length] conversion.
    size_t j = i + 1;
    size_t k = j;
    while (k < s.size() && s[k] >= '0' && s[k] <= '9') ++k;
    if (k > j && k < s.size() && s[k] == '$') j = k + 1;
    while (j < s.size() && std::string_view("-+ #0'I").find(s[j]) != std::string_view::npos) ++j;
    while (j < s.size() && ((s[j] >= '0' && s[j] <= '9') || s[j] == '*' || s[j] == '.')) ++j;
    while (j < s.size() && std::string_view("hlLqjzZt").find(s[j]) != std::string_view::npos) ++j;
    if (j < s.size() &&
        std::string_view("diouxXeEfFgGaAcspnm%").find(s[j]) != std::string_view::npos) {
      i = j;  // the whole directive goes
    } else {
      rest += s[i];
    }
  }
  for (size_t i = 0; i < rest.size();) {
    const int32_t cp = next_code_point(rest, i);
    if (cp >= 0 && is_word_char(cp)) return false;
  }
  return true;
}

GettextCorpusOptions gettext_dataset_options(const std::string& dataset, int64_t seq_len,
                                             const std::string& locale_dir) {
  DTRAIN_CHECK(dataset == "gettext-zh" || dataset == "gettext-de", "dataset '", dataset,
               "' is not a gettext corpus: give gettext-zh or gettext-de");
  GettextCorpusOptions options;
  if (!locale_dir.empty()) options.locale_dir = locale_dir;
  options.language = dataset == "gettext-zh" ? "zh_CN" : "de";
  options.max_chars = seq_len - 2;
  return options;
}

GettextCorpus load_gettext_corpus(const GettextCorpusOptions& options) {
  check_name("language", options.language);
  DTRAIN_CHECK(options.valid_fraction >= 0 && options.test_fraction >= 0 &&
                   options.valid_fraction + options.test_fraction <= 1,
               "gettext corpus: valid_fraction ", options.valid_fraction, " and test_fraction ",
               options.test_fraction, " must be >= 0 and sum to at most 1");
  GettextCorpus corpus;
  GettextDrops& drops = corpus.drops;
  std::unordered_set<std::string> seen_sources;
  for (const std::string& domain : options.domains) {
    check_name("domain", domain);
    GettextDomainCount& count = corpus.domains.emplace_back();
    count.domain = domain;
    const std::string path =
        options.locale_dir + "/" + options.language + "/LC_MESSAGES/" + domain + ".mo";
    if (!entry_exists(path)) continue;  // the package is not installed here: skip, and report it
    count.found = true;
    const MoFile mo = read_mo_file(path);
    count.entries = static_cast<int64_t>(mo.entries.size());
    for (const MoEntry& e : mo.entries) {
      if (e.is_plural()) {
        ++drops.plural;
        continue;
      }
      const std::string& raw = e.translations.front();
      if (raw.empty()) {
        ++drops.untranslated;
        continue;
      }
      if (!is_valid_utf8(e.msgid) || !is_valid_utf8(raw)) {
        ++drops.not_utf8;
        continue;
      }
      std::string source = collapse_whitespace(e.msgid), target = collapse_whitespace(raw);
      if (options.strip_mnemonics) {
        std::string s = strip_mnemonic(source), t = strip_mnemonic(target);
        // A marker found on one side ("打开(_R)", "_Datei") shows the other side's "C_reate" or
        // "E_xit" is one too, so both are stripped inside words as well: consistently on both sides.
        if (s != source || t != target) {
          s = strip_mnemonic(source, true);
          t = strip_mnemonic(target, true);
        }
        corpus.mnemonics_stripped += (s != source || t != target);
        source = std::move(s);
        target = std::move(t);
      }
      // Only when both sides end with a colon: removing it from one side alone would make the pair
      // disagree, and keeping it on both says nothing a label without it does not.
      if (options.strip_trailing_colon && ends_with_colon(source) && ends_with_colon(target)) {
        strip_colon(source);
        strip_colon(target);
        ++corpus.colons_stripped;
      }
      if (target.empty()) {
        ++drops.untranslated;
        continue;
      }
      if (is_format_only(source) || is_format_only(target)) {
        ++drops.format_only;
        continue;
      }
      if (source == target) {
        ++drops.identical;
        continue;
      }
      const int64_t shorter = std::min(utf8_length(source), utf8_length(target));
      const int64_t longer = std::max(utf8_length(source), utf8_length(target));
      if (shorter < options.min_chars) {
        ++drops.too_short;
        continue;
      }
      if (options.max_chars > 0 && longer > options.max_chars) {
        ++drops.too_long;
        continue;
      }
      if (!seen_sources.insert(source).second) {
        ++drops.duplicate;
        continue;
      }
      ++count.pairs;
      const GettextSplit split =
          gettext_split_of(source, options.valid_fraction, options.test_fraction);
      auto& out = split == GettextSplit::train   ? corpus.train
                  : split == GettextSplit::valid ? corpus.valid
                                                 : corpus.test;
      out.push_back({std::move(source), std::move(target)});
    }
  }
  return corpus;
}

}  // namespace dtrain::data
