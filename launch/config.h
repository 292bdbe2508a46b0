// Everything `dtrain train` / `dtrain eval` can be told, from the command line or an INI file
// (`--config FILE`; the command line wins). Defaults here are the ones `--help` prints.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dtrain::launch {

struct TrainConfig {
  // model
  std::string model = "vit";  // vit | transformer | gpt
  std::string model_size = "fm";  // vit: fm, tiny, small, base; transformer/gpt: tiny, small
  int64_t dim = 0, depth = 0, heads = 0, mlp_dim = 0, patch = 0;  // 0: from model_size
  double dropout = 0.0;
  // data
  std::string dataset = "fashion-mnist";  // fashion-mnist | cifar10 | freedict | fortunes
  std::string data_dir;  // empty: the Debian package's location
  int64_t seq_len = 64;  // gpt context, transformer max length
  // schedule of work
  int64_t batch_size = 128;  // global: summed over ranks and accumulation steps
  int64_t grad_accum = 1;
  int64_t steps = 0;  // 0: use epochs
  double epochs = 1;
  // optimisation
  std::string optimizer = "adamw";
  double lr = 1e-3;
  double min_lr = 0.0;
  std::string schedule = "cosine";  // cosine | linear | step | constant
  int64_t warmup_steps = 0;
  double weight_decay = 0.05;
  double clip_grad_norm = 1.0;  // <= 0: off
  double label_smoothing = 0.0;
  bool augment = false;  // random crop + flip of training images (vit)
  // numerics and placement
  std::string precision = "f32";  // f32 | bf16 | f16
  std::string device = "cpu";
  // TF32 tensor cores for f32 matmul and convolution on GPUs (10-bit mantissa products, f32 sums),
  // on by default as PyTorch users expect of convolutions; off makes f32 match the CPU to f32 accuracy.
  bool tf32 = true;
  uint64_t seed = 0;
  int threads = 0;  // 0: all cores of this rank's share
  // distributed
  double bucket_cap_mb = 25;
  int zero = 0;  // 0 | 1
  double collective_timeout_s = 600;
  bool debug_collectives = false;
  // checkpoints, evaluation, logging
  std::string checkpoint_dir;
  int64_t checkpoint_interval = 0;  // steps; 0: only at the end when checkpoint_dir is set
  std::string resume;  // a checkpoint directory
  int64_t eval_interval = 0;  // steps; 0: only at the end
  int64_t eval_batches = 0;  // 0: the whole split
  int64_t log_interval = 10;
  std::string metrics_file;
  bool progress = true;  // live line on a terminal
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
bool parse_train_config(const std::vector<std::string>& args, TrainConfig& config,
                        const char* subcommand);

}  // namespace dtrain::launch
