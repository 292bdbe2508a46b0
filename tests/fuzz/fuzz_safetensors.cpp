// Fuzz.Safetensors: load_safetensors on mutated files. Besides byte-level mutations, about half the
// cases edit the JSON header as JSON (extreme dims and offsets, odd dtypes, names and metadata) and
// write it back with a correct length, so the checks behind the JSON parser are reached too.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/io/safetensors.h"
#include "fuzz_util.h"

namespace dtrain::fuzz {
namespace {

using ordered_json = nlohmann::ordered_json;

// A JSON number or other value that a dim or an offset should not be.
ordered_json odd_number(Rng& rng, uint64_t data_size) {
  switch (rng.below(6)) {
    case 0:
      return -static_cast<int64_t>(rng.below(3)) - 1;
    case 1:
      return 1.5;
    case 2:
      return rng.chance(50) ? ordered_json("2") : ordered_json(nullptr);
    case 3:
      return data_size + rng.below(3);
    default:
      return rng.pick(extreme_values());
  }
}

// One edit of the header's JSON; appends what it did to `log`. Returns the header text.
std::string mutate_header(ordered_json header, uint64_t data_size, Rng& rng, std::string& log) {
  std::vector<std::string> names;
  for (const auto& [name, value] : header.items()) {
    if (name != "__metadata__") names.push_back(name);
  }
  const size_t op = rng.below(names.empty() ? 3 : 10);
  if (op == 0) {  // metadata that is not an object of strings
    static const std::vector<ordered_json> odd = {
        ordered_json::array(), 7, "x", {{"k", 1}}, {{"k", {{"n", "v"}}}}, {{"\x7f", "\x01"}}};
    header["__metadata__"] = rng.pick(odd);
    log = "header: odd __metadata__";
  } else if (op == 1) {  // a tensor that is not there in the data
    header["extra"] = {
        {"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {data_size, data_size + 4}}};
    log = "header: extra tensor past the data";
  } else if (op == 2) {  // the header is not an object
    static const std::vector<ordered_json> odd = {ordered_json::array(), nullptr, 0, "str", {1, 2}};
    header = rng.pick(odd);
    log = "header: not an object";
  } else {
    const std::string name = rng.pick(names);
    ordered_json& e = header[name];
    switch (op) {
      case 3: {
        static const std::vector<ordered_json> odd = {"U8", "BOOL", "F8_E4M3", "f32",
                                                      "",   7,      nullptr,   "F32\x7f"};
        e["dtype"] = rng.pick(odd);
        log = "header: odd dtype of " + name;
        break;
      }
      case 4:
        if (!e["shape"].is_array() || e["shape"].empty() || rng.chance(30)) {
          e["shape"].push_back(odd_number(rng, data_size));
        } else {
          e["shape"][rng.below(e["shape"].size())] = odd_number(rng, data_size);
        }
        log = "header: odd dim of " + name;
        break;
      case 5:
        e["data_offsets"][rng.below(2)] = odd_number(rng, data_size);
        log = "header: odd data_offsets of " + name;
        break;
      case 6: {
        static const std::vector<ordered_json> odd = {
            ordered_json::array(), {0}, {0, 4, 8}, "0,4", nullptr};
        e["data_offsets"] = rng.pick(odd);
        log = "header: data_offsets not a pair in " + name;
        break;
      }
      case 7:
        e.erase(rng.pick(std::vector<std::string>{"dtype", "shape", "data_offsets"}));
        log = "header: a field of " + name + " removed";
        break;
      case 8: {
        static const std::vector<ordered_json> odd = {ordered_json::array(), 0, "F32", nullptr};
        e = rng.pick(odd);
        log = "header: entry " + name + " not an object";
        break;
      }
      default: {  // rename: to a name with control characters, an empty one, or a duplicate
        ordered_json value = e;
        header.erase(name);
        static const std::vector<std::string> odd = {
            "", "__metadata__", "a\nb", "tab\there", "del\x7f", std::string(300, 'n')};
        const std::string renamed = rng.pick(odd);
        header[renamed] = value;
        log = "header: " + name + " renamed";
        std::string text = header.dump();
        if (rng.chance(40) &&
            !names.empty()) {  // the same key twice, which ordered_json cannot hold
          text.insert(1, ordered_json(rng.pick(names)).dump() + ":" + value.dump() + ",");
          log += ", and a duplicate key";
        }
        return text;
      }
    }
  }
  return header.dump();
}

std::string with_length(const std::string& header_text, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header_text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header_text + data;
}

TEST(Fuzz, Safetensors) {
  Harness h("Safetensors", 0x5afe7e5015ull);
  const std::vector<Seed> seeds = read_corpus("safetensors");
  ASSERT_FALSE(seeds.empty());
  const std::string path = h.path("fuzz.safetensors");
  // The 8-byte header length (and its halves), where length arithmetic lives.
  const MutationHints hints{{{0, 8, false}, {0, 4, false}, {4, 4, false}, {0, 1, false}},
                            json_tokens()};

  h.run(6000, [&](Case& c) {
    const bool is_seed = c.index < seeds.size();
    const Seed& seed = is_seed ? seeds[c.index] : c.rng.pick(seeds);
    std::string input = seed.bytes;
    if (!is_seed) {
      if (c.rng.chance(50)) {
        uint64_t len = 0;
        for (int i = 7; i >= 0; --i) len = len << 8 | static_cast<unsigned char>(input[i]);
        const std::string data = input.substr(8 + len);
        input = with_length(
            mutate_header(ordered_json::parse(input.substr(8, len)), data.size(), c.rng, c.log),
            data);
      }
      if (c.log.empty() || c.rng.chance(30))
        input = mutate(input, c.rng, c.rng.pick(seeds).bytes, hints, c.log);
    }
    write_file(path, input);
    h.check(
        c, is_seed, {path}, [&] { load_safetensors(path); }, input);
  });
}

}  // namespace
}  // namespace dtrain::fuzz
