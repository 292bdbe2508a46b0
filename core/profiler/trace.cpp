#include "core/profiler/trace.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dtrain::profiler {

namespace detail {
std::atomic<uint64_t> g_state{0};
}  // namespace detail

using detail::g_state;
using nlohmann::json;

namespace {

struct Event {
  const char* category;
  std::string name;
  Clock::time_point start, end;
  uint32_t tid;
  json args;  // null: none
};

// One per thread that ever recorded or was named. Its thread appends to `events` without a lock: the
// controller (start, stop) touches them only after turning recording off and seeing `busy` clear, and
// a thread appends only while `busy` is set and the session it recorded into is still the current one
// (both sides store, then load, sequentially consistent: one of them sees the other).
struct ThreadBuffer {
  uint32_t tid = 0;
  std::string name;   // guarded by Registry::mutex
  bool alive = true;  // guarded by Registry::mutex
  std::atomic<bool> busy{false};
  std::vector<Event> events;
};

struct Deferred {
  uint32_t track = 0;   // the tid of the track it is shown on
  uint32_t issuer = 0;  // the tid of the thread that issued it
  const char* category = nullptr;
  std::string name;
  json args;
  Clock::time_point issued;
  std::function<std::optional<Interval>()> interval;
};

struct Registry {
  std::mutex control;  // start() and stop_and_write(), one at a time
  std::mutex mutex;    // what follows, but the buffers' events
  std::vector<std::shared_ptr<ThreadBuffer>> buffers;
  std::map<std::string, uint32_t> tracks;  // named tracks (add_deferred) -> tid
  uint32_t next_tid = 1;
  std::vector<Deferred> deferred;
  int rank = 0;
  uint32_t main_tid = 0;  // the thread that called start(), listed first
  Clock::time_point origin;
};

// Never destroyed: threads may record while the process exits.
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

// The calling thread's buffer, registered on first use; at thread exit an empty one is forgotten, one
// holding events stays until the next start() (its events belong to the session).
struct ThreadSlot {
  std::shared_ptr<ThreadBuffer> buffer;
  ~ThreadSlot() {
    if (!buffer) return;
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    buffer->alive = false;
    if (buffer->events.empty()) std::erase(r.buffers, buffer);
  }
};
thread_local ThreadSlot t_slot;

ThreadBuffer& this_thread_buffer() {
  if (!t_slot.buffer) {
    auto buffer = std::make_shared<ThreadBuffer>();
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    buffer->tid = r.next_tid++;
    r.buffers.push_back(buffer);
    t_slot.buffer = std::move(buffer);
  }
  return *t_slot.buffer;
}

void append(uint64_t state, Event&& event) {
  ThreadBuffer& b = this_thread_buffer();
  if (event.tid == 0) event.tid = b.tid;
  b.busy.store(true, std::memory_order_seq_cst);
  if (g_state.load(std::memory_order_seq_cst) == state) b.events.push_back(std::move(event));
  b.busy.store(false, std::memory_order_release);
}

// Sets the state (recording off) and waits until no thread is in the middle of an append; from then
// on no thread appends until the state says recording again. Holds Registry::mutex.
void quiesce(Registry& r, uint64_t state) {
  g_state.store(state, std::memory_order_seq_cst);
  for (const auto& b : r.buffers)
    while (b->busy.load(std::memory_order_seq_cst)) std::this_thread::yield();
}

double micros(Clock::time_point t, Clock::time_point origin) {
  return static_cast<double>(
             std::chrono::duration_cast<std::chrono::nanoseconds>(t - origin).count()) /
         1000.0;
}

// Writes `text` to path.tmp-<pid>, then renames it to `path`, creating the parent directories.
void write_trace(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  auto fail = [&](const std::string& what, int error) {
    return Error("profiler: cannot write the trace " + path + " (" + what + ": " +
                 std::strerror(error) + "); pick a profile directory that can be written");
  };
  const fs::path target(path);
  if (target.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(target.parent_path(), ec);
    if (ec) throw fail("creating " + target.parent_path().string(), ec.value());
  }
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw fail("opening " + tmp, errno);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) {
      const int error = errno;
      std::remove(tmp.c_str());
      throw fail("writing " + tmp, error);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    std::remove(tmp.c_str());
    throw fail("renaming " + tmp, error);
  }
}

// The deferred event's interval, waiting for it; nullopt when asking failed (the work itself failed:
// that error is reported where the work is waited for, not here).
std::optional<Interval> wait_for_interval(const Deferred& d) {
  try {
    for (;;) {
      if (std::optional<Interval> interval = d.interval()) return interval;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  } catch (...) {
    return std::nullopt;
  }
}

json metadata(const char* name, int pid, uint32_t tid, json args) {
  json m = {{"name", name}, {"ph", "M"}, {"pid", pid}, {"args", std::move(args)}};
  if (tid != 0) m["tid"] = tid;
  return m;
}

}  // namespace

void start(int rank) {
  Registry& r = registry();
  std::lock_guard<std::mutex> control(r.control);
  uint64_t session = 0;
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    session = (g_state.load(std::memory_order_relaxed) >> 1) + 1;
    quiesce(r, session << 1);
    std::erase_if(r.buffers, [](const std::shared_ptr<ThreadBuffer>& b) { return !b->alive; });
    for (const auto& b : r.buffers) b->events.clear();
    r.deferred.clear();
    r.rank = rank;
  }
  ThreadBuffer& me = this_thread_buffer();
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    if (me.name.empty()) me.name = "main";
    r.main_tid = me.tid;
    r.origin = Clock::now();
    g_state.store((session << 1) | 1, std::memory_order_seq_cst);
  }
}

