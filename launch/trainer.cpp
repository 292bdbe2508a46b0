#include "launch/trainer.h"

#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <thread>

#include "core/backend/runtime.h"
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
#include "launch/checkpoints.h"
#include "launch/stop_signal.h"
#include "launch/train_state.h"
#include "launch/workload.h"
#include "core/profiler/trace.h"

namespace dtrain::launch {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The process's peak resident memory so far, in MiB.
double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

}  // namespace

Device pick_device(const TrainConfig& c) {
  Device requested = Device::parse(c.device);
  if (requested.is_cpu()) return requested;
  const int count = cuda_device_count();
  DTRAIN_CHECK(count > 0, "--device ", c.device, ": ", cuda_unavailable_reason());
  const int local = dist::local_size();
  if (c.device == "cuda") {
    // Under a launcher each rank takes the GPU of its local rank; NCCL needs one GPU per rank.
    DTRAIN_CHECK(local <= count, local, " ranks run on this node but only ", count,
                 " CUDA device(s) are visible: start at most ", count,
                 " ranks per node, or use --device cpu");
    return Device::cuda(dist::local_rank());
  }
  DTRAIN_CHECK(local == 1, "--device ", c.device, " would put all ", local,
               " ranks of this node on one GPU; ",
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
nlohmann::json evaluate(Workload& w, dist::ProcessGroup& pg, int64_t batch_size,
                        int64_t max_batches, Device device) {
  NoGradGuard no_grad;
  w.model().eval();
  // Contiguous shards whose sizes differ by at most one: no sample is counted twice. --eval-batches N
  // scores N batches' worth of samples spread over the whole split (EvalShardSampler).
  const int64_t sample = max_batches > 0 ? max_batches * batch_size * pg.size() : 0;
  data::DataLoader loader(
      w.eval_set,
      std::make_shared<dist::EvalShardSampler>(w.eval_set->size(), pg.rank(), pg.size(), sample),
      {.batch_size = batch_size, .prefetch = 1});
  loader.start_epoch(0);
  std::vector<double> sums;
  while (auto batch = loader.next()) {
    w.check_batch(*batch);
    std::vector<double> s = w.eval_sums(to_device(std::move(*batch), device));
    if (sums.empty()) sums.assign(s.size(), 0.0);
    for (size_t i = 0; i < s.size(); ++i) sums[i] += s[i];
  }
  loader.stop();
  // Ranks with no eval batch still take part in the reduction with zeros of the same length.
  int64_t width = static_cast<int64_t>(
      dist::all_reduce_value(pg, static_cast<double>(sums.size()), dist::ReduceOp::max));
  sums.resize(static_cast<size_t>(width), 0.0);
  Tensor t = Tensor::from_vector(sums, {width}, DType::f64, pg.device());
  pg.all_reduce(t)->wait();
  w.model().train();
  return w.eval_metrics(t.to_vector<double>());
}

// Device, threads and seed for this rank, then the workload.
std::unique_ptr<Workload> setup(const TrainConfig& c, Device device) {
  select_device(device);
  set_allow_tf32(c.tf32);
  set_num_threads(c.threads > 0
                      ? c.threads
                      : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                        dist::local_size()));
  manual_seed(c.seed);
  return make_workload(c, device);
}

}  // namespace

nlohmann::json evaluate_checkpoint(const TrainConfig& c, dist::ProcessGroup& pg) {
  const Device device = pick_device(c);
  std::unique_ptr<Workload> w;
  dist::run_on_every_rank(pg, [&] {
    w = setup(c, device);
    Checkpoint ck(resolve_checkpoint(c.resume));
    try {
      w->load_checkpoint_state(ck.tensors(kCheckpointModelFile).tensors());
    } catch (const Error& e) {
      throw Error("checkpoint " + ck.dir() + ": its model does not fit this run: " + e.what());
    }
  });
  nlohmann::json metrics =
      evaluate(*w, pg, std::max<int64_t>(1, c.batch_size / pg.size()), c.eval_batches, device);
  if (pg.rank() == 0) {
    for (const std::string& s : w->samples()) std::cout << "sample: " << s << "\n";
  }
  return metrics;
}

