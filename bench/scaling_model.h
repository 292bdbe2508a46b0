// An alpha-beta model of DDP step time at scale: pure arithmetic, no processes, no MPI.
//
// A link is a latency alpha (seconds per message step) and a bandwidth bw (bytes/s per GPU per
// direction). For n ranks and S bytes (n == 1 costs 0 in every formula):
//
//   ring all-reduce      T = 2(n-1) alpha + 2(n-1)/n S/bw      (reduce-scatter then all-gather;
//                                                                Thakur, Rabenseifner, Gropp 2005)
//   ring reduce-scatter  T =  (n-1) alpha +  (n-1)/n S/bw      (S: the whole buffer, the input)
//   ring all-gather      T =  (n-1) alpha +  (n-1)/n S/bw      (S: the whole buffer, the output)
//   tree all-reduce      T = 2 ceil(log2 n) alpha + 2 S/bw     (pipelined double binary tree, as NCCL's
//       "tree": Sanders, Speck, Traff 2009. Each half of the buffer goes up one tree and down again;
//       every rank is inner in one tree and a leaf in the other, so it sends and receives 2 S in all,
//       and the pipeline is 2 ceil(log2 n) hops deep)
//   broadcast            T =  (n-1) alpha + S/bw               (pipelined chain, as NCCL's ring
//       broadcast: the first chunk crosses n-1 hops, then every rank receives S once; chunking ignored)
//
// With bw set to the busbw nccl-tests reports, the ring all-reduce formula reproduces its time for
// large messages (busbw = algbw 2(n-1)/n, see bench_allreduce.h).
//
// A cluster has g = gpus_per_node GPUs per node joined by the `intra` link and one `inter` link share
// per GPU (rail-optimised: GPU k of every node talks to GPU k of the others). The all-reduce of S
// bytes over W ranks (g' = min(W, g) per node, nodes = ceil(W / g')):
//
//   one node       min(ring, tree) on the intra link                        "ring" / "tree"
//   several nodes  reduce-scatter over g' (ring, intra)                     "hier(ring)" / "hier(tree)"
//                  + all-reduce of S/g' among `nodes` ranks (min(ring, tree), inter; every rail at once)
//                  + all-gather over g' (ring, intra)
//   (hierarchical all-reduce as in Horovod / NCCL's NVLS-tree; ties go to the ring.) W == 1: 0, "none".
//
// DDP step (the overlap model). Time is measured from the start of backward. Gradients become final
// at known times; they are grouped into buckets exactly as DistributedDataParallel groups them
// (assign_buckets, f32 for every gradient: GradReady carries bytes, so pass f16/bf16 sizes to model a
// compression hook). A bucket is ready when its last gradient is. Buckets all-reduce one at a time, in
// index order (DDP launches them strictly in order):
//
//   start_i = max(ready_i, end_{i-1}),  end_i = start_i + t(bytes_i)        (end_{-1} = 0)
//   comm    = sum_i t(bytes_i)
//   hidden  = the part of the intervals [start_i, end_i] before backward_s
//   exposed = max(0, end_last - backward_s)
//   step    = forward + backward + exposed + optimizer,  compute = forward + backward + optimizer
//   efficiency = compute / step   (weak scaling against one rank, which has no communication)
//
// Not modelled: contention between communication and compute kernels, stragglers, the cost of
// copying gradients into buckets, and the slower first step (allocation, NCCL setup).
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace dtrain::bench {

// One link class: latency per message step (seconds) and bandwidth per GPU per direction (bytes/s).
struct Link {
  double alpha_s = 0;
  double bytes_per_s = 0;
};

struct ClusterSpec {
  std::string name;  // "h100-nvlink-ib400"
  int gpus_per_node = 8;
  Link intra;             // inside a node (NVLink/NVSwitch, or shared memory)
  Link inter;             // between nodes, per GPU (one NIC per GPU, rail-optimised)
  double peak_flops = 0;  // dense bf16 per GPU (for deriving compute time from FLOPs)
  std::string source;     // where the figures come from (datasheet / nccl-tests), one line
};

// The built-in clusters (see scaling_model.cpp for each figure and its source).
const std::vector<ClusterSpec>& cluster_presets();
const ClusterSpec& cluster_preset(const std::string& name);  // unknown: an Error listing the names

// ---- collectives on one link (n ranks, `bytes` as defined above). An Error for n < 1, bytes < 0, or
// (n > 1) a link with a negative alpha or a bandwidth that is not positive.
double ring_allreduce_seconds(const Link& link, int n, double bytes);
double tree_allreduce_seconds(const Link& link, int n, double bytes);
double reduce_scatter_seconds(const Link& link, int n, double bytes);
double all_gather_seconds(const Link& link, int n, double bytes);
double broadcast_seconds(const Link& link, int n, double bytes);

// ---- all-reduce on a cluster (the hierarchy above)
struct AllReduceEstimate {
  double seconds = 0;
  std::string algorithm;  // "ring", "tree", "hier(ring)", "hier(tree)"; "none" at world 1
};
AllReduceEstimate estimate_allreduce(const ClusterSpec& cluster, int world, double bytes);
double allreduce_seconds(const ClusterSpec& cluster, int world, double bytes);

// ---- a link from measurements (to check the model against local runs)
struct CollectiveSample {
  int ranks = 0;  // at least 2
  double bytes = 0;
  double seconds = 0;  // one ring all-reduce
};
// Least squares of seconds = 2(n-1) alpha + 2(n-1)/n bytes (1/bw) over alpha and 1/bw (normal
// equations, closed form). A fitted alpha below 0 is clamped to 0 and 1/bw refitted alone. An Error
// when the samples cannot separate the two (fewer than two independent regressor pairs), when one has
// fewer than 2 ranks, or when the fitted 1/bw is not positive.
Link fit_ring_link(const std::vector<CollectiveSample>& samples);

// ---- the DDP step
// One parameter's gradient: when it became final, in seconds from the start of backward.
struct GradReady {
  double at_s = 0;
  int64_t bytes = 0;
};
struct StepProfile {
  double forward_s = 0, backward_s = 0, optimizer_s = 0;
  std::vector<GradReady> grads;  // reverse registration order (the order DDP fills buckets)
};

struct BucketPlan {
  double ready_s = 0;  // the latest at_s of its gradients
  int64_t bytes = 0;
};
// The buckets DistributedDataParallel forms with this cap (assign_buckets, every gradient f32), in
// launch order. An Error for a gradient with negative bytes or an at_s outside [0, backward_s].
std::vector<BucketPlan> plan_buckets(const StepProfile& profile, int64_t cap_bytes);

struct StepPrediction {
  double step_s = 0, compute_s = 0, comm_s = 0, exposed_s = 0;
  double hidden_fraction = 0;  // hidden / comm (1 when there is no communication)
  double efficiency = 0;       // compute_s / step_s (1 when step_s is 0)
  int buckets = 0;
};
// The simulation above; allreduce_seconds gives t(bytes) (e.g. bound to a cluster and world size).
StepPrediction predict_step(const StepProfile& profile, const std::vector<BucketPlan>& buckets,
                            const std::function<double(int64_t)>& allreduce_seconds);

// A cap of kOneBucket puts every gradient in one bucket.
inline constexpr double kOneBucket = std::numeric_limits<double>::infinity();
// 1, 2, 5, 10, 25, 50, 100, 200 MiB and kOneBucket.
std::vector<double> default_bucket_caps_mb();

struct BucketChoice {
  double cap_mb = 0;
  StepPrediction prediction;
};
// The cap (in MiB of 2^20 bytes, as DDPOptions::bucket_cap_mb) minimising the step time; ties go to
// the smaller cap. An Error for an empty list or a cap that is not positive.
BucketChoice best_bucket_cap(const StepProfile& profile, const std::vector<double>& caps_mb,
                             const std::function<double(int64_t)>& allreduce_seconds);

// A measured profile moved to another compute speed (e.g. a CPU-measured ViT-B/16 profile to an H100
// step derived from FLOPs / (peak * mfu)): the phases become the given times, and every at_s is
// multiplied by backward_s / profile.backward_s, so the gradients keep their place in backward.
StepProfile rescale_profile(const StepProfile& profile, double forward_s, double backward_s,
                            double optimizer_s);

}  // namespace dtrain::bench
