#include "launch/config.h"

#include <boost/program_options.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"

namespace po = boost::program_options;

namespace dtrain::launch {

namespace {
// Boost prints no "(=...)" for a default whose text is empty; show an empty string as "" instead, so
// --help gives every option's default.
const char* kEmpty = "\"\"";
// Boost prints a double with 17 digits (0.05 as 0.050000000000000003); six significant ones suffice.
std::string short_text(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}
}  // namespace

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
    ("device", po::value(&c.device)->default_value(c.device), "cpu | cuda (each rank takes its local rank's GPU)")
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
    ("progress", po::value(&c.progress)->default_value(c.progress), "live progress line on a terminal");
  // clang-format on

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    if (vm.count("help")) {
      std::cout << opts << "\n";
      return false;
    }
    if (vm.count("config")) {
      std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      DTRAIN_CHECK(in.good(), "cannot open config file '", path, "': check the path");
      po::store(po::parse_config_file(in, opts), vm);  // earlier store (command line) wins
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw Error(std::string(e.what()) + " (dtrain " + subcommand + " --help lists the options)");
  }
  DTRAIN_CHECK(c.batch_size > 0, "--batch-size must be positive, got ", c.batch_size);
  DTRAIN_CHECK(c.grad_accum > 0, "--grad-accum must be positive, got ", c.grad_accum);
  DTRAIN_CHECK(c.steps > 0 || c.epochs > 0, "give --steps or --epochs a positive value");
  DTRAIN_CHECK(c.precision == "f32" || c.precision == "bf16" || c.precision == "f16",
               "--precision must be f32, bf16 or f16, got '", c.precision, "'");
  DTRAIN_CHECK(c.zero == 0 || c.zero == 1, "--zero must be 0 or 1, got ", c.zero);
  return true;
}

}  // namespace dtrain::launch
