// core/io/checkpoint: checkpoint directories (round trip, replacement, and that an abandoned or
// crashed writer leaves the previous checkpoint whole) and the generator state they carry.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <filesystem>
#include <fstream>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
#include "tests/core/io/io_test_util.h"

namespace dtrain {
namespace {

namespace fs = std::filesystem;

class CheckpointIo : public testing::IoTest {};

NamedTensors model_tensors(float base) {
  return {{"weight", Tensor::full({2, 3}, base)},
          {"bias", Tensor::full({3}, base + 1, DType::bf16)}};
}

void write_checkpoint(const std::string& dir, float base, int64_t step) {
  CheckpointWriter w(dir);
  w.write_tensors(kCheckpointModelFile, model_tensors(base), {{"step", std::to_string(step)}});
  w.write_tensors(kCheckpointOptimizerFile, {{"weight.exp_avg", Tensor::full({2, 3}, -base)}});
  w.write_json(kCheckpointStateFile,
               {{"step", step}, {"data_position", {{"epoch", 1}, {"batch", 7}}}});
  w.commit();
}

void expect_checkpoint(const std::string& dir, float base, int64_t step) {
  Checkpoint c(dir);
  EXPECT_EQ(c.files(),
            (std::vector<std::string>{"model.safetensors", "optimizer.safetensors", "state.json"}));
  SafetensorsFile model = c.tensors();
  EXPECT_EQ(model.at("weight").to_vector<float>(), std::vector<float>(6, base));
  EXPECT_EQ(model.at("bias").dtype(), DType::bf16);
  EXPECT_EQ(model.metadata().at("step"), std::to_string(step));
  EXPECT_EQ(c.tensors(kCheckpointOptimizerFile).at("weight.exp_avg").to_vector<float>(),
            std::vector<float>(6, -base));
  nlohmann::json state = c.json();
  EXPECT_EQ(state["step"].get<int64_t>(), step);
  EXPECT_EQ(state["data_position"]["batch"].get<int>(), 7);
}

// Nothing but the checkpoint itself is left in its parent directory.
void expect_no_leftovers(const fs::path& parent) {
  for (const auto& e : fs::directory_iterator(parent)) {
    std::string name = e.path().filename().string();
    EXPECT_EQ(name.find(".tmp-"), std::string::npos) << name;
    EXPECT_EQ(name.find(".old-"), std::string::npos) << name;
  }
}

TEST_F(CheckpointIo, RoundTripAndReplace) {
  std::string dir = path("run/ckpt");  // parent created by the writer
  EXPECT_FALSE(Checkpoint::exists(dir));
  write_checkpoint(dir, 1.5f, 100);
  EXPECT_TRUE(Checkpoint::exists(dir));
  expect_checkpoint(dir, 1.5f, 100);
  write_checkpoint(dir + "/", 2.5f, 200);  // a trailing slash names the same directory
  expect_checkpoint(dir, 2.5f, 200);
  expect_no_leftovers(path("run"));
}

TEST_F(CheckpointIo, AbandonedWriterLeavesOldCheckpoint) {
  std::string dir = path("ckpt");
  write_checkpoint(dir, 1.0f, 10);
  {
    CheckpointWriter w(dir);
    w.write_tensors(kCheckpointModelFile, model_tensors(9.0f));
    w.write_json(kCheckpointStateFile, {{"step", 90}});
    EXPECT_TRUE(fs::is_directory(w.temp_dir()));
  }  // destroyed without commit()
  expect_checkpoint(dir, 1.0f, 10);
  expect_no_leftovers(dir_);

  // A writer that fails part way (here: a file written twice) is abandoned the same way.
  try {
    CheckpointWriter w(dir);
    w.write_tensors(kCheckpointModelFile, model_tensors(9.0f));
    w.write_tensors(kCheckpointModelFile, model_tensors(9.0f));
    w.commit();
    ADD_FAILURE() << "writing a file twice did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already written"), std::string::npos) << e.what();
  }
  expect_checkpoint(dir, 1.0f, 10);
  expect_no_leftovers(dir_);
}

TEST_F(CheckpointIo, CrashedWriterLeavesOldCheckpoint) {
  std::string dir = path("ckpt");
  write_checkpoint(dir, 1.0f, 10);
  // A process that dies mid-save runs no destructor: build the writer in raw storage and never
  // destroy it (its few strings leak, as they would in a crash).
  alignas(CheckpointWriter) static unsigned char storage[sizeof(CheckpointWriter)];
  auto* crashed = new (storage) CheckpointWriter(dir);
  crashed->write_tensors(kCheckpointModelFile, model_tensors(9.0f));
  std::string stale = crashed->temp_dir();
  EXPECT_TRUE(fs::exists(stale));
  expect_checkpoint(dir, 1.0f, 10);  // the reader ignores the half-written directory

  // The next save (same pid here, as after a restart that reuses it) clears it and replaces the old.
  write_checkpoint(dir, 3.0f, 30);
  expect_checkpoint(dir, 3.0f, 30);
  EXPECT_FALSE(fs::exists(stale));
}

TEST_F(CheckpointIo, InterruptedCommitIsRecovered) {
  // The fallback commit renames the old checkpoint to <dir>.old-<pid> before moving the new one in; a
  // crash between the two renames leaves only that copy, which the reader finds.
  std::string dir = path("ckpt");
  write_checkpoint(dir, 4.0f, 40);
  fs::rename(dir, dir + ".old-12345");
  ASSERT_TRUE(Checkpoint::exists(dir));
  expect_checkpoint(dir, 4.0f, 40);
  EXPECT_EQ(Checkpoint(dir).dir(), dir + ".old-12345");
  write_checkpoint(dir, 5.0f, 50);
  expect_checkpoint(dir, 5.0f, 50);
  expect_no_leftovers(dir_);
}