namespace {

// The logged side of training: the window of steps since the last log line (items, host syncs, time),
// the metrics file and the progress display (rank 0 writes both).
class StepLog {
 public:
  StepLog(const TrainConfig& c, const Workload& w, const RunCheckpoints& run, int64_t total_steps,
          int64_t steps_per_epoch, bool lead, Device device)
      : lead_(lead),
        device_(device),
        unit_(w.unit()),
        steps_per_epoch_(steps_per_epoch),
        elapsed_before_(run.resumed().elapsed_s),
        progress_(total_steps, run.resumed().step, unit_,
                  lead && c.progress && stdout_is_terminal() && !dist::launched_by_mpi_launcher()) {
    if (lead) metrics_.open(c.metrics_file, run.metrics_keep_through());
  }
  Progress& progress() { return progress_; }
  double elapsed() const { return elapsed_before_ + seconds_since(start_); }
  void count_step(int64_t items, uint64_t syncs) {
    window_items_ += items;
    window_syncs_ += syncs;
    ++window_steps_;
  }
  double window_rate() const {
    return static_cast<double>(window_items_) / std::max(seconds_since(window_start_), 1e-9);
  }
  // A logged step: a metrics record and a progress line (rank 0), then a new window.
  void log(int64_t step, double loss, double lr, double grad_norm,
           const amp::DynamicLossScaler& scaler) {
    const double rate = window_rate();
    if (lead_) {
      nlohmann::json record = {
          {"step", step},
          {"epoch", static_cast<double>(step) / static_cast<double>(steps_per_epoch_)},
          {"loss", loss},
          {"lr", lr},
          {"grad_norm", grad_norm},
          {std::string(unit_) + "_per_s", rate},
          {"elapsed_s", elapsed()},
          // 0 but for f16's overflow flag (one a step); logging itself excluded
          {"host_syncs_per_step",
           static_cast<double>(window_syncs_) / static_cast<double>(window_steps_)},
          {"peak_rss_mb", peak_rss_mb()}};
      if (device_.is_cuda()) {
        record["peak_device_mb"] =
            static_cast<double>(peak_device_memory_bytes(device_)) / (1 << 20);
      }
      if (scaler.enabled()) record["loss_scale"] = scaler.scale_value();
      metrics_.write(record);
      progress_.update(step, loss, lr, rate, elapsed(), true);
    }
    items_total_ += static_cast<double>(window_items_);
    window_items_ = 0, window_syncs_ = 0, window_steps_ = 0;
    window_start_ = Clock::now();
  }
  void live(int64_t step, double loss, double lr) {
    if (lead_) progress_.update(step, loss, lr, window_rate(), elapsed(), false);
  }
  void eval(int64_t step, const nlohmann::json& metrics) {
    if (!lead_) return;
    nlohmann::json record = metrics;
    record["step"] = step;
    record["split"] = "eval";
    metrics_.write(record);
    progress_.print("eval @ step " + std::to_string(step) + ": " + format_metrics(metrics));
  }
  // Items a second over this session's logged windows.
  double items_per_s() const { return items_total_ / std::max(seconds_since(start_), 1e-9); }

