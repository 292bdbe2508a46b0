// The subcommands of the dtrain program.
#pragma once
#include <string>
#include <vector>

namespace dtrain::launch {

int run_train(const std::vector<std::string>& args);
int run_eval(const std::vector<std::string>& args);
// dtrain predict: a checkpoint applied to one image, text or prompt (launch/predict.h).
int run_predict(const std::vector<std::string>& args);
// Prints a failure as one line and returns the exit status. `same_on_every_rank` (an AllRanksError):
// rank 0 prints and every rank ends normally; otherwise the failing rank prints, naming itself in a
// multi-rank job, and ends the others instead of leaving them waiting.
int report_failure(const std::string& command, const std::string& message, bool same_on_every_rank);

}  // namespace dtrain::launch
