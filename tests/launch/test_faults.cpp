// Faults seen from outside: the real `dtrain train` under mpiexec (or alone), on the tiny Fashion-MNIST
// look-alike of cli_test_util.h, is killed, stopped, given ranks that disagree, given bad values, or
// pointed at a user's directory, and must fail cleanly: a non-zero exit in bounded time, one line on
// stderr, a loadable checkpoint, no user file deleted, no stale temporaries.
//
// mpiexec is the one CMake found (MPIEXEC_EXECUTABLE in the build's CMakeCache.txt), else the first
// mpiexec or mpirun on PATH; the tests that need it skip, saying so, where there is none. Every child
// runs under a time limit, so a hang fails its test instead of stalling the suite.
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <cstdio>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "launch/cli_test_util.h"

using namespace dtrain::cli_test;

namespace {

using Clock = std::chrono::steady_clock;
using Options = std::vector<std::pair<std::string, std::string>>;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One OpenMP/OpenBLAS thread per rank: the machines that run these tests have two cores.
const std::string kEnv = "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1; ";

std::string dtrain_command(const std::string& subcommand, const std::vector<std::string>& args) {
  std::string command = shell_quote(kDtrain) + " " + subcommand;
  for (const std::string& a : args) command += " " + shell_quote(a);
  return command;
}

// `base` with each of `options` set: an option already in `base` loses its old value, and every given
// one goes last as a single `--name=value` token (so that values like -5 are not taken for options).
std::vector<std::string> with_options(std::vector<std::string> base, const Options& options) {
  for (const auto& [name, value] : options) {
    auto it = std::find(base.begin(), base.end(), name);
    if (it != base.end()) base.erase(it, std::min(it + 2, base.end()));
    base.push_back(name + "=" + value);
  }
  return base;
}

std::vector<std::string> lines_starting_with(const std::string& text, const std::string& prefix) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(prefix)) lines.push_back(line);
  }
  return lines;
}

// `value` as a number of its own in `text` (not part of a longer number; trailing zeros allowed after
// a decimal point, so 0.5 matches "0.50").
bool mentions_number(const std::string& text, const std::string& value) {
  std::string escaped;
  for (char c : value)
    escaped += (c == '.' || c == '+' || c == '-') ? std::string("\\") + c : std::string(1, c);
  const std::string tail = value.find('.') != std::string::npos ? "0*" : "";
  return std::regex_search(text, std::regex("(^|[^0-9.])" + escaped + tail + "([^0-9]|$)"));
}

// Signs of a crash or of memory corruption in a child's output.
void expect_no_crash_output(const std::string& text) {
  for (const char* sign :
       {"AddressSanitizer", "double free", "corrupted", "free(): ", "malloc(): ", "munmap_chunk",
        "Segmentation fault", "stack smashing", "terminate called"}) {
    EXPECT_EQ(text.find(sign), std::string::npos) << "'" << sign << "' in the output:\n" << text;
  }
}

// A failure as the user must see it: a non-zero exit (not a time-out, not a signal), exactly one line
// on stderr from dtrain (lines that do not start with "dtrain", such as Open MPI's banners, are not
// counted), and that line names everything in `mentions`. Returns the line.
std::string expect_one_dtrain_line(const RunResult& r, const std::vector<std::string>& mentions) {
  EXPECT_NE(r.exit_code, 0) << "the run succeeded; stdout:\n" << r.out << "stderr:\n" << r.err;
  EXPECT_NE(r.exit_code, 124) << "the run hung and was ended by `timeout`:\n" << r.err;
  EXPECT_LT(r.exit_code, 128) << "the run died of signal " << r.exit_code - 128 << ":\n" << r.err;
  expect_no_crash_output(r.out + r.err);
  const std::vector<std::string> lines = lines_starting_with(r.err, "dtrain");
  EXPECT_EQ(lines.size(), 1u) << "stderr:\n" << r.err;
  const std::string line = lines.empty() ? std::string() : lines.front();
  for (const std::string& m : mentions) {
    EXPECT_NE(line.find(m), std::string::npos) << "no '" << m << "' in: " << line << "\nstderr:\n"
                                               << r.err;
  }
  return line;
}

// ---- children in the background, to be killed or stopped while they run

// Starts `command` under /bin/sh in a process group of its own, stdout and stderr to the given files.
pid_t start_background(const std::string& command, const fs::path& out, const fs::path& err) {
  const std::string out_path = out.string(), err_path = err.string();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    const int in_fd = ::open("/dev/null", O_RDONLY);
    const int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in_fd < 0 || out_fd < 0 || err_fd < 0) ::_exit(126);
    ::dup2(in_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  if (pid > 0) ::setpgid(pid, pid);
  return pid;
}

std::string read_proc(pid_t pid, const char* what) {
  return read_text("/proc/" + std::to_string(pid) + "/" + what);
}

// Every process below `root` in the process tree (mpiexec may put its ranks in process groups of
// their own, so the tree, not the group, finds them).
std::vector<pid_t> descendants(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = read_text(entry.path() / "stat");  // pid (comm) state ppid ...
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    pid_t ppid = 0;
    if (rest >> state >> ppid) children.emplace(ppid, static_cast<pid_t>(std::stol(name)));
  }
  std::vector<pid_t> out, todo = {root};
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    auto [first, last] = children.equal_range(p);
    for (auto it = first; it != last; ++it) {
      out.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return out;
}

bool is_dtrain_process(pid_t pid) {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  return !ec && exe.filename().string().starts_with("dtrain");
}

