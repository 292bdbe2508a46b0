#include "distributed/ddp.h"

#include <algorithm>
#include <chrono>
#include <map>

#include <nlohmann/json.hpp>

#include "core/autograd/grad_mode.h"
#include "core/backend/runtime.h"
#include "core/ops/elementwise.h"
#include "core/profiler/trace.h"
#include "distributed/model_sync.h"

namespace dtrain::dist {

std::vector<std::vector<size_t>> assign_buckets(const std::vector<size_t>& bytes,
                                                const std::vector<DType>& dtypes,
                                                size_t cap_bytes) {
  DTRAIN_CHECK(bytes.size() == dtypes.size(), "assign_buckets: ", bytes.size(), " sizes but ",
               dtypes.size(), " dtypes");
  std::vector<std::vector<size_t>> buckets;
  std::vector<size_t> bucket_bytes;
  std::map<DType, size_t> open;  // dtype -> index of its open bucket
  for (size_t k = bytes.size(); k-- > 0;) {
    auto it = open.find(dtypes[k]);
    if (it == open.end()) {
      it = open.emplace(dtypes[k], buckets.size()).first;
      buckets.emplace_back();
      bucket_bytes.push_back(0);
    }
    const size_t b = it->second;
    buckets[b].push_back(k);
    bucket_bytes[b] += bytes[k];
    if (bucket_bytes[b] >= cap_bytes) open.erase(it);
  }
  return buckets;
}

// ---- shared state: what the hooks see

struct DistributedDataParallel::State {
  bool attached = true;
  bool sync = true;
  bool find_unused = false;
  ProcessGroup* pg = nullptr;
  double inv_world = 1.0;

  std::vector<Tensor> params;  // trainable, registration order
  std::vector<std::string> names;
  struct Slot {
    size_t bucket = 0;
    int64_t offset = 0;
  };
  std::vector<Slot> slots;
  struct Bucket {
    std::vector<size_t> params;
    Tensor flat;
    int64_t pending = 0;
    WorkPtr work;
  };
  std::vector<Bucket> buckets;

  // The step in progress: begins with the first gradient that arrives outside no_sync (or with
  // finish_gradient_synchronization when none did), ends when finish returns.
  bool in_step = false;
  std::vector<char> ready;
  int64_t num_ready = 0;
  size_t next_launch = 0;
  std::vector<std::shared_ptr<Observer>> observers;

  Tensor slot_view(size_t i) const {
    const Slot& s = slots[i];
    return buckets[s.bucket].flat.narrow(0, s.offset, params[i].numel());
  }

  void begin_step() {
    in_step = true;
    std::fill(ready.begin(), ready.end(), 0);
    num_ready = 0;
    next_launch = 0;
    for (Bucket& b : buckets) {
      b.pending = static_cast<int64_t>(b.params.size());
      b.work.reset();
    }
  }

  // The gradient of parameter i is final for this backward: stage it (pre-divided by the world size,
  // so the sum all-reduce yields the mean) and start every bucket that is now complete, in order.
  void on_gradient(size_t i, const Tensor& param) {
    if (!attached || !sync) return;
    if (!in_step) begin_step();
    DTRAIN_CHECK(!ready[i], "DistributedDataParallel: the gradient of '", names[i],
                 "' arrived twice before finish_gradient_synchronization(); call it after every "
                 "backward that runs outside no_sync()");
    ready[i] = 1;
    ++num_ready;
    for (const auto& o : observers) o->gradient_ready(i, num_ready);
    stage(i, param.grad());
    if (--buckets[slots[i].bucket].pending == 0) launch_ready(true);
  }

  void stage(size_t i, const Tensor& grad) {
    Tensor dst = slot_view(i);
    if (grad.defined()) {
      dst.copy_(grad.reshape({grad.numel()}));
      if (inv_world != 1.0) mul_(dst, inv_world);
    } else {
      dst.zero_();
    }
  }

  void launch_ready(bool in_backward) {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      const size_t b = next_launch++;
      const Clock::time_point launched = Clock::now();
      buckets[b].work = pg->all_reduce(buckets[b].flat, ReduceOp::sum);
      for (const auto& o : observers)
        o->bucket_launched(b, buckets[b].work, in_backward, num_ready);
      if (profiler::recording()) trace_bucket(b, launched);
    }
  }

