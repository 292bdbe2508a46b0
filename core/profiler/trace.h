// The profiler: a Chrome trace (the Trace Event Format that Perfetto and chrome://tracing open) of
// what each thread of this rank did between start() and stop_and_write(), after Horovod's timeline.
//
//   profiler::start(rank);                               // every thread records from now on
//   { profiler::Scope step("step", "step 7"); ... }      // one complete event ("ph":"X") per scope
//   profiler::stop_and_write("profile/trace-rank0.json");
//
// Events: pid = rank, tid = a small number per thread (named by name_this_thread: "main", "data-loader";
// "ddp-comm" is a track of its own, see add_deferred), ts and dur in microseconds of one steady clock,
// counted from start(). Who records what: every nn::Module's forward ("forward", named by its path,
// "blocks.3.attn"), backward per module ("backward", see core/profiler/module_scope.h), each DDP bucket's
// all-reduce ("comm"), the training thread's waits for a batch ("data"), and the trainer's own scopes
// ("optimizer", "eval", "checkpoint", ...).
//
// Times are host times. With a GPU, an op's event ends when its kernels are queued, not when they have
// run (the host runs ahead of the device, so forward and backward look short and the wait shows up
// wherever the host next reads a result); the exception is the all-reduce, whose end is the moment
// the process group saw it complete on the device.
//
// Cost: when not recording, a Scope is one relaxed atomic load, with no allocation and no lock.
// Recording appends to a per-thread buffer (registered once per thread, merged at stop): no lock on
// that path, one allocation for the name of an event.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json_fwd.hpp>

namespace dtrain::profiler {

using Clock = std::chrono::steady_clock;

namespace detail {
// Bit 0: recording. The bits above count the sessions (start() calls), so an event begun in one
// session is never written into another.
extern std::atomic<uint64_t> g_state;
}  // namespace detail

// Begins recording on every thread of the process; clears the events of an earlier session. The
// calling thread is named "main" unless it has a name. `rank` becomes the trace's pid.
void start(int rank);

// Whether a session is recording (one relaxed atomic load).
inline bool recording() { return (detail::g_state.load(std::memory_order_relaxed) & 1) != 0; }

// Stops recording, waits for the deferred events (add_deferred) to be measured, and writes the session
// to `path`: to path.tmp-<pid> first, then renamed, creating the parent directories. A dtrain::Error of
// one line when it cannot.
void stop_and_write(const std::string& path);

// The name the trace shows for the calling thread (thread_name metadata); kept across sessions.
void name_this_thread(const char* name);

// One complete event on the calling thread, from construction to destruction, when constructed while
// recording. `category` must outlive the session (a string literal); `name` is copied.
class Scope {
 public:
  Scope(const char* category, std::string_view name) {
    const uint64_t state = detail::g_state.load(std::memory_order_relaxed);
    if ((state & 1) != 0) begin(state, category, name);
  }
  // With "args" (an object; shown when the event is selected). Build costly args only when recording().
  Scope(const char* category, std::string_view name, nlohmann::json args);
  ~Scope() {
    if (state_ != 0) end();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  void begin(uint64_t state, const char* category, std::string_view name);
  void end();

  uint64_t state_ = 0;  // the session it records into; 0 when inactive
  const char* category_ = nullptr;
  Clock::time_point start_;
  std::string name_;
  nlohmann::json* args_ = nullptr;  // owned; only while recording and args were given
};

// An event this thread handed to another agent at `issued` (a collective to the process group's
// communication thread, or to the GPU) and whose interval is known only once that agent is done:
// `interval` answers [start, end], or nullopt while it is still running. It is polled at stop, which
// waits until it answers. The event shows on the track named `track` (a row like a thread's), with
// args plus "queued_us" (start - issued) and a flow arrow from this thread at `issued`. Events on one
// track must not overlap (a serial agent). Ignored unless recording.
using Interval = std::pair<Clock::time_point, Clock::time_point>;
void add_deferred(const char* track, const char* category, std::string name, nlohmann::json args,
                  Clock::time_point issued, std::function<std::optional<Interval>()> interval);

}  // namespace dtrain::profiler
