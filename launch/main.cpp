// dtrain: train | eval | predict | bench. Every failure ends as one line on stderr and a non-zero exit.
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "core/error.h"
#include "distributed/process_group.h"
#include "launch/commands.h"
#include "launch/config.h"

namespace {
const char* kUsage =
    "usage: dtrain <command> [options]\n"
    "  train   train a model (dtrain train --help; or --config examples/vit_fashion_mnist.ini)\n"
    "  eval    evaluate a checkpoint (dtrain eval --help)\n"
    "  predict use a checkpoint: classify an image, translate a text, continue a prompt (dtrain "
    "predict --help)\n"
    "  bench   benchmarks: allreduce, ddp, step (dtrain bench --help)\n"
    "  --version  print the version and the backends built\n"
    "Run under `mpirun -np N dtrain train ...` for data-parallel training.";
}

int main(int argc, char** argv) {
  // OpenMP threads that spin after a parallel region take the cores OpenBLAS's own threads need for
  // the GEMM that follows; measured on 2 cores, a ViT step ran 5x slower with 2 threads than with 1.
  // libgomp reads its wait policy once, before main, so the process starts itself again with a
  // passive policy unless the user chose one.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure; then run on with the default policy
  }
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << kUsage << std::endl;
    return argc < 2 ? 2 : 0;
  }
  std::string command = argv[1];
  if (command == "--version") {
    std::cout << dtrain::launch::version_text() << std::endl;
    return 0;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "train") return dtrain::launch::run_train(args);
    if (command == "eval") return dtrain::launch::run_eval(args);
    if (command == "bench") return dtrain::bench::run_bench(args);
    if (command == "predict") return dtrain::launch::run_predict(args);
    std::cerr << "dtrain: unknown command '" << command << "'; use train, eval, predict or bench"
              << std::endl;
    return 2;
  } catch (const dtrain::dist::AllRanksError& e) {
    return dtrain::launch::report_failure(command, e.what(), true);
  } catch (const dtrain::Error& e) {
    return dtrain::launch::report_failure(command, e.what(), false);
  } catch (const std::exception& e) {
    return dtrain::launch::report_failure(command, std::string("internal error: ") + e.what(),
                                          false);
  }
}
