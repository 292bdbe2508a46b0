#include "launch/trainer.h"

#include <chrono>
#include <iostream>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <thread>

#include "core/backend/backend.h"
#include "core/data/data_loader.h"
#include "core/data/sampler.h"
#include "core/io/checkpoint.h"
#include "core/ops/ops.h"
#include "core/amp/autocast.h"
#include "core/amp/loss_scaler.h"
#include "core/data/seeding.h"
#include "core/optim/optim.h"
#include "distributed/ddp.h"
#include "distributed/model_sync.h"
#include "distributed/sampler.h"
#include "distributed/zero.h"
#include "launch/metrics.h"
#include "launch/optimizer_factory.h"
#include "launch/progress.h"
#include "launch/train_state.h"
#include "launch/workload.h"

namespace dtrain::launch {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int local_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "LOCAL_WORLD_SIZE"}) {
    if (const char* v = std::getenv(name)) return std::max(1, std::atoi(v));
  }
  return 1;
}

}  // namespace

Device pick_device(const TrainConfig& c) {
  Device requested = Device::parse(c.device);
  if (requested.is_cpu()) return requested;
  const int count = cuda_device_count();
  DTRAIN_CHECK(count > 0, "--device ", c.device, ": ", cuda_unavailable_reason());
  const int local = local_world_size();
  if (c.device == "cuda") {
    // Under a launcher each rank takes the GPU of its local rank; NCCL needs one GPU per rank.
    DTRAIN_CHECK(local <= count, local, " ranks run on this node but only ", count,
                 " CUDA device(s) are visible: start at most ", count, " ranks per node, or use --device cpu");
    return Device::cuda(dist::local_rank_from_environment());
  }
  DTRAIN_CHECK(local == 1, "--device ", c.device, " would put all ", local, " ranks of this node on one GPU; ",
               "use --device cuda (each rank takes its local rank's GPU)");
  DTRAIN_CHECK(requested.index < count, "--device ", c.device, " but only ", count,
               " CUDA device(s) are visible (cuda:0 to cuda:", count - 1, ")");
  return requested;
}