// The dtrain processes below `root`, by their MPI rank (OMPI_COMM_WORLD_RANK in their environment).
std::map<int, pid_t> ranks_below(pid_t root) {
  std::map<int, pid_t> ranks;
  for (pid_t p : descendants(root)) {
    if (!is_dtrain_process(p)) continue;
    std::string env = read_proc(p, "environ");
    std::replace(env.begin(), env.end(), '\0', '\n');
    std::smatch m;
    if (std::regex_search(env, m, std::regex("(^|\\n)OMPI_COMM_WORLD_RANK=([0-9]+)"))) {
      ranks[std::stoi(m[2])] = p;
    }
  }
  return ranks;
}

// Waits up to `seconds` for `pid` to end; its exit code (128 + signal when a signal ended it), or none.
std::optional<int> wait_for_exit(pid_t pid, double seconds) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    int status = 0;
    const pid_t got = ::waitpid(pid, &status, WNOHANG);
    if (got == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (got < 0) return -1;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// A background job that is always ended and reaped, even when an assertion returns early: SIGKILL to
// the whole tree (and to any rank seen earlier, which mpiexec's death may have orphaned).
class BackgroundJob {
 public:
  BackgroundJob(const std::string& command, const fs::path& out, const fs::path& err)
      : pid_(start_background(command, out, err)) {}
  ~BackgroundJob() { kill_all(); }
  BackgroundJob(const BackgroundJob&) = delete;
  BackgroundJob& operator=(const BackgroundJob&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    if (reaped_) return false;
    int status = 0;
    const pid_t got = ::waitpid(pid_, &status, WNOHANG);
    if (got == 0) return true;
    reaped_ = true;
    exit_code_ = got == pid_ && WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  std::optional<int> wait(double seconds) {
    if (reaped_) return exit_code_;
    std::optional<int> code = wait_for_exit(pid_, seconds);
    if (code) reaped_ = true, exit_code_ = *code;
    return code;
  }
  void remember(pid_t rank) { ranks_.push_back(rank); }

  // SIGKILL now to the processes already known (the ranks remembered, the root and its group),
  // without first scanning /proc; then kill_all() for anything else.
  void kill_now() {
    for (pid_t p : ranks_) ::kill(p, SIGKILL);
    if (!reaped_) {
      ::kill(pid_, SIGKILL);
      ::kill(-pid_, SIGKILL);
    }
    kill_all();
  }

  // SIGKILL to every process of the job at once (collected before any dies, so none is orphaned
  // unseen), then reaps the job's root.
  void kill_all() {
    std::vector<pid_t> all = reaped_ ? std::vector<pid_t>{} : descendants(pid_);
    for (pid_t p : ranks_) {
      if (is_dtrain_process(p)) all.push_back(p);
    }
    for (pid_t p : all) ::kill(p, SIGKILL);
    if (!reaped_) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      wait(30);
    }
    // The ranks were children of mpiexec: once it is gone, init reaps them. Wait for that, so that
    // whatever runs next sees them dead (a zombie still has its pid).
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    for (pid_t p : all) {
      while (fs::exists("/proc/" + std::to_string(p)) && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
  }

 private:
  pid_t pid_;
  bool reaped_ = false;
  int exit_code_ = -1;
  std::vector<pid_t> ranks_;
};

// The entries of run directory `run` (--checkpoint-dir): its step-N checkpoints, best/, and the
// temporaries `<name>.tmp-<pid>` of writes in progress or cut short; sorted.
std::vector<std::string> checkpoint_entries(const fs::path& run) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(".")) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> temporaries_of(const fs::path& run) {
  std::vector<std::string> out;
  for (const std::string& name : checkpoint_entries(run)) {
    if (name.find(".tmp-") != std::string::npos) out.push_back(name);
  }
  return out;
}

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : sep) + s;
  return out.empty() ? "nothing" : out;
}

// The newest step a run directory's checkpoints hold (their state.json); -1 when none is readable.
int64_t saved_step(const fs::path& run) {
  int64_t newest = -1;
  for (const std::string& name : checkpoint_entries(run)) {
    if (!name.starts_with("step-") || name.find('.') != std::string::npos) continue;
    const std::string text = read_text(run / name / "state.json");
    if (!nlohmann::json::accept(text)) continue;
    const nlohmann::json state = nlohmann::json::parse(text);
    if (state.contains("step") && state["step"].is_number_integer()) {
      newest = std::max(newest, state["step"].get<int64_t>());
    }
  }
  return newest;
}

// The names of the tensors whose bytes (or dtype, or shape) differ between two safetensors files; a
// tensor in only one of them counts too.
std::vector<std::string> tensors_that_differ(const fs::path& a_path, const fs::path& b_path) {
  dtrain::SafetensorsFile a = dtrain::load_safetensors(a_path),
                          b = dtrain::load_safetensors(b_path);
  std::map<std::string, const dtrain::Tensor*> in_b;
  for (const auto& [name, tb] : b.tensors()) in_b[name] = &tb;
  std::vector<std::string> out;
  for (const auto& [name, ta] : a.tensors()) {
    auto it = in_b.find(name);
    if (it == in_b.end()) {
      out.push_back(name + " (only in " + a_path.string() + ")");
      continue;
    }
    const dtrain::Tensor& tb = *it->second;
    in_b.erase(it);
    const size_t bytes = static_cast<size_t>(ta.numel()) * dtrain::dtype_size(ta.dtype());
    if (ta.dtype() != tb.dtype() || ta.shape() != tb.shape() ||
        std::memcmp(ta.raw_data(), tb.raw_data(), bytes) != 0) {
      out.push_back(name);
    }
  }
  for (const auto& [name, tb] : in_b) out.push_back(name + " (only in " + b_path.string() + ")");
  return out;
}

