// Forward and backward per module in the trace (core/profiler/trace.h).
//
// Forward: each nn::Module's forward opens a ModuleScope (Module::forward_scope()), a "forward" event
// named by the module's path, nested as the calls nest.
//
// Backward: while recording, an open ModuleScope is also this thread's current ModuleFrame, and every
// autograd node created under it keeps a reference to that frame (autograd::record). Frames link to
// the frame of the calling module, so a node knows its chain root model -> ... -> innermost module. The
// backward engine feeds each node it runs to a BackwardScopes, which keeps one "backward" event open
// per module of the chain: a node whose chain shares a prefix with the open one closes the events
// below that prefix and opens the rest. Backward thus shows the forward's nesting in reverse, one event
// per run of consecutive nodes of one module call. Nodes without a frame (AccumulateGrad, ops outside
// any module) stay in the events open around them.
//
// Not recording: no frame is made or stored, and a ModuleScope is a relaxed load and an empty object.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/profiler/trace.h"

namespace dtrain::profiler {

struct ModuleFrame {
  std::string name;  // the module's path ("blocks.3.attn"), its type at the root
  std::shared_ptr<const ModuleFrame>
      parent;  // the module whose forward called this one; null at the top
};
using ModuleFramePtr = std::shared_ptr<const ModuleFrame>;

// This thread's innermost open ModuleScope's frame; null outside any (and when not recording).
const ModuleFramePtr& current_module_frame();

// Scopes nest on a thread (they are RAII objects), so what an open one needs lives on a per-thread
// stack and the object itself is one flag.
class ModuleScope {
 public:
  ModuleScope() = default;  // inactive
  // While recording: opens the "forward" event `name` and makes its frame this thread's current one
  // until destroyed.
  explicit ModuleScope(std::string name);
  ~ModuleScope() {
    if (active_) close();
  }
  ModuleScope(const ModuleScope&) = delete;
  ModuleScope& operator=(const ModuleScope&) = delete;

 private:
  void close();
  bool active_ = false;
};

// The backward engine's open "backward" events, one per module of the current node's chain.
class BackwardScopes {
 public:
  BackwardScopes() = default;
  ~BackwardScopes();  // closes what is open
  BackwardScopes(const BackwardScopes&) = delete;
  BackwardScopes& operator=(const BackwardScopes&) = delete;
  // A node of `frame` runs next (null: a node of no module; what is open stays open).
  void enter(const ModuleFramePtr& frame);

 private:
  struct Open {
    ModuleFramePtr frame;
    std::unique_ptr<Scope> event;
  };
  std::vector<Open> open_;  // root ... innermost
};

}  // namespace dtrain::profiler