 private:
  bool lead_;
  Device device_;
  const char* unit_;
  int64_t steps_per_epoch_;
  double elapsed_before_;
  Progress progress_;
  MetricsFile metrics_;
  Clock::time_point start_ = Clock::now(), window_start_ = start_;
  int64_t window_items_ = 0, window_steps_ = 0;
  uint64_t window_syncs_ = 0;
  double items_total_ = 0;
};

data::Batch next_batch(data::DataLoader& loader) {
  std::optional<data::Batch> batch = loader.next();
  if (!batch) {
    loader.start_epoch(loader.position().epoch + 1);
    batch = loader.next();
  }
  return std::move(*batch);
}

// What a run is, found before any training: the workload, its sampler and length, and the checkpoint it
// continues. Every check runs on every rank with no collective in between, so a failure anywhere is
// reported once for the job, before any work is lost.
struct RunPlan {
  std::unique_ptr<Workload> workload;
  std::shared_ptr<dist::DistributedSampler> sampler;
  int64_t steps_per_epoch = 0, total_steps = 0;
  std::optional<RunCheckpoints> run;
  bool finished() const { return !run->resume_dir().empty() && run->resumed().step == total_steps; }
};

RunPlan plan_run(const TrainConfig& c, dist::ProcessGroup& pg, Device device) {
  const int rank = pg.rank(), world = pg.size();
  RunPlan plan;
  dist::run_on_every_rank(pg, [&] {
    DTRAIN_CHECK(c.batch_size % (world * c.grad_accum) == 0, "--batch-size ", c.batch_size,
                 " must be divisible by ranks x --grad-accum = ", world, " x ", c.grad_accum);
    plan.workload = setup(c, device);
    const Workload& w = *plan.workload;
    DTRAIN_CHECK(w.eval_set->size() > 0, "the eval split of --dataset ", c.dataset,
                 " is empty: give a --data-dir whose eval split holds samples");
    plan.sampler = std::make_shared<dist::DistributedSampler>(
        dist::DistributedSamplerOptions{.dataset_size = w.train_set->size(),
                                        .global_batch_size = c.batch_size,
                                        .rank = rank,
                                        .world_size = world,
                                        .seed = c.seed,
                                        .drop_last = true});
    plan.steps_per_epoch = plan.sampler->num_batches();
    DTRAIN_CHECK(plan.steps_per_epoch > 0, "--batch-size ", c.batch_size,
                 " is larger than the training set (", w.train_set->size(), " samples)");
    plan.total_steps =
        c.steps > 0 ? c.steps : static_cast<int64_t>(std::ceil(c.epochs * plan.steps_per_epoch));
    make_schedule(c, plan.total_steps).check();  // --warmup-steps longer than the run, say
    plan.run.emplace(c, rank, plan.total_steps);
  });
  return plan;
}

std::string header_line(const TrainConfig& c, const nn::Module& model, int world, Device device,
                        int64_t total_steps, int64_t step, const std::string& resumed_from) {
  return "dtrain: " + c.model + " (" + std::to_string(model.num_parameters()) + " parameters) on " +
         c.dataset + ", " + std::to_string(world) + " rank(s)" + (c.zero ? " with ZeRO-1" : "") +
         ", " + device.str() + ", " + c.precision + ", global batch " +
         std::to_string(c.batch_size) + ", " + std::to_string(total_steps) + " steps" +
         (step > 0 ? ", resuming at step " + std::to_string(step) + " from " + resumed_from : "");
}

std::string trace_path(const TrainConfig& c, int rank) {
  return (std::filesystem::path(c.profile_dir) / ("trace-rank" + std::to_string(rank) + ".json"))
      .string();
}

}  // namespace

