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
  // Empty path: writes nothing. keep_through_step < 0 starts the file afresh; otherwise (a resumed
  // run) the records up to that step stay and later ones, logged after the checkpoint resumed from,
  // go (rewritten through a temporary file and a rename).
  void open(const std::string& path, int64_t keep_through_step);
  void write(const nlohmann::json& record);
  bool is_open() const { return out_.is_open(); }

 private:
  std::ofstream out_;
};

}  // namespace dtrain::launch
