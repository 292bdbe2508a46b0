#include "fuzz_util.h"

#include <cxxabi.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <typeinfo>

#include "core/error.h"

namespace dtrain::fuzz {

namespace fs = std::filesystem;

// clang-format off
const std::vector<std::string>& json_tokens() {
  static const std::vector<std::string> tokens = {
      "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u0000", "\\ud800", "\\udfff", "\\u007f", "\x7f", "\x01",
      "\xff", "\xc3\x28", "null", "true", "false", "-", "-0", "0.5", "1e309", "-1e309", "1E+",
      "18446744073709551615", "18446744073709551616", "9223372036854775807", "-9223372036854775809",
      "NaN", "Infinity", " ", "\t", "\n", "/*", "\"\":", "[[[[[[[[", "{\"a\":"};
  return tokens;
}

const std::vector<uint64_t>& extreme_values() {
  static const std::vector<uint64_t> values = {
      0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
      0x100000000ull, 0x7fffffffffffffffull, 0x8000000000000000ull, 0xffffffffffffffffull};
  return values;
}
// clang-format on

namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Writes the low `width` bytes of `value` at `at` (already checked to fit).
void put(std::string& data, size_t at, int width, bool big_endian, uint64_t value) {
  for (int i = 0; i < width; ++i) {
    const int shift = 8 * (big_endian ? width - 1 - i : i);
    data[at + i] = static_cast<char>((value >> shift) & 0xff);
  }
}

std::string random_bytes(Rng& rng, size_t n) {
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng.next());
  return out;
}

// A value for a field: extreme, near the input's size (which length checks compare against), or random.
uint64_t field_value(Rng& rng, size_t input_size) {
  switch (rng.below(4)) {
    case 0:
      return input_size + rng.below(3) - 1;
    case 1:
      return rng.next();
    default:
      return rng.pick(extreme_values());
  }
}

// One mutation; returns what it did.
std::string mutate_once(std::string& data, Rng& rng, const std::string& partner,
                        const MutationHints& hints) {
  const size_t n = data.size();
  const size_t op = rng.below(hints.tokens.empty() ? 10 : 12);
  switch (op) {
    case 0: {  // flip one bit
      if (n == 0) break;
      const size_t at = rng.below(n), bit = rng.below(8);
      data[at] = static_cast<char>(data[at] ^ (1 << bit));
      return "flip bit " + std::to_string(bit) + " @" + std::to_string(at);
    }
    case 1: {  // overwrite one byte with an odd value
      if (n == 0) break;
      static const unsigned char odd[] = {0x00, 0xff, 0x7f, 0x80, '\n', '\r', '\t', ' ', '0', '9'};
      const size_t at = rng.below(n);
      data[at] = static_cast<char>(rng.chance(50) ? odd[rng.below(sizeof odd)] : rng.next());
      return "set byte @" + std::to_string(at);
    }
    case 2: {  // insert a few random bytes, or a run of one byte
      const size_t at = rng.below(n + 1), len = 1 + rng.below(rng.chance(80) ? 8 : 256);
      data.insert(at, rng.chance(50) ? random_bytes(rng, len)
                                     : std::string(len, static_cast<char>(rng.next())));
      return "insert " + std::to_string(len) + " @" + std::to_string(at);
    }
    case 3: {  // delete a range
      if (n == 0) break;
      const size_t at = rng.below(n),
                   len = 1 + rng.below(std::min<size_t>(n - at, rng.chance(70) ? 8 : n));
      data.erase(at, len);
      return "delete " + std::to_string(len) + " @" + std::to_string(at);
    }
    case 4: {  // truncate
      const size_t len = rng.below(n + 1);
      data.resize(len);
      return "truncate to " + std::to_string(len);
    }
    case 5: {  // splice: our head, the partner's tail
      const size_t head = rng.below(n + 1), from = rng.below(partner.size() + 1);
      data = data.substr(0, head) + partner.substr(from);
      return "splice " + std::to_string(head) + " + partner from " + std::to_string(from);
    }
    case 6:
    case 7: {  // an extreme value in a hinted field, or in a random place
      Field f{0, 1, false};
      if (!hints.fields.empty() && rng.chance(75)) {
        f = rng.pick(hints.fields);
      } else {
        static const int widths[] = {1, 2, 4, 8};
        f = {static_cast<int64_t>(rng.below(n + 1)), widths[rng.below(4)], rng.chance(50)};
      }
      const int64_t at = f.offset < 0 ? static_cast<int64_t>(n) + f.offset : f.offset;
      if (at < 0 || static_cast<size_t>(at) + f.width > n) break;
      const uint64_t v = field_value(rng, n);
      put(data, static_cast<size_t>(at), f.width, f.big_endian, v);
      return "field @" + std::to_string(at) + " w" + std::to_string(f.width) + " = " +
             std::to_string(v);
    }
    case 8: {  // duplicate a chunk elsewhere
      if (n == 0) break;
      const size_t from = rng.below(n), len = 1 + rng.below(std::min<size_t>(n - from, 64));
      const size_t to = rng.below(n + 1);
      data.insert(to, data.substr(from, len));
      return "duplicate " + std::to_string(len) + " from " + std::to_string(from) + " to " +
             std::to_string(to);
    }
    case 9: {  // overwrite a range with random bytes
      if (n == 0) break;
      const size_t at = rng.below(n), len = 1 + rng.below(std::min<size_t>(n - at, 16));
      data.replace(at, len, random_bytes(rng, len));
      return "scramble " + std::to_string(len) + " @" + std::to_string(at);
    }
    default: {  // insert a token, or put it in place of a few bytes
      const std::string& token = rng.pick(hints.tokens);
      const size_t at = rng.below(n + 1),
                   len = rng.chance(50) ? rng.below(std::min<size_t>(n - at, 8) + 1) : 0;
      data.replace(at, len, token);
      return "token " + escaped(token, 24) + " @" + std::to_string(at) + " over " +
             std::to_string(len);
    }
  }
  return "";  // nothing applicable (empty input): the caller tries again
}

}  // namespace

