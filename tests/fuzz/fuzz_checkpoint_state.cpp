// Fuzz.CheckpointState: a checkpoint's state.json as `--resume` reads it: Checkpoint::json, then the
// launch layer's field checks (parse_train_state). Byte mutations mostly test the JSON loading; the
// other cases edit the JSON as JSON (odd values, missing and renamed keys) so the field checks run. A
// few replace state.json by a symbolic link to itself.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/io/checkpoint.h"
#include "fuzz_util.h"
#include "launch/train_state.h"

namespace dtrain::fuzz {
namespace {

using json = nlohmann::json;

// Values a state field should not hold: negative, fractional, too large, of another type, or text
// with characters a one-line message must not carry raw.
json odd_value(Rng& rng) {
  // clang-format off
  static const std::vector<json> odd = {
      -1, 0, 1.5, 1e308, -0.0, 9223372036854775807ll, 18446744073709551615ull, "x", "", nullptr, true,
      json::array(), json::object(), {0, 0, 0, 0, 0, 0}, {{0, 0, 0, 0, 0, 0}}, {0, 0, 0, 0, 0, -1},
      {0, 0, 0, 0, 0, 0.5}, {{"k", "v"}}, "a\nb", "del\x7f", {{"\n", "x"}}, {{"k", "\x7f"}}, {{"k", 1}},
      {{"epoch", -1}, {"batch", 0}}, std::string(500, 'v')};
  // clang-format on
  return rng.pick(odd);
}

// One edit at a random place in `value`: replace a value, remove or add a key. Returns what it did.
std::string mutate_json(json& value, Rng& rng, const std::string& where = "") {
  const bool container = (value.is_object() || value.is_array()) && !value.empty();
  if (container && rng.chance(70)) {  // go deeper
    const size_t k = rng.below(value.size());
    auto it = value.begin();
    std::advance(it, k);
    const std::string key = value.is_object() ? it.key() : std::to_string(k);
    return mutate_json(*it, rng, where + "/" + key);
  }
  if (value.is_object() && rng.chance(50)) {
    static const std::vector<std::string> keys = {
        "step",      "data", "epoch",        "batch",      "optimizer",
        "scheduler", "rng",  "rng_per_rank", "loss_scale", "loss_scale_clean_steps",
        "settings",  "\x7f", "new\nline"};
    const std::string key = rng.pick(keys);
    if (value.contains(key) && rng.chance(50)) {
      value.erase(key);
      return "remove " + where + "/" + escaped(key);
    }
    value[key] = odd_value(rng);
    return "set " + where + "/" + escaped(key);
  }
  value = odd_value(rng);
  return "replace " + where;
}

TEST(Fuzz, CheckpointState) {
  Harness h("CheckpointState", 0xc4ec4901ull);
  const std::vector<Seed> seeds = read_corpus("checkpoint_state");
  ASSERT_FALSE(seeds.empty());
  const std::string dir = h.fresh_dir("ckpt");
  const std::string path = dir + "/state.json";
  const MutationHints hints{{}, json_tokens()};

  h.run(5000, [&](Case& c) {
    const bool is_seed = c.index < seeds.size();
    std::string input = is_seed ? seeds[c.index].bytes : c.rng.pick(seeds).bytes;
    if (!is_seed) {
      if (c.rng.chance(50)) {
        json value = json::parse(input);
        for (size_t edits = 1 + c.rng.below(2); edits > 0; --edits) {
          c.log += (c.log.empty() ? "" : "; ") + mutate_json(value, c.rng);
        }
        input = value.dump(c.rng.chance(50) ? -1 : 1);
      } else {
        input = mutate(input, c.rng, c.rng.pick(seeds).bytes, hints, c.log);
      }
    }
    write_file(path, input);
    if (!is_seed && c.rng.chance(1)) {
      self_link(path);
      c.log += "; state.json made a symlink to itself";
    }
    // parse_train_state names the checkpoint directory and "state.json"; the loader names the path.
    h.check(
        c, is_seed, {path, dir},
        [&] { launch::parse_train_state(Checkpoint(dir).json("state.json"), dir); }, input);
  });
}

}  // namespace
}  // namespace dtrain::fuzz