void stop_and_write(const std::string& path) {
  Registry& r = registry();
  std::lock_guard<std::mutex> control(r.control);
  std::vector<Event> events;
  std::vector<Deferred> deferred;
  std::map<uint32_t, std::string> names;  // tid -> thread or track name
  int rank = 0;
  uint32_t main_tid = 0;
  Clock::time_point origin;
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    quiesce(r, g_state.load(std::memory_order_relaxed) & ~uint64_t{1});
    for (const auto& b : r.buffers) {
      std::move(b->events.begin(), b->events.end(), std::back_inserter(events));
      b->events.clear();
      names[b->tid] = b->name.empty() ? "thread " + std::to_string(b->tid) : b->name;
    }
    for (const auto& [name, tid] : r.tracks) names[tid] = name;
    deferred = std::move(r.deferred);
    r.deferred.clear();
    rank = r.rank;
    main_tid = r.main_tid;
    origin = r.origin;
  }

  // Parents before their children: by thread, then start, then the longer first.
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    if (a.tid != b.tid) return a.tid < b.tid;
    if (a.start != b.start) return a.start < b.start;
    return a.end > b.end;
  });
  json trace = json::array();
  std::map<uint32_t, bool> used;  // tids that appear
  auto complete = [&](const char* category, const std::string& name, Clock::time_point start,
                      Clock::time_point end, uint32_t tid, json args) {
    json e = {{"name", name},
              {"cat", category},
              {"ph", "X"},
              {"ts", micros(start, origin)},
              {"dur", micros(end, start)},
              {"pid", rank},
              {"tid", tid}};
    if (!args.is_null()) e["args"] = std::move(args);
    trace.push_back(std::move(e));
    used[tid] = true;
  };
  for (Event& e : events) complete(e.category, e.name, e.start, e.end, e.tid, std::move(e.args));
  uint64_t flow_id = 0;
  for (Deferred& d : deferred) {
    const std::optional<Interval> interval = wait_for_interval(d);
    if (!interval) continue;
    const auto [start, end] = *interval;
    json args = d.args.is_object() ? std::move(d.args) : json::object();
    args["queued_us"] = micros(start, d.issued);
    complete(d.category, d.name, start, end, d.track, std::move(args));
    // An arrow from where the issuing thread handed it over to the event itself.
    ++flow_id;
    trace.push_back({{"name", d.name},
                     {"cat", d.category},
                     {"ph", "s"},
                     {"id", flow_id},
                     {"ts", micros(d.issued, origin)},
                     {"pid", rank},
                     {"tid", d.issuer}});
    trace.push_back({{"name", d.name},
                     {"cat", d.category},
                     {"ph", "f"},
                     {"bp", "e"},
                     {"id", flow_id},
                     {"ts", micros(start, origin)},
                     {"pid", rank},
                     {"tid", d.track}});
    used[d.issuer] = true;
  }

  trace.push_back(metadata("process_name", rank, 0, {{"name", "rank " + std::to_string(rank)}}));
  trace.push_back(metadata("process_sort_index", rank, 0, {{"sort_index", rank}}));
  for (const auto& [tid, unused] : used) {
    const auto name = names.find(tid);
    trace.push_back(
        metadata("thread_name", rank, tid,
                 {{"name", name != names.end() ? name->second : "thread " + std::to_string(tid)}}));
    trace.push_back(
        metadata("thread_sort_index", rank, tid, {{"sort_index", tid == main_tid ? 0 : tid}}));
  }
  const json document = {
      {"traceEvents", std::move(trace)},
      {"displayTimeUnit", "ms"},
      {"otherData",
       {{"rank", rank},
        {"clock", "host steady clock; ts and dur in microseconds since profiler::start"}}}};
  write_trace(path, document.dump(-1, ' ', false, json::error_handler_t::replace));
}

void name_this_thread(const char* name) {
  ThreadBuffer& b = this_thread_buffer();
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  b.name = name;
}

Scope::Scope(const char* category, std::string_view name, json args) {
  const uint64_t state = g_state.load(std::memory_order_relaxed);
  if ((state & 1) == 0) return;
  if (!args.is_null()) args_ = new json(std::move(args));
  begin(state, category, name);
}

void Scope::begin(uint64_t state, const char* category, std::string_view name) {
  state_ = state;
  category_ = category;
  name_.assign(name.data(), name.size());
  start_ = Clock::now();
}

void Scope::end() {
  const Clock::time_point end = Clock::now();
  std::unique_ptr<json> args(args_);
  args_ = nullptr;
  try {
    append(state_,
           Event{category_, std::move(name_), start_, end, 0, args ? std::move(*args) : json()});
  } catch (...) {
    // Out of memory while profiling: the event is lost, the program goes on.
  }
  state_ = 0;
}

void add_deferred(const char* track, const char* category, std::string name, json args,
                  Clock::time_point issued, std::function<std::optional<Interval>()> interval) {
  if (!recording()) return;
  const uint32_t issuer = this_thread_buffer().tid;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  // Checked under the lock stop_and_write takes the list under: added before it, or not at all.
  if ((g_state.load(std::memory_order_seq_cst) & 1) == 0) return;
  auto [it, inserted] = r.tracks.try_emplace(track, 0);
  if (inserted) it->second = r.next_tid++;
  r.deferred.push_back({it->second, issuer, category, std::move(name), std::move(args), issued,
                        std::move(interval)});
}

}  // namespace dtrain::profiler
