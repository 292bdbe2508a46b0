// Fuzz.Ini: the INI config file of `dtrain train --config FILE`, through parse_train_config. Byte
// mutations break the syntax; line edits put well-formed `option = value` lines with values out of
// range, of the wrong type or too large for the option's integer type, so the range checks run too.
#include <gtest/gtest.h>

#include "core/error.h"
#include "fuzz_util.h"
#include "launch/config.h"

namespace dtrain::fuzz {
namespace {

// Options of each value type (integers of several widths, floats, bools, strings), plus the ones a
// config file may not set and one that does not exist; values out of range, of the wrong type, or
// beyond int64 and uint64.
// clang-format off
const std::vector<std::string> kOptions = {
    "batch-size", "grad-accum", "steps", "epochs", "lr", "min-lr", "dropout", "seq-len", "threads", "zero",
    "bucket-cap-mb", "seed", "log-interval", "collective-timeout", "precision", "augment", "progress", "dim",
    "model", "dataset", "config", "help", "no-such-option"};
const std::vector<std::string> kValues = {
    "-1", "0", "0.5", "1.5", "1e999", "nan", "inf", "-inf", "1e12", "1e13", "2147483648", "4294967296",
    "9223372036854775808", "18446744073709551616", "-9223372036854775809", "abc", "", "true", "yes", "0x10",
    "-0", "1 2", "\"quoted\""};
// clang-format on

// Replaces a random line by `option = value`, or adds one.
std::string edit_line(const std::string& text, Rng& rng, std::string& log) {
  const std::string line = rng.pick(kOptions) + " = " + rng.pick(kValues);
  log += (log.empty() ? "" : "; ") + std::string("line ") + escaped(line);
  size_t start = rng.below(text.size() + 1);
  start = start == 0 ? 0 : text.rfind('\n', start - 1) + 1;  // rfind gives npos (+1 = 0) when none
  if (rng.chance(50)) return text.substr(0, start) + line + "\n" + text.substr(start);
  const size_t end = text.find('\n', start);
  return text.substr(0, start) + line + (end == std::string::npos ? "" : text.substr(end));
}

TEST(Fuzz, Ini) {
  Harness h("Ini", 0x1a1c0f1ull);
  const std::vector<Seed> seeds = read_corpus("ini");
  ASSERT_FALSE(seeds.empty());
  const MutationHints hints{{},
                            {"=", " = ", "\n", "\r\n", "[", "]", "[train]\n", "#", ";", "\"", "\\",
                             std::string(1, '\0'), "\x7f", "\x01", "\xff", "\t", " "}};
  const std::string path = h.path("fuzz.ini");

  h.run(2000, [&](Case& c) {
    const bool is_seed = c.index < seeds.size();
    std::string input = is_seed ? seeds[c.index].bytes : c.rng.pick(seeds).bytes;
    if (!is_seed) {
      if (c.rng.chance(40)) input = edit_line(input, c.rng, c.log);
      if (c.log.empty() || c.rng.chance(20))
        input = mutate(input, c.rng, c.rng.pick(seeds).bytes, hints, c.log);
    }
    write_file(path, input);
    h.check(
        c, is_seed, {path},
        [&] {
          launch::TrainConfig config;
          launch::parse_train_config({"--config", path}, config, "train");
        },
        input);
  });
}

}  // namespace
}  // namespace dtrain::fuzz
