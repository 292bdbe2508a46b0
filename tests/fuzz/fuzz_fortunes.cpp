// Fuzz.Fortunes: load_fortunes on a directory of one or two mutated fortune files (text, or gzip'd text),
// sometimes with the things a real fortunes directory holds beside them (.dat indexes, .u8 links) or
// odd entries (a link loop, a dangling link, a subdirectory, an empty file).
#include <gtest/gtest.h>

#include <filesystem>

#include "core/data/text_corpus.h"
#include "fuzz_util.h"

namespace dtrain::fuzz {
namespace {

namespace fs = std::filesystem;

// Adds one odd entry to `dir`; says which in the case log.
void odd_entry(Case& c, const fs::path& dir) {
  switch (c.rng.below(6)) {
    case 0:
      self_link((dir / "loop").string());
      c.log += "; a symlink to itself";
      break;
    case 1:
      fs::create_symlink("nowhere", dir / "dangling");
      c.log += "; a dangling symlink";
      break;
    case 2:
      fs::create_directory(dir / "subdir");
      c.log += "; a subdirectory";
      break;
    case 3:
      write_file((dir / "empty").string(), "");
      c.log += "; an empty file";
      break;
    case 4:
      write_file((dir / "f0.dat").string(), std::string("\0\0\0\2\0\0\0\3", 8));
      c.log += "; a .dat index";
      break;
    default:
      fs::create_symlink("f0", dir / "f0.u8");
      c.log += "; a .u8 link";
      break;
  }
}

TEST(Fuzz, Fortunes) {
  Harness h("Fortunes", 0xf0e7a9e5ull);
  const std::vector<Seed> seeds = read_corpus("fortunes");
  ASSERT_FALSE(seeds.empty());
  // Separators, overstrikes, line ends, a NUL (marks a binary file), the gzip magic, UTF-8 fragments
  // (a lone lead byte, a truncated sequence, a surrogate, a code point past U+10FFFF).
  const MutationHints hints{{},
                            {"%", "\n%\n", "%\r\n", "\n", "\r", "\b", "_\b", "\b\b\b", "\t",
                             std::string(1, '\0'), "\x1f\x8b", "\x7f", "\xc3", "\xe2\x82",
                             "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "\xff"}};

  h.run(3000, [&](Case& c) {
    const std::string dir = h.fresh_dir("fortunes");
    const bool is_seed = c.index < seeds.size();
    const size_t files = is_seed ? 1 : 1 + c.rng.below(2);
    std::string input;  // the last file written, for the report
    for (size_t f = 0; f < files; ++f) {
      input = is_seed ? seeds[c.index].bytes : c.rng.pick(seeds).bytes;
      if (!is_seed) input = mutate(input, c.rng, c.rng.pick(seeds).bytes, hints, c.log);
      write_file(dir + "/f" + std::to_string(f), input);
    }
    if (!is_seed && c.rng.chance(10)) odd_entry(c, dir);
    data::TextCorpusOptions options;
    options.dir = dir;
    // A message may be about a file or about the directory as a whole ("holds no fortune files"); the
    // directory's path is part of every file's, so naming it is what is checked.
    h.check(
        c, is_seed, {dir}, [&] { data::load_fortunes(options); }, input);
  });
}

}  // namespace
}  // namespace dtrain::fuzz
