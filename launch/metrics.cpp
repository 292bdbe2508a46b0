#include "launch/metrics.h"

#include <unistd.h>

#include <filesystem>

#include "core/error.h"

namespace dtrain::launch {

void MetricsFile::open(const std::string& path, int64_t keep_through_step) {
  if (path.empty()) return;
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ignored;  // a failure shows as the open error below
  if (!parent.empty()) std::filesystem::create_directories(parent, ignored);
  if (keep_through_step >= 0 && std::filesystem::exists(path, ignored)) {
    std::ifstream in(path);
    std::string kept;
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
      const bool later = record.is_object() && record.contains("step") &&
                         record["step"].is_number_integer() &&
                         record["step"].get<int64_t>() > keep_through_step;
      if (!later && !line.empty()) kept += line + "\n";
    }
    const std::string temp = path + ".tmp-" + std::to_string(::getpid());
    {
      std::ofstream out(temp, std::ios::trunc);
      out << kept;
      DTRAIN_CHECK(out.good(), "cannot write metrics file '", temp,
                   "': check that its directory is writable");
    }
    std::filesystem::rename(temp, path, ignored);
    DTRAIN_CHECK(!ignored, "cannot replace metrics file '", path, "': ", ignored.message());
  }
  out_.open(path, keep_through_step >= 0 ? std::ios::app : std::ios::trunc);
  DTRAIN_CHECK(out_.good(), "cannot write metrics file '", path,
               "': check that its directory exists and is writable");
}

void MetricsFile::write(const nlohmann::json& record) {
  if (!out_.is_open()) return;
  out_ << record.dump() << "\n";
  out_.flush();
}

}  // namespace dtrain::launch