class Faults : public CliTest {
 protected:
  // The tiny ViT on the generated data with `options` set (see with_options).
  std::vector<std::string> vit_args(const Options& options) {
    ensure_data();
    std::vector<std::string> base = {"--data-dir", data_dir().string()};
    base.insert(base.end(), kTinyVit.begin(), kTinyVit.end());
    return with_options(base, options);
  }

  // `dtrain <subcommand> args` alone, or under mpiexec with `np` ranks, ended after `limit` seconds.
  RunResult run_dtrain(const std::string& subcommand, const std::vector<std::string>& args,
                       int np = 0, int limit = 30) {
    const std::string launcher = np > 0 ? mpi_prefix(np) : "";
    return run_shell(kEnv + "timeout -k 5 " + std::to_string(limit) + " " + launcher +
                         dtrain_command(subcommand, args),
                     dir_);
  }

  // A short curve whose losses runs at different world sizes can compare: 12 samples a step, a constant
  // learning rate, every step logged; plus `extra`.
  std::vector<std::string> curve_args(const Options& extra) {
    Options all = {{"--batch-size", "12"},
                   {"--seed", "5"},
                   {"--schedule", "constant"},
                   {"--log-interval", "1"}};
    all.insert(all.end(), extra.begin(), extra.end());
    return vit_args(all);
  }

 public:
  RunResult run_dtrain_public(const std::string& subcommand, const std::vector<std::string>& args,
                              int np, int limit) {
    return run_dtrain(subcommand, args, np, limit);
  }

 protected:
  // Bad options must be refused before anything runs, in one line naming `option`.
  void expect_refused(const Options& options, const std::string& option) {
    SCOPED_TRACE("dtrain train " + join(with_options({}, options), " "));
    const auto start = Clock::now();
    RunResult r = run_dtrain("train", vit_args(options), 0, 20);
    const std::string line = expect_one_dtrain_line(r, {option});
    std::printf("  %-40s -> exit %d in %.1f s: %s\n", join(with_options({}, options), " ").c_str(),
                r.exit_code, seconds_since(start), line.c_str());
  }

  // Two ranks started as two application contexts of one job, the second with `option` changed:
  // the job must stop within seconds, with one line that names the option, both values and both ranks.
  void expect_ranks_disagree(const std::string& option, const std::string& value0,
                             const std::string& value1) {
    const Options base = {{"--steps", "6"},
                          {"--log-interval", "2"},
                          {"--eval-interval", "3"},
                          {"--seed", "11"},
                          {"--batch-size", "16"},
                          {"--lr", "0.5"},
                          {"--collective-timeout", "10"}};
    Options changed = base;
    for (auto& [name, value] : changed) {
      if (name == option) value = value1;
    }
    for (const auto& [name, value] : base) {
      if (name == option) {
        ASSERT_EQ(value, value0) << "the test's own base options changed";
      }
    }
    const std::string command = kEnv + "timeout -k 5 30 " + mpi_prefix(1) +
                                dtrain_command("train", vit_args(base)) + " : -np 1 " +
                                dtrain_command("train", vit_args(changed));
    const auto start = Clock::now();
    RunResult r = run_shell(command, dir_);
    const double seconds = seconds_since(start);
    const std::string line = expect_one_dtrain_line(r, {"ranks disagree on " + option});
    EXPECT_LT(seconds, 10.0) << "the job took " << seconds << " s to stop";
    EXPECT_TRUE(mentions_number(line, value0))
        << "rank 0's value " << value0 << " is not in: " << line;
    EXPECT_TRUE(mentions_number(line, value1))
        << "rank 1's value " << value1 << " is not in: " << line;
    EXPECT_TRUE(std::regex_search(line, std::regex("rank 0([^0-9]|$)")))
        << "rank 0 is not named: " << line;
    EXPECT_TRUE(std::regex_search(line, std::regex("rank 1([^0-9]|$)")))
        << "rank 1 is not named: " << line;
    std::printf("  %s %s vs %s: exit %d in %.1f s: %s\n", option.c_str(), value0.c_str(),
                value1.c_str(), r.exit_code, seconds, line.c_str());
  }

