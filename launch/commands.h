// The subcommands of the dtrain program.
#pragma once
#include <string>
#include <vector>

namespace dtrain::launch {

int run_train(const std::vector<std::string>& args);
int run_eval(const std::vector<std::string>& args);
int run_bench(const std::vector<std::string>& args);
// After an error on one rank of a multi-rank job, ends the others instead of leaving them waiting.
void abort_other_ranks();

}  // namespace dtrain::launch
