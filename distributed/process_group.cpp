#include "distributed/process_group.h"

#include <atomic>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>

#include "core/autograd/grad_mode.h"

namespace dtrain::dist {

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "sum";
    case ReduceOp::avg:
      return "avg";
    case ReduceOp::max:
      return "max";
  }
  return "?";
}

ProcessGroupOptions ProcessGroupOptions::from_environment() {
  ProcessGroupOptions o;
  if (const char* s = std::getenv("DTRAIN_COLLECTIVE_TIMEOUT_S")) {
    char* end = nullptr;
    double seconds = std::strtod(s, &end);
    DTRAIN_CHECK(end != s && *end == '\0' && seconds > 0, "DTRAIN_COLLECTIVE_TIMEOUT_S='", s,
                 "' is not a positive number of seconds");
    o.timeout = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
  }
  if (const char* s = std::getenv("DTRAIN_DEBUG_COLLECTIVES"))
    o.debug_collectives = std::string(s) == "1";
  return o;
}

double all_reduce_value(ProcessGroup& pg, double value, ReduceOp op) {
  Tensor t = Tensor::full({1}, value, DType::f64, pg.device());
  pg.all_reduce(t, op)->wait();
  return t.item();
}

bool any_rank(ProcessGroup& pg, bool flag) {
  return all_reduce_value(pg, flag ? 1.0 : 0.0, ReduceOp::max) > 0.0;
}

std::vector<int64_t> all_gather_values(ProcessGroup& pg, const std::vector<int64_t>& values) {
  const int64_t n = static_cast<int64_t>(values.size());
  Tensor local = Tensor::from_vector(values, {n}, DType::i64, pg.device());
  Tensor all = Tensor::empty({n * pg.size()}, DType::i64, pg.device());
  pg.all_gather(all, local)->wait();
  return all.to_vector<int64_t>();
}

void run_on_every_rank(ProcessGroup& pg, const std::function<void()>& step) {
  std::string error;
  try {
    step();
  } catch (const Error& e) {
    error = e.what();
    if (error.empty()) error = "failed";  // "" means success below
  }
  const std::vector<std::string> errors = all_gather_strings(pg, error);
  for (int r = 0; r < pg.size(); ++r) {
    const std::string& e = errors[static_cast<size_t>(r)];
    if (!e.empty()) throw AllRanksError(r == 0 ? e : "rank " + std::to_string(r) + ": " + e);
  }
}

std::vector<std::string> all_gather_strings(ProcessGroup& pg, const std::string& text) {
  // Lengths first, then every text padded to the longest, eight bytes to an i64 word.
  const std::vector<int64_t> lengths = all_gather_values(pg, {static_cast<int64_t>(text.size())});
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  if (longest == 0) return std::vector<std::string>(static_cast<size_t>(pg.size()));
  const int64_t words = (longest + 7) / 8;
  std::vector<int64_t> mine(static_cast<size_t>(words), 0);
  std::memcpy(mine.data(), text.data(), text.size());
  const std::vector<int64_t> all = all_gather_values(pg, mine);
  std::vector<std::string> out;
  for (int r = 0; r < pg.size(); ++r) {
    const char* first = reinterpret_cast<const char*>(all.data() + r * words);
    out.emplace_back(first, static_cast<size_t>(lengths[static_cast<size_t>(r)]));
  }
  return out;
}

void broadcast_coalesced(ProcessGroup& pg, const std::vector<Tensor>& tensors, int root) {
  NoGradGuard no_grad;  // parameters are overwritten in place; nothing here is differentiable
  // Group by dtype, keeping the given order inside each group so every rank packs identically.
  std::map<DType, std::vector<Tensor>> groups;
  for (const Tensor& t : tensors) {
    if (t.defined() && t.numel() > 0) groups[t.dtype()].push_back(t);
  }
  for (auto& [dtype, group] : groups) {
    int64_t total = 0;
    for (const Tensor& t : group) total += t.numel();
    Tensor flat = Tensor::empty({total}, dtype, pg.device());
    int64_t offset = 0;
    if (pg.rank() == root) {
      for (const Tensor& t : group) {
        flat.narrow(0, offset, t.numel()).view(t.shape()).copy_(t);
        offset += t.numel();
      }
    }
    pg.broadcast(flat, root)->wait();
    offset = 0;
    for (const Tensor& t : group) {
      Tensor dst = t;
      dst.copy_(flat.narrow(0, offset, t.numel()).view(t.shape()));
      offset += t.numel();
    }
  }
}

