#include "core/profiler/module_scope.h"

#include <algorithm>

namespace dtrain::profiler {

namespace {
thread_local ModuleFramePtr t_current_frame;
// The forward events of this thread's open ModuleScopes, innermost last.
thread_local std::vector<std::unique_ptr<Scope>> t_open_events;
}  // namespace

const ModuleFramePtr& current_module_frame() { return t_current_frame; }

ModuleScope::ModuleScope(std::string name) {
  if (!recording()) return;
  auto frame = std::make_shared<ModuleFrame>(ModuleFrame{std::move(name), t_current_frame});
  t_open_events.push_back(std::make_unique<Scope>("forward", frame->name));
  t_current_frame = std::move(frame);
  active_ = true;
}

void ModuleScope::close() {
  t_open_events.pop_back();
  t_current_frame = t_current_frame->parent;
}

void BackwardScopes::enter(const ModuleFramePtr& frame) {
  if (!frame || (!open_.empty() && open_.back().frame == frame)) return;
  // The chain root ... frame, as pointers to the handles that hold each frame (alive while `frame` is).
  std::vector<const ModuleFramePtr*> chain;
  for (const ModuleFramePtr* f = &frame; *f; f = &(*f)->parent) chain.push_back(f);
  std::reverse(chain.begin(), chain.end());
  size_t common = 0;
  while (common < open_.size() && common < chain.size() && open_[common].frame == *chain[common])
    ++common;
  while (open_.size() > common) open_.pop_back();  // innermost first
  for (size_t i = common; i < chain.size(); ++i) {
    const ModuleFramePtr& f = *chain[i];
    open_.push_back({f, std::make_unique<Scope>("backward", f->name)});
  }
}

BackwardScopes::~BackwardScopes() {
  while (!open_.empty()) open_.pop_back();
}

}  // namespace dtrain::profiler
