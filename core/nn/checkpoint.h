// Activation checkpointing (the re-entrant form of torch.utils.checkpoint), per block of a model.
//
// checkpoint(fn, inputs, params) runs fn(inputs) with autograd off, so none of fn's intermediate
// tensors is kept, and gives the output one graph node that keeps only the inputs. Its backward
//   1. recomputes fn from the saved inputs with autograd on, under the random-number state and the
//      autocast state of the first run, so dropout draws the same masks and every op runs in the
//      same precision: the recomputed output equals the first one bitwise;
//   2. backpropagates the output's gradient through the recomputed graph, which accumulates into
//      `params` as an ordinary backward would (firing their post-accumulate hooks, so DDP's buckets
//      are launched from inside it);
//   3. returns the inputs' gradients.
// So the gradients are those of the plain forward (tests/core/nn/test_checkpoint.cpp checks them
// bitwise and by finite differences), a model keeps one block's activations at a time plus each
// block's input instead of every block's activations, and a step costs one more forward of the
// checkpointed blocks.
//
// `params` are the trainable tensors fn reads (a module's parameters()): they tie the node to them
// even when no input requires a gradient. fn runs twice, so it must not change captured state; the
// random numbers it draws must come from default_generator() (the one whose state is replayed).
#pragma once
#include <functional>
#include <vector>

#include "core/nn/module.h"

namespace dtrain::nn {

using CheckpointFn = std::function<Tensor(const std::vector<Tensor>&)>;

Tensor checkpoint(CheckpointFn fn, const std::vector<Tensor>& inputs,
                  const std::vector<Tensor>& params);

// checkpoint(fn, inputs, module.parameters()) when `enabled` and autograd is recording, else
// fn(inputs): how a model's forward runs each block.
Tensor maybe_checkpoint(bool enabled, const Module& module, const std::vector<Tensor>& inputs,
                        CheckpointFn fn);

}  // namespace dtrain::nn
