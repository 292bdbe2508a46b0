// Fuzz.FreeDict: load_freedict on a dictd database (.dict.dz or .dict, and the .index beside it) with
// one of three parts mutated: the index text, the dictionary text (then compressed again, or not), or
// the compressed dictionary bytes. A few replace one of the files by a symbolic link to itself.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/data/file_bytes.h"
#include "core/data/freedict.h"
#include "fuzz_util.h"

namespace dtrain::fuzz {
namespace {

// A seed database: a dictionary file and its index.
struct Database {
  std::string dict_name;  // tiny.dict.dz or plain.dict
  std::string dict, index;
  std::string text;  // the dictionary decompressed
};

// tiny.dict.dz -> tiny.index, as load_freedict finds it.
std::string index_name(const std::string& dict_name) {
  return dict_name.substr(0, dict_name.find('.')) + ".index";
}

TEST(Fuzz, FreeDict) {
  Harness h("FreeDict", 0xf4eed1c7ull);
  const std::vector<Seed> seeds = read_corpus("freedict");
  std::vector<Database> dbs;
  for (const Seed& s : seeds) {
    if (s.name.ends_with(".index")) continue;
    auto index = std::find_if(seeds.begin(), seeds.end(),
                              [&](const Seed& i) { return i.name == index_name(s.name); });
    ASSERT_NE(index, seeds.end()) << "no index beside " << s.path;
    dbs.push_back({s.name, s.bytes, index->bytes, data::read_file_bytes(s.path)});
  }
  ASSERT_EQ(dbs.size(), 2u);
  // Separators and numbers of the index ("headword \t base64 offset \t base64 length"): 10 and 11
  // digit numbers, the largest values; the database's own entries.
  const MutationHints index_hints{
      {},
      {"\t", "\n", "\t\t", "A", "/", "+", "//////////", "///////////", "=", "-", "00-database-url",
       "\r", " ", std::string(1, '\0'), "\xc3\xa4"}};
  // What the entry parser looks for: pronunciation, tags, labels, brackets, separators, line ends.
  const MutationHints text_hints{{},
                                 {" /", "/", "  /", " <", "<", ">", "[", "]", "(", ")", "{", "}",
                                  ",", ";", "\n", "\r", " ", "\xc3", "\b"}};
  const MutationHints gz_hints{
      {{3, 1, false}, {10, 2, false}, {12, 2, false}, {-8, 4, false}, {-4, 4, false}}, {}};

  h.run(4000, [&](Case& c) {
    const bool is_seed = c.index < dbs.size();
    const Database& db = is_seed ? dbs[c.index] : c.rng.pick(dbs);
    std::string dict = db.dict, index = db.index;
    std::string input;  // the mutated part, for the report
    if (!is_seed) {
      const size_t mode = c.rng.below(10);
      if (mode < 4) {
        input = index = mutate(index, c.rng, c.rng.pick(dbs).index, index_hints, c.log);
      } else if (mode < 7) {
        input = mutate(db.text, c.rng, c.rng.pick(dbs).text, text_hints, c.log);
        dict = db.dict_name.ends_with(".dz") ? gzip(input) : input;
      } else {
        input = dict = mutate(dict, c.rng, c.rng.pick(dbs).dict, gz_hints, c.log);
      }
    }
    const std::string dict_path = h.path(db.dict_name);
    const std::string index_path = h.path(index_name(db.dict_name));
    write_file(dict_path, dict);
    write_file(index_path, index);
    if (!is_seed && c.rng.chance(2)) {
      const bool dict_link = c.rng.chance(50);
      self_link(dict_link ? dict_path : index_path);
      c.log +=
          dict_link ? "; dictionary made a symlink to itself" : "; index made a symlink to itself";
    }
    data::FreeDictOptions options;
    options.path = dict_path;
    h.check(
        c, is_seed, {dict_path, index_path}, [&] { data::load_freedict(options); }, input);
  });
}

}  // namespace
}  // namespace dtrain::fuzz