std::string mutate(std::string data, Rng& rng, const std::string& partner,
                   const MutationHints& hints, std::string& log) {
  const size_t count = 1 + rng.below(rng.chance(70) ? 2 : 4);
  for (size_t done = 0, tries = 0; done < count && tries < 16; ++tries) {
    const std::string what = mutate_once(data, rng, partner, hints);
    if (what.empty()) continue;
    log += (log.empty() ? "" : "; ") + what;
    ++done;
  }
  return data;
}

std::string gzip(const std::string& bytes) {
  z_stream zs{};
  // windowBits 15 + 16: a gzip wrapper around the deflate stream.
  if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    ADD_FAILURE() << "deflateInit2 failed";
    return "";
  }
  std::string out(deflateBound(&zs, bytes.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  EXPECT_EQ(rc, Z_STREAM_END);
  return out;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::error_code ec;
  fs::remove(path, ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  EXPECT_TRUE(out.good()) << "cannot write " << path;
}

void self_link(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
  fs::create_symlink(fs::path(path).filename(), path);
}

std::vector<Seed> read_corpus(const std::string& parser) {
  const fs::path dir = fs::path(DTRAIN_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / parser;
  std::vector<Seed> seeds;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    seeds.push_back({entry.path().filename().string(), entry.path().string(),
                     std::string(std::istreambuf_iterator<char>(in), {})});
  }
  std::sort(seeds.begin(), seeds.end(),
            [](const Seed& a, const Seed& b) { return a.name < b.name; });
  // The callers pick from the seeds: none is a fatal failure there.
  EXPECT_FALSE(seeds.empty()) << "no seed files in " << dir << " (run tests/fuzz/make_corpus.py)";
  return seeds;
}

std::string escaped(const std::string& bytes, size_t limit) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    }
  }
  if (bytes.size() > limit) out += "... (" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

Harness::Harness(std::string name, uint64_t seed) : name_(std::move(name)), seed_(seed) {
  dir_ = fs::temp_directory_path() / ("dtrain-fuzz-" + std::to_string(::getpid()) + "-" + name_);
  fs::remove_all(dir_);
  fs::create_directories(dir_);
}

