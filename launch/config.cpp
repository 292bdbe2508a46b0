#include "launch/config.h"

#include <algorithm>
#include <boost/make_shared.hpp>
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

// Stores `--key=value` into `vm` unless the option is there already from a source that wins; throws
// naming `where` (a file and line, or a checkpoint) for an unknown option or a bad value. Returns
// Boost's name for the key.
std::string store_one(const std::string& key, const std::string& value,
                      const po::options_description& opts, po::variables_map& vm,
                      const std::string& where, const char* subcommand) {
  try {
    // "--key=" is refused by Boost; an empty value goes as its own token.
    const std::vector<std::string> tokens =
        value.empty() ? std::vector<std::string>{"--" + key, value}
                      : std::vector<std::string>{"--" + key + "=" + value};
    po::parsed_options parsed = po::command_line_parser(tokens).options(opts).run();
    po::variables_map one;
    po::store(parsed, one);
    std::string name = parsed.options.at(0).string_key;
    if (vm.count(name) == 0 || vm[name].defaulted()) {
      vm.erase(name);
      vm.insert({name, one[name]});
    }
    return name;
  } catch (const po::error& e) {
    throw Error(where + ": " + e.what() + " (dtrain " + subcommand + " --help lists the options)");
  }
}

// Options that hold an Interval are read as text and parsed after Boost's own pass.
struct IntervalTexts {
  std::string checkpoint, eval, log;
};
using OptionGroups = std::vector<std::shared_ptr<po::options_description>>;
OptionGroups option_groups(TrainConfig& c, IntervalTexts& texts, std::string& config_file,
                           const char* subcommand);
po::options_description all_options(const OptionGroups& groups, const char* subcommand);

