#include "launch/predict.h"

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <iostream>
#include <thread>

#include "core/backend/runtime.h"
#include "core/data/image_file.h"
#include "core/io/checkpoint.h"
#include "core/tensor/random.h"
#include "launch/checkpoints.h"
#include "launch/trainer.h"
#include "launch/workload.h"

namespace po = boost::program_options;

namespace dtrain::launch {

const char* const kPredictUsage =
    "usage: dtrain predict --resume DIR (--image FILE [--index K] | --text \"...\" | --prompt "
    "\"...\")";

namespace {

po::options_description input_options(PredictRequest& r) {
  po::options_description opts(
      "dtrain predict input options (one input, of the kind the model takes)");
  // clang-format off
  opts.add_options()
    ("image", po::value<std::string>(),
       "vit: a PNG (8-bit gray or RGB, alpha composited over black) or PGM image of the model's size "
       "(28x28 gray for fashion-mnist, 32x32 RGB for cifar10), or an IDX images file with --index")
    ("index", po::value<int64_t>(), "vit: which image of the IDX file --image names (from 0)")
    ("text", po::value<std::string>(), "transformer: the English text to translate; fusion: one CJK character; "
       "classifier: the text to classify")
    ("prompt", po::value<std::string>(), "gpt: the text to continue")
    ("max-tokens", po::value(&r.max_tokens)->default_value(r.max_tokens), "gpt: characters to generate")
    ("temperature", po::value(&r.temperature)->default_value(r.temperature),
       "gpt: sampling temperature (0: greedy, the likeliest character each time)")
    ("top-k", po::value(&r.top_k)->default_value(r.top_k), "gpt: sample among the K likeliest characters (0: all)");
  // clang-format on
  return opts;
}

// What each model takes, for messages.
const char* input_hint(const std::string& model) {
  if (model == "vit")
    return "--image FILE (a PNG or PGM of the model's size, or an IDX file with --index K)";
  if (model == "transformer") return "--text \"English text to translate\"";
  if (model == "fusion") return "--text CHARACTER (one CJK ideograph, e.g. 河)";
  if (model == "classifier") return "--text \"a fortune to classify\"";
  return "--prompt \"text to continue\"";
}

// Seeds, threads and device as the trainer sets them up, then the workload with the checkpoint's weights.
std::unique_ptr<Workload> load_workload(const TrainConfig& c) {
  const Device device = pick_device(c);
  select_device(device);
  set_allow_tf32(c.tf32);
  set_num_threads(c.threads > 0
                      ? c.threads
                      : std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
  manual_seed(c.seed);
  const Checkpoint checkpoint(c.resume);
  std::unique_ptr<Workload> w = make_workload(c, device);
  try {
    w->load_checkpoint_state(checkpoint.tensors(kCheckpointModelFile).tensors());
  } catch (const Error& e) {
    throw Error(
        "checkpoint " + checkpoint.dir() + " does not fit a " + c.model + " of --model-size " +
        c.model_size + " on " + c.dataset + ": " + e.what() +
        "; leave out model options that differ from the training run's (a checkpoint that does not "
        "record them needs those it was trained with: --model, --model-size, --dim, --depth, ...)");
  }
  return w;
}

}  // namespace

bool parse_predict_options(const std::vector<std::string>& args, TrainConfig& config,
                           PredictRequest& request) {
  po::options_description inputs = input_options(request);
  const bool help = std::find(args.begin(), args.end(), "--help") != args.end() ||
                    std::find(args.begin(), args.end(), "-h") != args.end();
  if (help) std::cout << kPredictUsage << "\n\n" << inputs << "\n";
  // The input options here; everything else (--resume, --model, ..., --help) is the config's.
  po::variables_map vm;
  std::vector<std::string> rest;
  try {
    po::parsed_options parsed =
        po::command_line_parser(args).options(inputs).allow_unregistered().run();
    po::store(parsed, vm);
    po::notify(vm);
    rest = po::collect_unrecognized(parsed.options, po::include_positional);
  } catch (const po::error& e) {
    throw Error(std::string(e.what()) + " (dtrain predict --help lists the options)");
  }
  TrainConfig given;
  if (!parse_train_config(rest, given, "predict")) return false;
  DTRAIN_CHECK(!given.resume.empty(),
               "dtrain predict needs --resume DIR: a checkpoint, or a run's "
               "--checkpoint-dir for its latest");
  // The settings the checkpoint was trained with, under the command line's; resume becomes the checkpoint.
  config = load_run_config(given.resume, rest, "predict");
  if (vm.count("image")) request.image = vm["image"].as<std::string>();
  if (vm.count("index")) request.index = vm["index"].as<int64_t>();
  if (vm.count("text")) request.text = vm["text"].as<std::string>();
  if (vm.count("prompt")) request.prompt = vm["prompt"].as<std::string>();
  for (const char* name : {"max-tokens", "temperature", "top-k"}) {
    if (!vm[name].defaulted()) request.sampling_options.push_back(name);
  }
  DTRAIN_CHECK(request.max_tokens >= 1 && request.max_tokens <= 1000000,
               "--max-tokens must be between 1 and 1000000, got ", request.max_tokens);
  DTRAIN_CHECK(
      std::isfinite(request.temperature) && request.temperature >= 0 && request.temperature <= 1e6,
      "--temperature must be between 0 (greedy) and 1e6, got ", request.temperature);
  DTRAIN_CHECK(request.top_k >= 0, "--top-k must be >= 0 (0: all characters), got ", request.top_k);
  return true;
}

std::vector<std::string> predict(const TrainConfig& config, const PredictRequest& request) {
  const std::string& model = config.model;
  // Each input option belongs to one model; any other is the wrong kind of input for this checkpoint.
  std::vector<std::pair<std::string, std::string>> given;  // option, the model it is for
  if (request.image) given.push_back({"--image", "vit"});
  if (request.index) given.push_back({"--index", "vit"});
  if (request.text) {
    // --text is the input of three models: the text to translate, to classify, or the character to look up.
    given.push_back({"--text", model == "fusion" || model == "classifier" ? model : "transformer"});
  }
  if (request.prompt) given.push_back({"--prompt", "gpt"});
  for (const std::string& name : request.sampling_options) given.push_back({"--" + name, "gpt"});
  for (const auto& [option, for_model] : given) {
    DTRAIN_CHECK(for_model == model, option, " is for ", for_model,
                 " checkpoints, and this one holds a ", model, " model: give ", input_hint(model));
  }
  DTRAIN_CHECK(!request.index || request.image,
               "--index picks an image of the IDX file --image names: give "
               "--image FILE too");
  const bool has_input = model == "vit" ? request.image.has_value()
                         : model == "transformer" || model == "fusion" || model == "classifier"
                             ? request.text.has_value()
                             : request.prompt.has_value();
  DTRAIN_CHECK(has_input, "no input: this checkpoint holds a ", model, " model; give ",
               input_hint(model));

  PredictInput input;
  if (request.image) {
    // Read before the data set and model load, so that a bad file fails at once.
    const std::string& path = *request.image;
    input.image =
        request.index ? data::read_idx_image(path, *request.index) : data::read_image_file(path);
    input.image_name =
        request.index ? path + " (image " + std::to_string(*request.index) + ")" : path;
  }
  if (request.text) {
    DTRAIN_CHECK(!request.text->empty(), "--text is empty: give ", input_hint(model));
    input.text = *request.text;
  }
  if (request.prompt) {
    DTRAIN_CHECK(!request.prompt->empty(),
                 "--prompt is empty: give at least one character to continue");
    input.prompt = *request.prompt;
  }
  input.max_tokens = request.max_tokens;
  input.temperature = request.temperature;
  input.top_k = request.top_k;
  input.seed = config.seed;
  return load_workload(config)->predict(input);
}

}  // namespace dtrain::launch
