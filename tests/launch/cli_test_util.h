// Helpers for tests that run the dtrain program as a child process (tests/launch): running it through
// the shell with stdout and stderr captured, a small Fashion-MNIST look-alike for --data-dir, a tiny
// ViT's options, and checks on errors, metrics files and checkpoints.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/io/safetensors.h"

namespace dtrain::cli_test {

namespace fs = std::filesystem;

inline const std::string kDtrain = DTRAIN_BINARY_DIR "/dtrain";

struct RunResult {
  int exit_code = -1;  // the child's exit status; 128 + signal when a signal ended it
  std::string out, err;
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_text(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

inline void write_gzip(const fs::path& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

inline int count_lines(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
  return n;
}

// The eval line of `dtrain eval` ("eval RUN: accuracy ... loss ..."), or a note with the output.
inline std::string eval_line(const RunResult& r) {
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("eval ")) return line;
  }
  return "(no eval line in: " + r.out + r.err + ")";
}

// An IDX file's bytes: 0 0 type ndims, the sizes as u32 big-endian, then the payload.
inline std::string idx_bytes(uint8_t type, const std::vector<uint32_t>& dims,
                             const std::string& payload) {
  std::string out = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8)
      out.push_back(static_cast<char>((d >> shift) & 0xff));
  }
  return out + payload;
}

inline std::string image_payload(uint32_t n) {
  // Each image a faint class-dependent stripe plus noise: any bytes would do for these tests.
  std::string p(static_cast<size_t>(n) * 28 * 28, '\0');
  uint32_t state = 12345;
  for (size_t i = 0; i < p.size(); ++i) {
    state = state * 1664525u + 1013904223u;
    const size_t image = i / (28 * 28), row = (i / 28) % 28;
    p[i] = static_cast<char>((state >> 24) / 2 + (row == image % 10 * 2 ? 120 : 0));
  }
  return p;
}

inline std::string label_payload(uint32_t n) {
  std::string p;
  for (uint32_t i = 0; i < n; ++i) p.push_back(static_cast<char>(i % 10));
  return p;
}

// The four files of a Fashion-MNIST directory, uncompressed (the reader takes either form).
inline void write_fashion_mnist(const fs::path& dir, uint32_t n_train, uint32_t n_test) {
  fs::create_directories(dir);
  write_text(dir / "train-images-idx3-ubyte",
             idx_bytes(0x08, {n_train, 28, 28}, image_payload(n_train)));
  write_text(dir / "train-labels-idx1-ubyte", idx_bytes(0x08, {n_train}, label_payload(n_train)));
  write_text(dir / "t10k-images-idx3-ubyte",
             idx_bytes(0x08, {n_test, 28, 28}, image_payload(n_test)));
  write_text(dir / "t10k-labels-idx1-ubyte", idx_bytes(0x08, {n_test}, label_payload(n_test)));
}

// A ViT small enough that a step takes milliseconds: one block of width 16 on 7x7 patches.
inline const std::vector<std::string> kTinyVit = {
    "--depth",        "1",  "--dim",     "16", "--heads",      "2",
    "--mlp-dim",      "32", "--patch",   "7",  "--batch-size", "16",
    "--eval-batches", "1",  "--threads", "1",  "--progress",   "0"};

// Runs `command` (a shell command line) with stdout and stderr captured to files in `capture_dir`.
inline RunResult run_shell(const std::string& command, const fs::path& capture_dir) {
  const fs::path out = capture_dir / "stdout.txt", err = capture_dir / "stderr.txt";
  const std::string full =
      command + " >" + shell_quote(out) + " 2>" + shell_quote(err) + " </dev/null";
  const int status = std::system(full.c_str());
  RunResult r;
  if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (status != -1 && WIFSIGNALED(status)) r.exit_code = 128 + WTERMSIG(status);
  r.out = read_text(out);
  r.err = read_text(err);
  return r;
}

// A fixture with a fresh temporary directory per test, and the dtrain program to run.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kDtrain)) << kDtrain << " is missing: build the dtrain target first";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ =
        fs::temp_directory_path() / ("dtrain-" + std::string(info->test_suite_name()) + "-" +
                                     std::string(info->name()) + "-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  // Runs `prefix dtrain args...` through the shell with stdout and stderr captured to files.
  RunResult run(const std::vector<std::string>& args, const std::string& prefix = "") {
    std::string command = prefix + shell_quote(kDtrain);
    for (const std::string& a : args) command += " " + shell_quote(a);
    return run_shell(command, dir_);
  }

  RunResult train(std::vector<std::string> args) {
    args.insert(args.begin(), "train");
    return run(args);
  }

  // kTinyVit on a generated data set in dir_/data (created on first use), plus `args`.
  RunResult train_tiny_vit(const std::vector<std::string>& args) {
    ensure_data();
    std::vector<std::string> all = {"--data-dir", data_dir().string()};
    all.insert(all.end(), kTinyVit.begin(), kTinyVit.end());
    all.insert(all.end(), args.begin(), args.end());
    return train(all);
  }

  void ensure_data() {
    if (!fs::exists(data_dir())) write_fashion_mnist(data_dir(), 192, 32);
  }
  fs::path data_dir() const { return dir_ / "data"; }

  // `dtrain eval` of the whole split of the run in `run_dir` gives the same eval line (holding
  // `metric`) in batches of 16 and of 5, and on two ranks where there is an mpiexec: its metrics are
  // sums over samples, not means of per-batch figures.
  void expect_eval_independent_of_batching(const fs::path& run_dir, const std::string& metric);

  fs::path dir_;
};