Harness::~Harness() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string Harness::fresh_dir(const std::string& name) const {
  const fs::path p = dir_ / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

void Harness::run(size_t count, const std::function<void(Case&)>& one_case) {
  const auto start = std::chrono::steady_clock::now();
  const char* only = std::getenv("DTRAIN_FUZZ_CASE");
  only_one_ = only != nullptr;
  count /= kCaseDivisor;
  for (size_t i = 0; i < count; ++i) {
    if (only_one_ && std::strtoull(only, nullptr, 10) != i) continue;
    // Each case seeds its own generator, so one case replays without running those before it.
    Rng mix(seed_ ^ (0x632be59bd9b4e019ull * (i + 1)));
    Case c{i, Rng(mix.next()), ""};
    one_case(c);
    if (::testing::Test::HasFatalFailure()) return;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "Fuzz." << name_ << ": " << cases_ << " cases, " << rejected_
            << " rejected with dtrain::Error, " << accepted_ << " accepted";
  if (other_ > 0) std::cout << ", " << other_ << " threw another exception";
  if (kCaseDivisor > 1) std::cout << " [1/" << kCaseDivisor << " of the cases: sanitizer build]";
  std::cout << " (seed " << hex(seed_) << ", " << static_cast<int>(seconds * 1000) << " ms)"
            << std::endl;
  if (std::getenv("DTRAIN_FUZZ_STATS")) {
    for (const auto& [shape, n] : messages_) std::cout << "  " << n << " x " << shape << "\n";
  }
  // The first case of each kind of failure; a mutated input can hit many kinds, so the list is cut.
  size_t failed = 0, shown = 0;
  for (const auto& [kind, what] : failures_) {
    failed += what.first;
    if (++shown > 15) continue;
    ADD_FAILURE() << "Fuzz." << name_ << ": " << what.first << " case(s) failed with: " << kind
                  << "\n  first one: " << what.second;
  }
  if (shown > 15)
    ADD_FAILURE() << "Fuzz." << name_ << ": " << shown - 15 << " more kinds of failure";
  EXPECT_EQ(failed, 0u) << "Fuzz." << name_ << ": replay one case with DTRAIN_FUZZ_CASE=<case>";
}

void Harness::fail(Case& c, const std::string& kind, const std::string& detail,
                   const std::string& input) {
  auto& [count, first] = failures_[kind];
  if (count++ == 0 || only_one_) {
    first = "case " + std::to_string(c.index) + " (harness seed " + hex(seed_) + "): " + detail +
            "\n  mutations: " + (c.log.empty() ? "none (a seed)" : c.log) +
            "\n  input: " + escaped(input, only_one_ ? 100000 : 200);
  }
}

namespace {

std::string type_name(const std::type_info& t) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(
      abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), std::free);
  return status == 0 ? name.get() : t.name();
}

// Where a message was thrown, to group failures by: its text up to the first quote or ", got" (what
// follows is the input's bytes, which vary from case to case), with digit runs (paths, line numbers)
// as '#'.
std::string message_shape(const std::string& message) {
  std::string out;
  for (size_t i = 0; i < message.size() && out.size() < 110; ++i) {
    const char c = message[i];
    if (c == '"' || c == '\'' || message.compare(i, 5, ", got") == 0) break;
    if (c >= '0' && c <= '9') {
      if (out.empty() || out.back() != '#') out.push_back('#');
    } else {
      out.push_back(c);
    }
  }
  return escaped(out);
}

}  // namespace

void Harness::check(Case& c, bool must_accept, const std::vector<std::string>& names,
                    const std::function<void()>& parse, const std::string& input) {
  ++cases_;
  try {
    parse();
  } catch (const Error& e) {
    ++rejected_;
    const std::string msg = e.what();
    ++messages_[message_shape(msg)];
    if (must_accept) return fail(c, "a seed was rejected", "message: " + escaped(msg, 400), input);
    for (char ch : msg) {
      const auto u = static_cast<unsigned char>(ch);
      if (u < 0x20 || u == 0x7f) {
        return fail(c,
                    (ch == '\n' ? "multi-line message: " : "raw control character in message: ") +
                        message_shape(msg),
                    "message: " + escaped(msg, 400), input);
      }
    }
    const bool named = std::any_of(names.begin(), names.end(), [&](const std::string& n) {
      return msg.find(n) != std::string::npos;
    });
    if (!named) {
      std::string expected;
      for (const auto& n : names) expected += (expected.empty() ? "" : " or ") + n;
      return fail(c, "message does not name the file: " + message_shape(msg),
                  "message: " + escaped(msg, 400) + " (expected it to contain " + expected + ")",
                  input);
    }
    if (only_one_) std::cout << "case " << c.index << ": dtrain::Error: " << msg << std::endl;
    return;
  } catch (const std::exception& e) {
    ++other_;
    return fail(c, "non-dtrain exception " + type_name(typeid(e)),
                "what(): " + escaped(e.what(), 400), input);
  } catch (...) {
    ++other_;
    return fail(c, "exception not derived from std::exception", "", input);
  }
  ++accepted_;
  if (only_one_) std::cout << "case " << c.index << ": accepted" << std::endl;
}

}  // namespace dtrain::fuzz
