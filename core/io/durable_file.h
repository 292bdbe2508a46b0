// Writing files so that a crash never leaves a half-written one under the final name: data goes to a
// temporary name, is flushed to the disk (fsync), and only then renamed; the rename is made durable by
// syncing the directory that holds it. POSIX rename within one filesystem is atomic, so a reader sees
// either the old file or the new one.
#pragma once
#include <cstddef>
#include <string>

namespace dtrain {

// A file opened for writing (created or truncated). close() syncs it to the disk; a DurableFile that
// is destroyed without close() is closed unsynced (the caller is abandoning it).
class DurableFile {
 public:
  explicit DurableFile(std::string path);
  ~DurableFile();
  DurableFile(const DurableFile&) = delete;
  DurableFile& operator=(const DurableFile&) = delete;

  void write(const void* data, size_t nbytes);
  void close();  // fsync + close; throws dtrain::Error naming the file on failure
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// fsyncs a directory so that the entries created, renamed or removed in it are on the disk.
void fsync_directory(const std::string& dir);

// Replaces `path` by `bytes` atomically: writes path + ".tmp", syncs it, renames it over `path` and
// syncs the parent directory.
void write_file_atomically(const std::string& path, const std::string& bytes);

// The whole content of a file; a dtrain::Error naming it when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace dtrain