// Reads an INI file of `key = value` lines ('#' or ';' starts a comment) into `vm`, where the command
// line, stored first, wins. Each line is parsed on its own so that an error names the file and line.
// Returns where each option the file set comes from ("run.ini:4"), for messages about its value.
std::map<std::string, std::string> store_config_file(const std::string& path,
                                                     const po::options_description& opts,
                                                     po::variables_map& vm,
                                                     const char* subcommand) {
  std::map<std::string, std::string> origin;
  std::error_code ec;
  DTRAIN_CHECK(!std::filesystem::is_directory(path, ec), "config file '", path,
               "' is a directory; give the path of an INI file");
  std::ifstream in(path);
  DTRAIN_CHECK(in.good(), "cannot open config file '", path, "': check the path");
  std::set<std::string> in_file;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string where = path + ":" + std::to_string(number);
    const size_t comment = line.find_first_of("#;");
    std::string text = trim(comment == std::string::npos ? line : line.substr(0, comment));
    if (text.empty()) continue;
    const size_t eq = text.find('=');
    DTRAIN_CHECK(eq != std::string::npos, where, ": expected 'option = value', got '", text, "'");
    const std::string key = trim(text.substr(0, eq)), value = trim(text.substr(eq + 1));
    DTRAIN_CHECK(!key.empty() && key != "config" && key != "help", where, ": '", key,
                 "' cannot be set in a config file");
    // One file serves train, eval and predict: an option of another subcommand is skipped here.
    if (opts.find_nothrow(key, false) == nullptr && std::string(subcommand) != "train") {
      TrainConfig scratch;
      IntervalTexts texts;
      std::string file;
      if (all_options(option_groups(scratch, texts, file, "train"), "train")
              .find_nothrow(key, false))
        continue;
    }
    const bool was_set = vm.count(key) && !vm[key].defaulted();
    const std::string name = store_one(key, value, opts, vm, where, subcommand);
    DTRAIN_CHECK(in_file.insert(name).second, where, ": --", name, " is set twice in the file");
    if (!was_set) origin[name] = where;
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
  auto in_range = [&](const char* option, double value, double low, double high,
                      const char* note = "") {
    DTRAIN_CHECK(std::isfinite(value) && value >= low && value <= high, where(option), "--", option,
                 " must be between ", exact_text(low), " and ", exact_text(high), note, ", got ",
                 exact_text(value));
  };
  constexpr double kMaxCount =
      1e12;  // steps, intervals: far beyond any run, far below int64 overflow
  in_range("dim", c.dim, 0, 65536, " (0: from --model-size)");
  in_range("depth", c.depth, 0, 1024, " (0: from --model-size)");
  in_range("heads", c.heads, 0, 1024, " (0: from --model-size)");
  in_range("mlp-dim", c.mlp_dim, 0, 1 << 20, " (0: from --model-size)");
  in_range("patch", c.patch, 0, 1024, " (0: from --model-size)");
  in_range("dropout", c.dropout, 0, 0.99);
  DTRAIN_CHECK(c.stem == "patch" || c.stem == "dwsep", where("stem"),
               "--stem must be patch or dwsep, got '", c.stem, "'");
  DTRAIN_CHECK(c.modalities == "image" || c.modalities == "text" || c.modalities == "both",
               where("modalities"), "--modalities must be image, text or both, got '", c.modalities,
               "'");
  in_range("beam", c.beam, 1, 64);
  in_range("length-penalty", c.length_penalty, 0, 10);
  in_range("trainable-blocks", c.trainable_blocks, -1, 1024, " (-1: all)");
  in_range("layer-lr-decay", c.layer_lr_decay, 0.01, 1);
  in_range("seq-len", c.seq_len, 4, 65536);
  in_range("bpe-merges", c.bpe_merges, 0, 1 << 20, " (0: characters)");
  DTRAIN_CHECK(c.bpe_merges == 0 || c.model == "transformer", where("bpe-merges"),
               "--bpe-merges applies to model transformer, not ", c.model, "; leave it at 0");
  DTRAIN_CHECK(c.split == "valid" || c.split == "test", where("split"),
               "--split must be valid or test, got '", c.split, "'");
  in_range("batch-size", c.batch_size, 1, 1 << 24);
  in_range("grad-accum", c.grad_accum, 1, static_cast<double>(c.batch_size),
           " (at most --batch-size)");
  in_range("steps", c.steps, 0, kMaxCount, " (0: use --epochs)");
  in_range("epochs", c.epochs, 0, 1e6);
  DTRAIN_CHECK(c.steps > 0 || c.epochs > 0, where("epochs"),
               "give --steps or --epochs a positive value");
  in_range("lr", c.lr, 0, 1e3);
  in_range("min-lr", c.min_lr, 0, c.lr, " (at most --lr)");
  in_range("warmup-steps", c.warmup_steps, 0, kMaxCount);
  in_range("weight-decay", c.weight_decay, 0, 1e3);
  in_range("beta1", c.beta1, 0, 0.999999);
  in_range("beta2", c.beta2, 0, 0.999999);
  in_range("clip-grad-norm", c.clip_grad_norm, -1e30, 1e30, " (<= 0: off)");
  in_range("label-smoothing", c.label_smoothing, 0, 0.99);
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  in_range("threads", c.threads, 0, 4 * cores,
           " (0: this rank's share of the cores; at most 4x the cores)");
  in_range("bucket-cap-mb", c.bucket_cap_mb, 0.001, 65536);
  in_range("zero", c.zero, 0, 1);
  in_range("collective-timeout", c.collective_timeout_s, 0.1, 604800, " seconds");
  in_range("keep-checkpoints", c.keep_checkpoints, 0, 1e6, " (0: all)");
  in_range("eval-batches", c.eval_batches, 0, kMaxCount, " (0: the whole split)");
  DTRAIN_CHECK(c.log_interval.value > 0, where("log-interval"),
               "--log-interval must be at least 1 step (or a positive number of epochs), got ",
               c.log_interval.text());
  DTRAIN_CHECK(c.resume != "auto" || !c.checkpoint_dir.empty(), where("resume"),
               "--resume auto continues the run in --checkpoint-dir: give --checkpoint-dir too");
  c.profile_range();  // throws for a malformed A:B
  DTRAIN_CHECK(
      !c.checkpoint_activations || c.model == "vit" || c.model == "gpt" || c.model == "transformer",
      where("checkpoint-activations"),
      "--checkpoint-activations applies to vit, gpt and "
      "transformer, not ",
      c.model, "; leave it at 0");
  DTRAIN_CHECK(
      c.fused_optimizer == "auto" || c.fused_optimizer == "on" || c.fused_optimizer == "off",
      where("fused-optimizer"), "--fused-optimizer must be auto, on or off, got '",
      c.fused_optimizer, "'");
  DTRAIN_CHECK(c.fused_optimizer != "on" || c.optimizer == "sgd" || c.optimizer == "adam" ||
                   c.optimizer == "adamw",
               where("fused-optimizer"),
               "--fused-optimizer on needs --optimizer sgd, adam or adamw (", c.optimizer,
               " has no fused path); use auto or off");
  const bool adam_family = c.optimizer == "adam" || c.optimizer == "adamw" ||
                           c.optimizer == "adamax" || c.optimizer == "nadam";
  DTRAIN_CHECK(adam_family || (c.beta1 == 0.9 && c.beta2 == 0.999), where("beta2"),
               "--beta1 and --beta2 apply to adam, adamw, adamax and nadam, not ", c.optimizer,
               "; leave them at 0.9 and 0.999");
  DTRAIN_CHECK(c.precision == "f32" || c.precision == "bf16" || c.precision == "f16",
               where("precision"), "--precision must be f32, bf16 or f16, got '", c.precision, "'");
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
      {"stem", c.stem, fixed},
      {"modalities", c.modalities, fixed},
      {"beam", integer(c.beam), all},
      {"length-penalty", num(c.length_penalty), all},
      {"init-from", c.init_from, all},
      {"trainable-blocks", integer(c.trainable_blocks), fixed},
      {"layer-lr-decay", num(c.layer_lr_decay), fixed},
      {"augment", integer(c.augment), all},
      {"dataset", c.dataset, fixed},
      {"data-dir", c.data_dir, all},
      {"seq-len", integer(c.seq_len), fixed},
      {"bpe-merges", integer(c.bpe_merges), fixed},
      {"batch-size", integer(c.batch_size), fixed},
      {"grad-accum", integer(c.grad_accum), all},
      {"steps", integer(c.steps), all},
      {"epochs", num(c.epochs), all},
      {"optimizer", c.optimizer, fixed},
      {"fused-optimizer", c.fused_optimizer, all},
      {"lr", num(c.lr), all},
      {"min-lr", num(c.min_lr), all},
      {"schedule", c.schedule, fixed},
      {"warmup-steps", integer(c.warmup_steps), all},
      {"weight-decay", num(c.weight_decay), all},
      {"beta1", num(c.beta1), all},
      {"beta2", num(c.beta2), all},
      {"clip-grad-norm", num(c.clip_grad_norm), all},
      {"label-smoothing", num(c.label_smoothing), all},
      {"precision", c.precision, all},
      {"device", c.device, all},
      {"tf32", integer(c.tf32), all},
      {"checkpoint-activations", integer(c.checkpoint_activations), all},
      {"seed", std::to_string(c.seed), fixed},
      {"threads", integer(c.threads), Setting::local},
      {"bucket-cap-mb", num(c.bucket_cap_mb), all},
      {"zero", integer(c.zero), all},
      {"collective-timeout", num(c.collective_timeout_s), Setting::local},
      {"debug-collectives", integer(c.debug_collectives), all},
      {"checkpoint-dir", c.checkpoint_dir, all},
      {"checkpoint-interval", c.checkpoint_interval.text(), all},
      {"keep-checkpoints", integer(c.keep_checkpoints), all},
      {"resume", c.resume, all},
      {"eval-interval", c.eval_interval.text(), all},
      {"eval-batches", integer(c.eval_batches), all},
      {"log-interval", c.log_interval.text(), all},
      {"metrics-file", c.metrics_file, Setting::local},
      {"progress", integer(c.progress), Setting::local},
      {"profile-steps", c.profile_steps, all},
      {"profile-dir", c.profile_dir, Setting::local},
  };
}

