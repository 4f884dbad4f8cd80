#include "engine/tensor.h"

#include <algorithm>
#include <numeric>

#include "engine/backend.h"
#include "engine/ops.h"

namespace arq {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
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

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) ARQ_CHECK(d >= 0, ShapeError, "[empty] negative dimension in ", shape_str(shape));
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return Tensor(Storage::allocate(nbytes, device), shape, contiguous_strides(shape), 0, dtype);
}

Tensor::Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset, DType dtype)
    : storage_(std::move(storage)), shape_(std::move(shape)), strides_(std::move(strides)), offset_(offset), dtype_(dtype) {
  ARQ_ASSERT(shape_.size() == strides_.size(), "shape ", shape_str(shape_), " vs strides ", shape_str(strides_));
}

Device Tensor::device() const { return storage_ ? storage_->device() : Device::cpu(); }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no element to misplace (as in PyTorch); view()/memcpy rely on it
  int64_t expect = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expect) return false;
    expect *= shape_[i];
  }
  return true;
}

bool Tensor::may_overlap(const Tensor& o) const {
  if (!defined() || !o.defined() || storage_ != o.storage_) return false;
  if (numel() == 0 || o.numel() == 0) return false;
  auto range = [](const Tensor& t) {
    int64_t lo = t.offset_, hi = t.offset_;
    for (size_t i = 0; i < t.shape_.size(); ++i) {
      const int64_t span = (t.shape_[i] - 1) * t.strides_[i];
      if (span < 0) lo += span; else hi += span;
    }
    return std::pair<int64_t, int64_t>{lo * static_cast<int64_t>(t.itemsize()),
                                       (hi + 1) * static_cast<int64_t>(t.itemsize())};
  };
  auto [a0, a1] = range(*this);
  auto [b0, b1] = range(o);
  return a0 < b1 && b0 < a1;
}

void* Tensor::data_ptr() const {
  ARQ_ASSERT(storage_, "data_ptr() of an undefined tensor");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(itemsize());
}

int64_t Tensor::norm_dim(int64_t d) const {
  const int64_t n = dim();
  ARQ_CHECK(d >= -n && d < n, ShapeError, "dimension ", d, " out of range for ", str());
  return d < 0 ? d + n : d;
}

