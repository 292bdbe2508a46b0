#include "core/tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <sstream>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/tensor/random.h"

namespace dtrain {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::f16:
      return 2;
    case DType::bf16:
      return 2;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::f16:
      return "f16";
    case DType::bf16:
      return "bf16";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64}) {
    if (name == dtype_name(t)) return t;
  }
  if (name == "float32" || name == "fp32") return DType::f32;
  if (name == "float16" || name == "fp16") return DType::f16;
  if (name == "bfloat16") return DType::bf16;
  throw Error("unknown dtype '" + name + "': use one of f32, f64, f16, bf16, i32, i64");
}

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    try {
      size_t used = 0;
      int index = std::stoi(text.substr(5), &used);
      if (used == text.size() - 5 && index >= 0) return cuda(index);
    } catch (const std::exception&) {}
  }
  throw Error("unknown device '" + text + "': use cpu, cuda or cuda:N");
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  DTRAIN_CHECK(d >= 0 && d < std::max<int64_t>(ndim, 1), op, ": dim ", dim,
               " is out of range for a tensor with ", ndim, " dims");
  return d;
}

// ---- Storage

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = backend_for(device).allocate(nbytes, device.index);
}

Storage::~Storage() {
  if (data_) backend_for(device_).deallocate(data_, nbytes_, device_.index);
}

// ---- factories

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) {
    DTRAIN_CHECK(d >= 0, "cannot make a tensor of shape ", shape_str(shape), ": negative size");
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(
      static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.numel() > 0) backend_for(device).fill(t, value);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor Tensor::scalar(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return from_vector(v, {n}, dtype, device);
}

namespace {
template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::f32;
  if constexpr (std::is_same_v<T, double>) return DType::f64;
  if constexpr (std::is_same_v<T, int32_t>) return DType::i32;
  if constexpr (std::is_same_v<T, int64_t>) return DType::i64;
}
}  // namespace

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, DType dtype,
                           Device device) {
  DTRAIN_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
               "from_vector: ", values.size(), " values do not fill shape ", shape_str(shape));
  Tensor host = empty(shape, dtype_of<T>(), Device::cpu());
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  if (dtype == host.dtype() && device.is_cpu()) return host;
  Tensor out = empty(shape, dtype, Device::cpu());
  if (out.numel() > 0) backend_for(Device::cpu()).copy(host, out);
  return device.is_cpu() ? out : out.to(device);
}

template Tensor Tensor::from_vector(const std::vector<float>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<double>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<int32_t>&, const Shape&, DType, Device);
template Tensor Tensor::from_vector(const std::vector<int64_t>&, const Shape&, DType, Device);

Tensor Tensor::rand(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.numel() > 0)
    backend_for(device).random(RandomKind::uniform, 0.0, 1.0, default_generator(), t);
  return t;
}

Tensor Tensor::randn(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.numel() > 0)
    backend_for(device).random(RandomKind::normal, 0.0, 1.0, default_generator(), t);
  return t;
}

// ---- metadata

int64_t Tensor::size(int64_t d) const { return impl_->shape[wrap_dim(d, dim(), "size")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = impl_->shape.size(); i-- > 0;) {
    if (impl_->shape[i] == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl_->storage->data()) +
         impl_->offset * static_cast<int64_t>(dtype_size(impl_->dtype));
}

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  DTRAIN_CHECK(shape.size() == strides.size(), "view: shape ", shape_str(shape), " and strides ",
               shape_str(strides), " differ in length");
  int64_t last = offset;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) {
      last = offset;
      break;
    }
    last += (shape[i] - 1) * strides[i];
  }
  int64_t capacity = static_cast<int64_t>(base.storage()->nbytes() / dtype_size(base.dtype()));
  DTRAIN_CHECK(offset >= 0 && (shape_numel(shape) == 0 || last < capacity), "view of shape ",
               shape_str(shape), " at offset ", offset, " runs past its storage of ", capacity,
               " elements");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// ---- host access

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = *this;
  // A host read: on a device the backend counts the waits of the copy; on the CPU the read itself
  // stands for them (backend.h, host_sync_count).
  if (device().is_cpu())
    count_host_sync();
  else
    host = detach().to(Device::cpu());
  if (host.dtype() != dtype_of<T>() || !host.is_contiguous()) {
    Tensor converted = empty(shape(), dtype_of<T>(), Device::cpu());
    if (converted.numel() > 0) backend_for(Device::cpu()).copy(host, converted);
    host = converted;
  }
  const T* p = host.data<T>();
  return std::vector<T>(p, p + numel());
}

template std::vector<float> Tensor::to_vector() const;
template std::vector<double> Tensor::to_vector() const;
template std::vector<int32_t> Tensor::to_vector() const;
template std::vector<int64_t> Tensor::to_vector() const;

double Tensor::item() const {
  DTRAIN_CHECK(numel() == 1, "item() needs a tensor with one element, got shape ",
               shape_str(shape()));
  return to_vector<double>()[0];
}

// ---- autograd

Tensor& Tensor::set_requires_grad(bool r) {
  DTRAIN_CHECK(!r || is_floating(dtype()), "only floating tensors can require grad, got ",
               dtype_name(dtype()));
  DTRAIN_CHECK(is_leaf() || r, "set_requires_grad(false) on a non-leaf tensor: use detach()");
  impl_->requires_grad = r;
  return *this;
}

void Tensor::backward(const Tensor& gradient, bool retain_graph) const {
  autograd::backward(*this, gradient, retain_graph);
}

void Tensor::register_post_accumulate_grad_hook(GradHook hook) const {
  DTRAIN_CHECK(is_leaf() && requires_grad(),
               "register_post_accumulate_grad_hook needs a leaf tensor that requires grad");
  impl_->post_accumulate_hooks.push_back(std::move(hook));
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = impl_->shape;
  impl->strides = impl_->strides;
  impl->offset = impl_->offset;
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

// ---- printing

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream s;
  s << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype())
    << ", device=" << device().str();
  if (requires_grad()) s << ", requires_grad";
  s << ")\n";
  std::vector<double> v = to_vector<double>();
  const int64_t last = dim() ? shape().back() : 1;
  const int64_t rows = last ? numel() / last : 0;
  const int64_t show = 6;  // rows and columns shown at each end before eliding
  s << std::setprecision(6);
  for (int64_t r = 0; r < rows; ++r) {
    if (rows > 2 * show && r == show) {
      s << "  ...\n";
      r = rows - show - 1;
      continue;
    }
    s << "  [";
    for (int64_t c = 0; c < last; ++c) {
      if (last > 2 * show && c == show) {
        s << " ...";
        c = last - show - 1;
        continue;
      }
      s << (c ? ", " : "") << v[static_cast<size_t>(r * last + c)];
    }
    s << "]\n";
  }
  return s.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace dtrain
