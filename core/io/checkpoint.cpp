#include "core/io/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "core/io/durable_file.h"

namespace dtrain {

namespace fs = std::filesystem;

namespace {

// "ckpt/" and "ckpt" name the same directory; the suffixes below must attach to "ckpt".
std::string normalise_dir(const std::string& dir) {
  DTRAIN_CHECK(!dir.empty(), "checkpoint: empty directory name");
  fs::path p = fs::path(dir).lexically_normal();
  if (!p.has_filename() && p.has_parent_path()) p = p.parent_path();
  DTRAIN_CHECK(!p.empty() && p != "." && p != ".." && p != "/", "checkpoint: ", dir,
               " cannot be a checkpoint directory (name a directory of its own, e.g. runs/ckpt)");
  return p.string();
}

std::string parent_of(const std::string& dir) {
  fs::path parent = fs::path(dir).parent_path();
  return parent.empty() ? "." : parent.string();
}

// Every directory a writer makes holds this file from its first moment, so a directory carrying it is
// dtrain's own: the only kind dtrain ever replaces or removes.
constexpr const char* kMarkerFile = ".dtrain-checkpoint";

bool has_marker(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / kMarkerFile, ec);
}

// Created in place, not through a temporary name: a kill at any instant leaves the folder empty or
// marked, both of which the next commit recognises as a dead writer's.
void mark(const fs::path& dir) {
  std::ofstream out(dir / kMarkerFile);
  out << "dtrain checkpoint\n";
  DTRAIN_CHECK(out.good(), "checkpoint: cannot write ", (dir / kMarkerFile).string());
}

// A checkpoint written before the marker existed: the trainer's two files and no subdirectory.
bool is_unmarked_checkpoint(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_regular_file(dir / kCheckpointStateFile, ec) ||
      !fs::is_regular_file(dir / kCheckpointModelFile, ec)) {
    return false;
  }
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file(ec)) return false;
  }
  return !ec;
}

// The pid in `<dir><tag><pid>` (tag ".tmp-" or ".old-"), or -1 when `name` is not of that form.
pid_t owner_pid(const std::string& name, const std::string& dir, const char* tag) {
  const std::string prefix = fs::path(dir).filename().string() + tag;
  if (name.size() <= prefix.size() || name.size() > prefix.size() + 9 ||
      name.rfind(prefix, 0) != 0) {
    return -1;
  }
  const std::string digits = name.substr(prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return static_cast<pid_t>(std::stol(digits));
}

// A killed process whose parent has not reaped it yet is a zombie: it still answers kill(pid, 0) but
// will never write again, so it counts as gone.
bool process_alive(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t name_end = text.rfind(')');  // "pid (comm) S ...": the state follows the name
  return name_end == std::string::npos || name_end + 2 >= text.size() || text[name_end + 2] != 'Z';
}

// Siblings `<dir><tag><pid>` that dtrain made: the name has that exact form and the directory holds
// the marker (or, for a temporary directory, nothing yet: a writer killed before its first file).
std::vector<fs::path> own_siblings(const std::string& dir, const char* tag) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent_of(dir), ec)) {
    if (!entry.is_directory() || entry.is_symlink()) continue;
    const fs::path& p = entry.path();
    if (owner_pid(p.filename().string(), dir, tag) < 0) continue;
    if (has_marker(p) || (std::string(tag) == ".tmp-" && fs::is_empty(p, ec))) out.push_back(p);
  }
  return out;
}

// Directories `<dir>.old-<pid>` that an interrupted commit (between its two renames) left behind.
std::vector<fs::path> left_aside(const std::string& dir) { return own_siblings(dir, ".old-"); }

// Removes a directory dtrain wrote with its marker last, so that a kill part way leaves a folder that is
// still recognisably dtrain's (and is removed at the next commit) instead of an anonymous remainder.
void remove_own(const fs::path& dir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename() != kMarkerFile) fs::remove_all(entry.path(), ec);
  }
  fs::remove_all(dir, ec);
}

