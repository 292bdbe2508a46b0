// Host synchronisations (core/backend/backend.h, host_sync_count): what the counter counts, and the
// trainer's promise that a step which does not log reads nothing back, so on a GPU the host queues
// step after step without waiting. On the CPU the counter sees the same reads a GPU run would stall
// at (item(), to_vector()), so these runs check the accounting a GPU run reports in its metrics.
#include <string>
#include <vector>

#include "core/backend/backend.h"
#include "core/ops/ops.h"
#include "launch/cli_test_util.h"

using namespace dtrain;
using namespace dtrain::cli_test;

TEST(HostSyncCount, ReadsCountAndQueuedWorkDoesNot) {
  Tensor a = Tensor::randn({64});
  const uint64_t before = host_sync_count();
  Tensor b = sum(add(mul(a, 2.0), a));  // work only: nothing read back
  EXPECT_EQ(host_sync_count(), before);
  (void)b.item();
  EXPECT_EQ(host_sync_count(), before + 1);
  (void)a.to_vector<float>();
  EXPECT_EQ(host_sync_count(), before + 2);
}

namespace {

class HostSyncs : public CliTest {
 protected:
  // Every metrics record of a run: `host_syncs_per_step` must equal `expected` in each.
  void expect_syncs_per_step(const RunResult& r, double expected, const std::string& what) {
    ASSERT_EQ(r.exit_code, 0) << what << ": " << r.err;
    int records = 0;
    for (const nlohmann::json& rec : read_jsonl(metrics())) {
      if (rec.contains("split")) continue;  // evaluation records
      ++records;
      ASSERT_TRUE(rec.contains("host_syncs_per_step")) << what << ": " << rec.dump();
      EXPECT_EQ(rec["host_syncs_per_step"].get<double>(), expected) << what << ": " << rec.dump();
    }
    EXPECT_EQ(records, 2) << what << ": 6 steps logged every 3";
  }
  fs::path metrics() const { return dir_ / "metrics.jsonl"; }
  std::vector<std::string> logged(std::vector<std::string> args) const {
    for (const char* a : {"--steps", "6", "--log-interval", "3", "--metrics-file"})
      args.push_back(a);
    args.push_back(metrics().string());
    return args;
  }
};

}  // namespace

TEST_F(HostSyncs, VitStepsReadNothingBackUnlessF16) {
  for (const std::string precision : {"f32", "bf16"}) {
    for (const std::string clip : {"1", "0"}) {
      fs::remove(metrics());
      expect_syncs_per_step(train_tiny_vit(logged({"--precision", precision, "--clip-grad-norm",
                                                   clip, "--grad-accum", "2"})),
                            0.0, precision + " with --clip-grad-norm " + clip);
    }
  }
  // f16 reads the loss scaler's overflow flag once a step (to skip the step on every rank).
  fs::remove(metrics());
  expect_syncs_per_step(train_tiny_vit(logged({"--precision", "f16"})), 1.0, "f16");
}

TEST_F(HostSyncs, TextModelStepsReadNothingBack) {
  // The Transformer's padding masks and the cross entropy's count of non-padding targets stay on the
  // device; GPT's targets are checked on the host before the copy.
  const std::vector<std::string> tiny = {
      "--model-size",   "tiny", "--dim",     "16", "--heads",      "2",
      "--mlp-dim",      "32",   "--depth",   "1",  "--batch-size", "4",
      "--eval-batches", "1",    "--threads", "1",  "--progress",   "0"};
  for (const auto& [model, dataset, seq] :
       {std::tuple<std::string, std::string, std::string>{"gpt", "fortunes", "16"},
        {"transformer", "freedict", "24"}}) {
    fs::remove(metrics());
    std::vector<std::string> args = {"--model", model, "--dataset", dataset, "--seq-len", seq};
    args.insert(args.end(), tiny.begin(), tiny.end());
    expect_syncs_per_step(train(logged(args)), 0.0, model);
  }
}

TEST_F(HostSyncs, DdpStepsReadNothingBack) {
  REQUIRE_MPIEXEC();
  ensure_data();
  std::vector<std::string> args = {"--data-dir", data_dir().string()};
  args.insert(args.end(), kTinyVit.begin(), kTinyVit.end());
  args = logged(args);
  args.insert(args.begin(), "train");
  const RunResult r =
      run(args, "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1; " + mpi_prefix(2));
  expect_syncs_per_step(r, 0.0, "DDP on 2 ranks");
}