namespace {

// Which subcommands take an option.
enum For : unsigned { kTrain = 1, kEval = 2, kPredict = 4, kAll = 7, kTrainEval = 3, kBench = 8 };
unsigned for_mask(const char* subcommand) {
  const std::string s = subcommand;
  return s == "eval" ? kEval : s == "predict" ? kPredict : s.starts_with("bench") ? kBench : kTrain;
}

// The options of `subcommand`, in groups by purpose; `c` receives the values, `texts` the intervals.
OptionGroups option_groups(TrainConfig& c, IntervalTexts& texts, std::string& config_file,
                           const char* subcommand) {
  const unsigned mine = for_mask(subcommand);
  OptionGroups groups;
  auto group = [&](const char* title) {
    groups.push_back(std::make_shared<po::options_description>(title));
  };
  auto add = [&](unsigned scope, const char* name, const po::value_semantic* value,
                 const char* help) {
    if (scope & mine) {
      groups.back()->add(boost::make_shared<po::option_description>(name, value, help));
    } else {
      delete value;
    }
  };
  // clang-format off
  group("General");
  add(kAll | kBench, "help,h", new po::untyped_value(true), "print this help and exit");
  add(kAll | kBench, "config", po::value(&config_file), "INI file with any of these options (command line wins)");
  add(kEval | kPredict, "resume", po::value(&c.resume)->default_value(c.resume, kEmpty),
      "checkpoint to use: a checkpoint directory, or a run directory (its latest checkpoint); its model "
      "and data settings are the defaults here");
  group("Model");
  add(kAll, "model", po::value(&c.model)->default_value(c.model), "vit | transformer | gpt | classifier | fusion");
  add(kBench, "model", po::value(&c.model)->default_value(c.model), "vit | vit-b16 | gpt | gpt2 (the GPT-2 124M shape)");
  add(kAll | kBench, "model-size", po::value(&c.model_size)->default_value(c.model_size),
      "vit: fm, tiny, small, base; transformer and gpt: tiny, small");
  add(kAll | kBench, "dim", po::value(&c.dim)->default_value(c.dim), "model width (0: from --model-size)");
  add(kAll | kBench, "depth", po::value(&c.depth)->default_value(c.depth), "blocks (0: from --model-size)");
  add(kAll | kBench, "heads", po::value(&c.heads)->default_value(c.heads), "attention heads (0: from --model-size)");
  add(kAll | kBench, "mlp-dim", po::value(&c.mlp_dim)->default_value(c.mlp_dim), "MLP hidden width (0: from --model-size)");
  add(kAll | kBench, "patch", po::value(&c.patch)->default_value(c.patch), "ViT patch size (0: from --model-size)");
  add(kTrain | kBench, "dropout", po::value(&c.dropout)->default_value(c.dropout), "dropout probability");
  add(kAll, "stem", po::value(&c.stem)->default_value(c.stem),
      "vit: patch (one strided convolution) | dwsep (depthwise-separable convolution, then the patch projection)");
  add(kAll, "modalities", po::value(&c.modalities)->default_value(c.modalities),
      "fusion: image | text | both (cross-modal attention and gated fusion)");
  group("Decoding");
  add(kAll, "beam", po::value(&c.beam)->default_value(c.beam), "transformer: beam width of decodes (1: greedy)");
  add(kAll, "length-penalty", po::value(&c.length_penalty)->default_value(c.length_penalty, short_text(c.length_penalty)),
      "transformer beam: log-probability over ((5 + length) / 6)^alpha");
  group("Fine-tuning");
  add(kTrain, "init-from", po::value(&c.init_from)->default_value(c.init_from, kEmpty),
      "start a fresh run from this checkpoint's model weights (a checkpoint or run directory)");
  add(kTrain, "trainable-blocks", po::value(&c.trainable_blocks)->default_value(c.trainable_blocks),
      "train only the last N blocks and the head, freezing the rest (-1: all)");
  add(kTrain, "layer-lr-decay", po::value(&c.layer_lr_decay)->default_value(c.layer_lr_decay),
      "layer-wise lr: the head trains at lr, block i of L (from 1) at lr * decay^(L + 1 - i), the embeddings "
      "at lr * decay^(L + 1) (1: one lr)");
  group("Data");
  add(kAll, "dataset", po::value(&c.dataset)->default_value(c.dataset), "fashion-mnist | cifar10 (vit); freedict | gettext-zh | gettext-de (transformer); fortunes (gpt); fortune-files (classifier); unihan (fusion); synthetic (vit, gpt: random samples, for benchmarks)");
  add(kAll, "data-dir", po::value(&c.data_dir)->default_value(c.data_dir, kEmpty), "dataset directory (empty: the Debian package's)");
  add(kAll | kBench, "seq-len", po::value(&c.seq_len)->default_value(c.seq_len), "GPT context; Transformer max length; classifier and fusion: tokens read per text");
  add(kAll, "bpe-merges", po::value(&c.bpe_merges)->default_value(c.bpe_merges),
      "transformer: source tokens are characters and this many byte-pair merges learnt from the training "
      "sources (0: characters)");
  add(kTrain, "augment", po::value(&c.augment)->default_value(c.augment),
      "vit: random crop (zero padding 2 for fashion-mnist, 4 for cifar10) and horizontal flip of training images");
  add(kTrainEval | kBench, "batch-size", po::value(&c.batch_size)->default_value(c.batch_size),
      "global batch size: over all ranks and accumulation steps");
  group("Length and optimisation");
  add(kTrain | kBench, "steps", po::value(&c.steps)->default_value(c.steps), "optimizer steps (0: use --epochs)");
  add(kTrain, "epochs", po::value(&c.epochs)->default_value(c.epochs), "passes over the training set");
  add(kTrain, "grad-accum", po::value(&c.grad_accum)->default_value(c.grad_accum), "micro-batches accumulated per step");
  add(kTrain | kBench, "optimizer", po::value(&c.optimizer)->default_value(c.optimizer),
      "sgd | adam | adamw | adagrad | rmsprop | adamax | nadam");
  add(kTrain | kBench, "fused-optimizer", po::value(&c.fused_optimizer)->default_value(c.fused_optimizer),
      "auto | on | off: sgd, adam and adamw update each group in one kernel call (auto: on for those)");
  add(kTrain | kBench, "lr", po::value(&c.lr)->default_value(c.lr), "peak learning rate");
  add(kTrain, "min-lr", po::value(&c.min_lr)->default_value(c.min_lr), "final learning rate of the decay");
  add(kTrain, "schedule", po::value(&c.schedule)->default_value(c.schedule), "cosine | linear | step | constant");
  add(kTrain, "warmup-steps", po::value(&c.warmup_steps)->default_value(c.warmup_steps), "linear warmup steps");
  add(kTrain | kBench, "weight-decay", po::value(&c.weight_decay)->default_value(c.weight_decay, short_text(c.weight_decay)), "weight decay");
  add(kTrain | kBench, "beta1", po::value(&c.beta1)->default_value(c.beta1, short_text(c.beta1)), "adam, adamw, adamax, nadam: decay rate of the gradient's running mean");
  add(kTrain | kBench, "beta2", po::value(&c.beta2)->default_value(c.beta2, short_text(c.beta2)),
      "adam, adamw, adamax, nadam: decay rate of the running mean of the squared gradient (adamax: of its maximum)");
  add(kTrain, "clip-grad-norm", po::value(&c.clip_grad_norm)->default_value(c.clip_grad_norm),
      "clip the global gradient L2 norm (<= 0: off)");
  add(kTrain, "label-smoothing", po::value(&c.label_smoothing)->default_value(c.label_smoothing), "cross-entropy label smoothing");
  group("Numerics and devices");
  add(kTrainEval | kBench, "precision", po::value(&c.precision)->default_value(c.precision), "f32 | bf16 | f16 (mixed, f32 master weights)");
  add(kAll | kBench, "device", po::value(&c.device)->default_value(c.device),
      "cpu | cuda (each rank takes its local rank's GPU) | cuda:K (this GPU; one rank per node)");
  add(kAll | kBench, "tf32", po::value(&c.tf32)->default_value(c.tf32),
      "TF32 tensor cores for f32 matmul and convolution on GPUs (0: exact f32)");
  add(kTrain | kBench, "checkpoint-activations", po::value(&c.checkpoint_activations)->default_value(c.checkpoint_activations),
      "1: recompute each block's forward in backward instead of storing its activations (vit, gpt, transformer)");
  add(kTrain | kPredict | kBench, "seed", po::value(&c.seed)->default_value(c.seed),
      "seed for initialisation, shuffling and dropout (predict: for sampling)");
  add(kAll | kBench, "threads", po::value(&c.threads)->default_value(c.threads), "CPU threads per rank (0: cores / local ranks)");
  group("Distributed");
  add(kTrain | kBench, "bucket-cap-mb", po::value(&c.bucket_cap_mb)->default_value(c.bucket_cap_mb), "DDP gradient bucket size");
  add(kTrain, "zero", po::value(&c.zero)->default_value(c.zero), "1: shard optimizer state across ranks (ZeRO-1)");
  add(kTrainEval, "collective-timeout", po::value(&c.collective_timeout_s)->default_value(c.collective_timeout_s),
      "seconds before a stuck collective aborts the job");
  add(kTrainEval, "debug-collectives", po::value(&c.debug_collectives)->default_value(c.debug_collectives),
      "check op, dtype and shape of every collective across ranks (slower; names both sides of a mismatch)");
  group("Checkpoints and evaluation");
  add(kTrain, "checkpoint-dir", po::value(&c.checkpoint_dir)->default_value(c.checkpoint_dir, kEmpty),
      "the run's directory: step-N/ checkpoints and best/ (the best eval so far)");
  add(kTrain, "checkpoint-interval", po::value(&texts.checkpoint)->default_value(texts.checkpoint),
      "steps (or epochs: 1ep) between checkpoints (0: at the end only)");
  add(kTrain, "keep-checkpoints", po::value(&c.keep_checkpoints)->default_value(c.keep_checkpoints),
      "the newest step-N checkpoints to keep (0: all)");
  add(kTrain, "resume", po::value(&c.resume)->default_value(c.resume, kEmpty),
      "auto (the latest checkpoint in --checkpoint-dir, or a fresh start) | a checkpoint or run directory");
  add(kTrain, "eval-interval", po::value(&texts.eval)->default_value(texts.eval),
      "steps (or epochs: 1ep) between evaluations (0: at the end)");
  add(kEval, "split", po::value(&c.split)->default_value(c.split),
      "the held-out split to score: valid | test (gettext-zh and gettext-de keep a test split that "
      "neither training nor its evaluations see)");
  add(kTrainEval, "eval-batches", po::value(&c.eval_batches)->default_value(c.eval_batches), "global batches per eval, drawn spread over the whole split, the same samples at any world size (0: the whole split)");
  group("Output and profiling");
  add(kTrain, "log-interval", po::value(&texts.log)->default_value(texts.log), "steps (or epochs: 1ep) between log lines");
  add(kTrain, "metrics-file", po::value(&c.metrics_file)->default_value(c.metrics_file, kEmpty), "JSON Lines metrics output");
  add(kTrain, "progress", po::value(&c.progress)->default_value(c.progress),
      "live progress line on a terminal (plain lines under a launcher or in a pipe)");
  add(kTrain, "profile-steps", po::value(&c.profile_steps)->default_value(c.profile_steps, kEmpty),
      "A:B writes a Chrome trace (Perfetto, chrome://tracing) of steps A to B per rank");
  add(kTrain, "profile-dir", po::value(&c.profile_dir)->default_value(c.profile_dir),
      "where --profile-steps writes trace-rank<R>.json");
  // clang-format on
  return groups;
}

// One description of every group that has an option for this subcommand, in order.
po::options_description all_options(const OptionGroups& groups, const char* subcommand) {
  po::options_description all(std::string("dtrain ") + subcommand + " options");
  for (const auto& g : groups) {
    if (!g->options().empty()) all.add(*g);
  }
  return all;
}

}  // namespace