std::string describe_collective(const std::string& name, int64_t numel, DType dtype) {
  const double mib =
      static_cast<double>(numel) * static_cast<double>(dtype_size(dtype)) / 1048576.0;
  char size[32];
  std::snprintf(size, sizeof size, "%.3g MiB", mib);
  return detail::concat(name, " of ", numel, " ", dtype_name(dtype), " elements (", size, ")");
}

std::vector<int64_t> collective_signature(CollectiveKind kind, ReduceOp op, int root,
                                          const Tensor& shared, bool full) {
  const bool reduces = kind == CollectiveKind::all_reduce || kind == CollectiveKind::reduce_scatter;
  std::vector<int64_t> s = {static_cast<int64_t>(kind), reduces ? static_cast<int64_t>(op) : -1,
                            shared.defined() ? static_cast<int64_t>(shared.dtype()) : -1,
                            kind == CollectiveKind::broadcast ? root : -1,
                            shared.defined() ? shared.numel() : 0};
  if (full) {
    s.push_back(shared.defined() ? shared.dim() : 0);
    for (int64_t d = 0; d < kCollectiveShapeDims; ++d) {
      s.push_back(shared.defined() && d < shared.dim() ? shared.size(d) : -1);
    }
  }
  return s;
}

const char* collective_kind_name(int64_t kind) {
  static const char* kinds[] = {"broadcast", "all_reduce", "reduce_scatter", "all_gather",
                                "barrier"};
  return kind >= 0 && kind < 5 ? kinds[kind] : "?";
}

std::string describe_collective_signature(const int64_t* s, bool full) {
  std::string name = collective_kind_name(s[0]);
  if (name == "barrier") return name;
  if (s[1] >= 0) name += std::string("(") + reduce_op_name(static_cast<ReduceOp>(s[1])) + ")";
  if (s[3] >= 0) name += "(root " + std::to_string(s[3]) + ")";
  std::string text = describe_collective(name, s[4], static_cast<DType>(s[2]));
  if (full) {
    text += ", shape [";
    for (int64_t d = 0; d < std::min<int64_t>(s[5], kCollectiveShapeDims); ++d) {
      text += (d ? ", " : "") + std::to_string(s[6 + d]);
    }
    text += s[5] > kCollectiveShapeDims ? ", ...]" : "]";
  }
  return text;
}

namespace {
int env_int(const char* name, int fallback) {
  const char* s = std::getenv(name);
  if (!s || !*s) return fallback;
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  return (end != s && *end == '\0' && v >= 0) ? static_cast<int>(v) : fallback;
}
}  // namespace

int local_rank_from_environment() {
  for (const char* name :
       {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "LOCAL_RANK"}) {
    int v = env_int(name, -1);
    if (v >= 0) return v;
  }
  return 0;
}

namespace {
std::atomic<int> g_local_rank{-1}, g_local_size{-1};
}  // namespace

void set_node_placement(int rank, int size) {
  g_local_rank = rank;
  g_local_size = size;
}

int local_rank() {
  const int r = g_local_rank.load();
  return r >= 0 ? r : local_rank_from_environment();
}

int local_size() {
  const int n = g_local_size.load();
  if (n > 0) return n;
  for (const char* name :
       {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "LOCAL_WORLD_SIZE"}) {
    const int v = env_int(name, -1);
    if (v > 0) return v;
  }
  return 1;
}

namespace {
bool launcher_environment() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(name)) return true;
  }
  return std::getenv("SLURM_PROCID") != nullptr && env_int("SLURM_NTASKS", 1) > 1;
}
// Read once, before MPI starts: Open MPI's singleton start-up sets PMIX_RANK in this process's own
// environment, after which a plain process would look launched.
const bool g_launched_by_mpi_launcher = launcher_environment();
}  // namespace

bool launched_by_mpi_launcher() { return g_launched_by_mpi_launcher; }

}  // namespace dtrain::dist
