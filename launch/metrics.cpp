#include "launch/metrics.h"

#include "core/error.h"

namespace dtrain::launch {

void MetricsFile::open(const std::string& path, bool append) {
  if (path.empty()) return;
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