// Temporary directories of writers whose process is gone (killed mid-save): never committed, garbage.
void remove_dead_writers(const std::string& dir) {
  std::error_code ec;
  for (const auto& p : own_siblings(dir, ".tmp-")) {
    pid_t pid = owner_pid(p.filename().string(), dir, ".tmp-");
    if (pid != ::getpid() && !process_alive(pid)) remove_own(p);
  }
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

// ---------------------------------------------------------------------------------------- writer

void CheckpointWriter::check_target(const std::string& dir) {
  const std::string d = normalise_dir(dir);
  std::error_code ec;
  fs::file_status st = fs::symlink_status(d, ec);
  if (!fs::exists(st)) return;
  DTRAIN_CHECK(
      fs::is_directory(st), "checkpoint: ", d,
      " exists and is not a directory; move it away or choose another checkpoint directory");
  if (has_marker(d) || is_unmarked_checkpoint(d) || fs::is_empty(d, ec)) return;
  std::string listing;
  int shown = 0;
  for (const auto& entry : fs::directory_iterator(d, ec)) {
    if (shown++ == 3) {
      listing += ", ...";
      break;
    }
    listing += (listing.empty() ? "" : ", ") + entry.path().filename().string();
  }
  throw Error(
      "checkpoint: " + d + " is a directory that dtrain did not write (it holds " + listing +
      "); dtrain replaces only its own checkpoints: choose a new or empty checkpoint directory");
}

CheckpointWriter::CheckpointWriter(std::string dir)
    : dir_(normalise_dir(dir)), temp_dir_(dir_ + ".tmp-" + std::to_string(::getpid())) {
  check_target(dir_);
  std::error_code ec;
  fs::create_directories(parent_of(dir_), ec);
  DTRAIN_CHECK(!ec, "checkpoint: cannot create ", parent_of(dir_), ": ", ec.message());
  // A directory of this exact name is left from an earlier writer of this process (or a crashed
  // process whose pid was reused); it was never committed, so it is garbage - when it is dtrain's.
  if (fs::exists(fs::symlink_status(temp_dir_, ec))) {
    DTRAIN_CHECK(fs::is_directory(fs::symlink_status(temp_dir_, ec)) &&
                     (has_marker(temp_dir_) || fs::is_empty(temp_dir_, ec)),
                 "checkpoint: ", temp_dir_,
                 " is in the way and dtrain did not write it; move it away");
    remove_own(temp_dir_);
  }
  fs::create_directory(temp_dir_, ec);
  DTRAIN_CHECK(!ec, "checkpoint: cannot create ", temp_dir_, ": ", ec.message());
  mark(temp_dir_);
}

CheckpointWriter::~CheckpointWriter() {
  if (!committed_ && !abandoned_) {
    remove_own(temp_dir_);  // best effort: a destructor must not throw
  }
}

void CheckpointWriter::abandon() {
  if (committed_ || abandoned_) return;
  abandoned_ = true;
  remove_own(temp_dir_);
}

std::string CheckpointWriter::claim(const std::string& file) {
  DTRAIN_CHECK(!committed_ && !abandoned_, "checkpoint: ", dir_, ": cannot write ", file, " after ",
               committed_ ? "commit()" : "abandon()");
  DTRAIN_CHECK(!file.empty() && file != "." && file != ".." && file != kMarkerFile &&
                   file.find('/') == std::string::npos,
               "checkpoint: ", dir_, ": invalid file name '", file,
               "' (use a plain name like state.json)");
  DTRAIN_CHECK(std::find(written_.begin(), written_.end(), file) == written_.end(),
               "checkpoint: ", dir_, ": ", file, " was already written to this checkpoint");
  written_.push_back(file);
  return (fs::path(temp_dir_) / file).string();
}

void CheckpointWriter::write_tensors(const std::string& file, const NamedTensors& tensors,
                                     const std::map<std::string, std::string>& metadata) {
  save_safetensors(claim(file), tensors, metadata);
}

void CheckpointWriter::write_json(const std::string& file, const nlohmann::json& value) {
  std::string path = claim(file);
  std::string text;
  try {
    text = value.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {
    throw Error("checkpoint: " + path +
                ": cannot encode JSON (strings must be UTF-8): " + e.what());
  }
  write_file_atomically(path, text);
}

void CheckpointWriter::write_text(const std::string& file, const std::string& content) {
  write_file_atomically(claim(file), content);
}

void CheckpointWriter::commit() {
  DTRAIN_CHECK(!committed_ && !abandoned_, "checkpoint: ", dir_, ": commit() after ",
               committed_ ? "commit()" : "abandon()");
  fsync_directory(temp_dir_);
  const std::string parent = parent_of(dir_);
  std::error_code ec;
  fs::file_status st = fs::symlink_status(dir_, ec);
  if (fs::exists(st)) {
    check_target(dir_);  // it may have appeared since the writer started
    // A checkpoint of an older dtrain gets the marker, so that a copy of it left aside is known too.
    if (!has_marker(dir_)) mark(dir_);
    // One atomic step: the new directory takes the final name and the old one takes the temporary
    // name, so there is no instant without a whole checkpoint at `dir_`.
    if (::renameat2(AT_FDCWD, temp_dir_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE) == 0) {
      fsync_directory(parent);
      committed_ = true;
      remove_own(temp_dir_);  // the old checkpoint, now under the temporary name
    } else {
      DTRAIN_CHECK(errno == EINVAL || errno == ENOSYS || errno == ENOTSUP,
                   "checkpoint: cannot move ", temp_dir_, " into place at ", dir_, ": ",
                   errno_text());
      // No exchange on this filesystem: move the old checkpoint aside, the new one in, then drop the
      // old one. A crash between the two renames leaves the old one whole at `aside`.
      const std::string aside = dir_ + ".old-" + std::to_string(::getpid());
      if (fs::exists(fs::symlink_status(aside, ec))) {
        DTRAIN_CHECK(has_marker(aside), "checkpoint: ", aside,
                     " is in the way and dtrain did not write it; move it away");
        remove_own(aside);
      }
      DTRAIN_CHECK(std::rename(dir_.c_str(), aside.c_str()) == 0,
                   "checkpoint: cannot move the old ", dir_, " aside to ", aside, ": ",
                   errno_text());
      if (std::rename(temp_dir_.c_str(), dir_.c_str()) != 0) {
        std::string why = errno_text();
        std::rename(aside.c_str(), dir_.c_str());  // put the old one back
        throw Error("checkpoint: cannot move " + temp_dir_ + " into place at " + dir_ + ": " + why);
      }
      fsync_directory(parent);
      committed_ = true;
      remove_own(aside);
    }
  } else {
    DTRAIN_CHECK(std::rename(temp_dir_.c_str(), dir_.c_str()) == 0, "checkpoint: cannot move ",
                 temp_dir_, " into place at ", dir_, ": ", errno_text());
    committed_ = true;
  }
  // Copies left aside by interrupted commits are superseded now, and killed writers' folders are junk.
  for (const auto& p : left_aside(dir_)) remove_own(p);
  remove_dead_writers(dir_);
  fsync_directory(parent);
}

bool remove_checkpoint(const std::string& dir) {
  const fs::path d = normalise_dir(dir);
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(d, ec)) || !has_marker(d)) return false;
  fs::remove(d / kCheckpointStateFile, ec);
  remove_own(d);
  return true;
}

