// Making the ranks' models the same before training: every rank must have built the same model (names,
// shapes, dtypes of parameters and buffers), and then all start from rank 0's values. DDP does both at
// construction; a ZeRO-1 run without DDP calls them directly.
#pragma once
#include <string>

#include "core/nn/module.h"
#include "distributed/process_group.h"

namespace dtrain::dist {

// Compares every rank's list of parameters and buffers with rank 0's. On any difference every rank
// throws the same dtrain::Error, naming the first differing tensor and both ranks, e.g.
//   "DistributedDataParallel: the model on rank 2 differs from rank 0: parameter 'head.weight' is
//    [10, 64] f32 on rank 0 but [10, 32] f32 on rank 2; every rank must build the same model ..."
// `who` starts the message.
void check_same_model(ProcessGroup& pg, const nn::Module& module,
                      const std::string& who = "DistributedDataParallel");

// Overwrites every parameter and buffer with `root`'s values (one message per dtype).
void broadcast_module(ProcessGroup& pg, const nn::Module& module, int root = 0);

// One line per tensor, "param <name> <shape> <dtype>" or "buffer ...": what check_same_model compares.
std::vector<std::string> model_signature(const nn::Module& module);

}  // namespace dtrain::dist
