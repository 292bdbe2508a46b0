// Shared pieces of the parser fuzz harnesses (tests/fuzz/fuzz_*.cpp): a seeded PRNG, byte-level
// mutations, the seed corpus, a scratch directory, and the check applied to every case: only a
// dtrain::Error may escape a parser, and its message is one line that names the file.
//
// Replaying: every case draws from its own generator, seeded from the harness seed and the case index,
// so DTRAIN_FUZZ_CASE=<index> runs just that case (and prints its input) exactly as in the full run.
// DTRAIN_FUZZ_STATS=1 prints how often each error message was seen, to show which checks are reached.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace dtrain::fuzz {

// splitmix64 (Steele, Lea, Flood 2014): tiny, and plenty random for choosing mutations.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform enough in [0, n) (the modulo bias is irrelevant here); 0 when n is 0.
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
  bool chance(unsigned percent) { return below(100) < percent; }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }

 private:
  uint64_t state_;
};

// A header field the mutations aim at: `offset` bytes from the start of the input, or from its end
// when negative (a gzip trailer); `width` 1, 2, 4 or 8 bytes.
struct Field {
  int64_t offset;
  int width;
  bool big_endian;
};

// What a harness knows about its format: fields worth overwriting with extreme values, and tokens
// (keywords, separators, odd bytes) worth inserting into text formats.
struct MutationHints {
  std::vector<Field> fields;
  std::vector<std::string> tokens;
};

// Tokens shared by the JSON formats (safetensors header, state.json).
const std::vector<std::string>& json_tokens();

// Values that break size arithmetic: 0, sign and width boundaries, all ones.
const std::vector<uint64_t>& extreme_values();

// One to four random mutations of `data` (bit flips, byte insert/delete/overwrite, truncation,
// splicing with `partner`, chunk duplication, extreme values in hinted fields, token insertion).
// Appends what it did to `log`, for the failure report.
std::string mutate(std::string data, Rng& rng, const std::string& partner,
                   const MutationHints& hints, std::string& log);

// `bytes` gzip'd in memory (one member, no file name), as gzip(1) would write them.
std::string gzip(const std::string& bytes);

// Replaces whatever is at `path` (a file, or a link a previous case left) by a file holding `bytes`.
void write_file(const std::string& path, const std::string& bytes);

// Replaces whatever is at `path` by a symbolic link to itself: opening or stat'ing it fails with
// ELOOP, which std::filesystem's throwing overloads turn into std::filesystem::filesystem_error.
void self_link(const std::string& path);

// A committed seed file: tests/fuzz/corpus/<parser>/<name>.
struct Seed {
  std::string name;
  std::string path;
  std::string bytes;
};
// The seeds of one parser, sorted by name; fails the test when there are none.
std::vector<Seed> read_corpus(const std::string& parser);

// Printable form of bytes or a message: other bytes as \xNN, cut after `limit` bytes.
std::string escaped(const std::string& bytes, size_t limit = 200);

// One fuzz case: its index, its own generator, and a log of what was done to its input.
struct Case {
  size_t index;
  Rng rng;
  std::string log;
};

// Under AddressSanitizer a case costs 5 to 35 times as much (CI's ASan options unwind the stack on
// every allocation), so there a harness runs the first quarter of its cases, the seeds among them.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr size_t kCaseDivisor = 4;
#else
inline constexpr size_t kCaseDivisor = 1;
#endif

// One harness run: a scratch directory, the counts, and the failures grouped by kind.
class Harness {
 public:
  Harness(std::string name, uint64_t seed);
  ~Harness();  // removes the scratch directory
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // A fresh empty subdirectory for directory-shaped inputs (datasets).
  std::string fresh_dir(const std::string& name) const;

  // Calls `one_case` for cases 0..count/kCaseDivisor-1 (or only DTRAIN_FUZZ_CASE), then prints the
  // counts and fails the test if any case failed.
  void run(size_t count, const std::function<void(Case&)>& one_case);

  // Runs `parse` and checks what escapes it: nothing, or a dtrain::Error whose message is one line
  // and contains one of `names` (paths or file names). `must_accept` is for the unmutated seeds.
  // `input` is the mutated bytes, printed when the case fails.
  void check(Case& c, bool must_accept, const std::vector<std::string>& names,
             const std::function<void()>& parse, const std::string& input);

 private:
  void fail(Case& c, const std::string& kind, const std::string& detail, const std::string& input);

  std::string name_;
  uint64_t seed_;
  std::filesystem::path dir_;
  size_t cases_ = 0, rejected_ = 0, accepted_ = 0, other_ = 0;  // other_: non-dtrain exceptions
  bool only_one_ = false;
  // Failures by kind ("std::out_of_range", "message does not name the file", ...): how many, and the
  // report of the first one.
  std::map<std::string, std::pair<size_t, std::string>> failures_;
  std::map<std::string, size_t> messages_;  // rejections by message shape, for DTRAIN_FUZZ_STATS
};

}  // namespace dtrain::fuzz