std::string options_help(const char* subcommand) {
  TrainConfig c;
  IntervalTexts texts{c.checkpoint_interval.text(), c.eval_interval.text(), c.log_interval.text()};
  std::string config_file;
  std::ostringstream out;
  out << all_options(option_groups(c, texts, config_file, subcommand), subcommand);
  return out.str();
}

bool parse_train_config(const std::vector<std::string>& args, TrainConfig& c,
                        const char* subcommand, const std::map<std::string, std::string>& fallback,
                        const std::string& fallback_origin) {
  std::string config_file;
  IntervalTexts texts{c.checkpoint_interval.text(), c.eval_interval.text(), c.log_interval.text()};
  const po::options_description opts =
      all_options(option_groups(c, texts, config_file, subcommand), subcommand);
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
  if (vm.count("config"))
    origin = store_config_file(vm["config"].as<std::string>(), opts, vm, subcommand);
  // A checkpoint's settings fill what neither the command line nor the file set.
  for (const auto& [name, value] : fallback) {
    if (name == "resume" || opts.find_nothrow(name, false) == nullptr) continue;
    if (vm.count(name) && !vm[name].defaulted()) continue;
    store_one(name, value, opts, vm, fallback_origin, subcommand);
    origin[name] = fallback_origin;
  }
  try {
    po::notify(vm);
  } catch (const po::error& e) {
    throw Error(std::string(e.what()) + " (dtrain " + subcommand + " --help lists the options)");
  }
  auto interval = [&](const std::string& text, const char* option) {
    try {
      return Interval::parse(text, option);
    } catch (const Error& e) {
      auto it = origin.find(option);
      throw Error((it == origin.end() ? std::string() : it->second + ": ") + e.what());
    }
  };
  c.checkpoint_interval = interval(texts.checkpoint, "checkpoint-interval");
  c.eval_interval = interval(texts.eval, "eval-interval");
  c.log_interval = interval(texts.log, "log-interval");
  c.command_line = {"dtrain", subcommand};
  c.command_line.insert(c.command_line.end(), args.begin(), args.end());
  validate(c, origin);
  return true;
}

