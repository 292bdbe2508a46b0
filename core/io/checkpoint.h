// A checkpoint is a directory of named files: `model.safetensors`, usually `optimizer.safetensors`, and
// `state.json` (step, data position, scheduler state, RNG states, ...), plus whatever else a caller
// adds. This file knows nothing of modules or optimizers: they hand over their own named tensors and
// JSON, and read them back from a Checkpoint.
//
// Atomicity: CheckpointWriter writes everything into `<dir>.tmp-<pid>`, syncs each file and the
// directory, and only commit() puts it in place of `<dir>`, in one atomic rename exchange where the
// filesystem supports it (Linux renameat2), otherwise by renaming the old directory aside to
// `<dir>.old-<pid>`, renaming the new one in, and removing the old one. A crash at any point leaves
// the previous checkpoint whole: at `<dir>`, or (in the second path's brief window) at `<dir>.old-<pid>`,
// where Checkpoint finds it when `<dir>` is missing.
//
// Ownership: dtrain replaces or removes only directories it wrote. Every directory a writer makes holds
// a marker file (`.dtrain-checkpoint`) from its first moment; an existing `<dir>` is replaced only when
// it holds the marker, is empty, or is a checkpoint of an older dtrain (state.json + model.safetensors,
// no subdirectories); anything else is refused with an error. Siblings are removed only when named
// exactly `<dir>.old-<pid>` / `<dir>.tmp-<pid>` and marked; a `.tmp-<pid>` is removed at the next
// commit once its process is gone (a writer killed mid-save), so kills leave no growing litter.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/io/safetensors.h"
#include "core/tensor/random.h"

namespace dtrain {

// File names shared by everything that saves or resumes training.
inline constexpr const char* kCheckpointModelFile = "model.safetensors";
inline constexpr const char* kCheckpointOptimizerFile = "optimizer.safetensors";
inline constexpr const char* kCheckpointStateFile = "state.json";

class CheckpointWriter {
 public:
  // Prepares `<dir>.tmp-<pid>` (removing a stale one of that exact name). Parent directories of
  // `dir` are created. Nothing at `dir` changes until commit().
  // Throws when `dir` exists and is not a checkpoint dtrain may replace (see Ownership above).
  explicit CheckpointWriter(std::string dir);
  // The same check on its own, for a caller that wants to fail before hours of training, not after.
  static void check_target(const std::string& dir);
  // Without commit(), the temporary directory is removed and `dir` is left as it was.
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Each file may be written once; names are plain file names (no '/', not "." or "..").
  void write_tensors(const std::string& file, const NamedTensors& tensors,
                     const std::map<std::string, std::string>& metadata = {});
  void write_json(const std::string& file, const nlohmann::json& value);
  void write_text(const std::string& file, const std::string& content);

  // Puts the checkpoint in place of `dir` (see the top of this file). After commit() the writer is done.
  void commit();
  // Removes the temporary directory now; the same as destroying the writer uncommitted.
  void abandon();

  const std::string& dir() const { return dir_; }
  const std::string& temp_dir() const { return temp_dir_; }
  bool committed() const { return committed_; }

 private:
  std::string claim(const std::string& file);  // checks the name, returns its path in temp_dir_

  std::string dir_;
  std::string temp_dir_;
  std::vector<std::string> written_;
  bool committed_ = false;
  bool abandoned_ = false;
};

// Reads a committed checkpoint directory.
class Checkpoint {
 public:
  // Throws a dtrain::Error naming `dir` when there is no checkpoint there (and none left aside by an
  // interrupted commit at `<dir>.old-<pid>`).
  explicit Checkpoint(std::string dir);
  // Whether `dir` (or a copy left aside by an interrupted commit) holds a checkpoint.
  static bool exists(const std::string& dir);

  // The directory actually read (`dir`, or the copy left aside).
  const std::string& dir() const { return dir_; }
  std::vector<std::string> files() const;  // sorted plain file names
  bool has(const std::string& file) const;
  std::string path(const std::string& file) const;  // dir/file; throws naming the file when missing

  SafetensorsFile tensors(const std::string& file = kCheckpointModelFile) const;
  nlohmann::json json(const std::string& file = kCheckpointStateFile) const;
  std::string text(const std::string& file) const;

 private:
  std::string dir_;
};

// Removes checkpoint directory `dir` when dtrain wrote it (it holds the marker): its state.json first,
// so that a kill part way leaves a directory no reader takes for a checkpoint. Returns false, and
// leaves `dir` alone, when it is missing or not dtrain's.
bool remove_checkpoint(const std::string& dir);

// Removes, in directory `parent`, the temporary directories `<name>.tmp-<pid>` of writers whose process
// is gone (killed mid-save) and that hold the marker (or nothing): for a caller that writes checkpoints
// of ever new names into one directory, where a writer's own commit would not find them.
void remove_abandoned_writes(const std::string& parent);

// A Generator's full state as JSON (one 16-digit hex string per state word: exact, and readable by
// any JSON reader, which 64-bit numbers are not) and back; for the RNG states in state.json.
nlohmann::json generator_state_to_json(const Generator& gen);
void generator_state_from_json(const nlohmann::json& value, Generator& gen);

}  // namespace dtrain
