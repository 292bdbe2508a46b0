// SIGTERM (Slurm preemption, a scheduler's stop) and SIGINT (Ctrl-C) end `dtrain train` at the end
// of the current step: every rank agrees on it at the step boundary (one small host all-reduce a
// step), the run writes a checkpoint when it has a --checkpoint-dir, and the process exits with
// 128 + the signal (143, 130), as a shell reports a process ended by that signal. A second signal
// of the same kind ends the process at once, as it would without dtrain's handler.
#pragma once

namespace dtrain::launch {

class StopSignals {
 public:
  StopSignals();   // installs the handlers
  ~StopSignals();  // puts the earlier handlers back
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The signal received so far on this rank (SIGTERM or SIGINT), or 0.
  static int received();
};

const char* signal_name(int signal);  // "SIGTERM", "SIGINT"

}  // namespace dtrain::launch
