// Tensor: a strided view of shared storage.
//
// Conventions used everywhere in ar-quant (ARCHITECTURE.md "Numbers that matter"):
//   - row-major: the last dimension is the fastest; `matmul(A[m,k], B[k,n]) -> [m,n]`;
//     a linear layer with weight W[out, in] computes x · Wᵀ;
//   - shape and strides are counted in elements (int64_t), `offset` too; bytes are size_t;
//   - views (reshape where possible, permute/transpose, narrow/slice/select, expand, squeeze)
//     never copy: they share storage and differ in shape/strides/offset;
//   - negative dimension indices count from the end (-1 is the last).
//
//   Tensor x = Tensor::empty({5, 7}, DType::f32);       // [5, 7]
//   Tensor xt = x.transpose(0, 1);                       // [7, 5] view, strides {1, 7}
//   Tensor c = xt.contiguous();                          // [7, 5] copy, strides {5, 1}
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/device.h"
#include "engine/dtype.h"
#include "engine/error.h"
#include "engine/storage.h"

namespace arq {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);       // "[5, 7]"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

class Tensor {
 public:
  Tensor() = default;  // undefined tensor; defined() is false

  // Uninitialized memory on `device`.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  // A view of existing storage.
  Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const { return shape_[norm_dim(d)]; }
  int64_t stride(int64_t d) const { return strides_[norm_dim(d)]; }
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  size_t itemsize() const { return dtype_size(dtype_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * itemsize(); }
  Device device() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  bool is_contiguous() const;
  // Two tensors whose element ranges share bytes of the same storage.
  bool may_overlap(const Tensor& other) const;

  // Pointer to element 0 (storage base + offset). Host pointer only on CPU tensors.
  void* data_ptr() const;
  template <class T>
  T* data() const {
    ARQ_ASSERT(dtype_of<T>() == dtype_, "data<", dtype_name(dtype_of<T>()), ">() on a ", dtype_name(dtype_), " tensor");
    return static_cast<T*>(data_ptr());
  }

  // Normalize a possibly negative dimension index; throws ShapeError when out of range.
  int64_t norm_dim(int64_t d) const;

  // ---- views (no copy) --------------------------------------------------------------
  Tensor view(const Shape& shape) const;          // must be expressible with strides; one -1 allowed
  Tensor reshape(const Shape& shape) const;       // view when possible, else a contiguous copy
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor t() const { return transpose(-2, -1); }  // swap the last two dims
  Tensor narrow(int64_t d, int64_t start, int64_t length) const;
  Tensor slice(int64_t d, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t d, int64_t index) const; // drops dimension d
  Tensor expand(const Shape& shape) const;        // broadcast size-1 dims (stride 0); may add leading dims
  Tensor unsqueeze(int64_t d) const;
  Tensor squeeze(int64_t d) const;
  Tensor flatten() const { return reshape({numel()}); }

  // ---- copies -----------------------------------------------------------------------
  Tensor contiguous() const;                      // self if already contiguous
  Tensor clone() const;                           // always a fresh contiguous copy
  Tensor to(DType dtype) const;                   // cast (self when same dtype)
  Tensor to(Device device) const;                 // copy across devices (self when same)

  // Value of a one-element tensor (any shape with numel 1), widened to double.
  double item() const;
  // Element at a multi-index, widened to double (tests and debugging; slow).
  double at(const std::vector<int64_t>& index) const;

  // "f32[5, 7] cpu" — used in error messages.
  std::string str() const;

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::f32;
};

}  // namespace arq