Tensor Tensor::view(const Shape& shape_in) const {
  Shape shape = shape_in;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      ARQ_CHECK(infer < 0, ShapeError, "[view] more than one -1 in ", shape_str(shape_in));
      infer = static_cast<int64_t>(i);
    } else {
      ARQ_CHECK(shape[i] >= 0, ShapeError, "[view] negative size in ", shape_str(shape_in));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    ARQ_CHECK(known > 0 && numel() % known == 0, ShapeError, "[view] cannot view ", str(), " as ", shape_str(shape_in));
    shape[infer] = numel() / known;
  }
  ARQ_CHECK(shape_numel(shape) == numel(), ShapeError, "[view] ", str(), " has ", numel(),
            " elements, target ", shape_str(shape_in), " has ", shape_numel(shape));
  if (is_contiguous()) return Tensor(storage_, shape, contiguous_strides(shape), offset_, dtype_);
  // General case (as in PyTorch's computeStride): walk old dims in chunks that are contiguous
  // among themselves and map each chunk onto a run of new dims with the same element count.
  Shape new_strides(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = strides_.empty() ? 1 : strides_.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = dim() - 1; td >= 0; --td) {
    tensor_numel *= shape_[td];
    if (td == 0 || (shape_[td - 1] != 1 && strides_[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        new_strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) {
        throw ShapeError(cat("[view] cannot view non-contiguous ", str(), " strides ", shape_str(strides_),
                             " as ", shape_str(shape_in), "; use reshape() or contiguous()"));
      }
      if (td > 0) {
        chunk_base_stride = strides_[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  ARQ_CHECK(view_d == -1, ShapeError, "[view] cannot view ", str(), " as ", shape_str(shape_in));
  return Tensor(storage_, shape, new_strides, offset_, dtype_);
}

Tensor Tensor::reshape(const Shape& shape) const {
  try {
    return view(shape);
  } catch (const ShapeError&) {
    return contiguous().view(shape);
  }
}

Tensor Tensor::permute(const std::vector<int64_t>& order) const {
  ARQ_CHECK(static_cast<int64_t>(order.size()) == dim(), ShapeError, "[permute] order of length ", order.size(),
            " for ", str());
  Shape sh(order.size()), st(order.size());
  std::vector<bool> seen(order.size(), false);
  for (size_t i = 0; i < order.size(); ++i) {
    const int64_t d = norm_dim(order[i]);
    ARQ_CHECK(!seen[d], ShapeError, "[permute] dimension ", d, " repeated for ", str());
    seen[d] = true;
    sh[i] = shape_[d];
    st[i] = strides_[d];
  }
  return Tensor(storage_, sh, st, offset_, dtype_);
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  a = norm_dim(a);
  b = norm_dim(b);
  Shape sh = shape_, st = strides_;
  std::swap(sh[a], sh[b]);
  std::swap(st[a], st[b]);
  return Tensor(storage_, sh, st, offset_, dtype_);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = norm_dim(d);
  ARQ_CHECK(start >= 0 && length >= 0 && start + length <= shape_[d], ShapeError, "[narrow] start ", start,
            " length ", length, " out of range for dim ", d, " of ", str());
  Shape sh = shape_;
  sh[d] = length;
  return Tensor(storage_, sh, strides_, offset_ + start * strides_[d], dtype_);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = norm_dim(d);
  ARQ_CHECK(step > 0, ShapeError, "[slice] step must be positive, got ", step);
  const int64_t n = shape_[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape sh = shape_, st = strides_;
  sh[d] = (end - start + step - 1) / step;
  st[d] = strides_[d] * step;
  return Tensor(storage_, sh, st, offset_ + start * strides_[d], dtype_);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = norm_dim(d);
  if (index < 0) index += shape_[d];
  ARQ_CHECK(index >= 0 && index < shape_[d], ShapeError, "[select] index ", index, " out of range for dim ", d,
            " of ", str());
  Shape sh = shape_, st = strides_;
  sh.erase(sh.begin() + d);
  st.erase(st.begin() + d);
  return Tensor(storage_, sh, st, offset_ + index * strides_[d], dtype_);
}

Tensor Tensor::expand(const Shape& shape) const {
  ARQ_CHECK(shape.size() >= shape_.size(), ShapeError, "[expand] cannot expand ", str(), " to ", shape_str(shape));
  const size_t lead = shape.size() - shape_.size();
  Shape st(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) continue;
    const int64_t s = shape_[i - lead];
    if (s == shape[i]) {
      st[i] = strides_[i - lead];
    } else {
      ARQ_CHECK(s == 1, ShapeError, "[expand] cannot expand ", str(), " to ", shape_str(shape));
      st[i] = 0;
    }
  }
  return Tensor(storage_, shape, st, offset_, dtype_);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  const int64_t n = dim() + 1;
  ARQ_CHECK(d >= -n && d < n, ShapeError, "[unsqueeze] dimension ", d, " out of range for ", str());
  if (d < 0) d += n;
  Shape sh = shape_, st = strides_;
  const int64_t s = d < dim() ? strides_[d] * shape_[d] : 1;
  sh.insert(sh.begin() + d, 1);
  st.insert(st.begin() + d, s);
  return Tensor(storage_, sh, st, offset_, dtype_);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = norm_dim(d);
  ARQ_CHECK(shape_[d] == 1, ShapeError, "[squeeze] dimension ", d, " of ", str(), " is not 1");
  return select(d, 0);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape_, dtype_, device());
  backend_for(device()).copy(*this, out);
  return out;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor out = Tensor::empty(shape_, dtype, device());
  backend_for(device()).copy(*this, out);
  return out;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor out = Tensor::empty(shape_, dtype_, device);
  // The non-CPU side performs cross-device copies, always between contiguous buffers.
  backend_for(device.is_cpu() ? this->device() : device).copy(contiguous(), out);
  return out;
}

double Tensor::item() const {
  ARQ_CHECK(numel() == 1, ShapeError, "[item] needs one element, got ", str());
  return at(Shape(dim(), 0));
}

double Tensor::at(const std::vector<int64_t>& index) const {
  ARQ_CHECK(static_cast<int64_t>(index.size()) == dim(), ShapeError, "[at] index of length ", index.size(), " for ",
            str());
  Tensor t = device().is_cpu() ? *this : to(Device::cpu());
  int64_t off = 0;
  for (size_t i = 0; i < index.size(); ++i) {
    ARQ_CHECK(index[i] >= 0 && index[i] < t.shape_[i], ShapeError, "[at] index ", shape_str(index), " out of range for ", str());
    off += index[i] * t.strides_[i];
  }
  const char* base = static_cast<const char*>(t.data_ptr());
  return dispatch_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    return to_double(reinterpret_cast<const T*>(base)[off]);
  });
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return cat(dtype_name(dtype_), shape_str(shape_), " ", device().str());
}

}  // namespace arq
