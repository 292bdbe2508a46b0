// One rank's training step, measured for the scaling model (bench/scaling_model.h): how long
// forward, backward and the optimizer take, and when in backward each trainable parameter's gradient
// became final. Those arrival times are what decide how much of DDP's all-reduce can hide behind
// backward: a bucket can start only once its last gradient is in.
//
// The arrival times come from post-accumulate gradient hooks registered for the measurement and
// cleared after it, so call this before the module is wrapped in DistributedDataParallel (whose hooks
// would be cleared too). On a GPU a hook fires when the host reaches that point of backward, which runs
// ahead of the device; the device is synchronised after backward, so backward_s is the device's time but
// the arrival times are the host's (an approximation there; on the CPU they are exact).
#pragma once
#include <functional>

#include "core/nn/module.h"
#include "bench/scaling_model.h"

namespace dtrain::bench {

// `loss` runs forward on a fixed batch and returns the loss; `update` (may be empty) runs the optimizer
// step. Times are means over `steps` timed steps after `warmup_steps`. The profile's gradients are the
// trainable parameters in reverse registration order (the order DDP fills its buckets), each with its
// mean arrival time measured from the start of backward and its size in bytes.
StepProfile measure_step_profile(nn::Module& model, Device device,
                                 const std::function<Tensor()>& loss,
                                 const std::function<void()>& update, int warmup_steps, int steps);

}  // namespace dtrain::bench
