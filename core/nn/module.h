// Module: the base of every layer and model. Like the PyTorch C++ frontend, a module registers its
// parameters, buffers and child modules under names; the dotted paths built from those names
// ("blocks.0.attn.qkv.weight") are what optimizers, DDP and checkpoints see, in registration order.
//
// A module keeps the registered Tensor handles in slots and its subclass keeps copies of the same
// handles as public members (Linear::weight). Copies of a Tensor share one TensorImpl, so `to()`
// and `load_state_dict()` change the tensors in place - the impl is pointed at the converted
// storage - and every handle (module member, optimizer state, DDP hook) stays valid and sees the
// new data.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/profiler/module_scope.h"
#include "core/tensor/tensor.h"

namespace dtrain {

// Ordered (name, tensor) pairs; the same type core/io/safetensors.h reads and writes.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

namespace nn {

class Module;
using NamedModules = std::vector<std::pair<std::string, std::shared_ptr<Module>>>;

// What a non-strict load_state_dict skipped.
struct LoadResult {
  std::vector<std::string> missing;     // expected by the module, absent from the state
  std::vector<std::string> unexpected;  // in the state, not in the module
};

class Module {
 public:
  explicit Module(std::string type_name = "Module");
  virtual ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The class name ("Linear"), used in messages.
  const std::string& type_name() const { return type_name_; }

  // ---- registration. Names are non-empty, contain no '.', and are unique within one module across
  // parameters, buffers and children. Each returns the handle to keep as a member.

  // Makes `value` a leaf (detached if it came out of an op) and sets its requires_grad.
  Tensor register_parameter(const std::string& name, Tensor value, bool requires_grad = true);
  // State that is not trained (running statistics, fixed tables). Non-persistent buffers move with
  // to() but are left out of state_dict().
  Tensor register_buffer(const std::string& name, Tensor value, bool persistent = true);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // ---- traversal, in registration order, depth first: a module's own tensors come before those
  // of its children. A tensor registered under two names (tied weights) is listed once, first name
  // wins.
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  const NamedModules& named_children() const { return children_; }
  std::vector<std::shared_ptr<Module>> children() const;
  // This module (named "") and every descendant under its dotted path.
  std::vector<std::pair<std::string, Module*>> named_modules();
  // The parameter or buffer at a dotted path; an error naming the path when there is none.
  Tensor tensor(const std::string& dotted_name) const;

  // ---- mode: train() and eval() apply to the whole subtree (dropout reads is_training()).
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- gradients
  // Drops every parameter's .grad (set_to_none) or zeroes it in place (keeps the storage, for code
  // that holds views of the gradients).
  void zero_grad(bool set_to_none = true);
  // Freezes (false) or unfreezes (true) every parameter of the subtree.
  void set_requires_grad(bool requires_grad);
  // Number of parameter elements; with trainable_only, only those that require grad.
  int64_t num_parameters(bool trainable_only = false) const;

  // ---- placement. Floating parameters, buffers and existing gradients are converted in place
  // (integer buffers keep their dtype under to(DType)). Either everything is converted or, when a
  // conversion fails, nothing is.
  Module& to(DType dtype);
  Module& to(Device device);

  // ---- checkpoints
  // The parameters (named_parameters order) then the persistent buffers, as detached handles that
  // share storage with the module. Tied tensors appear under each of their names.
  NamedTensors state_dict() const;
  // Copies `state` into the module's tensors (converting dtype and device). A shape mismatch is
  // always an error naming the tensor and both shapes; with strict, so is a missing or an
  // unexpected name. Everything is checked before anything is copied, so a failed load leaves the
  // module unchanged.
  LoadResult load_state_dict(const NamedTensors& state, bool strict = true);

  // ---- profiling. Every forward() begins with
  //   auto scope = forward_scope();
  // While the profiler records (core/profiler/trace.h), that is this module's "forward" event, named
  // by path(), or by the type for the outermost module, and the module the autograd nodes made until
  // the scope closes are attributed to in the backward events. Otherwise it is one relaxed atomic load.
  [[nodiscard]] profiler::ModuleScope forward_scope() const {
    if (!profiler::recording()) return {};
    return profiler::ModuleScope(profiler_name());
  }
  // The dotted path from the outermost module that holds this one ("blocks.3.attn"): the names it
  // was registered under, through the first parent that registered it; "" for a module of no parent.
  std::string path() const;

 protected:
  void add_child(const std::string& name, std::shared_ptr<Module> module);

 private:
  struct Slot {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool buffers, bool persistent_only,
               NamedTensors& out) const;
  // Replaces each unique parameter and buffer, and each gradient, by convert(it) in place (an
  // undefined result leaves it as it is).
  void convert_in_place(const std::function<Tensor(const Tensor&)>& convert);
  std::string profiler_name() const;

  std::string type_name_;
  // The module that first registered this one, and the name it did so under (for path()); a parent
  // clears it in its children when it is destroyed.
  const Module* parent_ = nullptr;
  std::string name_in_parent_;
  bool training_ = true;
  std::vector<Slot> parameters_;
  std::vector<Slot> buffers_;
  NamedModules children_;
};

// A list of modules registered under "0", "1", ... (timm's `blocks.N`).
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    return register_module(std::to_string(size()), std::move(module));
  }
  size_t size() const { return named_children().size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  // The i-th module as an M; an error when it is of another type.
  template <class M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>((*this)[i]);
    DTRAIN_CHECK(m != nullptr, "ModuleList::at(", i, "): the module is a ", (*this)[i]->type_name(),
                 ", not the type asked for");
    return m;
  }
};

}  // namespace nn
}  // namespace dtrain