namespace {

data::Batch to_device(data::Batch b, Device device) {
  if (device.is_cpu()) return b;
  b.input = b.input.to(device);
  b.target = b.target.to(device);
  if (b.decoder_input.defined()) b.decoder_input = b.decoder_input.to(device);
  return b;
}

// Evaluates on this rank's share of the eval set and sums across ranks.
nlohmann::json evaluate(Workload& w, dist::ProcessGroup& pg, int64_t batch_size, int64_t max_batches,
                        Device device) {
  NoGradGuard no_grad;
  w.model().eval();
  // Contiguous shards whose sizes differ by at most one: no sample is counted twice.
  data::DataLoader loader(
      w.eval_set, std::make_shared<dist::EvalShardSampler>(w.eval_set->size(), pg.rank(), pg.size()),
      {.batch_size = batch_size, .prefetch = 1});
  loader.start_epoch(0);
  std::vector<double> sums;
  int64_t count = 0;
  while (auto batch = loader.next()) {
    if (max_batches > 0 && count++ >= max_batches) break;
    w.check_batch(*batch);
    std::vector<double> s = w.eval_sums(to_device(std::move(*batch), device));
    if (sums.empty()) sums.assign(s.size(), 0.0);
    for (size_t i = 0; i < s.size(); ++i) sums[i] += s[i];
  }
  loader.stop();
  // Ranks with no eval batch still take part in the reduction with zeros of the same length.
  int64_t width = static_cast<int64_t>(dist::all_reduce_value(pg, static_cast<double>(sums.size()),
                                                              dist::ReduceOp::max));
  sums.resize(static_cast<size_t>(width), 0.0);
  Tensor t = Tensor::from_vector(sums, {width}, DType::f64, pg.device());
  pg.all_reduce(t)->wait();
  w.model().train();
  return w.eval_metrics(t.to_vector<double>());
}

// Collective: every rank's RNG state travels to rank 0 (each rank's dropout stream differs), which
// writes the checkpoint; the others wait for it.
void save_checkpoint(const TrainConfig& c, dist::ProcessGroup& pg, Workload& w,
                     const optim::Optimizer& opt, const optim::LrScheduler& sched, int64_t step,
                     data::LoaderPosition pos, amp::DynamicLossScaler::State scaler) {
  const auto rng = default_generator().state();
  const std::vector<int64_t> words = dist::all_gather_values(pg, std::vector<int64_t>(rng.begin(), rng.end()));
  if (pg.rank() == 0) {
    CheckpointWriter writer(c.checkpoint_dir);
    std::map<std::string, std::string> metadata = w.checkpoint_metadata();
    metadata["format"] = "pt";
    writer.write_tensors(kCheckpointModelFile, w.checkpoint_state(), metadata);
    optim::OptimizerState os = opt.state_dict();
    writer.write_tensors(kCheckpointOptimizerFile, os.tensors);
    TrainState state{.step = step, .epoch = pos.epoch, .batch = pos.batch, .optimizer = os.scalars,
                     .scheduler = sched.state_dict(), .rng = {}, .loss_scale = scaler.scale,
                     .loss_scale_clean_steps = scaler.growth_tracker, .settings = resume_settings(c)};
    for (size_t r = 0; r < words.size() / 6; ++r) {
      std::array<uint64_t, 6> one{};
      for (size_t i = 0; i < 6; ++i) one[i] = static_cast<uint64_t>(words[r * 6 + i]);
      state.rng.push_back(one);
    }
    writer.write_json(kCheckpointStateFile, train_state_to_json(state));
    writer.commit();
  }
  pg.barrier()->wait();
}

// Loads a checkpoint's tensors, naming the checkpoint when they do not fit the model or optimizer.
template <class Load>
void load_from(const Checkpoint& ck, const char* what, Load load) {
  try {
    load();
  } catch (const Error& e) {
    throw Error("checkpoint " + ck.dir() + ": its " + what + " does not fit this run: " + e.what());
  }
}

// Device, threads and seed for this rank, then the workload.
std::unique_ptr<Workload> setup(const TrainConfig& c, Device device) {
  select_device(device);
  set_allow_tf32(c.tf32);
  set_num_threads(c.threads > 0 ? c.threads
                                : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                                  local_world_size()));
  manual_seed(c.seed);
  return make_workload(c, device);
}

}  // namespace

nlohmann::json evaluate_checkpoint(const TrainConfig& c, dist::ProcessGroup& pg) {
  const Device device = pick_device(c);
  std::unique_ptr<Workload> w;
  dist::run_on_every_rank(pg, [&] {
    w = setup(c, device);
    Checkpoint ck(c.resume);
    load_from(ck, "model", [&] { w->load_checkpoint_state(ck.tensors(kCheckpointModelFile).tensors()); });
  });
  nlohmann::json metrics = evaluate(*w, pg, std::max<int64_t>(1, c.batch_size / pg.size()),
                                    c.eval_batches, device);
  if (pg.rank() == 0) {
    for (const std::string& s : w->samples()) std::cout << "sample: " << s << "\n";
  }
  return metrics;
}