  // 2k steps straight, or k steps and k more resumed from the checkpoint, on `np` ranks with dropout:
  // the same final model file, byte for byte, and the same loss at every step.
  void expect_bitwise_resume(int np) {
    constexpr int k = 7;  // 14 steps cross an epoch boundary at np 2 (12 per epoch) and np 3 (8)
    const fs::path straight = dir_ / "straight", first = dir_ / "first", resumed = dir_ / "resumed";
    // A constant schedule after a warmup that spans the resume point: the learning rate then does not
    // depend on the run's length (a cosine decay over k steps would), yet the scheduler's state matters.
    const Options common = {{"--batch-size", std::to_string(8 * np)},
                            {"--seed", "5"},
                            {"--dropout", "0.1"},
                            {"--schedule", "constant"},
                            {"--warmup-steps", "10"},
                            {"--log-interval", "1"}};
    auto with = [&](Options extra) {
      Options all = common;
      all.insert(all.end(), extra.begin(), extra.end());
      return vit_args(all);
    };
    const auto start = Clock::now();
    RunResult a = run_dtrain("train",
                             with({{"--steps", std::to_string(2 * k)},
                                   {"--checkpoint-dir", straight.string()},
                                   {"--metrics-file", (dir_ / "straight.jsonl").string()}}),
                             np, 60);
    ASSERT_EQ(a.exit_code, 0) << a.out << a.err;
    RunResult b1 = run_dtrain("train",
                              with({{"--steps", std::to_string(k)},
                                    {"--checkpoint-dir", first.string()},
                                    {"--metrics-file", (dir_ / "split.jsonl").string()}}),
                              np, 60);
    ASSERT_EQ(b1.exit_code, 0) << b1.out << b1.err;
    RunResult b2 = run_dtrain("train",
                              with({{"--steps", std::to_string(2 * k)},
                                    {"--resume", first.string()},
                                    {"--checkpoint-dir", resumed.string()},
                                    {"--metrics-file", (dir_ / "split.jsonl").string()}}),
                              np, 60);
    ASSERT_EQ(b2.exit_code, 0) << b2.out << b2.err;
    std::printf("  np %d: three runs in %.1f s\n", np, seconds_since(start));

    const fs::path model = fs::path("step-000000" + std::to_string(2 * k)) / "model.safetensors";
    const fs::path first_model = first / ("step-0000000" + std::to_string(k)) / "model.safetensors";
    EXPECT_TRUE(read_text(straight / model) == read_text(resumed / model))
        << "the resumed run's " << model << " differs from the straight run's";
    const std::vector<std::string> differing_tensors =
        tensors_that_differ(straight / model, resumed / model);
    EXPECT_TRUE(differing_tensors.empty()) << "tensors that differ: " << join(differing_tensors);
    EXPECT_TRUE(any_tensor_differs(straight / model, first_model))
        << "the step-" << k << " checkpoint equals the step-" << 2 * k
        << " one: the comparison proves nothing";

    std::vector<nlohmann::json> want, got;
    for (const auto& rec : read_jsonl(dir_ / "straight.jsonl")) {
      if (!rec.contains("split")) want.push_back(rec);
    }
    for (const auto& rec : read_jsonl(dir_ / "split.jsonl")) {
      if (!rec.contains("split")) got.push_back(rec);
    }
    ASSERT_EQ(want.size(), static_cast<size_t>(2 * k));
    ASSERT_EQ(got.size(), static_cast<size_t>(2 * k));
    int differing = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i]["step"], want[i]["step"]);
      if (got[i]["loss"] != want[i]["loss"]) {
        ++differing;
        ADD_FAILURE() << "np " << np << ", step " << want[i]["step"] << ": loss " << got[i]["loss"]
                      << " after resuming, " << want[i]["loss"] << " straight";
      }
    }
    std::printf("  np %d: %d of %d logged losses differ\n", np, differing, 2 * k);
  }
};

}  // namespace

// ---- 1. SIGKILL while checkpoints are being written

