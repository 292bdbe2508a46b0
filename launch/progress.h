// What a person sees while training: on a terminal one live line (step/total, loss, lr, throughput,
// ETA) redrawn in place; elsewhere (a pipe, a log file, CI) plain lines at the log interval.
#pragma once
#include <cstdint>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace dtrain::launch {

class Progress {
 public:
  // `first_step`: where this session starts (a resumed run's step), so that the ETA counts this
  // session's pace only.
  Progress(int64_t total_steps, int64_t first_step, std::string unit, bool live);
  // Called every step; draws when live, or prints a line when `log` is set. elapsed_s: the run's
  // training time over all its sessions.
  void update(int64_t step, double loss, double lr, double items_per_s, double elapsed_s, bool log);
  // A line of its own (eval results, summaries), clearing the live line first.
  void print(const std::string& line);
  void finish();

 private:
  int64_t total_, first_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::string unit_;
  bool live_;
  bool drawn_ = false;
};

bool stdout_is_terminal();
std::string format_duration(double seconds);  // "1m05s", "2h03m"
// Metrics as a line a person reads: "loss 0.4123  accuracy 0.8531" (4 decimals, or 5 significant digits).
std::string format_metrics(const nlohmann::json& metrics);

}  // namespace dtrain::launch
