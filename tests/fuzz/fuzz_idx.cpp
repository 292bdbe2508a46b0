// Fuzz.IdxRaw, Fuzz.IdxGzip and Fuzz.FashionMnist: read_idx on mutated plain and gzip'd IDX files, and
// the Fashion-MNIST dataset on a directory of mutated image and label files.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/data/fashion_mnist.h"
#include "core/data/file_bytes.h"
#include "core/data/idx.h"
#include "fuzz_util.h"

namespace dtrain::fuzz {
namespace {

namespace fs = std::filesystem;

const char* kHint = "re-install the test data";

// The type byte, the dimension count and the first four big-endian sizes.
const MutationHints& idx_hints() {
  static const MutationHints hints{
      {{2, 1, false}, {3, 1, false}, {4, 4, true}, {8, 4, true}, {12, 4, true}, {16, 4, true}}, {}};
  return hints;
}

TEST(Fuzz, IdxRaw) {
  Harness h("IdxRaw", 0x1d8aa0ull);
  const std::vector<Seed> seeds = read_corpus("idx_raw");
  ASSERT_FALSE(seeds.empty());
  const std::string path = h.path("fuzz-idx-ubyte");
  h.run(5000, [&](Case& c) {
    const bool is_seed = c.index < seeds.size();
    std::string input = is_seed ? seeds[c.index].bytes : c.rng.pick(seeds).bytes;
    if (!is_seed) input = mutate(input, c.rng, c.rng.pick(seeds).bytes, idx_hints(), c.log);
    write_file(path, input);
    h.check(
        c, is_seed, {path}, [&] { data::read_idx(path, kHint); }, input);
  });
}

TEST(Fuzz, IdxGzip) {
  Harness h("IdxGzip", 0x1d8a6217ull);
  const std::vector<Seed> seeds = read_corpus("idx_gzip");
  ASSERT_FALSE(seeds.empty());
  std::vector<std::string> plain;  // the seeds decompressed
  for (const Seed& s : seeds) plain.push_back(data::read_file_bytes(s.path));
  // gzip header: flags, mtime, extra flags, OS, XLEN or the first name bytes; trailer: CRC-32 and
  // ISIZE (which sizes the output buffer: a lie there must not hurt).
  const MutationHints gz_hints{{{3, 1, false},
                                {4, 4, false},
                                {8, 1, false},
                                {9, 1, false},
                                {10, 2, false},
                                {-8, 4, false},
                                {-4, 4, false},
                                {-4, 1, false}},
                               {}};
  const std::string path = h.path("fuzz-idx-ubyte.gz");

  h.run(5000, [&](Case& c) {
    const bool is_seed = c.index < seeds.size();
    const size_t k = is_seed ? c.index : c.rng.below(seeds.size());
    std::string input = seeds[k].bytes;
    if (!is_seed) {
      const size_t mode = c.rng.below(10);
      if (mode < 4) {  // valid gzip around a mutated IDX file: the IDX checks behind gunzip
        input = gzip(mutate(plain[k], c.rng, c.rng.pick(plain), idx_hints(), c.log));
      } else if (mode < 9) {  // the compressed bytes themselves
        input = mutate(input, c.rng, c.rng.pick(seeds).bytes, gz_hints, c.log);
      } else {  // another member after this one, itself maybe damaged
        const std::string next =
            c.rng.chance(50) ? gzip(c.rng.pick(plain)) : c.rng.pick(seeds).bytes;
        c.log = "second member; ";
        input += mutate(next, c.rng, "", gz_hints, c.log);
      }
    }
    write_file(path, input);
    h.check(
        c, is_seed, {path}, [&] { data::read_idx(path, kHint); }, input);
  });
}

// Directory layouts that are not about the bytes: a missing file, both the .gz and the plain file, a
// directory or a link loop where a file should be. `images` and `labels` are valid files.
void odd_layout(Case& c, const std::string& dir, const std::string& images,
                const std::string& labels) {
  const fs::path d(dir);
  const fs::path img = d / "train-images-idx3-ubyte", lab = d / "train-labels-idx1-ubyte";
  switch (c.rng.below(5)) {
    case 0:
      write_file(img.string(), images);
      c.log = "layout: labels missing";
      break;
    case 1:
      write_file(img.string(), images);
      write_file(lab.string(), labels);
      write_file(lab.string() + ".gz", gzip(labels.substr(0, labels.size() - 1)));
      c.log = "layout: a truncated .gz beside the good plain labels";
      break;
    case 2:
      fs::create_directory(img);
      write_file(lab.string(), labels);
      c.log = "layout: images is a directory";
      break;
    case 3:
      self_link((d / "train-images-idx3-ubyte.gz").string());
      write_file(lab.string(), labels);
      c.log = "layout: images.gz is a symlink to itself";
      break;
    default:
      fs::create_symlink("nowhere", d / "train-images-idx3-ubyte.gz");
      write_file(lab.string(), labels);
      c.log = "layout: images.gz is a dangling symlink";
      break;
  }
}

TEST(Fuzz, FashionMnist) {
  Harness h("FashionMnist", 0xfa5410ull);
  const std::vector<Seed> seeds = read_corpus("fashion_mnist");
  ASSERT_EQ(seeds.size(), 2u);
  const std::string& images = seeds[0].bytes;  // sorted: train-images before train-labels
  const std::string& labels = seeds[1].bytes;
  // The header fields of both files, and the first label bytes (a label must be < 10).
  MutationHints hints = idx_hints();
  hints.fields.push_back({8, 1, false});
  hints.fields.push_back({9, 1, false});

  h.run(3000, [&](Case& c) {
    const std::string dir = h.fresh_dir("data");
    const bool is_seed = c.index < 2;  // the seeds as they are, plain and gzip'd
    std::string input;                 // the mutated file, for the report
    if (!is_seed && c.rng.chance(3)) {
      odd_layout(c, dir, images, labels);
    } else {
      std::string img = images, lab = labels;
      if (!is_seed) {
        const int which = static_cast<int>(c.rng.below(3));  // images, labels, or both
        if (which != 1) input = img = mutate(img, c.rng, lab, hints, c.log);
        if (which != 0) input = lab = mutate(lab, c.rng, img, hints, c.log);
      }
      const bool gz = c.index == 1 || (!is_seed && c.rng.chance(30));
      write_file(dir + "/train-images-idx3-ubyte" + (gz ? ".gz" : ""), gz ? gzip(img) : img);
      write_file(dir + "/train-labels-idx1-ubyte" + (gz ? ".gz" : ""), gz ? gzip(lab) : lab);
    }
    h.check(
        c, is_seed, {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
        [&] { data::FashionMnist(data::Split::train, dir); }, input);
  });
}

}  // namespace
}  // namespace dtrain::fuzz
