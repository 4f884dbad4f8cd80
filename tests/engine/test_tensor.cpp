// Tensor views and copies: view/reshape of non-contiguous tensors, permute, transpose, narrow,
// slice with step, select, expand, unsqueeze/squeeze, contiguous, clone, to(dtype), at(),
// item(), may_overlap. Expected values come from index arithmetic on the base tensor.
#include <doctest/doctest.h>

#include "engine/ops.h"
#include "tests/engine/test_util.h"

using namespace arq;
using test::read;

namespace {

// base[i0, i1, ...] = linear row-major index, so a view's element tells where it came from.
Tensor iota(const Shape& shape, DType dt = DType::f32) {
  std::vector<double> v(static_cast<size_t>(test::numel_of(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return from_vector(v, shape, dt);
}

// Expected contents of a view: f(idx) gives the base linear index for each view index.
std::vector<double> expect_of(const Shape& shape, const std::function<int64_t(const std::vector<int64_t>&)>& f) {
  std::vector<double> v;
  test::for_each_index(shape, [&](const std::vector<int64_t>& i) { v.push_back(static_cast<double>(f(i))); });
  return v;
}

bool shares(const Tensor& a, const Tensor& b) { return a.storage() == b.storage(); }

}  // namespace

TEST_CASE("tensor: empty, strides, contiguity, str") {
  Tensor x = Tensor::empty({5, 7, 13}, DType::bf16);
  CHECK(x.shape() == Shape{5, 7, 13});
  CHECK(x.strides() == Shape{91, 13, 1});
  CHECK(x.numel() == 455);
  CHECK(x.nbytes() == 910);
  CHECK(x.dim() == 3);
  CHECK(x.size(-1) == 13);
  CHECK(x.stride(-3) == 91);
  CHECK(x.is_contiguous());
  CHECK(x.device() == Device::cpu());
  CHECK(x.str() == "bf16[5, 7, 13] cpu");
  CHECK(reinterpret_cast<uintptr_t>(x.data_ptr()) % 64 == 0);  // CPU allocations are 64-byte aligned
  Tensor z = Tensor::empty({0, 7}, DType::f32);
  CHECK(z.numel() == 0);
  CHECK(z.is_contiguous());
  Tensor s = Tensor::empty({}, DType::f32);
  CHECK(s.numel() == 1);
  CHECK(s.dim() == 0);
  CHECK(!Tensor().defined());
  test::expect_error<ShapeError>([] { Tensor::empty({3, -1}, DType::f32); }, {"[empty]", "[3, -1]"});
  test::expect_error<ShapeError>([&] { x.size(3); }, {"dimension 3", "bf16[5, 7, 13]"});
  test::expect_error<ShapeError>([&] { x.norm_dim(-4); }, {"-4"});
}

TEST_CASE("tensor: transpose, permute, t()") {
  Tensor b = iota({5, 7, 13});
  Tensor t = b.transpose(0, 2);  // [13, 7, 5]
  CHECK(t.shape() == Shape{13, 7, 5});
  CHECK(t.strides() == Shape{1, 13, 91});
  CHECK(shares(t, b));
  CHECK(!t.is_contiguous());
  CHECK(read(t) == expect_of(t.shape(), [](auto& i) { return i[2] * 91 + i[1] * 13 + i[0]; }));
  Tensor p = b.permute({1, -1, 0});  // [7, 13, 5]
  CHECK(p.shape() == Shape{7, 13, 5});
  CHECK(read(p) == expect_of(p.shape(), [](auto& i) { return i[2] * 91 + i[0] * 13 + i[1]; }));
  CHECK(b.t().shape() == Shape{5, 13, 7});
  CHECK(read(b.t()) == expect_of({5, 13, 7}, [](auto& i) { return i[0] * 91 + i[2] * 13 + i[1]; }));
  test::expect_error<ShapeError>([&] { b.permute({0, 0, 1}); }, {"[permute]", "repeated"});
  test::expect_error<ShapeError>([&] { b.permute({0, 1}); }, {"[permute]"});
}

TEST_CASE("tensor: narrow, slice with step, select") {
  Tensor b = iota({5, 7, 13});
  Tensor n = b.narrow(1, 2, 4);  // [5, 4, 13]
  CHECK(n.offset() == 26);
  CHECK(read(n) == expect_of({5, 4, 13}, [](auto& i) { return i[0] * 91 + (i[1] + 2) * 13 + i[2]; }));
  Tensor s = b.slice(-1, 1, 13, 3);  // indices 1, 4, 7, 10 -> [5, 7, 4]
  CHECK(s.shape() == Shape{5, 7, 4});
  CHECK(s.stride(-1) == 3);
  CHECK(read(s) == expect_of(s.shape(), [](auto& i) { return i[0] * 91 + i[1] * 13 + 1 + 3 * i[2]; }));
  // Negative start/end count from the end; out-of-range ends clamp; an empty slice is allowed.
  Tensor s2 = b.slice(1, -3, 100, 2);  // indices 4, 6
  CHECK(s2.shape() == Shape{5, 2, 13});
  CHECK(read(s2) == expect_of(s2.shape(), [](auto& i) { return i[0] * 91 + (4 + 2 * i[1]) * 13 + i[2]; }));
  CHECK(b.slice(0, 3, 3).shape() == Shape{0, 7, 13});
  // Slice of a slice composes strides and offsets.
  Tensor ss = s.slice(2, 1, 4, 2);  // indices 1, 3 of (1, 4, 7, 10) -> 4, 10
  CHECK(read(ss) == expect_of({5, 7, 2}, [](auto& i) { return i[0] * 91 + i[1] * 13 + 4 + 6 * i[2]; }));
  Tensor sel = b.select(1, -1);  // [5, 13], row 6
  CHECK(sel.shape() == Shape{5, 13});
  CHECK(read(sel) == expect_of({5, 13}, [](auto& i) { return i[0] * 91 + 6 * 13 + i[1]; }));
  CHECK(b.select(0, 4).select(0, 6).select(0, 12).item() == 454);
  test::expect_error<ShapeError>([&] { b.narrow(1, 5, 3); }, {"[narrow]", "f32[5, 7, 13]"});
  test::expect_error<ShapeError>([&] { b.slice(0, 0, 5, 0); }, {"[slice]", "step"});
  test::expect_error<ShapeError>([&] { b.select(2, 13); }, {"[select]", "13"});
}

TEST_CASE("tensor: expand, unsqueeze, squeeze") {
  Tensor r = iota({1, 7});
  Tensor e = r.expand({3, 5, 7});  // adds a leading dim, stretches the 1
  CHECK(e.strides() == Shape{0, 0, 1});
  CHECK(read(e) == expect_of({3, 5, 7}, [](auto& i) { return i[2]; }));
  Tensor c = iota({5, 1}).expand({5, 4});
  CHECK(read(c) == expect_of({5, 4}, [](auto& i) { return i[0]; }));
  test::expect_error<ShapeError>([&] { iota({5, 2}).expand({5, 4}); }, {"[expand]", "[5, 4]"});
  test::expect_error<ShapeError>([&] { iota({5, 2}).expand({2}); }, {"[expand]"});
  Tensor x = iota({5, 7});
  CHECK(x.unsqueeze(0).shape() == Shape{1, 5, 7});
  CHECK(x.unsqueeze(1).shape() == Shape{5, 1, 7});
  CHECK(x.unsqueeze(-1).shape() == Shape{5, 7, 1});
  CHECK(x.unsqueeze(-1).is_contiguous());
  CHECK(read(x.unsqueeze(1)) == read(x));
  CHECK(x.unsqueeze(1).squeeze(1).shape() == Shape{5, 7});
  CHECK(x.t().unsqueeze(0).squeeze(-3).strides() == Shape{1, 7});
  test::expect_error<ShapeError>([&] { x.squeeze(0); }, {"[squeeze]", "not 1"});
  test::expect_error<ShapeError>([&] { x.unsqueeze(3); }, {"[unsqueeze]"});
}

TEST_CASE("tensor: view and reshape of non-contiguous tensors") {
  Tensor b = iota({4, 6});
  // Contiguous: view shares storage, -1 is inferred.
  Tensor v = b.view({2, -1, 3});
  CHECK(v.shape() == Shape{2, 4, 3});
  CHECK(shares(v, b));
  CHECK(read(v) == read(b));
  // Transposed [6, 4], strides {1, 6}: splitting a dim is expressible, merging is not.
  Tensor t = b.t();
  Tensor tv = t.view({3, 2, 4});
  CHECK(tv.strides() == Shape{2, 1, 6});
  CHECK(shares(tv, b));
  CHECK(read(tv) == read(t));
  Tensor tv2 = t.view({6, 2, 2});
  CHECK(tv2.strides() == Shape{1, 12, 6});
  CHECK(read(tv2) == read(t));
  test::expect_error<ShapeError>([&] { t.view({24}); }, {"[view]", "[24]"});
  test::expect_error<ShapeError>([&] { t.view({4, 6}); }, {"[view]"});
  // reshape copies where view cannot, in the view's row-major order.
  Tensor r = t.reshape({24});
  CHECK(!shares(r, b));
  CHECK(r.is_contiguous());
  CHECK(read(r) == read(t));
  CHECK(shares(t.reshape({3, 2, 4}), b));  // and does not copy where a view works
  // Narrowed rows [4, 3] of a [4, 6] base: adding size-1 dims or splitting dim 0 is a view.
  Tensor n = b.narrow(1, 0, 3);
  Tensor nv = n.view({2, 2, 3, 1});
  CHECK(nv.strides()[0] == 12);
  CHECK(nv.strides()[1] == 6);
  CHECK(nv.strides()[2] == 1);
  CHECK(read(nv) == read(n));
  test::expect_error<ShapeError>([&] { n.view({12}); }, {"[view]", "non-contiguous"});
  CHECK(read(n.reshape({12})) == read(n));
  // Stepped [4, 2] (columns 0 and 3 of 6): strides {6, 3} are evenly spaced (6 == 2·3), so the
  // rows merge into one stride-3 dim; columns 0 and 4 (strides {6, 4}) do not merge.
  Tensor st = b.slice(1, 0, 6, 3);
  Tensor stv = st.view({8});
  CHECK(stv.strides() == Shape{3});
  CHECK(shares(stv, b));
  CHECK(read(stv) == std::vector<double>{0, 3, 6, 9, 12, 15, 18, 21});
  Tensor st4 = b.slice(1, 0, 6, 4);
  test::expect_error<ShapeError>([&] { st4.view({8}); }, {"[view]"});
  CHECK(read(st4.reshape({8})) == std::vector<double>{0, 4, 6, 10, 12, 16, 18, 22});
  // Expanded (stride 0): a view can add unit dims but not merge the broadcast dim.
  Tensor e = iota({1, 7}).expand({5, 7});
  CHECK(e.view({5, 7, 1}).strides()[0] == 0);
  test::expect_error<ShapeError>([&] { e.view({35}); }, {"[view]"});
  CHECK(read(e.reshape({35})) == expect_of({35}, [](auto& i) { return i[0] % 7; }));
  // Permuted 3-D [4, 2, 3], strides {1, 12, 4}: dims 1 and 2 merge (12 == 3 * 4), dim 0 splits.
  Tensor p = iota({2, 3, 4}).permute({2, 0, 1});
  Tensor pv = p.view({2, 2, 6});
  CHECK(pv.strides() == Shape{2, 1, 4});
  CHECK(read(pv) == read(p));
  test::expect_error<ShapeError>([&] { p.view({24}); }, {"[view]"});
  test::expect_error<ShapeError>([&] { p.view({8, 3}); }, {"[view]"});
  CHECK(read(p.reshape({8, 3})) == read(p));
  // Element-count and -1 errors.
  test::expect_error<ShapeError>([&] { b.view({5, 5}); }, {"[view]", "24", "[5, 5]"});
  test::expect_error<ShapeError>([&] { b.view({-1, -1}); }, {"[view]", "-1"});
  test::expect_error<ShapeError>([&] { b.view({-1, 5}); }, {"[view]"});
  // Zero-sized tensors view freely.
  CHECK(Tensor::empty({0, 4}, DType::f32).view({4, 0, 3}).numel() == 0);
  CHECK(Tensor::empty({0, 4}, DType::f32).reshape({-1, 2}).shape() == Shape{0, 2});
}

TEST_CASE("tensor: contiguous, clone, to(dtype)") {
  Tensor b = iota({5, 7});
  CHECK(shares(b.contiguous(), b));
  Tensor t = b.t();
  Tensor c = t.contiguous();
  CHECK(!shares(c, b));
  CHECK(c.is_contiguous());
  CHECK(c.strides() == Shape{5, 1});
  CHECK(read(c) == read(t));
  Tensor cl = b.clone();
  CHECK(!shares(cl, b));
  CHECK(read(cl) == read(b));
  // A clone is independent of its source.
  fill_(cl, 3.0);
  CHECK(b.at({0, 1}) == 1.0);
  CHECK(shares(b.to(DType::f32), b));
  Tensor h = t.to(DType::bf16);
  CHECK(h.dtype() == DType::bf16);
  CHECK(h.is_contiguous());
  CHECK(read(h) == read(t));  // integers < 256 are exact in bf16
  CHECK(b.to(Device::cpu()).storage() == b.storage());
  // Zero-sized and 0-d copies.
  CHECK(Tensor::empty({0, 3}, DType::f32).t().contiguous().shape() == Shape{3, 0});
  CHECK(full({}, 2.5).clone().item() == 2.5);
}

TEST_CASE("tensor: at() and item()") {
  Tensor b = iota({5, 7, 13}, DType::i32);
  Tensor v = b.permute({2, 0, 1}).slice(0, 2, 13, 5);  // [3, 5, 7]: b[i1, i2, 2 + 5 i0]
  CHECK(v.at({2, 4, 6}) == 4 * 91 + 6 * 13 + 12);
  CHECK(v.at({0, 0, 0}) == 2);
  test::expect_error<ShapeError>([&] { v.at({3, 0, 0}); }, {"[at]"});
  test::expect_error<ShapeError>([&] { v.at({0, 0}); }, {"[at]"});
  CHECK(b.select(0, 1).narrow(0, 3, 1).narrow(1, 5, 1).item() == 91 + 39 + 5);  // [1, 1] view
  CHECK(full({1, 1, 1}, -3.5, DType::bf16).item() == -3.5);
  CHECK(scalar_tensor(7, DType::i64).item() == 7);
  test::expect_error<ShapeError>([&] { b.item(); }, {"[item]", "i32[5, 7, 13]"});
}

TEST_CASE("tensor: may_overlap") {
  Tensor b = iota({6, 8});
  Tensor top = b.narrow(0, 0, 3), bottom = b.narrow(0, 3, 3), mid = b.narrow(0, 2, 2);
  CHECK(!top.may_overlap(bottom));
  CHECK(!bottom.may_overlap(top));
  CHECK(top.may_overlap(mid));
  CHECK(bottom.may_overlap(mid));
  CHECK(b.may_overlap(b.t()));
  CHECK(b.may_overlap(b.select(1, 7)));
  CHECK(!b.may_overlap(b.clone()));
  CHECK(!b.narrow(1, 0, 4).select(0, 5).may_overlap(b.narrow(0, 0, 5)));  // row 5 vs rows 0..4
  CHECK(!b.may_overlap(Tensor::empty({6, 8}, DType::f32)));
  CHECK(!b.narrow(0, 0, 0).may_overlap(b));  // empty views overlap nothing
  // A byte-level check: a bf16 view of the last element overlaps, the one before does not touch it.
  Tensor h = iota({4}, DType::bf16);
  CHECK(h.narrow(0, 3, 1).may_overlap(h.narrow(0, 2, 2)));
  CHECK(!h.narrow(0, 3, 1).may_overlap(h.narrow(0, 0, 3)));
}

TEST_CASE("tensor: cuda tensors without CUDA throw DeviceError") {
  if (cuda_compiled()) {
    MESSAGE("built with CUDA: the no-CUDA DeviceError check does not apply");
    return;
  }
  test::expect_error<DeviceError>([] { Tensor::empty({2, 3}, DType::f32, Device::cuda()); }, {"without CUDA"});
  test::expect_error<DeviceError>([] { zeros({2}, DType::f32, Device::cuda(0)); }, {"CUDA"});
  test::expect_error<DeviceError>([] { iota({2}).to(Device::cuda()); }, {"CUDA"});
  test::expect_error<UsageError>([] { Device::parse("gpu"); }, {"gpu"});
  CHECK(Device::parse("cuda:1") == Device::cuda(1));
  CHECK(Device::parse("cpu").str() == "cpu");
}
