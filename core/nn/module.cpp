#include "core/nn/module.h"

#include <unordered_map>
#include <unordered_set>

#include "core/autograd/grad_mode.h"

namespace dtrain::nn {

namespace {

// Points the TensorImpl behind `slot` at `value`'s storage and layout. Every handle that shares the
// impl sees the change; the autograd fields (requires_grad, grad, hooks) stay as they were.
void assign_in_place(const Tensor& slot, const Tensor& value) {
  TensorImpl* impl = slot.impl();
  impl->storage = value.storage();
  impl->shape = value.shape();
  impl->strides = value.strides();
  impl->offset = value.offset();
  impl->dtype = value.dtype();
}

std::string join(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name;
  return name.empty() ? prefix : prefix + "." + name;
}

}  // namespace

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}

Module::~Module() {
  for (const auto& entry : children_)
    if (entry.second->parent_ == this) entry.second->parent_ = nullptr;
}

std::string Module::path() const {
  std::vector<const std::string*> names;
  for (const Module* m = this; m->parent_ != nullptr; m = m->parent_)
    names.push_back(&m->name_in_parent_);
  std::string out;
  for (auto it = names.rbegin(); it != names.rend(); ++it) {
    if (!out.empty()) out += '.';
    out += **it;
  }
  return out;
}

std::string Module::profiler_name() const {
  std::string p = path();
  return p.empty() ? type_name_ : p;
}

void Module::check_new_name(const std::string& name) const {
  DTRAIN_CHECK(!name.empty(), type_name_, ": a parameter, buffer or module name must not be empty");
  DTRAIN_CHECK(
      name.find('.') == std::string::npos, type_name_, ": name '", name,
      "' contains '.', which separates the levels of a dotted path; pick a name without it");
  for (const auto& p : parameters_)
    DTRAIN_CHECK(p.name != name, type_name_, ": '", name, "' is already registered as a parameter");
  for (const auto& b : buffers_)
    DTRAIN_CHECK(b.name != name, type_name_, ": '", name, "' is already registered as a buffer");
  for (const auto& c : children_)
    DTRAIN_CHECK(c.first != name, type_name_, ": '", name, "' is already registered as a module");
}

Tensor Module::register_parameter(const std::string& name, Tensor value, bool requires_grad) {
  check_new_name(name);
  DTRAIN_CHECK(value.defined(), type_name_, ".register_parameter('", name,
               "'): the tensor is undefined; leave an absent parameter unregistered instead");
  DTRAIN_CHECK(!requires_grad || is_floating(value.dtype()), type_name_, ".register_parameter('",
               name, "'): a ", dtype_name(value.dtype()),
               " tensor cannot require grad; register it as a buffer or pass requires_grad=false");
  if (!value.is_leaf()) value = value.detach();
  value.set_requires_grad(requires_grad);
  parameters_.push_back({name, value, true});
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value, bool persistent) {
  check_new_name(name);
  DTRAIN_CHECK(value.defined(), type_name_, ".register_buffer('", name,
               "'): the tensor is undefined; leave an absent buffer unregistered instead");
  if (!value.is_leaf()) value = value.detach();
  buffers_.push_back({name, value, persistent});
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  DTRAIN_CHECK(module != nullptr, type_name_, ".register_module('", name,
               "'): the module is null; construct it first");
  DTRAIN_CHECK(module.get() != this, type_name_, ".register_module('", name,
               "'): a module cannot be its own child");
  bool cycle = false;  // `module` holds this one: a path through it would never end
  for (const Module* m = this; m != nullptr && !cycle; m = m->parent_) cycle = m == module.get();
  if (module->parent_ == nullptr && !cycle) {
    module->parent_ = this;
    module->name_in_parent_ = name;
  }
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool params, bool buffers, bool persistent_only,
                     NamedTensors& out) const {
  if (params)
    for (const auto& p : parameters_) out.emplace_back(join(prefix, p.name), p.tensor);
  if (buffers)
    for (const auto& b : buffers_)
      if (b.persistent || !persistent_only) out.emplace_back(join(prefix, b.name), b.tensor);
  for (const auto& [name, child] : children_)
    child->collect(join(prefix, name), params, buffers, persistent_only, out);
}

namespace {
NamedTensors unique_by_impl(NamedTensors all) {
  std::unordered_set<const TensorImpl*> seen;
  NamedTensors out;
  out.reserve(all.size());
  for (auto& entry : all)
    if (seen.insert(entry.second.impl()).second) out.push_back(std::move(entry));
  return out;
}

std::vector<Tensor> values(const NamedTensors& named) {
  std::vector<Tensor> out;
  out.reserve(named.size());
  for (const auto& entry : named) out.push_back(entry.second);
  return out;
}
}  // namespace

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors all;
  if (recurse) {
    collect("", true, false, false, all);
  } else {
    for (const auto& p : parameters_) all.emplace_back(p.name, p.tensor);
  }
  return unique_by_impl(std::move(all));
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  return values(named_parameters(recurse));
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors all;
  if (recurse) {
    collect("", false, true, false, all);
  } else {
    for (const auto& b : buffers_) all.emplace_back(b.name, b.tensor);
  }
  return unique_by_impl(std::move(all));
}

