// Views (share storage, recorded by autograd) and copies/conversions: the Tensor methods that are ops.
#include <algorithm>
#include <numeric>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend/backend.h"
#include "core/ops/elementwise.h"

namespace dtrain {

using autograd::record;

namespace {

// Strides for viewing `t` as `shape` without a copy, or empty when its layout does not allow that.
Shape view_strides(const Tensor& t, const Shape& shape) {
  if (t.is_contiguous()) return contiguous_strides(shape);
  // Merge runs of old dims that are contiguous with each other, then split them into new dims.
  const Shape& old_shape = t.shape();
  const Shape& old_strides = t.strides();
  Shape out(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_numel = 1;
  int64_t tensor_numel = 1;
  int64_t chunk_base_stride = old_strides.empty() ? 1 : old_strides.back();
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 ||
        (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (chunk_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = chunk_numel * chunk_base_stride;
        chunk_numel *= shape[view_d];
        --view_d;
      }
      if (chunk_numel != tensor_numel) return {};
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        chunk_numel = 1;
      }
    }
  }
  if (view_d != -1) return {};
  return out;
}

Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape out = shape;
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      DTRAIN_CHECK(infer < 0, op, ": more than one -1 in shape ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= out[i];
    }
  }
  if (infer >= 0) {
    DTRAIN_CHECK(known > 0 && numel % known == 0, op, ": cannot view shape ", shape_str(from),
                 " as ", shape_str(shape));
    out[static_cast<size_t>(infer)] = numel / known;
  }
  DTRAIN_CHECK(shape_numel(out) == numel, op, ": shape ", shape_str(shape), " does not have the ",
               numel, " elements of shape ", shape_str(from));
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& shape) const {
  Shape target = infer_shape(shape, numel(), "view", this->shape());
  Shape strides = view_strides(*this, target);
  DTRAIN_CHECK(!strides.empty() || target.empty(), "view: a tensor of shape ",
               shape_str(this->shape()), " with strides ", shape_str(this->strides()),
               " cannot be viewed as ", shape_str(target), "; use reshape (which copies)");
  Tensor out = make_view(*this, target, strides, offset());
  Shape in_shape = this->shape();
  return record("view", {*this}, out, [in_shape](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.reshape(in_shape)};
  });
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape target = infer_shape(shape, numel(), "reshape", this->shape());
  if (!view_strides(*this, target).empty() || target.empty()) return view(target);
  return contiguous().view(target);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  DTRAIN_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: ", dims.size(),
               " dims given for a tensor of shape ", shape_str(shape()));
  Shape new_shape(dims.size()), new_strides(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], dim(), "permute");
    DTRAIN_CHECK(inverse[static_cast<size_t>(d)] < 0, "permute: dim ", d, " repeated");
    inverse[static_cast<size_t>(d)] = static_cast<int64_t>(i);
    new_shape[i] = shape()[static_cast<size_t>(d)];
    new_strides[i] = strides()[static_cast<size_t>(d)];
  }
  Tensor out = make_view(*this, new_shape, new_strides, offset());
  return record("permute", {*this}, out, [inverse](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.permute(inverse)};
  });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> dims(static_cast<size_t>(dim()));
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[static_cast<size_t>(wrap_dim(d0, dim(), "transpose"))],
            dims[static_cast<size_t>(wrap_dim(d1, dim(), "transpose"))]);
  return permute(dims);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  int64_t n = shape()[static_cast<size_t>(d)];
  if (start < 0) start += n;
  DTRAIN_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: [", start, ", ",
               start + length, ") is outside dim ", d, " of size ", n, " in shape ",
               shape_str(shape()));
  Shape new_shape = shape();
  new_shape[static_cast<size_t>(d)] = length;
  Tensor out =
      make_view(*this, new_shape, strides(), offset() + start * strides()[static_cast<size_t>(d)]);
  Shape in_shape = shape();
  DType dt = dtype();
  Device dev = device();
  return record("narrow", {*this}, out,
                [in_shape, dt, dev, d, start, length](const Tensor& g, const std::vector<bool>&) {
                  Tensor full = Tensor::zeros(in_shape, dt, dev);
                  full.narrow(d, start, length).copy_(g);
                  return std::vector<Tensor>{full};
                });
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& shape) const {
  DTRAIN_CHECK(shape.size() >= this->shape().size(), "expand: cannot expand shape ",
               shape_str(this->shape()), " to fewer dims ", shape_str(shape));
  size_t lead = shape.size() - this->shape().size();
  Shape new_strides(shape.size(), 0);
  Shape target = shape;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      DTRAIN_CHECK(shape[i] >= 0, "expand: size -1 not allowed for a new leading dim");
      continue;
    }
    int64_t have = this->shape()[i - lead];
    if (target[i] == -1) target[i] = have;
    DTRAIN_CHECK(have == target[i] || have == 1, "expand: shape ", shape_str(this->shape()),
                 " cannot be expanded to ", shape_str(shape));
    new_strides[i] = have == target[i] ? strides()[i - lead] : 0;
  }
  Tensor out = make_view(*this, target, new_strides, offset());
  Shape in_shape = this->shape();
  return record("expand", {*this}, out, [in_shape](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{sum_to(g, in_shape)};
  });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape();
  s.insert(s.begin() + d, 1);
  return view(s);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[static_cast<size_t>(d)] != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + d);
  Shape st = strides();
  st.erase(st.begin() + d);
  Tensor out = make_view(*this, s, st, offset());
  Shape in_shape = shape();
  return record("squeeze", {*this}, out, [in_shape](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.reshape(in_shape)};
  });
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = wrap_dim(start_dim, dim(), "flatten");
  end_dim = wrap_dim(end_dim, dim(), "flatten");
  Shape s(shape().begin(), shape().begin() + start_dim);
  int64_t n = 1;
  for (int64_t i = start_dim; i <= end_dim; ++i) n *= shape()[static_cast<size_t>(i)];
  s.push_back(n);
  s.insert(s.end(), shape().begin() + end_dim + 1, shape().end());
  return reshape(s);
}