int64_t Interval::steps(int64_t steps_per_epoch) const {
  if (value <= 0) return 0;
  if (!in_epochs) return static_cast<int64_t>(value);
  return std::max<int64_t>(1, std::llround(value * static_cast<double>(steps_per_epoch)));
}

std::string Interval::text() const {
  return in_epochs ? exact_text(value) + "ep" : exact_text(value);
}

Interval Interval::parse(const std::string& text, const char* option) {
  const bool epochs = text.size() > 2 && text.compare(text.size() - 2, 2, "ep") == 0;
  const std::string number = epochs ? text.substr(0, text.size() - 2) : text;
  double value = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
  const bool whole = ec == std::errc() && end == number.data() + number.size();
  DTRAIN_CHECK(whole && std::isfinite(value) && value >= 0 && value <= 1e12 &&
                   (epochs || value == std::floor(value)),
               "--", option,
               " must be a whole number of steps or a number of epochs like 1ep or 0.5ep, got '",
               text, "'");
  return {value, epochs};
}

std::pair<int64_t, int64_t> TrainConfig::profile_range() const {
  if (profile_steps.empty()) return {0, -1};
  const size_t colon = profile_steps.find(':');
  int64_t a = 0, b = 0;
  bool ok = colon != std::string::npos;
  if (ok) {
    const char* s = profile_steps.data();
    auto [e1, c1] = std::from_chars(s, s + colon, a);
    auto [e2, c2] = std::from_chars(s + colon + 1, s + profile_steps.size(), b);
    ok =
        c1 == std::errc() && c2 == std::errc() && e1 == s + colon && e2 == s + profile_steps.size();
  }
  DTRAIN_CHECK(ok && a >= 1 && b >= a,
               "--profile-steps must be A:B with 1 <= A <= B (steps counted from 1), got '",
               profile_steps, "'");
  return {a, b};
}

std::string version_text() {
  std::string text = "dtrain " DTRAIN_VERSION;
#ifdef DTRAIN_WITH_CUDA
  text += " (CPU and CUDA backends, built with CUDA " DTRAIN_CUDA_TOOLKIT ")";
#else
  text += " (CPU backend only)";
#endif
  return text;
}

}  // namespace dtrain::launch