TrainResult train(const TrainConfig& c, std::shared_ptr<dist::ProcessGroup> pg_ptr) {
  dist::ProcessGroup& pg = *pg_ptr;
  const int rank = pg.rank(), world = pg.size();
  const bool lead = rank == 0;
  const Device device = pick_device(c);

  // Everything that can fail before training is checked here, on every rank, with no collective in
  // between: a failure anywhere is reported once, before any work is lost.
  std::unique_ptr<Workload> w;
  std::shared_ptr<dist::DistributedSampler> sampler;
  int64_t steps_per_epoch = 0, total_steps = 0;
  std::optional<Checkpoint> resume_from;
  TrainState saved;
  dist::run_on_every_rank(pg, [&] {
    DTRAIN_CHECK(c.batch_size % (world * c.grad_accum) == 0, "--batch-size ", c.batch_size,
                 " must be divisible by ranks x --grad-accum = ", world, " x ", c.grad_accum);
    DTRAIN_CHECK(c.zero == 0 || (c.resume.empty() && c.checkpoint_dir.empty()),
                 "--zero 1 does not write or resume checkpoints (its optimizer state is sharded over "
                 "the ranks); train with --zero 0 to use --checkpoint-dir or --resume");
    if (!c.checkpoint_dir.empty()) CheckpointWriter::check_target(c.checkpoint_dir);
    w = setup(c, device);
    DTRAIN_CHECK(w->eval_set->size() > 0, "the eval split of --dataset ", c.dataset,
                 " is empty: give a --data-dir whose eval split holds samples");
    sampler = std::make_shared<dist::DistributedSampler>(dist::DistributedSamplerOptions{
        .dataset_size = w->train_set->size(), .global_batch_size = c.batch_size, .rank = rank,
        .world_size = world, .seed = c.seed, .drop_last = true});
    steps_per_epoch = sampler->num_batches();
    DTRAIN_CHECK(steps_per_epoch > 0, "--batch-size ", c.batch_size, " is larger than the training set (",
                 w->train_set->size(), " samples)");
    total_steps = c.steps > 0 ? c.steps : static_cast<int64_t>(std::ceil(c.epochs * steps_per_epoch));
    make_schedule(c, total_steps).check();  // --warmup-steps longer than the run, say
    if (!c.resume.empty()) {
      resume_from.emplace(c.resume);
      saved = parse_train_state(resume_from->json(), resume_from->dir());
      check_resume_compatible(c, total_steps, saved, resume_from->dir());
    }
  });
  std::shared_ptr<nn::Module> model = w->shared_model();
  // Dropout masks differ between ranks (their data does too); initial weights are rank 0's anyway.
  manual_seed(data::combine_seed(c.seed, static_cast<uint64_t>(rank) + 1));
  const int64_t micro_batch = c.batch_size / (world * c.grad_accum);
  data::DataLoader loader(w->train_set, sampler,
                          {.batch_size = micro_batch, .drop_last = true, .seed = c.seed});

  // Data parallelism: DDP all-reduces gradients during backward; ZeRO-1 instead reduce-scatters them
  // after backward and shards the optimizer state. Both start every rank from rank 0's weights.
  std::unique_ptr<dist::DistributedDataParallel> ddp;
  std::unique_ptr<dist::ZeroRedundancyOptimizer> zero;
  std::unique_ptr<optim::Optimizer> plain_optimizer;
  if (c.zero == 1) {
    dist::check_same_model(pg, *model);
    dist::broadcast_module(pg, *model);
    zero = std::make_unique<dist::ZeroRedundancyOptimizer>(
        decay_groups(*model), pg_ptr,
        [&c](std::vector<std::vector<Tensor>> groups) { return make_optimizer(c, std::move(groups)); });
  } else {
    if (world > 1) {
      ddp = std::make_unique<dist::DistributedDataParallel>(
          model, pg_ptr, dist::DDPOptions{.bucket_cap_mb = c.bucket_cap_mb});
    }
    plain_optimizer = make_optimizer(c, decay_groups(*model));
  }
  optim::Optimizer& optimizer = zero ? zero->local_optimizer() : *plain_optimizer;
  optim::LrScheduler scheduler(optimizer, make_schedule(c, total_steps));

  // Mixed precision: f32 master weights; forward and backward in bf16/f16 under autocast; f16 scales
  // the loss, and every rank agrees on whether a step overflowed.
  const bool mixed = c.precision != "f32";
  const DType low = c.precision == "f16" ? DType::f16 : DType::bf16;
  amp::DynamicLossScaler scaler(amp::LossScalerOptions{.enabled = c.precision == "f16"});
  scaler.set_overflow_reducer([&pg](Tensor& found) { pg.all_reduce(found, dist::ReduceOp::max)->wait(); });

  int64_t step = 0;
  data::LoaderPosition position;
  if (resume_from) {
    const Checkpoint& ck = *resume_from;
    dist::run_on_every_rank(pg, [&] {
      load_from(ck, "model", [&] { w->load_checkpoint_state(ck.tensors(kCheckpointModelFile).tensors()); });
      load_from(ck, "optimizer state", [&] {
        optimizer.load_state_dict({ck.tensors(kCheckpointOptimizerFile).tensors(), saved.optimizer});
      });
      load_from(ck, "scheduler state", [&] { scheduler.load_state_dict(saved.scheduler); });
    });
    step = saved.step;
    position = {saved.epoch, saved.batch};
    // Each rank continues its own dropout stream; at another world size there is no such stream, and
    // each rank starts a new one from the seed, the step and its rank.
    if (saved.rng.size() == static_cast<size_t>(world)) {
      default_generator().set_state(saved.rng[static_cast<size_t>(rank)]);
    } else {
      manual_seed(data::combine_seed(data::combine_seed(c.seed, static_cast<uint64_t>(step)),
                                     static_cast<uint64_t>(rank) + 1));
    }
    scaler.load_state({saved.loss_scale, saved.loss_scale_clean_steps});
  }

  MetricsFile metrics;
  if (lead) metrics.open(c.metrics_file, !c.resume.empty());
  Progress progress(total_steps, w->unit(), lead && c.progress && stdout_is_terminal());
  if (lead) {
    progress.print("dtrain: " + c.model + " (" + std::to_string(model->num_parameters()) +
                   " parameters) on " + c.dataset + ", " + std::to_string(world) + " rank(s)" +
                   (zero ? " with ZeRO-1" : "") + ", " + device.str() + ", " + c.precision +
                   ", global batch " + std::to_string(c.batch_size) + ", " +
                   std::to_string(total_steps) + " steps");
  }

  model->train();
  loader.start_epoch(position.epoch, position.batch);
  TrainResult result;
  const auto start = Clock::now();
  auto window_start = start;
  int64_t window_items = 0;
  double items_total = 0;
  const std::vector<Tensor> params = zero ? zero->parameters() : optimizer.parameters();
  nlohmann::json last_eval;

  uint64_t window_syncs = 0;
  int64_t window_steps = 0;
  double last_loss = std::nan("");  // the mean loss of the last logged step, for the progress line
  while (step < total_steps) {
    // ---- one optimizer step: grad_accum micro-batches, gradients summed into .grad. Nothing is read
    // back from the device here except on logging steps (and f16's overflow flag): the host queues the
    // step and runs ahead (host_sync_count() in core/backend/backend.h counts the exceptions).
    Tensor loss_sum;  // on the device
    const uint64_t syncs_before = host_sync_count();
    for (int64_t micro = 0; micro < c.grad_accum; ++micro) {
      std::optional<data::Batch> batch = loader.next();
      if (!batch) {
        loader.start_epoch(loader.position().epoch + 1);
        batch = loader.next();
      }
      w->check_batch(*batch);
      window_items += w->items(*batch) * world;  // counted on the host copy, before the move
      data::Batch b = to_device(std::move(*batch), device);
      // DDP reduces only in the backward of the last micro-batch; ZeRO-1 reduces after the step's last.
      std::optional<dist::DistributedDataParallel::NoSync> accumulate;
      if (ddp && micro + 1 < c.grad_accum) accumulate.emplace(*ddp);
      Tensor loss;
      {
        amp::AutocastGuard autocast(low, mixed);
        loss = w->loss(b);
      }
      loss_sum = loss_sum.defined() ? add(loss_sum, loss.detach()) : loss.detach();
      scaler.scale(loss * (1.0 / static_cast<double>(c.grad_accum))).backward();
    }
    if (ddp) ddp->finish_gradient_synchronization();
    scaler.unscale(params);  // before ZeRO's reduce-scatter, which hands the shards their true values
    if (zero) zero->reduce_gradients();
    const bool final = step + 1 == total_steps;
    const bool log = (step + 1) % c.log_interval == 0 || final;
    const bool checkpoint = !c.checkpoint_dir.empty() &&
                            ((c.checkpoint_interval > 0 && (step + 1) % c.checkpoint_interval == 0) || final);
    // The norm stays on the device; without clipping it is only formed for the log.
    Tensor grad_norm;
    if (zero) {
      const double norm = zero->clip_grad_norm(c.clip_grad_norm > 0 ? c.clip_grad_norm : 1e300);
      grad_norm = Tensor::full({}, norm, DType::f64);
    } else if (c.clip_grad_norm > 0) {
      grad_norm = optim::clip_grad_norm_tensor(params, c.clip_grad_norm);
    } else if (log) {
      grad_norm = optim::grad_norm_tensor(params);
    }
    scaler.step(params, [&] { zero ? zero->step() : optimizer.step(); });
    zero ? zero->zero_grad() : optimizer.zero_grad();
    double lr = optimizer.lr(0);
    scheduler.step();
    ++step;
    window_syncs += host_sync_count() - syncs_before;
    ++window_steps;

    // ---- logging (every rank computes the mean loss; rank 0 prints and writes). The loss is read back
    // here, and before a checkpoint, so a diverged run stops (f16's loss scaler skips such steps
    // instead) before it writes NaN weights.
    double elapsed = seconds_since(start);
    if (log || checkpoint) {
      double loss_mean = loss_sum.item() / static_cast<double>(c.grad_accum);
      DTRAIN_CHECK(std::isfinite(loss_mean) || scaler.enabled(), "the loss is ", loss_mean, " at step ", step,
                   ": training diverged; lower --lr, clip gradients (--clip-grad-norm) or use "
                   "--precision f32");
      if (log) loss_mean = dist::all_reduce_value(pg, loss_mean, dist::ReduceOp::avg);
      last_loss = loss_mean;
    }
    if (log) {
      double rate = static_cast<double>(window_items) / std::max(seconds_since(window_start), 1e-9);
      // Host synchronisations of the steps since the last log, logging itself excluded: 0 but for
      // f16's overflow flag (one a step).
      const double syncs_per_step = static_cast<double>(window_syncs) / static_cast<double>(window_steps);
      items_total += static_cast<double>(window_items);
      window_items = 0;
      window_start = Clock::now();
      window_syncs = 0, window_steps = 0;
      result.items_per_s = items_total / std::max(elapsed, 1e-9);
      const double norm = grad_norm.defined() ? grad_norm.item() : 0.0;
      if (lead) {
        nlohmann::json record = {{"step", step},
                                 {"epoch", static_cast<double>(step) / static_cast<double>(steps_per_epoch)},
                                 {"loss", last_loss},
                                 {"lr", lr},
                                 {"grad_norm", norm},
                                 {std::string(w->unit()) + "_per_s", rate},
                                 {"elapsed_s", elapsed}};
        record["host_syncs_per_step"] = syncs_per_step;
        if (scaler.enabled()) record["loss_scale"] = scaler.scale_value();
        metrics.write(record);
        progress.update(step, last_loss, lr, rate, elapsed, true);
      }
    } else if (lead) {
      progress.update(step, last_loss, lr, result.items_per_s, elapsed, false);
    }
    result.final_loss = last_loss;

    // ---- evaluation and checkpoints
    if ((c.eval_interval > 0 && step % c.eval_interval == 0) || final) {
      last_eval = evaluate(*w, pg, micro_batch * c.grad_accum, c.eval_batches, device);
      if (lead) {
        nlohmann::json record = last_eval;
        record["step"] = step;
        record["split"] = "eval";
        metrics.write(record);
        progress.print("eval @ step " + std::to_string(step) + ": " + last_eval.dump());
      }
    }
    if (checkpoint) {
      save_checkpoint(c, pg, *w, optimizer, scheduler, step, loader.position(), scaler.state());
    }
  }
  progress.finish();
  result.steps = step;
  result.eval = last_eval;
  if (lead) {
    for (const std::string& s : w->samples()) std::cout << "sample: " << s << "\n";
  }
  return result;
}

}  // namespace dtrain::launch
