// The fused optimizer updates as ops: checked, then run by the tensors' backend in one call per
// list (one launch on CUDA). The arithmetic and the list entries' contract are in
// core/backend/optim_update.h; core/optim's Adam, AdamW and SGD call these when their `fused`
// option is on. Autograd is not involved: the tensors are updated in place.
#pragma once
#include <vector>

#include "core/backend/optim_update.h"

namespace dtrain {

// Every entry must hold tensors of one shape, contiguous, all of one floating dtype (f32 or f64) on
// one device; throws a dtrain::Error naming the first entry that does not.
void adam_update_(const AdamUpdateArgs& args, const std::vector<AdamUpdateTensors>& list);
void sgd_update_(const SgdUpdateArgs& args, const std::vector<SgdUpdateTensors>& list);

}  // namespace dtrain
