// Everything `dtrain train` / `dtrain eval` can be told, from the command line or an INI file
// (`--config FILE`; the command line wins). Defaults here are the ones `--help` prints.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dtrain::launch {

// An interval of training: in optimizer steps ("100") or in epochs ("1ep", "0.5ep"); 0 is "never"
// (the end of the run still evaluates, logs and checkpoints).
struct Interval {
  double value = 0;
  bool in_epochs = false;
  // The interval in steps (at least 1), or 0 for never.
  int64_t steps(int64_t steps_per_epoch) const;
  // Whether `step` (counted from 1) ends an interval.
  bool due(int64_t step, int64_t steps_per_epoch) const {
    const int64_t n = steps(steps_per_epoch);
    return n > 0 && step % n == 0;
  }
  std::string text() const;  // "100", "1ep"
  // Parses "N" or "Xep"; throws dtrain::Error naming `option` for anything else.
  static Interval parse(const std::string& text, const char* option);
};

struct TrainConfig {
  // model
  std::string model = "vit";      // vit | transformer | gpt | classifier | fusion
  std::string model_size = "fm";  // vit: fm, tiny, small, base; transformer/gpt: tiny, small
  int64_t dim = 0, depth = 0, heads = 0, mlp_dim = 0, patch = 0;  // 0: from model_size
  double dropout = 0.0;
  std::string stem = "patch";  // vit: patch (one strided convolution) | dwsep (depthwise-separable)
  std::string modalities = "both";  // fusion: image | text | both
  // decoding (transformer evaluation and predict)
  int64_t beam = 1;             // beam width; 1: greedy
  double length_penalty = 0.6;  // beam: scores divided by ((5 + length) / 6)^alpha
  // fine-tuning: a fresh run that starts from a checkpoint's model weights
  std::string init_from;  // a checkpoint or run directory (its latest checkpoint); empty: none
  int64_t trainable_blocks =
      -1;  // -1: all parameters train; N: only the last N blocks and the head
  double layer_lr_decay =
      1.0;  // block i (from 1) of L trains at lr * decay^(L + 1 - i); the head at lr
  // data
  // fashion-mnist | cifar10 | freedict | gettext-zh | gettext-de | fortunes | fortune-files | unihan
  std::string dataset = "fashion-mnist";
  std::string data_dir;    // empty: the Debian package's location
  int64_t seq_len = 64;    // gpt context, transformer max length
  int64_t bpe_merges = 0;  // transformer: byte-pair merges of the source tokens (0: characters)
  // The held-out split that evaluation scores: valid, or test where the dataset keeps one apart
  // (gettext-zh, gettext-de); training always evaluates on valid.
  std::string split = "valid";
  // schedule of work
  int64_t batch_size = 128;  // global: summed over ranks and accumulation steps
  int64_t grad_accum = 1;
  int64_t steps = 0;  // 0: use epochs
  double epochs = 1;
  // optimisation
  std::string optimizer = "adamw";
  // One kernel call per group for sgd, adam and adamw (auto: on for those three, off for the rest).
  std::string fused_optimizer = "auto";  // auto | on | off
  double lr = 1e-3;
  double min_lr = 0.0;
  std::string schedule = "cosine";  // cosine | linear | step | constant
  int64_t warmup_steps = 0;
  double weight_decay = 0.05;
  double beta1 = 0.9, beta2 = 0.999;  // adam, adamw, adamax, nadam: the moment decay rates
  double clip_grad_norm = 1.0;        // <= 0: off
  double label_smoothing = 0.0;
  bool augment = false;  // random crop + flip of training images (vit)
  // numerics and placement
  std::string precision = "f32";  // f32 | bf16 | f16
  std::string device = "cpu";
  // TF32 tensor cores for f32 matmul and convolution on GPUs (10-bit mantissa products, f32 sums),
  // on by default as PyTorch users expect of convolutions; off makes f32 match the CPU to f32 accuracy.
  bool tf32 = true;
  // Recompute each block's forward in backward instead of keeping its activations (vit, gpt,
  // transformer): less memory for about one more forward pass.
  bool checkpoint_activations = false;
  uint64_t seed = 0;
  int threads = 0;  // 0: all cores of this rank's share
  // distributed
  double bucket_cap_mb = 25;
  int zero = 0;  // 0 | 1
  double collective_timeout_s = 600;
  bool debug_collectives = false;
  // checkpoints, evaluation, logging
  std::string checkpoint_dir;    // the run's directory: step-<N>/ checkpoints and best/
  Interval checkpoint_interval;  // 0: only at the end when checkpoint_dir is set
  int64_t keep_checkpoints = 3;  // the newest step-<N> checkpoints kept (0: all)
  // "auto": the latest checkpoint under checkpoint_dir, or a fresh start when there is none;
  // else a checkpoint directory or a run directory (its latest checkpoint).
  std::string resume;
  Interval eval_interval;    // 0: only at the end
  int64_t eval_batches = 0;  // 0: the whole split
  Interval log_interval{10, false};
  std::string metrics_file;
  bool progress = true;  // live line on a terminal, without a launcher
  // profiling: a Chrome trace of steps A..B (counted from 1) per rank, into profile_dir
  std::string profile_steps;  // "A:B"; empty: off
  std::string profile_dir = "profile";
  // Parsed profile_steps: {A, B}, or {0, -1} when off.
  std::pair<int64_t, int64_t> profile_range() const;
  // The command line it came from, recorded in checkpoints (not an option).
  std::vector<std::string> command_line;
};

// One option as a comparable text, and who must agree on it.
struct Setting {
  enum Scope {
    local,                  // may differ between ranks and across a resume (threads, output files)
    every_rank,             // the same on every rank; may change when resuming (intervals, lr)
    every_rank_and_resume,  // also fixed by a checkpoint (model shape, batch size, data order)
  };
  std::string name;  // the option's name without "--"
  std::string value;
  Scope scope;
};
// Every option of `config`, in --help's order.
std::vector<Setting> settings(const TrainConfig& config);

// Parses `args` (without the program and subcommand names). Returns false when --help was printed.
// Throws dtrain::Error with a one-line message for an unknown option, a bad value or a missing file.
// Precedence: the command line, then --config FILE, then `fallback` (a checkpoint's recorded settings,
// by option name, for eval and predict; origin names it in messages), then the defaults.
// `subcommand` is "train", "eval" or "predict"; eval and predict accept only the options they use.
bool parse_train_config(const std::vector<std::string>& args, TrainConfig& config,
                        const char* subcommand,
                        const std::map<std::string, std::string>& fallback = {},
                        const std::string& fallback_origin = "");

// The options of `subcommand`, grouped by purpose, as --help prints them.
std::string options_help(const char* subcommand);

// dtrain's version and build ("dtrain 0.2.0 (CUDA 13.0 backend)").
std::string version_text();

}  // namespace dtrain::launch
