// Fuzz.Cifar10: the CIFAR-10 dataset on a --data-dir of mutated binary batches. Most cases read the test
// split (one file); some read the train split, five files of which one is mutated. A few replace the
// mutated file by a symbolic link to itself (a loop), which must be an error like a missing file.
#include <gtest/gtest.h>

#include "core/data/cifar10.h"
#include "fuzz_util.h"

namespace dtrain::fuzz {
namespace {

TEST(Fuzz, Cifar10) {
  Harness h("Cifar10", 0xc1fa410ull);
  const std::vector<Seed> seeds = read_corpus("cifar10");
  ASSERT_FALSE(seeds.empty());
  constexpr int64_t kRecord = data::Cifar10::kRecordBytes;
  // The label bytes of the first records (a label must be < 10).
  const MutationHints hints{
      {{0, 1, false}, {kRecord, 1, false}, {2 * kRecord, 1, false}, {-kRecord, 1, false}}, {}};

  h.run(3000, [&](Case& c) {
    const std::string dir = h.fresh_dir("data");
    const bool is_seed = c.index < seeds.size();
    const bool train = c.index == 0 || (!is_seed && c.rng.chance(20));
    std::string input = is_seed ? seeds[c.index].bytes : c.rng.pick(seeds).bytes;
    if (!is_seed) {
      input = mutate(input, c.rng, c.rng.pick(seeds).bytes, hints, c.log);
      if (c.rng.chance(10)) {  // read_file_bytes gunzips any file, so a gzip'd batch is legal
        input = gzip(input);
        c.log += "; gzip'd";
      }
    }
    std::string mutated_name = "test_batch.bin";
    if (train) {
      const size_t mutated = c.rng.below(5);
      for (size_t i = 0; i < 5; ++i) {
        const std::string name = "data_batch_" + std::to_string(i + 1) + ".bin";
        write_file(dir + "/" + name, i == mutated ? input : seeds[i % seeds.size()].bytes);
        if (i == mutated) mutated_name = name;
      }
    } else {
      write_file(dir + "/" + mutated_name, input);
    }
    if (!is_seed && c.rng.chance(2)) {
      self_link(dir + "/" + mutated_name);
      c.log += "; then made a symlink to itself";
    }
    h.check(
        c, is_seed, {mutated_name},
        [&] { data::Cifar10(train ? data::Split::train : data::Split::test, dir); }, input);
  });
}

}  // namespace
}  // namespace dtrain::fuzz