// mpiexec: the one CMake found (MPIEXEC_EXECUTABLE in the build's CMakeCache.txt), else the first
// mpiexec or mpirun on PATH; empty where there is none.
inline bool is_executable(const std::string& path) {
  return !path.empty() && ::access(path.c_str(), X_OK) == 0;
}

// CMake's choice first (FindMPI caches it in the build directory), then PATH.
inline const std::string& mpiexec() {
  static const std::string found = [] {
    std::ifstream cache(DTRAIN_BINARY_DIR "/CMakeCache.txt");
    for (std::string line; std::getline(cache, line);) {
      if (line.starts_with("MPIEXEC_EXECUTABLE:")) {
        std::string value = line.substr(line.find('=') + 1);
        if (is_executable(value)) return value;
      }
    }
    const char* path = std::getenv("PATH");
    for (const char* name : {"mpiexec", "mpirun"}) {
      std::istringstream dirs(path ? path : "");
      for (std::string dir; std::getline(dirs, dir, ':');) {
        if (!dir.empty() && is_executable(dir + "/" + name)) return dir + "/" + name;
      }
    }
    return std::string();
  }();
  return found;
}

#define REQUIRE_MPIEXEC()                                                          \
  do {                                                                             \
    if (mpiexec().empty())                                                         \
      GTEST_SKIP() << "no mpiexec: not in the build's CMakeCache.txt nor on PATH"; \
  } while (0)

inline std::string mpi_prefix(int np) {
  return shell_quote(mpiexec()) + " --allow-run-as-root --oversubscribe -np " + std::to_string(np) +
         " ";
}

inline void CliTest::expect_eval_independent_of_batching(const fs::path& run_dir,
                                                         const std::string& metric) {
  auto eval = [&](const std::string& batch_size, const std::string& prefix) {
    return eval_line(run({"eval", "--resume", run_dir.string(), "--eval-batches", "0",
                          "--batch-size", batch_size, "--threads", "1"},
                         prefix));
  };
  const std::string whole = eval("16", "");
  EXPECT_NE(whole.find(metric + " "), std::string::npos) << whole;
  EXPECT_EQ(eval("5", ""), whole);
  if (!mpiexec().empty()) {
    EXPECT_EQ(eval("5", mpi_prefix(2)), whole);
  }
}

// What every failure must look like: a non-zero exit and exactly one line on stderr, the
// "dtrain <subcommand>: error: ..." that main prints, naming what was wrong.
inline void expect_one_line_error(const RunResult& r, const std::vector<std::string>& mentions,
                                  const std::string& subcommand = "train") {
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr:\n" << r.err;
  EXPECT_TRUE(r.err.ends_with("\n")) << r.err;
  EXPECT_TRUE(r.err.starts_with("dtrain " + subcommand + ": error: ")) << r.err;
  for (const std::string& m : mentions) {
    EXPECT_NE(r.err.find(m), std::string::npos) << "no '" << m << "' in: " << r.err;
  }
}

inline std::vector<nlohmann::json> read_jsonl(const fs::path& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << path << ": not JSON: " << line;
    if (nlohmann::json::accept(line)) records.push_back(nlohmann::json::parse(line));
  }
  return records;
}

// The records of a metrics file whose split is "eval", in order.
inline std::vector<nlohmann::json> eval_records(const fs::path& path) {
  std::vector<nlohmann::json> evals;
  for (const nlohmann::json& record : read_jsonl(path)) {
    if (record.value("split", "") == "eval") evals.push_back(record);
  }
  return evals;
}

// The loss of a run's first training record (no "split"; `--log-interval 1`: step 1's), or NaN.
inline double first_train_loss(const fs::path& metrics) {
  for (const nlohmann::json& record : read_jsonl(metrics)) {
    if (!record.contains("split") && record.contains("loss")) return record["loss"].get<double>();
  }
  return std::nan("");
}

// A short run learnt: the last eval record's loss is below `fraction` of the first one's.
inline void expect_loss_falls(const std::vector<nlohmann::json>& evals, double fraction) {
  ASSERT_GE(evals.size(), 2u);
  const double first = evals.front()["loss"].get<double>(),
               last = evals.back()["loss"].get<double>();
  EXPECT_LT(last, fraction * first) << "first eval loss " << first << ", last " << last;
}

inline std::set<std::string> keys_of(const nlohmann::json& record) {
  std::set<std::string> keys;
  for (auto it = record.begin(); it != record.end(); ++it) keys.insert(it.key());
  return keys;
}

// Every tensor of two safetensors files: same names in the same order, same dtype and shape, same bytes.
inline void expect_bitwise_equal(const fs::path& a_path, const fs::path& b_path) {
  SafetensorsFile a = load_safetensors(a_path), b = load_safetensors(b_path);
  ASSERT_EQ(a.names(), b.names()) << a_path << " vs " << b_path;
  for (const auto& [name, ta] : a.tensors()) {
    const Tensor& tb = b.at(name);
    ASSERT_EQ(ta.dtype(), tb.dtype()) << name;
    ASSERT_EQ(ta.shape(), tb.shape()) << name;
    const size_t bytes = static_cast<size_t>(ta.numel()) * dtype_size(ta.dtype());
    EXPECT_EQ(std::memcmp(ta.raw_data(), tb.raw_data(), bytes), 0) << name << " differs";
  }
}

inline bool any_tensor_differs(const fs::path& a_path, const fs::path& b_path) {
  SafetensorsFile a = load_safetensors(a_path), b = load_safetensors(b_path);
  for (const auto& [name, ta] : a.tensors()) {
    const size_t bytes = static_cast<size_t>(ta.numel()) * dtype_size(ta.dtype());
    if (std::memcmp(ta.raw_data(), b.at(name).raw_data(), bytes) != 0) return true;
  }
  return false;
}

}  // namespace dtrain::cli_test
