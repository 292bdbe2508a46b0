// `dtrain predict`: a trained checkpoint applied to one input, what a user does with a model after
// training it. The input's kind follows the model:
//
//   vit          --image FILE (PNG or PGM of the model's size; an IDX images file with --index K)
//                -> the five likeliest classes, "0.8123  Ankle boot", likeliest first
//   transformer  --text "English text"  -> its German translation (greedy decoding)
//   gpt          --prompt "text" [--max-tokens N] [--temperature T] [--top-k K] [--seed S]
//                -> the prompt and its sampled continuation
//
// The model is rebuilt from the checkpoint's settings (options given here override them), the data set
// is loaded for its vocabulary (text models) or its normalisation and class names (images), and the
// workload (launch/workload.h) answers the input.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "launch/config.h"

namespace dtrain::launch {

// The input options of `dtrain predict`; the model, data and device ones go into a TrainConfig.
struct PredictRequest {
  std::optional<std::string> image;   // --image FILE
  std::optional<int64_t> index;       // --index K: image K of the IDX file --image names
  std::optional<std::string> text;    // --text
  std::optional<std::string> prompt;  // --prompt
  int64_t max_tokens = 200;
  double temperature = 1.0;
  int64_t top_k = 0;
  // The sampling options given on the command line (they are an error for a model that does not sample).
  std::vector<std::string> sampling_options;
};

// The first line of `dtrain predict --help`.
extern const char* const kPredictUsage;

// Parses the arguments of `dtrain predict` (without the program and subcommand names): the input
// options into `request`; --resume and the model, data and device options into `config`. Returns false
// when --help was printed. Throws a one-line dtrain::Error for a bad option or value.
bool parse_predict_options(const std::vector<std::string>& args, TrainConfig& config,
                           PredictRequest& request);

// Checks that the request's input is the kind config.model takes, loads the checkpoint at config.resume
// into the workload `config` describes (on config.device) and returns the lines to print.
std::vector<std::string> predict(const TrainConfig& config, const PredictRequest& request);

}  // namespace dtrain::launch