  // The bucket's all-reduce in the trace, on the "ddp-comm" track: from when the process group
  // started it (its communication thread for MPI; on the GPU's NCCL stream for NCCL) until that
  // group saw it complete, with an arrow from the launch (in backward, or in finish).
  void trace_bucket(size_t b, Clock::time_point launched) {
    const Tensor& flat = buckets[b].flat;
    nlohmann::json args = {{"bucket", b},
                           {"bytes", flat.numel() * static_cast<int64_t>(dtype_size(flat.dtype()))},
                           {"numel", flat.numel()},
                           {"dtype", dtype_name(flat.dtype())},
                           {"params", buckets[b].params.size()}};
    profiler::add_deferred(
        "ddp-comm", "comm", "all_reduce bucket " + std::to_string(b), std::move(args), launched,
        [work = buckets[b].work, launched]() -> std::optional<profiler::Interval> {
          if (!work->is_completed()) return std::nullopt;
          Clock::time_point start = work->start_time(), end = work->end_time();
          if (end == Clock::time_point{})
            end = Clock::now();  // a group that does not time its work
          if (start == Clock::time_point{} || start < launched) start = launched;
          return profiler::Interval{start, std::max(start, end)};
        });
  }

  void detach() {
    attached = false;
    pg = nullptr;
    params.clear();
    buckets.clear();
  }
};

// ---- construction

DistributedDataParallel::DistributedDataParallel(std::shared_ptr<nn::Module> module,
                                                 std::shared_ptr<ProcessGroup> pg,
                                                 DDPOptions options)
    : module_(std::move(module)),
      pg_(std::move(pg)),
      options_(options),
      state_(std::make_shared<State>()) {
  DTRAIN_CHECK(module_ && pg_,
               "DistributedDataParallel: the module and the process group must not be null");
  DTRAIN_CHECK(options_.bucket_cap_mb > 0,
               "DistributedDataParallel: bucket_cap_mb = ", options_.bucket_cap_mb,
               " must be positive");
  DTRAIN_CHECK(options_.root >= 0 && options_.root < pg_->size(), "DistributedDataParallel: root ",
               options_.root, " is not a rank of the group of ", pg_->size());
  for (const auto& [name, t] : module_->named_parameters()) {
    DTRAIN_CHECK(t.device() == pg_->device(), "DistributedDataParallel: parameter '", name,
                 "' is on ", t.device().str(), " but the ", pg_->backend_name(),
                 " process group serves ", pg_->device().str(),
                 " tensors; move the model there first (or use the group for ", "its device)");
  }
  check_same_model(*pg_, *module_);
  broadcast_module(*pg_, *module_, options_.root);

  State& s = *state_;
  s.pg = pg_.get();
  s.find_unused = options_.find_unused_parameters;
  s.inv_world = 1.0 / pg_->size();
  std::vector<size_t> bytes;
  std::vector<DType> dtypes;
  for (const auto& [name, t] : module_->named_parameters()) {
    if (!t.requires_grad()) continue;
    s.params.push_back(t);
    s.names.push_back(name);
    DType wire = t.dtype();
    if (options_.compression == GradCompression::bf16) wire = DType::bf16;
    if (options_.compression == GradCompression::f16) wire = DType::f16;
    bytes.push_back(static_cast<size_t>(t.numel()) * dtype_size(wire));
    dtypes.push_back(wire);
  }
  const auto cap = static_cast<size_t>(options_.bucket_cap_mb * 1024.0 * 1024.0);
  std::vector<std::vector<size_t>> plan = assign_buckets(bytes, dtypes, std::max<size_t>(cap, 1));
  s.slots.resize(s.params.size());
  for (size_t b = 0; b < plan.size(); ++b) {
    State::Bucket bucket;
    bucket.params = plan[b];
    int64_t numel = 0;
    for (size_t i : plan[b]) {
      s.slots[i] = {b, numel};
      numel += s.params[i].numel();
    }
    bucket.flat = Tensor::zeros({numel}, dtypes[plan[b].front()], pg_->device());
    s.buckets.push_back(std::move(bucket));
  }
  s.ready.assign(s.params.size(), 0);
  s.begin_step();
  s.in_step = false;

  std::shared_ptr<State> shared = state_;
  for (size_t i = 0; i < s.params.size(); ++i) {
    s.params[i].register_post_accumulate_grad_hook(
        [shared, i](const Tensor& param) { shared->on_gradient(i, param); });
  }
}

DistributedDataParallel::~DistributedDataParallel() { state_->detach(); }

// ---- no_sync