// ---- copies and conversions

namespace {
// A new contiguous tensor of `dtype` on `device` holding src's values (no graph).
Tensor copy_to(const Tensor& src, DType dtype, Device device) {
  Tensor out = Tensor::empty(src.shape(), dtype, device);
  if (out.numel() == 0) return out;
  if (src.device() == device) {
    backend_for(device).copy(src, out);
    return out;
  }
  // Across devices: make the source contiguous in the target dtype on its own device, then move bytes.
  Tensor staged = src;
  if (!src.is_contiguous() || src.dtype() != dtype) {
    staged = Tensor::empty(src.shape(), dtype, src.device());
    backend_for(src.device()).copy(src, staged);
  }
  size_t nbytes = static_cast<size_t>(out.numel()) * dtype_size(dtype);
  if (device.is_cpu()) {
    backend_for(src.device())
        .copy_to_host(staged.raw_data(), out.raw_data(), nbytes, src.device().index);
  } else if (src.device().is_cpu()) {
    backend_for(device).copy_from_host(staged.raw_data(), out.raw_data(), nbytes, device.index);
  } else {
    Tensor host = copy_to(staged, dtype, Device::cpu());
    backend_for(device).copy_from_host(host.raw_data(), out.raw_data(), nbytes, device.index);
  }
  return out;
}
}  // namespace

Tensor Tensor::to(DType dtype) const {
  if (dtype == this->dtype()) return *this;
  Tensor out = copy_to(*this, dtype, device());
  DType from = this->dtype();
  if (!is_floating(dtype)) return out;
  return record("to_dtype", {*this}, out, [from](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.to(from)};
  });
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor out = copy_to(*this, dtype(), device);
  Device from = this->device();
  return record("to_device", {*this}, out, [from](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.to(from)};
  });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = copy_to(*this, dtype(), device());
  return record("clone", {*this}, out,
                [](const Tensor& g, const std::vector<bool>&) { return std::vector<Tensor>{g}; });
}

Tensor& Tensor::copy_(const Tensor& src) {
  DTRAIN_CHECK(
      !(requires_grad() && autograd::grad_enabled()),
      "copy_ into a tensor that requires grad while grad mode is on; wrap it in NoGradGuard");
  Shape target = broadcast_shapes(src.shape(), shape(), "copy_");
  DTRAIN_CHECK(target == shape(), "copy_: source of shape ", shape_str(src.shape()),
               " does not broadcast to destination shape ", shape_str(shape()));
  if (numel() == 0) return *this;
  Tensor s = src.detach();
  if (s.device() != device()) s = copy_to(s, dtype(), device());
  if (s.shape() != shape()) {
    NoGradGuard no_grad;
    s = s.expand(shape());
  }
  backend_for(device()).copy(s, *this);
  return *this;
}

Tensor& Tensor::fill_(double value) {
  DTRAIN_CHECK(
      !(requires_grad() && autograd::grad_enabled()),
      "fill_ on a tensor that requires grad while grad mode is on; wrap it in NoGradGuard");
  if (numel() == 0) return *this;
  if (is_contiguous()) {
    backend_for(device()).fill(*this, value);
  } else {
    Tensor tmp = Tensor::full(shape(), value, dtype(), device());
    backend_for(device()).copy(tmp, *this);
  }
  return *this;
}

}  // namespace dtrain
