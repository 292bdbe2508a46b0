#include "core/data/dataset.h"

namespace dtrain::data {

const char* split_name(Split s) { return s == Split::train ? "train" : "test"; }

void check_batch_indices(const std::vector<int64_t>& indices, int64_t size, const char* dataset) {
  DTRAIN_CHECK(!indices.empty(), dataset, ": get_batch needs at least one index");
  for (int64_t i : indices) {
    DTRAIN_CHECK(i >= 0 && i < size, dataset, ": sample index ", i, " is out of range for ", size,
                 " samples");
  }
}

}  // namespace dtrain::data
