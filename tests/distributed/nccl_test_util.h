// For the NCCL programs under mpiexec: whether every rank has a GPU of its own, and a skip that says
// which ranks do not. NCCL needs one GPU per rank of a node; where any rank lacks one, every rank skips.
#pragma once
#include <unistd.h>

#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "mpi_test_main.h"

namespace dtrain::test {

// Why this rank cannot run NCCL ("" when it can): no GPU, or fewer GPUs than ranks on its node. Collective.
inline std::string gpu_shortage() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  const std::vector<std::string> hosts = dist::all_gather_strings(*world(), name);
  int local = 0;
  for (const std::string& h : hosts) local += h == name;
  const int count = cuda_device_count();
  if (count == 0) return "no CUDA device is visible";
  if (local > count) {
    return std::to_string(local) + " ranks on node " + name + " but only " + std::to_string(count) +
           " GPU(s)";
  }
  return "";
}

// Every short rank's reason, "rank r: ..." joined by "; " ("" when every rank has a GPU). Collective.
inline std::string nccl_skip_reason() {
  const std::vector<std::string> reasons = dist::all_gather_strings(*world(), gpu_shortage());
  std::string all;
  for (size_t r = 0; r < reasons.size(); ++r) {
    if (reasons[r].empty()) continue;
    all += (all.empty() ? "rank " : "; rank ") + std::to_string(r) + ": " + reasons[r];
  }
  return all;
}

}  // namespace dtrain::test

// Skips the test on every rank unless each has a GPU of its own; `what` names the check.
#define SKIP_WITHOUT_GPUS(what)                                                             \
  do {                                                                                      \
    const std::string why = ::dtrain::test::nccl_skip_reason();                             \
    if (!why.empty()) {                                                                     \
      GTEST_SKIP() << what << " needs one GPU per rank (" << why                            \
                   << "); this check is owed on a GPU machine (mpiexec -np N with N GPUs)"; \
    }                                                                                       \
  } while (0)
