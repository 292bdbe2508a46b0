// The metrics file: JSON Lines, one object per logged step or eval, flushed as written so a crash
// keeps everything logged before it. Only rank 0 writes.
#pragma once
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace dtrain::launch {

class MetricsFile {
 public:
  MetricsFile() = default;
  // Empty path: writes nothing. Appends when resuming, else starts the file afresh.
  void open(const std::string& path, bool append);
  void write(const nlohmann::json& record);
  bool is_open() const { return out_.is_open(); }

 private:
  std::ofstream out_;
};

}  // namespace dtrain::launch
