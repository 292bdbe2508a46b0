#include "launch/config.h"

#include <boost/program_options.hpp>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <iostream>
#include <sstream>

#include "core/error.h"

namespace po = boost::program_options;

namespace dtrain::launch {

namespace {

// The shortest text that reads back as the same double: exact for comparing ranks, still readable.
std::string exact_text(double value) {
  char text[32];
  return std::string(text, std::to_chars(text, text + sizeof text, value).ptr);
}

std::string trim(const std::string& s) {
  const size_t first = s.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
}

// Boost prints no "(=...)" for a default whose text is empty; show an empty string as "" instead, so
// --help gives every option's default.
const char* kEmpty = "\"\"";
// Boost prints a double with 17 digits (0.05 as 0.050000000000000003); six significant ones suffice.
std::string short_text(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// Reads an INI file of `key = value` lines ('#' or ';' starts a comment) into `vm`, where the command
// line, stored first, wins. Each line is parsed on its own so that an error names the file and line.
// Returns where each option the file set comes from ("run.ini:4"), for messages about its value.
std::map<std::string, std::string> store_config_file(const std::string& path,
                                                     const po::options_description& opts,
                                                     po::variables_map& vm, const char* subcommand) {
  std::map<std::string, std::string> origin;
  std::error_code ec;
  DTRAIN_CHECK(!std::filesystem::is_directory(path, ec), "config file '", path,
               "' is a directory; give the path of an INI file");
  std::ifstream in(path);
  DTRAIN_CHECK(in.good(), "cannot open config file '", path, "': check the path");
  std::set<std::string> in_file;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string where = path + ":" + std::to_string(number) + ": ";
    const size_t comment = line.find_first_of("#;");
    std::string text = trim(comment == std::string::npos ? line : line.substr(0, comment));
    if (text.empty()) continue;
    const size_t eq = text.find('=');
    DTRAIN_CHECK(eq != std::string::npos, where, "expected 'option = value', got '", text, "'");
    const std::string key = trim(text.substr(0, eq)), value = trim(text.substr(eq + 1));
    DTRAIN_CHECK(!key.empty() && key != "config" && key != "help", where, "'", key,
                 "' cannot be set in a config file");
    try {
      po::parsed_options parsed = po::command_line_parser(std::vector<std::string>{"--" + key + "=" + value})
                                      .options(opts).run();
      po::variables_map one;
      po::store(parsed, one);
      const std::string name = parsed.options.at(0).string_key;  // boost's name for the key
      DTRAIN_CHECK(in_file.insert(name).second, where, "--", name, " is set twice in the file");
      if (vm.count(name) == 0 || vm[name].defaulted()) {
        vm.erase(name);
        vm.insert({name, one[name]});
        origin[name] = path + ":" + std::to_string(number);
      }
    } catch (const po::error& e) {
      throw Error(where + e.what() + " (dtrain " + subcommand + " --help lists the options)");
    }
  }
  return origin;
}

// Values that would crash, hang or silently misbehave are refused here, once, with the range.
// `origin`: where the config file set an option, so that its message names the file and line.
void validate(const TrainConfig& c, const std::map<std::string, std::string>& origin) {
  auto where = [&](const char* option) {
    auto it = origin.find(option);
    return it == origin.end() ? std::string() : it->second + ": ";
  };
  auto in_range = [&](const char* option, double value, double low, double high, const char* note = "") {
    DTRAIN_CHECK(std::isfinite(value) && value >= low && value <= high, where(option), "--", option,
                 " must be between ", exact_text(low), " and ", exact_text(high), note, ", got ",
                 exact_text(value));
  };
  constexpr double kMaxCount = 1e12;  // steps, intervals: far beyond any run, far below int64 overflow
  in_range("dim", c.dim, 0, 65536, " (0: from --model-size)");
  in_range("depth", c.depth, 0, 1024, " (0: from --model-size)");
  in_range("heads", c.heads, 0, 1024, " (0: from --model-size)");
  in_range("mlp-dim", c.mlp_dim, 0, 1 << 20, " (0: from --model-size)");
  in_range("patch", c.patch, 0, 1024, " (0: from --model-size)");
  in_range("dropout", c.dropout, 0, 0.99);
  in_range("seq-len", c.seq_len, 4, 65536);
  in_range("batch-size", c.batch_size, 1, 1 << 24);
  in_range("grad-accum", c.grad_accum, 1, static_cast<double>(c.batch_size), " (at most --batch-size)");
  in_range("steps", c.steps, 0, kMaxCount, " (0: use --epochs)");
  in_range("epochs", c.epochs, 0, 1e6);
  DTRAIN_CHECK(c.steps > 0 || c.epochs > 0, where("epochs"), "give --steps or --epochs a positive value");
  in_range("lr", c.lr, 0, 1e3);
  in_range("min-lr", c.min_lr, 0, c.lr, " (at most --lr)");
  in_range("warmup-steps", c.warmup_steps, 0, kMaxCount);
  in_range("weight-decay", c.weight_decay, 0, 1e3);
  in_range("clip-grad-norm", c.clip_grad_norm, -1e30, 1e30, " (<= 0: off)");
  in_range("label-smoothing", c.label_smoothing, 0, 0.99);
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  in_range("threads", c.threads, 0, 4 * cores, " (0: this rank's share of the cores; at most 4x the cores)");
  in_range("bucket-cap-mb", c.bucket_cap_mb, 0.001, 65536);
  in_range("zero", c.zero, 0, 1);
  in_range("collective-timeout", c.collective_timeout_s, 0.1, 604800, " seconds");
  in_range("checkpoint-interval", c.checkpoint_interval, 0, kMaxCount, " (0: at the end only)");
  in_range("eval-interval", c.eval_interval, 0, kMaxCount, " (0: at the end only)");
  in_range("eval-batches", c.eval_batches, 0, kMaxCount, " (0: the whole split)");
  in_range("log-interval", c.log_interval, 1, kMaxCount);
  DTRAIN_CHECK(c.precision == "f32" || c.precision == "bf16" || c.precision == "f16", where("precision"),
               "--precision must be f32, bf16 or f16, got '", c.precision, "'");
}

}  // namespace

std::vector<Setting> settings(const TrainConfig& c) {
  auto num = [](double v) { return exact_text(v); };
  auto integer = [](int64_t v) { return std::to_string(v); };
  // Scope: every rank must agree (they shape the model, the data each rank reads, or the sequence of
  // collectives); `resume`: also what a checkpoint fixes (the model, the data order, the optimizer).
  constexpr Setting::Scope all = Setting::every_rank, fixed = Setting::every_rank_and_resume;
  return {
      {"model", c.model, fixed},
      {"model-size", c.model_size, fixed},
      {"dim", integer(c.dim), fixed},
      {"depth", integer(c.depth), fixed},
      {"heads", integer(c.heads), fixed},
      {"mlp-dim", integer(c.mlp_dim), fixed},
      {"patch", integer(c.patch), fixed},
      {"dropout", num(c.dropout), all},
      {"augment", integer(c.augment), all},
      {"dataset", c.dataset, fixed},
      {"data-dir", c.data_dir, all},
      {"seq-len", integer(c.seq_len), fixed},
      {"batch-size", integer(c.batch_size), fixed},
      {"grad-accum", integer(c.grad_accum), all},
      {"steps", integer(c.steps), all},
      {"epochs", num(c.epochs), all},
      {"optimizer", c.optimizer, fixed},
      {"lr", num(c.lr), all},
      {"min-lr", num(c.min_lr), all},
      {"schedule", c.schedule, fixed},
      {"warmup-steps", integer(c.warmup_steps), all},
      {"weight-decay", num(c.weight_decay), all},
      {"clip-grad-norm", num(c.clip_grad_norm), all},
      {"label-smoothing", num(c.label_smoothing), all},
      {"precision", c.precision, all},
      {"device", c.device, all},
      {"tf32", integer(c.tf32), all},
      {"seed", std::to_string(c.seed), fixed},
      {"threads", integer(c.threads), Setting::local},
      {"bucket-cap-mb", num(c.bucket_cap_mb), all},
      {"zero", integer(c.zero), all},
      {"collective-timeout", num(c.collective_timeout_s), Setting::local},
      {"debug-collectives", integer(c.debug_collectives), all},
      {"checkpoint-dir", c.checkpoint_dir, all},
      {"checkpoint-interval", integer(c.checkpoint_interval), all},
      {"resume", c.resume, all},
      {"eval-interval", integer(c.eval_interval), all},
      {"eval-batches", integer(c.eval_batches), all},
      {"log-interval", integer(c.log_interval), all},
      {"metrics-file", c.metrics_file, Setting::local},
      {"progress", integer(c.progress), Setting::local},
  };
}

bool parse_train_config(const std::vector<std::string>& args, TrainConfig& c,
                        const char* subcommand) {
  std::string config_file;
  po::options_description opts(std::string("dtrain ") + subcommand + " options");
  // clang-format off
  opts.add_options()
    ("help,h", "print this help and exit")
    ("config", po::value(&config_file), "INI file with any of these options (command line wins)")
    ("model", po::value(&c.model)->default_value(c.model), "vit | transformer | gpt")
    ("model-size", po::value(&c.model_size)->default_value(c.model_size),
       "vit: fm, tiny, small, base; transformer and gpt: tiny, small")
    ("dim", po::value(&c.dim)->default_value(c.dim), "model width (0: from --model-size)")
    ("depth", po::value(&c.depth)->default_value(c.depth), "blocks (0: from --model-size)")
    ("heads", po::value(&c.heads)->default_value(c.heads), "attention heads (0: from --model-size)")
    ("mlp-dim", po::value(&c.mlp_dim)->default_value(c.mlp_dim), "MLP hidden width (0: from --model-size)")
    ("patch", po::value(&c.patch)->default_value(c.patch), "ViT patch size (0: from --model-size)")
    ("dropout", po::value(&c.dropout)->default_value(c.dropout), "dropout probability")
    ("augment", po::value(&c.augment)->default_value(c.augment),
       "vit: random crop (zero padding 2 for fashion-mnist, 4 for cifar10) and horizontal flip of training images")
    ("dataset", po::value(&c.dataset)->default_value(c.dataset), "fashion-mnist | cifar10 | freedict | fortunes")
    ("data-dir", po::value(&c.data_dir)->default_value(c.data_dir, kEmpty), "dataset directory (empty: the Debian package's)")
    ("seq-len", po::value(&c.seq_len)->default_value(c.seq_len), "GPT context / Transformer max length")
    ("batch-size", po::value(&c.batch_size)->default_value(c.batch_size),
       "global batch size: over all ranks and accumulation steps")
    ("grad-accum", po::value(&c.grad_accum)->default_value(c.grad_accum), "micro-batches accumulated per step")
    ("steps", po::value(&c.steps)->default_value(c.steps), "optimizer steps (0: use --epochs)")
    ("epochs", po::value(&c.epochs)->default_value(c.epochs), "passes over the training set")
    ("optimizer", po::value(&c.optimizer)->default_value(c.optimizer),
       "sgd | adam | adamw | adagrad | rmsprop | adamax | nadam")
    ("lr", po::value(&c.lr)->default_value(c.lr), "peak learning rate")
    ("min-lr", po::value(&c.min_lr)->default_value(c.min_lr), "final learning rate of the decay")
    ("schedule", po::value(&c.schedule)->default_value(c.schedule), "cosine | linear | step | constant")
    ("warmup-steps", po::value(&c.warmup_steps)->default_value(c.warmup_steps), "linear warmup steps")
    ("weight-decay", po::value(&c.weight_decay)->default_value(c.weight_decay, short_text(c.weight_decay)), "weight decay")
    ("clip-grad-norm", po::value(&c.clip_grad_norm)->default_value(c.clip_grad_norm),
       "clip the global gradient L2 norm (<= 0: off)")
    ("label-smoothing", po::value(&c.label_smoothing)->default_value(c.label_smoothing), "cross-entropy label smoothing")
    ("precision", po::value(&c.precision)->default_value(c.precision), "f32 | bf16 | f16 (mixed, f32 master weights)")
    ("device", po::value(&c.device)->default_value(c.device),
       "cpu | cuda (each rank takes its local rank's GPU) | cuda:K (this GPU; one rank per node)")
    ("tf32", po::value(&c.tf32)->default_value(c.tf32),
       "TF32 tensor cores for f32 matmul and convolution on GPUs (0: exact f32)")
    ("seed", po::value(&c.seed)->default_value(c.seed), "seed for initialisation, shuffling and dropout")
    ("threads", po::value(&c.threads)->default_value(c.threads), "CPU threads per rank (0: cores / local ranks)")
    ("bucket-cap-mb", po::value(&c.bucket_cap_mb)->default_value(c.bucket_cap_mb), "DDP gradient bucket size")
    ("zero", po::value(&c.zero)->default_value(c.zero), "1: shard optimizer state across ranks (ZeRO-1)")
    ("collective-timeout", po::value(&c.collective_timeout_s)->default_value(c.collective_timeout_s),
       "seconds before a stuck collective aborts the job")
    ("checkpoint-dir", po::value(&c.checkpoint_dir)->default_value(c.checkpoint_dir, kEmpty), "where checkpoints go")
    ("checkpoint-interval", po::value(&c.checkpoint_interval)->default_value(c.checkpoint_interval),
       "steps between checkpoints (0: at the end only)")
    ("resume", po::value(&c.resume)->default_value(c.resume, kEmpty), "checkpoint directory to resume from")
    ("eval-interval", po::value(&c.eval_interval)->default_value(c.eval_interval), "steps between evals (0: at the end)")
    ("eval-batches", po::value(&c.eval_batches)->default_value(c.eval_batches), "batches per eval (0: whole split)")
    ("log-interval", po::value(&c.log_interval)->default_value(c.log_interval), "steps between log lines")
    ("metrics-file", po::value(&c.metrics_file)->default_value(c.metrics_file, kEmpty), "JSON Lines metrics output")
    ("progress", po::value(&c.progress)->default_value(c.progress), "live progress line on a terminal")
    ("debug-collectives", po::value(&c.debug_collectives)->default_value(c.debug_collectives),
       "check op, dtype and shape of every collective across ranks (slower; names both sides of a mismatch)");
  // clang-format on

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    if (vm.count("help")) {
      std::cout << opts << "\n";
      return false;
    }
  } catch (const po::error& e) {
    throw Error(std::string(e.what()) + " (dtrain " + subcommand + " --help lists the options)");
  }
  std::map<std::string, std::string> origin;
  if (vm.count("config")) origin = store_config_file(vm["config"].as<std::string>(), opts, vm, subcommand);
  try {
    po::notify(vm);
  } catch (const po::error& e) {
    throw Error(std::string(e.what()) + " (dtrain " + subcommand + " --help lists the options)");
  }
  validate(c, origin);
  return true;
}

}  // namespace dtrain::launch
