#include "bench/scaling_model.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "distributed/ddp.h"

namespace dtrain::bench {

// ---- presets
//
// Bandwidths are per GPU per direction. Intra-node figures are the all-reduce busbw nccl-tests reports
// (what a ring all-reduce achieves end to end, below the NVLink line rate); inter-node figures are the
// NIC line rate (1 Gb/s = 0.125 GB/s). Latencies: NCCL's own tuning model (src/graph/tuning.cc,
// hwLat) charges per-step latencies of order 1-6 us over NVLink and over the network by protocol; we
// take 2 us inside a node, 5 us over InfiniBand, 10 us over Ethernet (RoCE/TCP: an estimate). Alpha
// only matters for small buckets; at 25 MiB the bandwidth term dominates by two orders of magnitude.

const std::vector<ClusterSpec>& cluster_presets() {
  static const std::vector<ClusterSpec> presets = {
      {"h100-nvlink-ib400",
       8,
       {2e-6, 480e9},
       {5e-6, 50e9},
       989e12,
       "H100 SXM datasheet (989 TFLOP/s dense bf16); nccl-tests all_reduce busbw ~480 GB/s on 8x "
       "H100 "
       "with NVLS (NCCL 2.17+); 400 Gb/s InfiniBand NDR per GPU = 50 GB/s"},
      {"a100-nvlink-ib200",
       8,
       {2e-6, 230e9},
       {5e-6, 25e9},
       312e12,
       "A100 SXM datasheet (312 TFLOP/s dense bf16; NVLink 3 600 GB/s total = 300 GB/s per "
       "direction); "
       "nccl-tests all_reduce busbw ~230 GB/s on 8x A100; 200 Gb/s InfiniBand HDR per GPU = 25 "
       "GB/s"},
      {"h100-nvlink-eth100",
       8,
       {2e-6, 480e9},
       {10e-6, 12.5e9 / 8},
       989e12,
       "as h100-nvlink-ib400 inside a node; one 100 Gb/s Ethernet NIC (12.5 GB/s) per node shared "
       "by "
       "8 GPUs = 1.5625 GB/s per GPU, alpha 10 us estimated"},
  };
  return presets;
}

const ClusterSpec& cluster_preset(const std::string& name) {
  std::string names;
  for (const ClusterSpec& c : cluster_presets()) {
    if (c.name == name) return c;
    names += (names.empty() ? "" : ", ") + c.name;
  }
  throw Error("no cluster preset '" + name + "'; the presets are " + names);
}

// ---- collectives on one link

namespace {

// Checks the arguments; true when there is something to communicate (n > 1).
bool communicates(const char* what, const Link& link, int n, double bytes) {
  DTRAIN_CHECK(n >= 1, what, ": ", n, " ranks; need at least 1");
  DTRAIN_CHECK(bytes >= 0 && std::isfinite(bytes), what, ": ", bytes,
               " bytes; need a finite size >= 0");
  if (n == 1) return false;
  DTRAIN_CHECK(link.alpha_s >= 0 && link.bytes_per_s > 0 && std::isfinite(link.bytes_per_s), what,
               ": a link with alpha ", link.alpha_s, " s and ", link.bytes_per_s,
               " bytes/s; need alpha >= 0 and a positive bandwidth");
  return true;
}

int ceil_log2(int n) {
  int steps = 0;
  while ((1LL << steps) < n) ++steps;
  return steps;
}

}  // namespace

double ring_allreduce_seconds(const Link& link, int n, double bytes) {
  if (!communicates("ring all-reduce", link, n, bytes)) return 0;
  return 2.0 * (n - 1) * link.alpha_s + 2.0 * (n - 1) / n * bytes / link.bytes_per_s;
}

double tree_allreduce_seconds(const Link& link, int n, double bytes) {
  if (!communicates("tree all-reduce", link, n, bytes)) return 0;
  return 2.0 * ceil_log2(n) * link.alpha_s + 2.0 * bytes / link.bytes_per_s;
}

double reduce_scatter_seconds(const Link& link, int n, double bytes) {
  if (!communicates("reduce-scatter", link, n, bytes)) return 0;
  return (n - 1) * link.alpha_s + static_cast<double>(n - 1) / n * bytes / link.bytes_per_s;
}

double all_gather_seconds(const Link& link, int n, double bytes) {
  if (!communicates("all-gather", link, n, bytes)) return 0;
  return (n - 1) * link.alpha_s + static_cast<double>(n - 1) / n * bytes / link.bytes_per_s;
}

double broadcast_seconds(const Link& link, int n, double bytes) {
  if (!communicates("broadcast", link, n, bytes)) return 0;
  return (n - 1) * link.alpha_s + bytes / link.bytes_per_s;
}

// ---- all-reduce on a cluster

AllReduceEstimate estimate_allreduce(const ClusterSpec& cluster, int world, double bytes) {
  DTRAIN_CHECK(cluster.gpus_per_node >= 1, "cluster '", cluster.name, "': ", cluster.gpus_per_node,
               " GPUs per node; need at least 1");
  DTRAIN_CHECK(world >= 1, "all-reduce on cluster '", cluster.name, "': world size ", world,
               "; need at least 1");
  if (world == 1) {
    DTRAIN_CHECK(bytes >= 0 && std::isfinite(bytes), "all-reduce: ", bytes, " bytes; need >= 0");
    return {0.0, "none"};
  }
  const int g = std::min(world, cluster.gpus_per_node);
  const int nodes = (world + g - 1) / g;
  // The smaller of ring and tree on one link; ties to the ring.
  auto best = [](const Link& link, int n, double size) -> AllReduceEstimate {
    const double ring = ring_allreduce_seconds(link, n, size);
    const double tree = tree_allreduce_seconds(link, n, size);
    return tree < ring ? AllReduceEstimate{tree, "tree"} : AllReduceEstimate{ring, "ring"};
  };
  if (nodes == 1) return best(cluster.intra, g, bytes);
  const AllReduceEstimate across = best(cluster.inter, nodes, bytes / g);
  const double inside =
      reduce_scatter_seconds(cluster.intra, g, bytes) + all_gather_seconds(cluster.intra, g, bytes);
  return {inside + across.seconds, "hier(" + across.algorithm + ")"};
}

double allreduce_seconds(const ClusterSpec& cluster, int world, double bytes) {
  return estimate_allreduce(cluster, world, bytes).seconds;
}

// ---- fitting a link

Link fit_ring_link(const std::vector<CollectiveSample>& samples) {
  // seconds = x1 alpha + x2 beta with x1 = 2(n-1), x2 = 2(n-1)/n bytes, beta = 1/bw. The columns are
  // scaled to unit length first (x1 ~ 10, x2 ~ 1e9), so the 2x2 system is well conditioned.
  double s11 = 0, s22 = 0, s12 = 0, s1y = 0, s2y = 0;
  for (const CollectiveSample& s : samples) {
    DTRAIN_CHECK(s.ranks >= 2, "fit_ring_link: a sample over ", s.ranks,
                 " ranks; a ring needs at least 2");
    DTRAIN_CHECK(
        s.bytes >= 0 && s.seconds >= 0 && std::isfinite(s.bytes) && std::isfinite(s.seconds),
        "fit_ring_link: a sample of ", s.bytes, " bytes in ", s.seconds,
        " s; need finite values >= 0");
    const double x1 = 2.0 * (s.ranks - 1);
    const double x2 = 2.0 * (s.ranks - 1) / s.ranks * s.bytes;
    s11 += x1 * x1;
    s22 += x2 * x2;
    s12 += x1 * x2;
    s1y += x1 * s.seconds;
    s2y += x2 * s.seconds;
  }
  const double n1 = std::sqrt(s11), n2 = std::sqrt(s22);
  const double c = (n1 > 0 && n2 > 0) ? s12 / (n1 * n2) : 1.0;  // cosine between the columns
  const double det = 1.0 - c * c;
  DTRAIN_CHECK(det > 1e-12, "fit_ring_link: the ", samples.size(),
               " samples cannot separate latency from bandwidth; need at least two whose "
               "2(n-1)/n bytes per 2(n-1) differ (several message sizes)");
  const double r1 = s1y / n1, r2 = s2y / n2;
  double alpha = (r1 - c * r2) / det / n1;
  double beta = (r2 - c * r1) / det / n2;
  if (alpha < 0) {  // a latency below 0 means none worth measuring: refit the bandwidth alone
    alpha = 0;
    beta = s2y / s22;
  }
  DTRAIN_CHECK(beta > 0,
               "fit_ring_link: the samples give a bandwidth that is not positive (1/bw = ", beta,
               "); time must grow with size");
  return {alpha, 1.0 / beta};
}

// ---- the DDP step

std::vector<BucketPlan> plan_buckets(const StepProfile& profile, int64_t cap_bytes) {
  const size_t count = profile.grads.size();
  std::vector<size_t> bytes(count);  // registration order: grads reversed
  for (size_t j = 0; j < count; ++j) {
    const GradReady& g = profile.grads[j];
    DTRAIN_CHECK(g.bytes >= 0, "plan_buckets: gradient ", j, " has ", g.bytes, " bytes");
    DTRAIN_CHECK(g.at_s >= 0 && g.at_s <= profile.backward_s, "plan_buckets: gradient ", j,
                 " is ready at ", g.at_s, " s, outside backward [0, ", profile.backward_s, "] s");
    bytes[count - 1 - j] = static_cast<size_t>(g.bytes);
  }
  const auto cap = static_cast<size_t>(std::max<int64_t>(cap_bytes, 1));
  std::vector<BucketPlan> plan;
  const std::vector<DType> dtypes(count, DType::f32);
  for (const std::vector<size_t>& members : dist::assign_buckets(bytes, dtypes, cap)) {
    BucketPlan b;
    for (size_t k : members) {
      const GradReady& g = profile.grads[count - 1 - k];
      b.bytes += g.bytes;
      b.ready_s = std::max(b.ready_s, g.at_s);
    }
    plan.push_back(b);
  }
  return plan;
}

StepPrediction predict_step(const StepProfile& profile, const std::vector<BucketPlan>& buckets,
                            const std::function<double(int64_t)>& allreduce_seconds) {
  DTRAIN_CHECK(profile.forward_s >= 0 && profile.backward_s >= 0 && profile.optimizer_s >= 0,
               "predict_step: negative phase times (forward ", profile.forward_s, " s, backward ",
               profile.backward_s, " s, optimizer ", profile.optimizer_s, " s)");
  StepPrediction p;
  p.compute_s = profile.forward_s + profile.backward_s + profile.optimizer_s;
  p.buckets = static_cast<int>(buckets.size());
  double end = 0, hidden = 0;
  for (const BucketPlan& b : buckets) {
    const double t = allreduce_seconds(b.bytes);
    DTRAIN_CHECK(t >= 0 && std::isfinite(t), "predict_step: all-reduce of ", b.bytes,
                 " bytes takes ", t, " s");
    const double start = std::max(b.ready_s, end);
    end = start + t;
    p.comm_s += t;
    hidden += std::max(0.0, std::min(end, profile.backward_s) - start);
  }
  p.exposed_s = std::max(0.0, end - profile.backward_s);
  p.hidden_fraction = p.comm_s > 0 ? hidden / p.comm_s : 1.0;
  p.step_s = p.compute_s + p.exposed_s;
  p.efficiency = p.step_s > 0 ? p.compute_s / p.step_s : 1.0;
  return p;
}

std::vector<double> default_bucket_caps_mb() { return {1, 2, 5, 10, 25, 50, 100, 200, kOneBucket}; }

BucketChoice best_bucket_cap(const StepProfile& profile, const std::vector<double>& caps_mb,
                             const std::function<double(int64_t)>& allreduce_seconds) {
  DTRAIN_CHECK(!caps_mb.empty(), "best_bucket_cap: no candidate caps");
  BucketChoice best;
  bool first = true;
  for (double mb : caps_mb) {
    DTRAIN_CHECK(mb > 0, "best_bucket_cap: a cap of ", mb, " MiB; need a positive cap");
    const double bytes = mb * 1024.0 * 1024.0;  // as DistributedDataParallel converts bucket_cap_mb
    const int64_t cap =
        bytes >= 9.2e18 ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(bytes);
    const StepPrediction p = predict_step(profile, plan_buckets(profile, cap), allreduce_seconds);
    if (first || p.step_s < best.prediction.step_s ||
        (p.step_s == best.prediction.step_s && mb < best.cap_mb)) {
      best = {mb, p};
      first = false;
    }
  }
  return best;
}

StepProfile rescale_profile(const StepProfile& profile, double forward_s, double backward_s,
                            double optimizer_s) {
  DTRAIN_CHECK(forward_s >= 0 && backward_s >= 0 && optimizer_s >= 0,
               "rescale_profile: target times (", forward_s, ", ", backward_s, ", ", optimizer_s,
               ") s must be >= 0");
  DTRAIN_CHECK(
      profile.backward_s > 0 || profile.grads.empty(),
      "rescale_profile: the profile's backward takes 0 s, so its gradient times cannot be scaled");
  StepProfile out = profile;
  out.forward_s = forward_s;
  out.backward_s = backward_s;
  out.optimizer_s = optimizer_s;
  const double factor = profile.backward_s > 0 ? backward_s / profile.backward_s : 0.0;
  for (GradReady& g : out.grads)
    g.at_s = std::min(g.at_s * factor, backward_s);  // rounding stays inside
  return out;
}

}  // namespace dtrain::bench
