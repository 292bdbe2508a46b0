// What a person sees while training: on a terminal one live line (step/total, loss, lr, throughput,
// ETA) redrawn in place; elsewhere (a pipe, a log file, CI) plain lines at the log interval.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace dtrain::launch {

class Progress {
 public:
  Progress(int64_t total_steps, std::string unit, bool live);
  // Called every step; draws when live, or prints a line when `log` is set.
  void update(int64_t step, double loss, double lr, double items_per_s, double elapsed_s, bool log);
  // A line of its own (eval results, summaries), clearing the live line first.
  void print(const std::string& line);
  void finish();

 private:
  int64_t total_;
  std::string unit_;
  bool live_;
  bool drawn_ = false;
};

bool stdout_is_terminal();
std::string format_duration(double seconds);  // "1m05s", "2h03m"

}  // namespace dtrain::launch
