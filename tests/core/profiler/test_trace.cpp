// The profiler's Chrome trace: scopes nest and carry their names and args, threads get their own tids
// and names, nothing is recorded outside a session, the file is a Trace Event Format document written
// by rename, modules show up in forward and backward under their paths, the training thread's data
// waits are events, deferred events (DDP's all-reduces) sit on their own track, and an unwritable
// path is a one-line error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/autograd/node.h"
#include "core/data/data_loader.h"
#include "core/data/sampler.h"
#include "core/nn/module.h"
#include "core/ops/ops.h"
#include "core/profiler/trace.h"
#include "error_message.h"

namespace dtrain::profiler {
namespace {

using ::dtrain::testing::error_of;
using nlohmann::json;

// A scratch directory per test and process.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = std::filesystem::temp_directory_path() /
           ("dtrain-" + std::string(info->test_suite_name()) + "-" + info->name() + "-" +
            std::to_string(getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// Stops and writes the session, and reads the document back.
json stop_and_read(const TempDir& dir) {
  const std::string path = dir.file("trace.json");
  stop_and_write(path);
  std::ifstream in(path);
  return json::parse(in);
}

// The complete events named `name` (any name when empty) of `category` (any when null).
std::vector<json> events(const json& trace, const std::string& name,
                         const char* category = nullptr) {
  std::vector<json> out;
  for (const json& e : trace.at("traceEvents")) {
    if (e.at("ph") != "X") continue;
    if (!name.empty() && e.at("name") != name) continue;
    if (category != nullptr && e.at("cat") != category) continue;
    out.push_back(e);
  }
  return out;
}

json only_event(const json& trace, const std::string& name, const char* category = nullptr) {
  std::vector<json> found = events(trace, name, category);
  EXPECT_EQ(found.size(), 1u) << "events named '" << name << "'";
  return found.empty() ? json::object() : found.front();
}

// The thread_name metadata of `tid`; "" when there is none.
std::string thread_name(const json& trace, int64_t tid) {
  for (const json& e : trace.at("traceEvents"))
    if (e.at("ph") == "M" && e.at("name") == "thread_name" && e.at("tid") == tid)
      return e.at("args").at("name");
  return "";
}

double end_of(const json& e) { return e.at("ts").get<double>() + e.at("dur").get<double>(); }

// Whether `inner` lies within `outer`'s interval on the same thread.
bool within(const json& inner, const json& outer) {
  return inner.at("tid") == outer.at("tid") &&
         inner.at("ts").get<double>() >= outer.at("ts").get<double>() &&
         end_of(inner) <= end_of(outer);
}

void busy_for(std::chrono::microseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {}
}

TEST(Trace, ScopesNestAndCarryNamesAndArgs) {
  TempDir dir;
  start(3);
  {
    Scope outer("test", "outer", {{"bucket", 7}, {"dtype", "f32"}});
    busy_for(std::chrono::microseconds(200));
    {
      Scope inner("test", "inner");
      busy_for(std::chrono::microseconds(200));
    }
    busy_for(std::chrono::microseconds(200));
  }
  const json trace = stop_and_read(dir);
  const json outer = only_event(trace, "outer", "test");
  const json inner = only_event(trace, "inner", "test");
  EXPECT_TRUE(within(inner, outer)) << outer << "\n" << inner;
  EXPECT_GT(inner.at("ts").get<double>(), outer.at("ts").get<double>());
  EXPECT_LT(end_of(inner), end_of(outer));
  EXPECT_GE(inner.at("dur").get<double>(), 200.0);  // microseconds
  EXPECT_GE(outer.at("dur").get<double>(), 600.0);
  EXPECT_EQ(outer.at("args").at("bucket"), 7);
  EXPECT_EQ(outer.at("args").at("dtype"), "f32");
  EXPECT_FALSE(inner.contains("args"));
  EXPECT_EQ(outer.at("pid"), 3);                 // the rank
  EXPECT_GE(outer.at("ts").get<double>(), 0.0);  // counted from start()
  EXPECT_EQ(thread_name(trace, outer.at("tid")), "main");
}

TEST(Trace, ThreadsGetTheirOwnTidsAndNames) {
  TempDir dir;
  start(0);
  std::thread worker([] {
    name_this_thread("worker");
    Scope s("test", "on worker");
  });
  worker.join();  // the thread's events outlive it
  std::thread unnamed([] { Scope s("test", "on unnamed"); });
  unnamed.join();
  { Scope s("test", "on main"); }
  const json trace = stop_and_read(dir);
  const json on_worker = only_event(trace, "on worker");
  const json on_unnamed = only_event(trace, "on unnamed");
  const json on_main = only_event(trace, "on main");
  EXPECT_NE(on_worker.at("tid"), on_main.at("tid"));
  EXPECT_NE(on_unnamed.at("tid"), on_main.at("tid"));
  EXPECT_NE(on_unnamed.at("tid"), on_worker.at("tid"));
  EXPECT_EQ(thread_name(trace, on_worker.at("tid")), "worker");
  EXPECT_EQ(thread_name(trace, on_main.at("tid")), "main");
  EXPECT_EQ(thread_name(trace, on_unnamed.at("tid")), "thread " + on_unnamed.at("tid").dump());
  for (const json& e : {on_worker, on_unnamed, on_main})
    EXPECT_LT(e.at("tid").get<int64_t>(), 1000);
}

TEST(Trace, NothingIsRecordedOutsideASession) {
  TempDir dir;
  EXPECT_FALSE(recording());
  { Scope before("test", "before start"); }
  std::optional<Scope> straddling;
  straddling.emplace("test", "begun before start");
  start(0);
  EXPECT_TRUE(recording());
  straddling.reset();  // ends inside the session, but began outside it
  { Scope during("test", "during"); }
  std::optional<Scope> open_at_stop;
  open_at_stop.emplace("test", "open at stop");
  const json trace = stop_and_read(dir);
  EXPECT_FALSE(recording());
  open_at_stop.reset();
  { Scope after("test", "after stop"); }
  EXPECT_EQ(events(trace, "").size(), 1u) << trace.dump();
  EXPECT_EQ(events(trace, "during").size(), 1u);
  // Writing again without a new session: the scopes that ended after the stop are not in it.
  const json again = stop_and_read(dir);
  EXPECT_TRUE(events(again, "").empty()) << again.dump();

  // A new session starts empty.
  start(0);
  const json second = stop_and_read(dir);
  EXPECT_TRUE(events(second, "").empty()) << second.dump();
}

TEST(Trace, FileIsATraceEventDocumentWrittenByRename) {
  TempDir dir;
  const std::string path = dir.file("nested/dirs/trace-rank0.json");
  start(0);
  { Scope s("test", "quoted \"name\"\n"); }
  stop_and_write(path);
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << path;
  const json trace = json::parse(in);  // throws on invalid JSON
  ASSERT_TRUE(trace.at("traceEvents").is_array());
  EXPECT_EQ(trace.at("displayTimeUnit"), "ms");
  EXPECT_EQ(only_event(trace, "quoted \"name\"\n").at("cat"), "test");
  bool process_named = false;
  for (const json& e : trace.at("traceEvents")) {
    ASSERT_TRUE(e.contains("ph") && e.contains("pid")) << e;
    if (e.at("ph") == "M" && e.at("name") == "process_name")
      process_named = e.at("args").at("name") == "rank 0";
  }
  EXPECT_TRUE(process_named);
  // Only the final name is left in the directory.
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path / "nested/dirs"))
    names.push_back(entry.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"trace-rank0.json"});
}

TEST(Trace, UnwritablePathIsOneLineError) {
  TempDir dir;
  std::ofstream(dir.file("a-file")) << "x";
  start(0);
  { Scope s("test", "event"); }
  const std::string bad = dir.file("a-file") + "/profile/trace-rank0.json";
  const std::string message = error_of([&] { stop_and_write(bad); });
  EXPECT_NE(message.find("cannot write the trace " + bad), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_FALSE(recording());
  // A directory where the file should go.
  std::filesystem::create_directories(dir.file("is-a-dir"));
  EXPECT_NE(error_of([&] { stop_and_write(dir.file("is-a-dir")); }).find("cannot write the trace"),
            std::string::npos);
}

// A layer that opens its forward scope at the top of forward(), as every nn module does.
class Dense : public nn::Module {
 public:
  Dense(int64_t in, int64_t out) : Module("Dense") {
    weight = register_parameter("weight", Tensor::randn({out, in}));
    bias = register_parameter("bias", Tensor::zeros({out}));
  }
  Tensor forward(const Tensor& x) const {
    auto scope = forward_scope();
    return tanh(linear(x, weight, bias));
  }
  Tensor weight, bias;
};

// layers.0 -> layers.1 -> (x2, a node of Net itself) -> head
class Net : public nn::Module {
 public:
  Net() : Module("Net") {
    layers = register_module("layers", std::make_shared<nn::ModuleList>());
    layers->push_back(std::make_shared<Dense>(4, 8));
    layers->push_back(std::make_shared<Dense>(8, 8));
    head = register_module("head", std::make_shared<Dense>(8, 2));
  }
  Tensor forward(const Tensor& x) const {
    auto scope = forward_scope();
    Tensor h = x;
    for (size_t i = 0; i < layers->size(); ++i) h = layers->at<Dense>(i)->forward(h);
    return head->forward(h * 2.0);
  }
  std::shared_ptr<nn::ModuleList> layers;
  std::shared_ptr<Dense> head;
};

TEST(Trace, ModulePathsAreTheRegisteredNames) {
  Net net;
  EXPECT_EQ(net.path(), "");
  EXPECT_EQ(net.layers->at<Dense>(1)->path(), "layers.1");
  EXPECT_EQ(net.head->path(), "head");
  // A module kept after its parent is gone has no path (and no dangling parent).
  std::shared_ptr<Dense> kept;
  {
    Net other;
    kept = other.head;
  }
  EXPECT_EQ(kept->path(), "");
}

TEST(Trace, ModelForwardAndBackwardPerModule) {
  TempDir dir;
  Net net;
  const Tensor x = Tensor::randn({5, 4});

  // Not recording: the graph carries no module frames.
  Tensor quiet = sum(net.forward(x));
  EXPECT_EQ(quiet.grad_fn()->module_frame, nullptr);
  quiet.backward();

  start(0);
  Tensor loss = sum(net.forward(x));  // the sum is outside every module
  loss.backward();
  const json trace = stop_and_read(dir);

  const json net_forward = only_event(trace, "Net", "forward");
  std::vector<json> forward;
  for (const std::string path : {"layers.0", "layers.1", "head"}) {
    forward.push_back(only_event(trace, path, "forward"));
    EXPECT_TRUE(within(forward.back(), net_forward)) << path;
  }
  EXPECT_LE(end_of(forward[0]), forward[1].at("ts").get<double>());  // in call order
  EXPECT_LE(end_of(forward[1]), forward[2].at("ts").get<double>());

  const json pass = only_event(trace, "backward", "backward");
  const json net_backward = only_event(trace, "Net", "backward");
  EXPECT_TRUE(within(net_backward, pass));
  std::vector<json> backward;
  for (const std::string path : {"layers.0", "layers.1", "head"}) {
    backward.push_back(only_event(trace, path, "backward"));
    EXPECT_TRUE(within(backward.back(), net_backward)) << path;
  }
  // Reverse order: head, then layers.1, then layers.0.
  EXPECT_LE(end_of(backward[2]), backward[1].at("ts").get<double>());
  EXPECT_LE(end_of(backward[1]), backward[0].at("ts").get<double>());
  EXPECT_GE(net_forward.at("ts").get<double>(), 0.0);
  EXPECT_LE(end_of(net_forward), pass.at("ts").get<double>());
}

// A dataset whose batches take a while.
class SlowDataset : public data::Dataset {
 public:
  int64_t size() const override { return 8; }
  data::Batch get_batch(const std::vector<int64_t>& indices, uint64_t) const override {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    data::Batch b;
    b.input = Tensor::zeros({static_cast<int64_t>(indices.size())});
    b.indices = indices;
    return b;
  }
};

TEST(Trace, DataWaitIsAnEvent) {
  TempDir dir;
  data::DataLoader loader(std::make_shared<SlowDataset>(),
                          std::make_shared<data::SequentialSampler>(8),
                          {.batch_size = 2, .prefetch = 1});
  start(0);
  loader.start_epoch(0);
  ASSERT_TRUE(loader.next().has_value());
  const json trace = stop_and_read(dir);
  loader.stop();
  const json wait = only_event(trace, "wait for batch", "data");
  EXPECT_EQ(thread_name(trace, wait.at("tid")), "main");
  EXPECT_GE(wait.at("dur").get<double>(), 10'000.0);  // most of the 30 ms load
  EXPECT_EQ(wait.at("args").at("batch"), 0);
  EXPECT_EQ(wait.at("args").at("epoch"), 0);
  std::vector<json> loads = events(trace, "load batch", "data");
  ASSERT_FALSE(loads.empty());
  EXPECT_EQ(thread_name(trace, loads.front().at("tid")), "data-loader");
}

TEST(Trace, DeferredEventsSitOnTheirTrackWithAnArrow) {
  TempDir dir;
  start(0);
  std::atomic<bool> done{false};
  Clock::time_point run_start, run_end;
  std::thread agent;
  {
    Scope launcher("test", "launcher");
    const Clock::time_point issued = Clock::now();
    agent = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      run_start = Clock::now();
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
      run_end = Clock::now();
      done = true;
    });
    add_deferred("ddp-comm", "comm", "all_reduce bucket 0", {{"bucket", 0}, {"bytes", 400}}, issued,
                 [&]() -> std::optional<Interval> {
                   if (!done) return std::nullopt;
                   return Interval{run_start, run_end};
                 });
  }
  const json trace = stop_and_read(dir);  // waits for the agent
  agent.join();
  const json launcher = only_event(trace, "launcher");
  const json comm = only_event(trace, "all_reduce bucket 0", "comm");
  EXPECT_NE(comm.at("tid"), launcher.at("tid"));
  EXPECT_EQ(thread_name(trace, comm.at("tid")), "ddp-comm");
  EXPECT_EQ(comm.at("args").at("bytes"), 400);
  EXPECT_GE(comm.at("args").at("queued_us").get<double>(), 1'000.0);
  EXPECT_GE(comm.at("dur").get<double>(), 2'000.0);
  int flow_ends = 0;
  for (const json& e : trace.at("traceEvents")) {
    if (e.at("ph") == "s") flow_ends += e.at("tid") == launcher.at("tid") ? 1 : 100;
    if (e.at("ph") == "f") flow_ends += e.at("tid") == comm.at("tid") ? 1 : 100;
  }
  EXPECT_EQ(flow_ends, 2);
}

}  // namespace
}  // namespace dtrain::profiler
