#include "launch/stop_signal.h"

#include <csignal>

namespace dtrain::launch {

namespace {
volatile std::sig_atomic_t g_received = 0;
struct sigaction g_old_term, g_old_int;

void on_stop(int signal) { g_received = signal; }
}  // namespace

StopSignals::StopSignals() {
  g_received = 0;
  struct sigaction action = {};
  action.sa_handler = on_stop;
  sigemptyset(&action.sa_mask);
  action.sa_flags =
      SA_RESETHAND;  // the next one of its kind takes the default action: ends the process
  sigaction(SIGTERM, &action, &g_old_term);
  sigaction(SIGINT, &action, &g_old_int);
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGINT, &g_old_int, nullptr);
}

int StopSignals::received() { return g_received; }

const char* signal_name(int signal) {
  return signal == SIGTERM ? "SIGTERM" : signal == SIGINT ? "SIGINT" : "a signal";
}

}  // namespace dtrain::launch