TrainResult train(const TrainConfig& c, std::shared_ptr<dist::ProcessGroup> pg_ptr) {
  dist::ProcessGroup& pg = *pg_ptr;
  const int rank = pg.rank(), world = pg.size();
  const bool lead = rank == 0;
  const Device device = pick_device(c);
  RunPlan plan = plan_run(c, pg, device);
  Workload* w = plan.workload.get();
  RunCheckpoints& run = *plan.run;
  const int64_t steps_per_epoch = plan.steps_per_epoch, total_steps = plan.total_steps;
  TrainResult result;
  if (plan.finished()) {
    result.steps = total_steps;
    result.finished_at = run.resume_dir();
    result.eval = run.resumed().eval;
    return result;
  }
  std::shared_ptr<nn::Module> model = w->shared_model();
  // Fine-tuning: a fresh run may start from another run's weights (a resume has its own) and train
  // only the last blocks. Before DDP, which starts every rank from rank 0's weights.
  std::string init_note;
  dist::run_on_every_rank(pg, [&] {
    if (run.resume_dir().empty() && !c.init_from.empty())
      init_note = load_initial_weights(c.init_from, *w);
    const int64_t frozen = freeze_below_last_blocks(*model, c.trainable_blocks);
    if (frozen > 0) {
      init_note += (init_note.empty() ? "" : "; ") + std::to_string(frozen) +
                   " parameter tensors frozen, " + std::to_string(c.trainable_blocks) +
                   " blocks and the head train";
    }
  });
  // Dropout masks differ between ranks (their data does too); initial weights are rank 0's anyway.
  manual_seed(data::combine_seed(c.seed, static_cast<uint64_t>(rank) + 1));
  const int64_t micro_batch = c.batch_size / (world * c.grad_accum);
  data::DataLoader loader(w->train_set, plan.sampler,
                          {.batch_size = micro_batch, .drop_last = true, .seed = c.seed});

  // Data parallelism: DDP all-reduces gradients during backward and starts every rank from rank 0's
  // weights; with --zero 1 the optimizer shards its state over the ranks (it is just another optimizer).
  std::unique_ptr<dist::DistributedDataParallel> ddp;
  if (world > 1) {
    ddp = std::make_unique<dist::DistributedDataParallel>(
        model, pg_ptr, dist::DDPOptions{.bucket_cap_mb = c.bucket_cap_mb});
  }
  std::unique_ptr<optim::Optimizer> optimizer = make_training_optimizer(c, *model, pg_ptr);
  optim::LrScheduler scheduler(*optimizer, make_schedule(c, total_steps));
  // Mixed precision: f32 master weights; forward and backward in bf16/f16 under autocast; f16 scales
  // the loss, and every rank agrees on whether a step overflowed.
  const bool mixed = c.precision != "f32";
  const DType low = c.precision == "f16" ? DType::f16 : DType::bf16;
  amp::DynamicLossScaler scaler(amp::LossScalerOptions{.enabled = c.precision == "f16"});
  scaler.set_overflow_reducer(
      [&pg](Tensor& found) { pg.all_reduce(found, dist::ReduceOp::max)->wait(); });
  TrainingParts parts{*w, *optimizer, scheduler, scaler};

  int64_t step = 0;
  if (!run.resume_dir().empty()) {
    run.restore(parts, pg);
    const TrainState& saved = run.resumed();
    step = saved.step;
    // The position in global batches, whatever the world size: each is --grad-accum loader batches.
    loader.start_epoch(saved.epoch, saved.legacy_batch >= 0 ? saved.legacy_batch
                                                            : saved.global_batch * c.grad_accum);
  } else {
    loader.start_epoch(0);
  }

  StepLog log(c, *w, run, total_steps, steps_per_epoch, lead, device);
  if (lead)
    log.progress().print(
        header_line(c, *model, world, device, total_steps, step, run.resume_dir()));
  if (lead && !init_note.empty()) log.progress().print(init_note);
  const auto [profile_first, profile_last] = c.profile_range();
  const std::vector<Tensor> params = optimizer->parameters();
  StopSignals stop_signals;
  nlohmann::json last_eval = run.resumed().eval;
  double last_loss = std::nan("");  // the mean loss of the last logged step, for the progress line
  model->train();
  while (step < total_steps) {
    if (step + 1 == profile_first) profiler::start(rank);
    std::optional<profiler::Scope> step_scope;
    if (profiler::recording()) step_scope.emplace("step", "step " + std::to_string(step + 1));
    // ---- one optimizer step: --grad-accum micro-batches, gradients summed into .grad. Nothing is read
    // back from the device here except on logging steps (and f16's overflow flag): the host queues the
    // step and runs ahead (host_sync_count() in core/backend/runtime.h counts the exceptions).
    Tensor loss_sum;  // on the device
    const uint64_t syncs_before = host_sync_count();
    int64_t items = 0;
    for (int64_t micro = 0; micro < c.grad_accum; ++micro) {
      data::Batch batch = next_batch(loader);
      w->check_batch(batch);
      items += w->items(batch) * world;  // counted on the host copy
      batch = to_device(std::move(batch), device);
      // DDP reduces only in the backward of the step's last micro-batch.
      std::optional<dist::DistributedDataParallel::NoSync> accumulate;
      if (ddp && micro + 1 < c.grad_accum) accumulate.emplace(*ddp);
      Tensor loss;
      {
        amp::AutocastGuard autocast(low, mixed);
        loss = w->loss(batch);
      }
      loss_sum = loss_sum.defined() ? add(loss_sum, loss.detach()) : loss.detach();
      scaler.scale(loss * (1.0 / static_cast<double>(c.grad_accum))).backward();
    }
    if (ddp) ddp->finish_gradient_synchronization();
    const bool final = step + 1 == total_steps;
    const bool logging = c.log_interval.due(step + 1, steps_per_epoch) || final;
    Tensor grad_norm;  // stays on the device; without clipping it is formed for the log only
    {
      profiler::Scope scope("optimizer", "clip and step");
      scaler.unscale(params);
      if (c.clip_grad_norm > 0) {
        grad_norm = optim::clip_grad_norm_tensor(params, c.clip_grad_norm);
      } else if (logging) {
        grad_norm = optim::grad_norm_tensor(params);
      }
      scaler.step(params, [&] { optimizer->step(); });
      optimizer->zero_grad();
    }
    const double lr = optimizer->lr(0);
    scheduler.step();
    ++step;
    log.count_step(items, host_sync_count() - syncs_before);

    // ---- logging, evaluation, checkpoints; a stop signal ends the run here, with a checkpoint
    const int stop = static_cast<int>(
        dist::all_reduce_value(pg.host(), StopSignals::received(), dist::ReduceOp::max));
    const bool evaluating = c.eval_interval.due(step, steps_per_epoch) || final;
    const bool checkpointing =
        !c.checkpoint_dir.empty() &&
        (c.checkpoint_interval.due(step, steps_per_epoch) || final || stop != 0);
    if (logging || checkpointing) {
      // The loss is read back here, so a diverged run stops (f16's loss scaler skips such steps
      // instead) before it writes NaN weights.
      double loss = loss_sum.item() / static_cast<double>(c.grad_accum);
      DTRAIN_CHECK(std::isfinite(loss) || scaler.enabled(), "the loss is ", loss, " at step ", step,
                   ": training diverged; lower --lr, clip gradients (--clip-grad-norm) or use "
                   "--precision f32");
      if (logging) last_loss = dist::all_reduce_value(pg, loss, dist::ReduceOp::avg);
    }
    if (logging) {
      log.log(step, last_loss, lr, grad_norm.defined() ? grad_norm.item() : 0.0, scaler);
    } else {
      log.live(step, last_loss, lr);
    }
    if (evaluating || checkpointing) {
      TrainState state;  // what a checkpoint holds beyond the model's and optimizer's tensors
      state.step = step;
      state.epoch = loader.position().epoch;
      state.global_batch = loader.position().batch / c.grad_accum;
      state.elapsed_s = log.elapsed();
      state.eval = last_eval;
      if (evaluating) {
        profiler::Scope scope("eval", "evaluate");
        state.eval = last_eval =
            evaluate(*w, pg, micro_batch * c.grad_accum, c.eval_batches, device);
        log.eval(step, last_eval);
        run.save_if_best(parts, pg, state);
      }
      if (checkpointing) {
        profiler::Scope scope("checkpoint", "save");
        run.save(parts, pg, state);
        result.checkpoint =
            (std::filesystem::path(c.checkpoint_dir) / step_checkpoint_name(step)).string();
      }
    }
    step_scope.reset();
    if (step == profile_last) profiler::stop_and_write(trace_path(c, rank));
    if (stop != 0) {
      result.stopped_by = stop;
      break;
    }
  }
  if (profiler::recording())
    profiler::stop_and_write(trace_path(c, rank));  // a run stopped inside the window
  log.progress().finish();
  result.steps = step;
  result.final_loss = last_loss;
  result.items_per_s = log.items_per_s();
  result.unit = w->unit();
  result.eval = last_eval;
  result.peak_rss_mb = peak_rss_mb();
  result.peak_device_mb = static_cast<double>(peak_device_memory_bytes(device)) / (1 << 20);
  result.on_gpu = device.is_cuda();
  if (lead && result.stopped_by == 0) {
    for (const std::string& s : w->samples()) std::cout << "sample: " << s << "\n";
  }
  return result;
}

}  // namespace dtrain::launch