// Jobs that commit a checkpoint every step are killed (every process, SIGKILL) at varied moments:
// right as a checkpoint's temporary directory appears, shortly after, and at times unrelated to the
// writes. Each time the checkpoint directory must hold a checkpoint that `dtrain eval` loads, a run
// resumed from it must continue and commit, and after that commit no `<ckpt>.tmp-<pid>` of the dead
// processes may remain.
TEST_F(Faults, KillDuringCheckpointWrites) {
  ensure_data();
  const bool have_mpi = !mpiexec().empty();
  struct Trial {
    int np;  // 0: dtrain alone; else mpiexec -np
    bool
        on_temporary;  // the delay counts from the moment a <ckpt>.tmp-* appears, else from the first commit
    int delay_us;
  };
  const std::vector<Trial> trials = {{0, true, 0},    {2, true, 0},      {0, true, 500},
                                     {2, true, 2000}, {0, false, 7000},  {2, false, 40000},
                                     {0, true, 200},  {2, false, 120000}};
  int during_write = 0, loadable = 0, resumed = 0, clean = 0, ran = 0;
  std::vector<std::string> report;
  const auto start_all = Clock::now();
  for (size_t i = 0; i < trials.size(); ++i) {
    Trial t = trials[i];
    if (t.np > 0 && !have_mpi) t.np = 0;  // still a kill trial, without the launcher
    SCOPED_TRACE("trial " + std::to_string(i));
    const fs::path ckpt = dir_ / ("ckpt-" + std::to_string(i));
    const std::vector<std::string> args = vit_args({{"--steps", "100000"},
                                                    {"--checkpoint-dir", ckpt.string()},
                                                    {"--checkpoint-interval", "1"},
                                                    {"--log-interval", "1000"}});
    const std::string command = kEnv + "exec " + (t.np > 0 ? mpi_prefix(t.np) : std::string()) +
                                dtrain_command("train", args);
    std::string what;
    {
      BackgroundJob job(command, dir_ / "kill-out.txt", dir_ / "kill-err.txt");
      ASSERT_GT(job.pid(), 0) << "fork failed";
      // The first commit, so that there is a checkpoint to keep.
      const auto deadline = Clock::now() + std::chrono::seconds(30);
      while (saved_step(ckpt) < 1 && job.running() && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
      ASSERT_GE(saved_step(ckpt), 1) << "no checkpoint in " << ckpt << " after "
                                     << (job.running() ? "30 s" : "the job ended") << ":\n"
                                     << read_text(dir_ / "kill-err.txt");
      for (const auto& [rank, pid] : ranks_below(job.pid())) job.remember(pid);
      if (t.on_temporary) {
        while (temporaries_of(ckpt).empty() && job.running() && Clock::now() < deadline) {
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
      }
      if (t.delay_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(t.delay_us));
      ASSERT_TRUE(job.running()) << "the job ended before it was killed:\n"
                                 << read_text(dir_ / "kill-err.txt");
      job.kill_now();
    }
    ++ran;
    const std::vector<std::string> left = checkpoint_entries(ckpt);
    const bool hit_write = !temporaries_of(ckpt).empty();
    during_write += hit_write;
    what = "trial " + std::to_string(i) + " (" +
           (t.np > 0 ? "mpiexec -np " + std::to_string(t.np) : "alone") + ", SIGKILL " +
           std::to_string(t.delay_us) + " us after " +
           (t.on_temporary ? "a temporary appeared" : "the first commit") + "): left " + join(left);

    // The checkpoint loads...
    RunResult eval = run_dtrain("eval", {"--resume", ckpt.string()});
    EXPECT_EQ(eval.exit_code, 0) << what << "\n" << eval.err;
    loadable += eval.exit_code == 0;
    // ...and a resumed run continues from it and commits into the same directory.
    const int64_t step = saved_step(ckpt);
    EXPECT_GT(step, 0) << what << ": no readable state.json";
    what += "; step " + std::to_string(step) + ", eval " + (eval.exit_code == 0 ? "ok" : "FAILED");
    if (step > 0) {
      RunResult more = run_dtrain("train", vit_args({{"--resume", ckpt.string()},
                                                     {"--checkpoint-dir", ckpt.string()},
                                                     {"--steps", std::to_string(step + 2)},
                                                     {"--checkpoint-interval", "1"}}));
      EXPECT_EQ(more.exit_code, 0) << what << "\n" << more.err;
      resumed += more.exit_code == 0;
      const std::vector<std::string> stale = temporaries_of(ckpt);
      std::string contents;
      for (const std::string& name : stale) {
        std::vector<std::string> files;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator(ckpt / name, ec)) {
          files.push_back(e.path().filename().string());
        }
        std::sort(files.begin(), files.end());
        contents += "; " + name + " holds " + join(files);
        const std::string stat = read_text("/proc/" + name.substr(name.rfind('-') + 1) + "/stat");
        contents += stat.empty() ? " (its process is gone)"
                                 : " (its process is still there: " + stat.substr(0, 60) + ")";
      }
      EXPECT_TRUE(stale.empty()) << what << ": after a later run committed into " << ckpt
                                 << ", stale temporaries of dead processes remain: " << join(stale)
                                 << contents;
      clean += more.exit_code == 0 && stale.empty();
      what += std::string(", resume ") + (more.exit_code == 0 ? "ok" : "FAILED") + ", then left " +
              join(checkpoint_entries(ckpt));
    }
    report.push_back(what);
  }
  std::printf(
      "kill -9 during checkpoint writes: %d trials in %.1f s; %d killed mid-write (a temporary "
      "left), %d loadable, %d resumed, %d without stale temporaries afterwards\n",
      ran, seconds_since(start_all), during_write, loadable, resumed, clean);
  for (const std::string& line : report) std::printf("  %s\n", line.c_str());
  EXPECT_GE(during_write, 1)
      << "no kill landed inside a checkpoint write: the trials tested little";
}

// ---- 1b. preemption: SIGTERM (Slurm, a scheduler) and SIGINT (Ctrl-C) end the run with a checkpoint

// The losses a metrics file logged, by step.
static std::map<int64_t, double> logged_losses(const fs::path& metrics) {
  std::map<int64_t, double> out;
  for (const auto& rec : read_jsonl(metrics)) {
    if (!rec.contains("split")) out[rec["step"].get<int64_t>()] = rec["loss"].get<double>();
  }
  return out;
}

// Starts a long run (np 0: dtrain alone), waits for three logged steps, sends `signal` to `victim_rank`,
// and checks what a preempted job must do: stop at the end of a step on every rank, checkpoint that
// step, exit with 128 + signal, and resume from it with the same command plus --resume auto.
static void expect_stop_with_checkpoint(
    Faults& f, const fs::path& dir, int np, int signal, int victim_rank,
    const std::function<std::vector<std::string>(const Options&)>& vit_args) {
  const fs::path rundir = dir / "run", metrics = dir / "m.jsonl";
  const Options common = {{"--batch-size", "24"},
                          {"--checkpoint-dir", rundir.string()},
                          {"--resume", "auto"},
                          {"--log-interval", "1"},
                          {"--metrics-file", metrics.string()}};
  Options long_run = common;
  long_run.push_back({"--steps", "100000"});
  const std::string command = kEnv + "exec " + (np > 0 ? mpi_prefix(np) : std::string()) +
                              dtrain_command("train", vit_args(long_run));
  BackgroundJob job(command, dir / "out.txt", dir / "err.txt");
  ASSERT_GT(job.pid(), 0) << "fork failed";
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (count_lines(read_text(metrics), "\"loss\"") < 3 && job.running() &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(job.running()) << "the job ended early:\n" << read_text(dir / "err.txt");
  pid_t victim = job.pid();
  if (np > 0) {
    const std::map<int, pid_t> ranks = ranks_below(job.pid());
    for (const auto& [rank, pid] : ranks) job.remember(pid);
    ASSERT_EQ(ranks.size(), static_cast<size_t>(np))
        << "cannot find the rank processes below mpiexec";
    victim = ranks.at(victim_rank);
  }
  const int logged_before = count_lines(read_text(metrics), "\"loss\"");
  ASSERT_EQ(::kill(victim, signal), 0);
  const auto sent = Clock::now();
  const std::optional<int> code = job.wait(30);
  job.kill_all();
  ASSERT_TRUE(code.has_value()) << "the job did not stop within 30 s of the signal";
  const std::string out = read_text(dir / "out.txt"), err = read_text(dir / "err.txt");
  const int64_t step = saved_step(rundir);
  std::printf(
      "  %s to rank %d of %d: stopped after %.2f s, exit %d, checkpoint at step %lld (%d steps "
      "logged "
      "when sent)\n",
      signal == SIGTERM ? "SIGTERM" : "SIGINT", victim_rank, std::max(np, 1), seconds_since(sent),
      *code, static_cast<long long>(step), logged_before);
  if (np == 0) {
    EXPECT_EQ(*code, 128 + signal) << err;
  }
  EXPECT_NE(*code, 0) << err;
  const std::string name = signal == SIGTERM ? "SIGTERM" : "SIGINT";
  EXPECT_EQ(
      count_lines(out, "stopped by " + name + " at step " + std::to_string(step) + ": checkpoint"),
      1)
      << out << err;
  EXPECT_GE(step, logged_before);
  // Every rank stopped at that step: the last logged step is the checkpoint's.
  ASSERT_FALSE(logged_losses(metrics).empty());
  EXPECT_EQ(logged_losses(metrics).rbegin()->first, step);
  EXPECT_EQ(temporaries_of(rundir), std::vector<std::string>{});
  // The same command, with a finite length, continues the run.
  Options more = common;
  more.push_back({"--steps", std::to_string(step + 2)});
  RunResult resumed = f.run_dtrain_public("train", vit_args(more), np, 60);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_NE(resumed.out.find("resuming at step " + std::to_string(step)), std::string::npos)
      << resumed.out;
  EXPECT_EQ(saved_step(rundir), step + 2);
}

TEST_F(Faults, SigtermWritesACheckpointAndExits143) {
  expect_stop_with_checkpoint(*this, dir_, 0, SIGTERM, 0,
                              [this](const Options& o) { return vit_args(o); });
}

// Ctrl-C reaches one rank only here: the others learn of it at the step boundary and stop with it.
TEST_F(Faults, SigintToOneRankStopsEveryRankWithACheckpoint) {
  REQUIRE_MPIEXEC();
  expect_stop_with_checkpoint(*this, dir_, 2, SIGINT, 1,
                              [this](const Options& o) { return vit_args(o); });
}

// ---- 1c. resume at another world size, and ZeRO-1 checkpoints

// The data order does not depend on the world size, so 4 steps at np 2 and 4 more at np 3 give the
// losses of 8 steps at np 2, up to float summation order.
TEST_F(Faults, ResumeAtAnotherWorldSizeContinuesTheCurve) {
  REQUIRE_MPIEXEC();
  auto with = [&](const Options& extra) { return curve_args(extra); };
  const fs::path rundir = dir_ / "run";
  ASSERT_EQ(
      run_dtrain("train",
                 with({{"--steps", "8"}, {"--metrics-file", (dir_ / "straight.jsonl").string()}}),
                 2, 60)
          .exit_code,
      0);
  ASSERT_EQ(run_dtrain("train",
                       with({{"--steps", "4"},
                             {"--checkpoint-dir", rundir.string()},
                             {"--metrics-file", (dir_ / "split.jsonl").string()}}),
                       2, 60)
                .exit_code,
            0);
  RunResult three = run_dtrain("train",
                               with({{"--steps", "8"},
                                     {"--checkpoint-dir", rundir.string()},
                                     {"--resume", "auto"},
                                     {"--metrics-file", (dir_ / "split.jsonl").string()}}),
                               3, 60);
  ASSERT_EQ(three.exit_code, 0) << three.out << three.err;
  EXPECT_NE(three.out.find("3 rank(s)"), std::string::npos) << three.out;
  const auto want = logged_losses(dir_ / "straight.jsonl"),
             got = logged_losses(dir_ / "split.jsonl");
  ASSERT_EQ(want.size(), 8u);
  ASSERT_EQ(got.size(), 8u);
  double worst = 0;
  for (const auto& [step, loss] : want) {
    const double diff = std::fabs(got.at(step) - loss);
    worst = std::max(worst, diff);
    EXPECT_LE(diff, 1e-4 * std::max(1.0, std::fabs(loss))) << "step " << step;
  }
  EXPECT_NE(want.at(8), want.at(4)) << "the loss did not move: the comparison proves little";
  std::printf("  np 2 -> np 3 at step 4: largest loss difference to the np 2 run %.2e\n", worst);
}

// A ZeRO-1 checkpoint holds the whole optimizer state: it resumes without ZeRO, and with ZeRO at
// another world size, on the curve of a run without ZeRO.
TEST_F(Faults, ZeroCheckpointsResumeWithOrWithoutZero) {
  REQUIRE_MPIEXEC();
  auto with = [&](const Options& extra) { return curve_args(extra); };
  ASSERT_EQ(
      run_dtrain("train",
                 with({{"--steps", "8"}, {"--metrics-file", (dir_ / "plain.jsonl").string()}}), 2,
                 60)
          .exit_code,
      0);
  const auto want = logged_losses(dir_ / "plain.jsonl");
  for (const auto& [second_np, second_zero] :
       std::vector<std::pair<int, std::string>>{{2, "0"}, {3, "1"}}) {
    SCOPED_TRACE("then np " + std::to_string(second_np) + " --zero " + second_zero);
    const fs::path rundir = dir_ / ("run-" + std::to_string(second_np));
    const fs::path metrics = dir_ / ("zero-" + std::to_string(second_np) + ".jsonl");
    RunResult a = run_dtrain("train",
                             with({{"--steps", "4"},
                                   {"--zero", "1"},
                                   {"--checkpoint-dir", rundir.string()},
                                   {"--metrics-file", metrics.string()}}),
                             2, 60);
    ASSERT_EQ(a.exit_code, 0) << a.out << a.err;
    RunResult b = run_dtrain("train",
                             with({{"--steps", "8"},
                                   {"--zero", second_zero},
                                   {"--resume", "auto"},
                                   {"--checkpoint-dir", rundir.string()},
                                   {"--metrics-file", metrics.string()}}),
                             second_np, 60);
    ASSERT_EQ(b.exit_code, 0) << b.out << b.err;
    const auto got = logged_losses(metrics);
    ASSERT_EQ(got.size(), 8u);
    for (const auto& [step, loss] : want) {
      EXPECT_LE(std::fabs(got.at(step) - loss), 1e-4 * std::max(1.0, std::fabs(loss)))
          << "step " << step;
    }
  }
}

// ---- 2. a user's files are never deleted

TEST_F(Faults, CheckpointDirThatIsNotACheckpointIsRefused) {
  const fs::path d = dir_ / "d";
  fs::create_directories(d / "sub");
  write_text(d / "notes.txt", "my notes\n");
  write_text(d / "sub" / "data.bin", "precious");
  RunResult r = run_dtrain("train", vit_args({{"--steps", "2"}, {"--checkpoint-dir", d.string()}}));
  const std::string line = expect_one_dtrain_line(r, {d.string()});
  std::printf("  --checkpoint-dir of a user's directory: exit %d: %s\n", r.exit_code, line.c_str());
  EXPECT_EQ(read_text(d / "notes.txt"), "my notes\n")
      << "the user's notes.txt was deleted or changed";
  EXPECT_TRUE(fs::is_directory(d / "sub")) << "the user's sub/ was deleted";
  EXPECT_EQ(read_text(d / "sub" / "data.bin"), "precious") << "the user's sub/data.bin was deleted";
  EXPECT_EQ(temporaries_of(d), std::vector<std::string>{})
      << "a failed run left a temporary beside " << d;
}

// A user's own copy beside the checkpoint, named like the copies an interrupted commit leaves aside
// (`<ckpt>.old-*`), is the user's: runs that commit into <ckpt> must leave it alone.
TEST_F(Faults, UserBackupBesideCheckpointSurvives) {
  const fs::path ckpt = dir_ / "ckpt", backup = dir_ / "ckpt.old-mybackup";
  RunResult a =
      run_dtrain("train", vit_args({{"--steps", "2"}, {"--checkpoint-dir", ckpt.string()}}));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  // The user backs the checkpoint up by hand, and adds a note.
  fs::copy(ckpt, backup, fs::copy_options::recursive);
  write_text(backup / "notes.txt", "the good run\n");
  std::map<std::string, std::string> before;
  for (const auto& e : fs::directory_iterator(backup))
    before[e.path().filename()] = read_text(e.path());
  RunResult b = run_dtrain("train", vit_args({{"--steps", "5"},
                                              {"--resume", ckpt.string()},
                                              {"--checkpoint-dir", ckpt.string()},
                                              {"--checkpoint-interval", "1"}}));
  EXPECT_EQ(b.exit_code, 0) << b.err;
  ASSERT_TRUE(fs::is_directory(backup))
      << "the user's " << backup
      << " was deleted; beside the checkpoint: " << join(checkpoint_entries(ckpt));
  std::map<std::string, std::string> after;
  for (const auto& e : fs::directory_iterator(backup))
    after[e.path().filename()] = read_text(e.path());
  EXPECT_TRUE(before == after) << "the files of " << backup << " changed";
  EXPECT_EQ(saved_step(ckpt), 5);
}

// ---- 3. ranks started with different options

TEST_F(Faults, RanksDisagreeOnEvalInterval) {
  REQUIRE_MPIEXEC();
  expect_ranks_disagree("--eval-interval", "3", "5");
}
TEST_F(Faults, RanksDisagreeOnSteps) {
  REQUIRE_MPIEXEC();
  expect_ranks_disagree("--steps", "6", "9");
}
TEST_F(Faults, RanksDisagreeOnLogInterval) {
  REQUIRE_MPIEXEC();
  expect_ranks_disagree("--log-interval", "2", "3");
}
TEST_F(Faults, RanksDisagreeOnSeed) {
  REQUIRE_MPIEXEC();
  expect_ranks_disagree("--seed", "11", "17");
}
TEST_F(Faults, RanksDisagreeOnBatchSize) {
  REQUIRE_MPIEXEC();
  expect_ranks_disagree("--batch-size", "16", "32");
}
TEST_F(Faults, RanksDisagreeOnLr) {
  REQUIRE_MPIEXEC();
  expect_ranks_disagree("--lr", "0.5", "0.25");
}

// ---- 4. a rank that stops answering

// One rank of three is stopped (SIGSTOP) mid-training: the others' next collective must time out
// after --collective-timeout 3 and end the job with a message naming that collective.
TEST_F(Faults, StoppedRankEndsJobWithinCollectiveTimeout) {
  REQUIRE_MPIEXEC();
  const double timeout_s = 3, grace_s = 7;
  const fs::path metrics = dir_ / "metrics.jsonl";
  const std::vector<std::string> args = vit_args({{"--batch-size", "24"},
                                                  {"--steps", "100000"},
                                                  {"--log-interval", "1"},
                                                  {"--metrics-file", metrics.string()},
                                                  {"--collective-timeout", "3"}});
  BackgroundJob job(kEnv + "exec " + mpi_prefix(3) + dtrain_command("train", args),
                    dir_ / "out.txt", dir_ / "err.txt");
  ASSERT_GT(job.pid(), 0) << "fork failed";
  // Mid-training: a few steps logged.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (count_lines(read_text(metrics), "\"step\"") < 3 && job.running() &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(job.running()) << "the job ended before a rank was stopped:\n"
                             << read_text(dir_ / "err.txt");
  ASSERT_GE(count_lines(read_text(metrics), "\"step\""), 3) << "no training after 30 s:\n"
                                                            << read_text(dir_ / "err.txt");
  const std::map<int, pid_t> ranks = ranks_below(job.pid());
  for (const auto& [rank, pid] : ranks) job.remember(pid);
  ASSERT_EQ(ranks.size(), 3u) << "cannot find the three rank processes below mpiexec";
  const pid_t victim = ranks.at(1);
  ASSERT_EQ(::kill(victim, SIGSTOP), 0);
  const auto stopped = Clock::now();
  const std::optional<int> code = job.wait(timeout_s + grace_s + 5);
  const double seconds = seconds_since(stopped);
  ::kill(victim, SIGKILL);  // whatever happened, the stopped rank must not outlive the test
  job.kill_all();
  const RunResult r{code.value_or(-1), read_text(dir_ / "out.txt"), read_text(dir_ / "err.txt")};
  std::printf("  rank 1 of 3 stopped: the job %s after %.1f s\n",
              code ? ("exited " + std::to_string(*code)).c_str() : "was still running", seconds);
  ASSERT_TRUE(code.has_value()) << "the job hung for " << seconds
                                << " s after rank 1 was stopped:\n"
                                << r.err;
  EXPECT_NE(*code, 0) << "the job exited 0 although rank 1 was stopped";
  EXPECT_LE(seconds, timeout_s + grace_s) << "the job took " << seconds << " s to end";
  std::smatch m;
  const std::string output = r.out + r.err;
  EXPECT_TRUE(std::regex_search(
      output, m,
      std::regex("[^\\n]*(all_reduce|allreduce|broadcast|barrier|all_gather|reduce_scatter)[^\\n]*"
                 "(time|did not complete)[^\\n]*",
                 std::regex::icase)))
      << "no message naming the collective that timed out:\n"
      << output;
  if (!m.empty()) std::printf("  message: %s\n", m[0].str().c_str());
}

// ---- 5. resuming is exact under data parallelism with dropout

TEST_F(Faults, BitwiseResumeTwoRanksWithDropout) {
  REQUIRE_MPIEXEC();
  expect_bitwise_resume(2);
}
TEST_F(Faults, BitwiseResumeThreeRanksWithDropout) {
  REQUIRE_MPIEXEC();
  expect_bitwise_resume(3);
}

// ---- 6. bad values: one line naming the option and its allowed range, no crash

TEST_F(Faults, LogIntervalZeroIsRefused) {
  expect_refused({{"--steps", "2"}, {"--log-interval", "0"}}, "--log-interval");
}
TEST_F(Faults, AbsurdThreadCountIsRefused) {
  expect_refused({{"--steps", "2"}, {"--threads", "10000"}}, "--threads");
}
TEST_F(Faults, CollectiveTimeoutOutOfRangeIsRefused) {
  for (const char* value : {"1e300", "-1", "0", "nan"}) {
    expect_refused({{"--steps", "2"}, {"--collective-timeout", value}}, "--collective-timeout");
  }
}
TEST_F(Faults, NegativeStepsIsRefused) { expect_refused({{"--steps", "-5"}}, "--steps"); }
TEST_F(Faults, NegativeDepthIsRefused) {
  expect_refused({{"--steps", "2"}, {"--depth", "-1"}}, "--depth");
}
TEST_F(Faults, InfiniteLrIsRefused) { expect_refused({{"--steps", "2"}, {"--lr", "inf"}}, "--lr"); }
TEST_F(Faults, HugeEpochsIsRefused) { expect_refused({{"--epochs", "1e30"}}, "--epochs"); }
// A schedule that cannot fit the run is found in the pre-flight checks: one line for the whole job.
TEST_F(Faults, WarmupLongerThanTheRunIsOneLineForTheJob) {
  REQUIRE_MPIEXEC();
  RunResult r = run_dtrain("train", vit_args({{"--steps", "2"}, {"--warmup-steps", "10"}}), 2, 30);
  expect_one_dtrain_line(r, {"warmup_steps = 10", "total_steps = 2"});
}

// Resuming with a different model or batch is an error naming the option, the saved and the given
// value; so is asking for no steps beyond the checkpoint's.
class FaultsResume : public Faults {
 protected:
  void SetUp() override {
    Faults::SetUp();
    if (HasFatalFailure()) return;
    RunResult r =
        run_dtrain("train", vit_args({{"--steps", "3"}, {"--checkpoint-dir", ckpt().string()}}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  fs::path ckpt() const { return dir_ / "ckpt"; }
  std::string resume_error(const Options& changed, const std::string& option) {
    Options options = {{"--resume", ckpt().string()}};
    options.insert(options.end(), changed.begin(), changed.end());
    RunResult r = run_dtrain("train", vit_args(options));
    const std::string line = expect_one_dtrain_line(r, {option});
    std::printf("  resume with %s -> exit %d: %s\n", join(with_options({}, changed), " ").c_str(),
                r.exit_code, line.c_str());
    return line;
  }
};

TEST_F(FaultsResume, ChangedBatchSize) {
  const std::string line = resume_error({{"--steps", "6"}, {"--batch-size", "32"}}, "--batch-size");
  EXPECT_TRUE(mentions_number(line, "16")) << "the saved value 16 is not named: " << line;
  EXPECT_TRUE(mentions_number(line, "32")) << "the given value 32 is not named: " << line;
}

TEST_F(FaultsResume, ChangedHeads) {
  const std::string line = resume_error({{"--steps", "6"}, {"--heads", "4"}}, "--heads");
  EXPECT_TRUE(mentions_number(line, "2")) << "the saved value 2 is not named: " << line;
  EXPECT_TRUE(mentions_number(line, "4")) << "the given value 4 is not named: " << line;
}

// Fewer steps than the checkpoint holds is an error; exactly as many is a finished run, said so.
TEST_F(FaultsResume, StepsNotBeyondCheckpoint) {
  const std::string line = resume_error({{"--steps", "2"}}, "--steps");
  EXPECT_TRUE(mentions_number(line, "3")) << "the checkpoint's step 3 is not named: " << line;
  RunResult done = run_dtrain("train", vit_args({{"--resume", ckpt().string()}, {"--steps", "3"}}));
  EXPECT_EQ(done.exit_code, 0) << done.err;
  EXPECT_NE(done.out.find("already finished"), std::string::npos) << done.out;
  EXPECT_EQ(done.out.find("final loss"), std::string::npos) << done.out;
}
