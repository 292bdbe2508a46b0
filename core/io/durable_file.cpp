#include "core/io/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace dtrain {

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

DurableFile::DurableFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  DTRAIN_CHECK(fd_ >= 0, "cannot create ", path_, ": ", errno_text(),
               " (check that the directory exists and is writable)");
}

DurableFile::~DurableFile() {
  if (fd_ >= 0) ::close(fd_);
}

void DurableFile::write(const void* data, size_t nbytes) {
  DTRAIN_CHECK(fd_ >= 0, "write to ", path_, " after it was closed");
  const char* p = static_cast<const char*>(data);
  while (nbytes > 0) {
    ssize_t n = ::write(fd_, p, nbytes);
    if (n < 0 && errno == EINTR) continue;
    DTRAIN_CHECK(n > 0, "cannot write ", path_, ": ", errno_text(), " (is the disk full?)");
    p += n;
    nbytes -= static_cast<size_t>(n);
  }
}

void DurableFile::close() {
  if (fd_ < 0) return;
  int fd = fd_;
  fd_ = -1;
  if (::fsync(fd) != 0) {
    std::string why = errno_text();
    ::close(fd);
    throw Error(detail::concat("cannot flush ", path_, " to disk: ", why));
  }
  DTRAIN_CHECK(::close(fd) == 0, "cannot close ", path_, ": ", errno_text());
}

void fsync_directory(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DTRAIN_CHECK(fd >= 0, "cannot open directory ", dir, " to sync it: ", errno_text());
  int rc = ::fsync(fd);
  int err = rc != 0 ? errno : 0;
  ::close(fd);
  // Some filesystems refuse fsync on directories (EINVAL); the renames themselves have happened, so
  // only a real I/O error is worth failing for.
  DTRAIN_CHECK(rc == 0 || err == EINVAL || err == EROFS, "cannot sync directory ", dir, ": ",
               std::strerror(err));
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp";
  try {
    DurableFile f(tmp);
    f.write(bytes.data(), bytes.size());
    f.close();
    DTRAIN_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path,
                 ": ", errno_text());
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_directory(std::filesystem::path(path).parent_path().string());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  DTRAIN_CHECK(in.good(), "cannot open ", path, ": ", errno_text());
  std::ostringstream s;
  s << in.rdbuf();
  DTRAIN_CHECK(!in.bad(), "cannot read ", path, ": ", errno_text());
  return s.str();
}

}  // namespace dtrain