DistributedDataParallel::NoSync::NoSync(DistributedDataParallel& ddp)
    : ddp_(ddp), previous_(ddp.state_->sync) {
  ddp_.state_->sync = false;
}

DistributedDataParallel::NoSync::~NoSync() { ddp_.state_->sync = previous_; }

bool DistributedDataParallel::sync_enabled() const { return state_->sync; }

// ---- the end of a step

void DistributedDataParallel::finish_gradient_synchronization() {
  State& s = *state_;
  if (!s.sync) return;
  NoGradGuard no_grad;
  if (!s.in_step) s.begin_step();
  for (const auto& o : s.observers) o->finish_begin();

  std::vector<size_t> unready;
  for (size_t i = 0; i < s.params.size(); ++i) {
    if (!s.ready[i]) unready.push_back(i);
  }
  std::vector<char> globally_used(s.params.size(), 1);
  if (!unready.empty() && !s.find_unused) {
    std::string list;
    for (size_t k = 0; k < unready.size() && k < 8; ++k) {
      list += (k ? ", '" : "'") + s.names[unready[k]] + "'";
    }
    if (unready.size() > 8) list += ", ...";
    // Leave the object usable: the launched buckets are waited for, nothing is written back.
    for (State::Bucket& b : s.buckets) {
      if (b.work) b.work->wait();
    }
    s.in_step = false;
    throw Error(detail::concat(
        "DistributedDataParallel: ", unready.size(), " of ", s.params.size(),
        " trainable parameters got no gradient in this backward pass: ", list,
        ". If parts of the model are legitimately unused in some steps, construct it with "
        "DDPOptions::find_unused_parameters = true; otherwise freeze them (requires_grad false) or "
        "check that every output contributes to the loss"));
  }
  if (!unready.empty()) {
    // Stage what these parameters have (a gradient accumulated under no_sync, else zeros) and start
    // the buckets still waiting; the order of launches stays the bucket order on every rank.
    for (size_t i : unready) {
      s.stage(i, s.params[i].grad());
      --s.buckets[s.slots[i].bucket].pending;
    }
  }
  s.launch_ready(false);
  if (s.find_unused) {
    // One more collective, after every bucket: which parameters got a gradient on some rank.
    std::vector<int32_t> local(s.params.size());
    for (size_t i = 0; i < s.params.size(); ++i) {
      local[i] = (s.ready[i] || s.params[i].grad().defined()) ? 1 : 0;
    }
    Tensor used =
        Tensor::from_vector(local, {static_cast<int64_t>(local.size())}, DType::i32, pg_->device());
    pg_->all_reduce(used, ReduceOp::max)->wait();
    std::vector<int64_t> g = used.to_vector<int64_t>();
    for (size_t i = 0; i < g.size(); ++i) globally_used[i] = g[i] != 0;
  }
  for (State::Bucket& b : s.buckets) {
    b.work->wait();  // orders what follows after the collective; on a GPU, no host wait
    b.work.reset();
  }
  for (size_t i = 0; i < s.params.size(); ++i) {
    if (!globally_used[i]) continue;
    Tensor& p = s.params[i];
    Tensor reduced = s.slot_view(i).view(p.shape());
    if (!p.grad().defined()) {
      p.set_grad(Tensor::empty(p.shape(), p.dtype(), p.device()));
    }
    Tensor g = p.grad();
    g.copy_(reduced);
  }
  s.in_step = false;
  for (const auto& o : s.observers) o->finish_end();
}

void DistributedDataParallel::broadcast_buffers() {
  broadcast_coalesced(*pg_, module_->buffers(), options_.root);
}

// ---- introspection

std::vector<DistributedDataParallel::BucketInfo> DistributedDataParallel::buckets() const {
  std::vector<BucketInfo> out;
  for (const State::Bucket& b : state_->buckets) {
    BucketInfo info;
    for (size_t i : b.params) info.names.push_back(state_->names[i]);
    info.numel = b.flat.numel();
    info.dtype = b.flat.dtype();
    out.push_back(std::move(info));
  }
  return out;
}

void DistributedDataParallel::add_observer(std::shared_ptr<Observer> observer) {
  DTRAIN_CHECK(observer != nullptr, "DistributedDataParallel::add_observer: the observer is null");
  state_->observers.push_back(std::move(observer));
}

int64_t DistributedDataParallel::num_trainable() const {
  return static_cast<int64_t>(state_->params.size());
}

}  // namespace dtrain::dist