// dtrain replaces or removes only what it wrote: a user's directory, a user's backup named like a
// left-aside copy, and a temporary-looking folder of the user's all survive.
TEST_F(CheckpointIo, ForeignDirectoryIsRefusedAndKeptWhole) {
  std::string dir = path("d");
  fs::create_directories(dir + "/sub");
  std::ofstream(dir + "/notes.txt") << "x";
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      if (attempt == 0)
        CheckpointWriter::check_target(dir);
      else
        write_checkpoint(dir, 1.0f, 1);
      ADD_FAILURE() << "a directory dtrain did not write was accepted";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(dir), std::string::npos) << msg;
      EXPECT_NE(msg.find("notes.txt"), std::string::npos) << "names what it holds: " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
  EXPECT_TRUE(fs::is_regular_file(dir + "/notes.txt"));
  EXPECT_TRUE(fs::is_directory(dir + "/sub"));
  expect_no_leftovers(dir_);
  // An empty directory is taken, and so is a checkpoint an older dtrain wrote (no marker file).
  fs::create_directories(path("empty"));
  write_checkpoint(path("empty"), 2.0f, 2);
  expect_checkpoint(path("empty"), 2.0f, 2);
  write_checkpoint(path("legacy"), 3.0f, 3);
  fs::remove(path("legacy/.dtrain-checkpoint"));
  write_checkpoint(path("legacy"), 4.0f, 4);
  expect_checkpoint(path("legacy"), 4.0f, 4);
}

TEST_F(CheckpointIo, UserSiblingsSurviveACommit) {
  std::string dir = path("ck");
  for (const char* name : {"ck.old-mybackup", "ck.old-123", "ck.tmp-notes", "ck.tmp-999999999"}) {
    fs::create_directories(path(name));
    std::ofstream(path(name) + "/mine.txt") << name;
  }
  write_checkpoint(dir, 1.0f, 1);
  write_checkpoint(dir, 2.0f, 2);
  for (const char* name : {"ck.old-mybackup", "ck.old-123", "ck.tmp-notes", "ck.tmp-999999999"}) {
    EXPECT_TRUE(fs::is_regular_file(path(name) + "/mine.txt")) << name << " was removed";
  }
  // The user's "ck.old-123" (no marker) is not mistaken for a checkpoint left aside.
  fs::rename(dir, path("moved"));
  EXPECT_FALSE(Checkpoint::exists(dir));
}

TEST_F(CheckpointIo, KilledWritersFoldersAreRemovedAtTheNextCommit) {
  std::string dir = path("ck");
  write_checkpoint(dir, 1.0f, 1);
  // A writer killed mid-save: its process is gone, its folder stays. Make one in a child process
  // that is SIGKILLed after writing a file, and one that died between mkdir and the marker (empty).
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto* crashed = new CheckpointWriter(dir);
    crashed->write_text("partial.bin", "half");
    raise(SIGKILL);
  }
  // Dead but not reaped yet (a zombie, as a killed rank is until its parent collects it): it still
  // answers kill(pid, 0), yet its folder is garbage.
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  ASSERT_EQ(info.si_code, CLD_KILLED);
  std::string killed = dir + ".tmp-" + std::to_string(child);
  ASSERT_TRUE(fs::is_directory(killed));
  std::string empty = dir + ".tmp-999999998";  // above any pid_max: no such process
  fs::create_directories(empty);
  write_checkpoint(dir, 2.0f, 2);
  EXPECT_FALSE(fs::exists(killed)) << "a dead writer's folder is left";
  int status = 0;
  EXPECT_EQ(waitpid(child, &status, 0), child);
  EXPECT_FALSE(fs::exists(empty));
  expect_checkpoint(dir, 2.0f, 2);
  expect_no_leftovers(dir_);
}

TEST_F(CheckpointIo, ErrorsNameTheProblem) {
  std::string dir = path("ckpt");
  try {
    Checkpoint c(dir);
    ADD_FAILURE() << "opening a missing checkpoint did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir), std::string::npos) << e.what();
  }
  write_checkpoint(dir, 1.0f, 1);
  try {
    Checkpoint(dir).tensors("ema.safetensors");
    ADD_FAILURE() << "reading a missing file did not throw";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("ema.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("state.json"), std::string::npos) << "lists what is there: " << msg;
  }
  CheckpointWriter w(path("other"));
  EXPECT_THROW(w.write_text("../escape", "x"), Error);
  EXPECT_THROW(w.write_text("", "x"), Error);
  w.write_text("notes.txt", "hello\n");
  w.commit();
  EXPECT_THROW(w.write_text("late.txt", "x"), Error);
  EXPECT_EQ(Checkpoint(path("other")).text("notes.txt"), "hello\n");
  EXPECT_FALSE(fs::exists(path("escape")));
}

TEST_F(CheckpointIo, GeneratorStateResumesTheStream) {
  Generator gen(42);
  gen.next_u64();
  gen.next_normal();  // leaves a cached normal in the state
  std::string dir = path("ckpt");
  {
    CheckpointWriter w(dir);
    w.write_json(kCheckpointStateFile, {{"rng", generator_state_to_json(gen)}});
    w.commit();
  }
  std::vector<double> expected;
  for (int i = 0; i < 5; ++i) expected.push_back(gen.next_normal());
  Generator restored(0);
  generator_state_from_json(Checkpoint(dir).json()["rng"], restored);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(restored.next_normal(), expected[static_cast<size_t>(i)]);
  EXPECT_THROW(generator_state_from_json(nlohmann::json::array({"12"}), restored), Error);
}

}  // namespace
}  // namespace dtrain
