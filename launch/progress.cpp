#include "launch/progress.h"

#include <unistd.h>

#include <cmath>
#include <iostream>

namespace dtrain::launch {

bool stdout_is_terminal() { return isatty(STDOUT_FILENO) == 1; }

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lds", s);
  }
  return buf;
}

std::string format_metrics(const nlohmann::json& metrics) {
  std::string line;
  for (auto it = metrics.begin(); it != metrics.end(); ++it) {
    char value[64];
    if (it.value().is_number_float()) {
      const double v = it.value().get<double>();
      std::snprintf(value, sizeof value, std::fabs(v) >= 1000 ? "%.5g" : "%.4f", v);
    } else {
      std::snprintf(value, sizeof value, "%s", it.value().dump().c_str());
    }
    line += (line.empty() ? "" : "  ") + it.key() + " " + value;
  }
  return line;
}

Progress::Progress(int64_t total_steps, int64_t first_step, std::string unit, bool live)
    : total_(total_steps), first_(first_step), unit_(std::move(unit)), live_(live) {}

void Progress::update(int64_t step, double loss, double lr, double items_per_s, double elapsed_s,
                      bool log) {
  if (!live_ && !log) return;
  const double session =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = step > first_ ? session / static_cast<double>(step - first_) *
                                         static_cast<double>(total_ - step)
                                   : NAN;
  int width = 24;
  int filled = total_ > 0 ? static_cast<int>(width * step / total_) : 0;
  char line[256];
  if (live_) {
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(static_cast<size_t>(width), '.');
    // The loss is read back on logging steps only: before the first, there is none to show.
    char loss_text[32] = "-";
    if (!std::isnan(loss)) std::snprintf(loss_text, sizeof loss_text, "%.4f", loss);
    std::snprintf(line, sizeof line,
                  "\r[%s] step %lld/%lld  loss %s  lr %.2e  %.0f %s/s  ETA %s\033[K", bar.c_str(),
                  static_cast<long long>(step), static_cast<long long>(total_), loss_text, lr,
                  items_per_s, unit_.c_str(), format_duration(eta).c_str());
    std::cout << line << std::flush;
    drawn_ = true;
  } else {
    std::snprintf(
        line, sizeof line, "step %lld/%lld  loss %.4f  lr %.2e  %.0f %s/s  elapsed %s  ETA %s",
        static_cast<long long>(step), static_cast<long long>(total_), loss, lr, items_per_s,
        unit_.c_str(), format_duration(elapsed_s).c_str(), format_duration(eta).c_str());
    std::cout << line << std::endl;
  }
}

void Progress::print(const std::string& line) {
  if (drawn_) std::cout << "\r\033[K";
  std::cout << line << std::endl;
  drawn_ = false;
}

void Progress::finish() {
  if (drawn_) std::cout << std::endl;
  drawn_ = false;
}

}  // namespace dtrain::launch