void remove_abandoned_writes(const std::string& parent) {
  std::error_code ec;
  std::set<std::string> bases;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const std::string name = entry.path().filename().string();
    const size_t tag = name.rfind(".tmp-");
    if (tag != std::string::npos && tag > 0) bases.insert(name.substr(0, tag));
  }
  for (const std::string& base : bases) remove_dead_writers((fs::path(parent) / base).string());
}

// ---------------------------------------------------------------------------------------- reader

Checkpoint::Checkpoint(std::string dir) : dir_(normalise_dir(dir)) {
  std::error_code ec;
  if (fs::is_directory(dir_, ec)) return;
  // An interrupted commit may have left the previous checkpoint aside; take the newest.
  std::vector<fs::path> aside = left_aside(dir_);
  DTRAIN_CHECK(!aside.empty(), "checkpoint: no checkpoint directory at ", dir_,
               " (check the path, or start without resuming)");
  std::sort(aside.begin(), aside.end(), [](const fs::path& a, const fs::path& b) {
    std::error_code ec;
    return fs::last_write_time(a, ec) < fs::last_write_time(b, ec);
  });
  dir_ = aside.back().string();
}

bool Checkpoint::exists(const std::string& dir) {
  std::string d;
  try {
    d = normalise_dir(dir);
  } catch (const Error&) {
    return false;
  }
  std::error_code ec;
  return fs::is_directory(d, ec) || !left_aside(d).empty();
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    std::string name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && name != kMarkerFile) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool Checkpoint::has(const std::string& file) const {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir_) / file, ec);
}

std::string Checkpoint::path(const std::string& file) const {
  if (!has(file)) {
    std::string list;
    for (const auto& f : files()) list += (list.empty() ? "" : ", ") + f;
    throw Error("checkpoint: " + dir_ + ": no file " + file +
                " (it holds: " + (list.empty() ? "nothing" : list) + ")");
  }
  return (fs::path(dir_) / file).string();
}

SafetensorsFile Checkpoint::tensors(const std::string& file) const {
  return load_safetensors(path(file));
}

nlohmann::json Checkpoint::json(const std::string& file) const {
  std::string p = path(file);
  try {
    return nlohmann::json::parse(read_file(p));
  } catch (const nlohmann::json::exception& e) {
    throw Error("checkpoint: " + p + ": invalid JSON: " + e.what());
  }
}

std::string Checkpoint::text(const std::string& file) const { return read_file(path(file)); }

// ---------------------------------------------------------------------------------------- RNG state

nlohmann::json generator_state_to_json(const Generator& gen) {
  nlohmann::json out = nlohmann::json::array();
  for (uint64_t word : gen.state()) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(word));
    out.push_back(buf);
  }
  return out;
}

void generator_state_from_json(const nlohmann::json& value, Generator& gen) {
  // The state's word count follows Generator (its array type), so this keeps up if it changes.
  decltype(gen.state()) state{};
  DTRAIN_CHECK(value.is_array() && value.size() == state.size(),
               "checkpoint: a generator state is ", state.size(), " hex strings, got ",
               value.dump());
  for (size_t i = 0; i < state.size(); ++i) {
    const auto& w = value[i];
    DTRAIN_CHECK(
        w.is_string() && w.get<std::string>().size() == 16 &&
            w.get<std::string>().find_first_not_of("0123456789abcdefABCDEF") == std::string::npos,
        "checkpoint: generator state word ", i, " is ", w.dump(), ", not 16 hex digits");
    state[i] = std::stoull(w.get<std::string>(), nullptr, 16);
  }
  gen.set_state(state);
}

}  // namespace dtrain
