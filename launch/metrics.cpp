#include "launch/metrics.h"

#include <filesystem>

#include "core/error.h"

namespace dtrain::launch {

void MetricsFile::open(const std::string& path, bool append) {
  if (path.empty()) return;
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ignored;  // a failure shows as the open error below
  if (!parent.empty()) std::filesystem::create_directories(parent, ignored);
  out_.open(path, append ? std::ios::app : std::ios::trunc);
  DTRAIN_CHECK(out_.good(), "cannot write metrics file '", path,
               "': check that its directory exists and is writable");
}

void MetricsFile::write(const nlohmann::json& record) {
  if (!out_.is_open()) return;
  out_ << record.dump() << "\n";
  out_.flush();
}

}  // namespace dtrain::launch