std::vector<Tensor> Module::buffers(bool recurse) const { return values(named_buffers(recurse)); }

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  out.reserve(children_.size());
  for (const auto& entry : children_) out.push_back(entry.second);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& [name, child] : children_)
    for (auto& [sub, module] : child->named_modules()) out.emplace_back(join(name, sub), module);
  return out;
}

Tensor Module::tensor(const std::string& dotted_name) const {
  NamedTensors all;
  collect("", true, true, false, all);
  for (const auto& [name, t] : all)
    if (name == dotted_name) return t;
  throw Error(detail::concat(type_name_, " has no parameter or buffer named '", dotted_name,
                             "'; named_parameters() and named_buffers() list the names it has"));
}

void Module::train(bool on) {
  training_ = on;
  for (const auto& entry : children_) entry.second->train(on);
}

void Module::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (Tensor p : parameters()) {
    if (!p.grad().defined()) continue;
    if (set_to_none) {
      p.set_grad(Tensor());
    } else {
      p.grad().zero_();
    }
  }
}

void Module::set_requires_grad(bool requires_grad) {
  for (Tensor p : parameters()) {
    if (requires_grad && !is_floating(p.dtype())) continue;
    p.set_requires_grad(requires_grad);
  }
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (const Tensor& p : parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

// All conversions run before any tensor is touched, so a failure (no such device, out of memory)
// leaves the module as it was.
void Module::convert_in_place(const std::function<Tensor(const Tensor&)>& convert) {
  NoGradGuard no_grad;
  NamedTensors all;
  collect("", true, true, false, all);
  std::vector<std::pair<Tensor, Tensor>> plan;  // (tensor to update, its converted value)
  for (const auto& [name, t] : unique_by_impl(std::move(all))) {
    if (Tensor value = convert(t.detach()); value.defined()) plan.emplace_back(t, value);
    if (Tensor g = t.grad(); g.defined())
      if (Tensor value = convert(g); value.defined()) plan.emplace_back(g, value);
  }
  for (const auto& [t, value] : plan) assign_in_place(t, value);
}

Module& Module::to(DType dtype) {
  DTRAIN_CHECK(is_floating(dtype), type_name_, ".to(", dtype_name(dtype),
               "): modules convert to a floating dtype (f32, f64, f16, bf16)");
  convert_in_place([&](const Tensor& t) {
    return is_floating(t.dtype()) && t.dtype() != dtype ? t.to(dtype) : Tensor();
  });
  return *this;
}

Module& Module::to(Device device) {
  convert_in_place([&](const Tensor& t) { return t.device() != device ? t.to(device) : Tensor(); });
  return *this;
}

NamedTensors Module::state_dict() const {
  NamedTensors all;
  collect("", true, false, false, all);
  collect("", false, true, true, all);
  for (auto& entry : all) entry.second = entry.second.detach();
  return all;
}

LoadResult Module::load_state_dict(const NamedTensors& state, bool strict) {
  std::unordered_map<std::string, const Tensor*> given;
  for (const auto& [name, t] : state)
    DTRAIN_CHECK(given.emplace(name, &t).second, "load_state_dict: '", name,
                 "' appears twice in the state; each name must be given once");

  LoadResult result;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (destination, source)
  std::unordered_set<std::string> expected;
  for (const auto& [name, dst] : state_dict()) {
    expected.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      result.missing.push_back(name);
      continue;
    }
    const Tensor& src = *it->second;
    DTRAIN_CHECK(src.defined(), "load_state_dict: '", name,
                 "' is an undefined tensor in the state");
    DTRAIN_CHECK(src.shape() == dst.shape(), "load_state_dict: '", name, "' has shape ",
                 shape_str(src.shape()), " in the state but ", shape_str(dst.shape()), " in the ",
                 type_name_, "; the state comes from a model configured differently");
    copies.emplace_back(dst, src);
  }
  for (const auto& [name, t] : state)
    if (!expected.count(name)) result.unexpected.push_back(name);

  if (strict) {
    DTRAIN_CHECK(result.missing.empty(), "load_state_dict: '", result.missing.front(),
                 "' is missing from the state (", result.missing.size(), " of ", expected.size(),
                 " names missing); load a state saved from this ", type_name_,
                 ", or load with strict=false");
    DTRAIN_CHECK(result.unexpected.empty(), "load_state_dict: unexpected '",
                 result.unexpected.front(), "' in the state (", result.unexpected.size(),
                 " names the ", type_name_,
                 " does not have); load a state saved from this model, or load with strict=false");
  }

  NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  return result;
}

const std::shared_ptr<Module>& ModuleList::operator[](size_t i) const {
  DTRAIN_CHECK(i < size(), "ModuleList: index ", i, " is out of range for a list of ", size(),
               " modules");
  return named_children()[i].second;
}

}  // namespace dtrain::nn
