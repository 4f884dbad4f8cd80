// Gathers, scatters, joins and top-k against plain loops: embedding, index_select on every dim,
// scatter_add with repeated indices, concat/stack, topk (descending, ties -> lower index first).
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>

#include "engine/ops.h"
#include "tests/engine/test_util.h"

using namespace arq;
using namespace arq::test;

namespace {

Tensor index_tensor(const std::vector<double>& v, DType dt = DType::i64) {
  return from_vector(v, {static_cast<int64_t>(v.size())}, dt);
}

const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> d = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                       DType::i8,  DType::u8,  DType::i32, DType::i64};
  return d;
}

}  // namespace

TEST_CASE("index_select: every dim, i32/i64 indices, repeats, strided x and index") {
  const Shape xs{5, 7, 13};
  for (DType dt : all_dtypes()) {
    for (Layout l : all_layouts()) {
      Input x = make_input(xs, dt, l, [](int64_t n) { return uniform_int(n, 0, 100, 131); });
      if (!x.t.defined()) continue;
      for (int64_t dim = -3; dim < 3; ++dim) {
        const int64_t d = dim < 0 ? dim + 3 : dim;
        const int64_t lim = xs[d];
        // Repeated and unordered indices, including the last valid one; one empty selection.
        for (const std::vector<double>& idx : {std::vector<double>{static_cast<double>(lim - 1), 0, 2, 2, 1},
                                               std::vector<double>{}, std::vector<double>{3}}) {
          for (DType it : {DType::i64, DType::i32}) {
            // The index itself as a stepped view (every other element of a longer tensor).
            std::vector<double> padded;
            for (double v : idx) { padded.push_back(v); padded.push_back(-1); }
            Tensor index = index_tensor(padded, it).slice(0, 0, static_cast<int64_t>(padded.size()), 2);
            const std::string what = std::string("index_select ") + dtype_name(dt) + " " + x.layout + " dim " +
                                     std::to_string(dim) + " n " + std::to_string(idx.size()) + " " + dtype_name(it);
            Tensor y = index_select(x.t, dim, index);
            Shape os = xs;
            os[d] = static_cast<int64_t>(idx.size());
            REQUIRE_MESSAGE(y.shape() == os, what);
            CHECK(y.dtype() == dt);
            std::vector<double> want;
            for_each_index(os, [&](const std::vector<int64_t>& i) {
              std::vector<int64_t> src = i;
              src[d] = static_cast<int64_t>(idx[i[d]]);
              want.push_back(x.values[linear(xs, src)]);
            });
            expect_equal(read(y), want, what);
          }
        }
      }
    }
  }
  Tensor x = zeros({5, 7});
  test::expect_error<ShapeError>([&] { index_select(x, 1, index_tensor({0, 7})); }, {"[index_select]", "7"});
  test::expect_error<ShapeError>([&] { index_select(x, 0, index_tensor({-1})); }, {"[index_select]", "-1"});
  test::expect_error<DTypeError>([&] { index_select(x, 0, index_tensor({0}, DType::f32)); }, {"[index_select]", "i32 or i64"});
  test::expect_error<ShapeError>([&] { index_select(x, 0, zeros({1, 1}, DType::i64)); }, {"[index_select]", "1-D"});
  test::expect_error<ShapeError>([&] { index_select(x, 2, index_tensor({0})); }, {"2"});
}

TEST_CASE("embedding: ids of any shape gather rows of a (possibly strided) table") {
  for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64}) {
    for (Layout l : {Layout::contiguous, Layout::transposed, Layout::stepped, Layout::narrowed}) {
      Input table = make_input({11, 7}, dt, l, [](int64_t n) { return uniform(n, -1, 1, 141); });
      for (DType it : {DType::i64, DType::i32}) {
        const std::vector<double> ids = {10, 0, 3, 3, 7, 0};
        for (const Shape& is : {Shape{6}, Shape{2, 3}, Shape{3, 1, 2}}) {
          Tensor idt = from_vector(ids, is, it);
          const std::string what = std::string("embedding ") + dtype_name(dt) + " " + table.layout + " ids " + shape_str(is);
          Tensor y = embedding(table.t, idt);
          Shape os = is;
          os.push_back(7);
          REQUIRE_MESSAGE(y.shape() == os, what);
          std::vector<double> want;
          for (double id : ids)
            for (int64_t j = 0; j < 7; ++j) want.push_back(table.values[static_cast<int64_t>(id) * 7 + j]);
          expect_equal(read(y), want, what);
        }
        // Transposed ids [3, 2] view.
        Tensor idv = from_vector(ids, {2, 3}, it).t();
        std::vector<double> want;
        for (int64_t r = 0; r < 3; ++r)
          for (int64_t c = 0; c < 2; ++c)
            for (int64_t j = 0; j < 7; ++j) want.push_back(table.values[static_cast<int64_t>(ids[c * 3 + r]) * 7 + j]);
        expect_equal(read(embedding(table.t, idv)), want, "embedding with transposed ids");
      }
    }
  }
  CHECK(embedding(zeros({4, 3}), zeros({0}, DType::i64)).shape() == Shape{0, 3});
  test::expect_error<ShapeError>([] { embedding(zeros({11, 7}), index_tensor({2, 11})); }, {"[embedding]", "11"});
  test::expect_error<ShapeError>([] { embedding(zeros({11, 7}), index_tensor({-3}, DType::i32)); }, {"[embedding]", "-3"});
  test::expect_error<ShapeError>([] { embedding(zeros({11}), index_tensor({0})); }, {"[embedding]", "f32[11]"});
  test::expect_error<DTypeError>([] { embedding(zeros({11, 7}), index_tensor({0}, DType::f32)); }, {"[embedding]"});
}

TEST_CASE("scatter_add: repeated indices accumulate, every dim, strided base and src") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i32, DType::i64}) {
    const Shape bs{5, 7, 3};
    for (Layout l : {Layout::contiguous, Layout::transposed, Layout::stepped, Layout::permuted}) {
      Input base = make_input(bs, dt, l, [](int64_t n) { return uniform_int(n, -20, 20, 151); });
      for (int64_t dim = -3; dim < 3; ++dim) {
        const int64_t d = dim < 0 ? dim + 3 : dim;
        const std::vector<double> idx = {1, static_cast<double>(bs[d] - 1), 1, 0, 1};
        Shape ss = bs;
        ss[d] = static_cast<int64_t>(idx.size());
        Input src = make_input(ss, dt, l == Layout::contiguous ? Layout::narrowed : Layout::contiguous,
                               [](int64_t n) { return uniform_int(n, -20, 20, 152); });
        for (DType it : {DType::i64, DType::i32}) {
          const std::string what = std::string("scatter_add ") + dtype_name(dt) + " " + base.layout + " dim " +
                                   std::to_string(dim) + " " + dtype_name(it);
          Tensor y = scatter_add(base.t, dim, index_tensor(idx, it), src.t);
          REQUIRE_MESSAGE(y.shape() == bs, what);
          std::vector<double> want = base.values;
          for_each_index(ss, [&](const std::vector<int64_t>& i) {
            std::vector<int64_t> o = i;
            o[d] = static_cast<int64_t>(idx[i[d]]);
            want[linear(bs, o)] += src.values[linear(ss, i)];
          });
          // Small integers: every partial sum is exact in every dtype here (|sum| < 128 < 2^8).
          expect_equal(read(y), want, what);
          CHECK_MESSAGE(read(base.t) == base.values, what, ": base must not change");
        }
      }
    }
  }
  Tensor b = zeros({5, 7});
  test::expect_error<ShapeError>([&] { scatter_add(b, 0, index_tensor({0, 5}), zeros({2, 7})); }, {"[scatter_add]", "5"});
  test::expect_error<ShapeError>([&] { scatter_add(b, 0, index_tensor({0, 1}), zeros({3, 7})); },
                                 {"[scatter_add]", "[2, 7]", "f32[3, 7]"});
  test::expect_error<DTypeError>([&] { scatter_add(b, 0, index_tensor({0}), zeros({1, 7}, DType::f64)); },
                                 {"[scatter_add]", "f64[1, 7]"});
  test::expect_error<DTypeError>([&] { scatter_add(b, 0, index_tensor({0}, DType::u8), zeros({1, 7})); }, {"[scatter_add]"});
}

TEST_CASE("concat and stack: every dim, strided and empty pieces, every dtype") {
  for (DType dt : all_dtypes()) {
    Input a = make_input({5, 7, 3}, dt, Layout::transposed, [](int64_t n) { return uniform_int(n, 0, 100, 161); });
    for (int64_t dim = -3; dim < 3; ++dim) {
      const int64_t d = dim < 0 ? dim + 3 : dim;
      Shape sb = {5, 7, 3}, se = {5, 7, 3};
      sb[d] = 2;
      se[d] = 0;
      Input b = make_input(sb, dt, Layout::stepped, [](int64_t n) { return uniform_int(n, 0, 100, 162); });
      Tensor e = zeros(se, dt);
      const std::string what = std::string("concat ") + dtype_name(dt) + " dim " + std::to_string(dim);
      Tensor y = concat({a.t, e, b.t, a.t}, dim);
      Shape os = {5, 7, 3};
      os[d] = 5 * (d == 0) + 7 * (d == 1) + 3 * (d == 2);
      os[d] = 2 * os[d] + 2;
      REQUIRE_MESSAGE(y.shape() == os, what);
      std::vector<double> want;
      const int64_t na = a.t.size(d);
      for_each_index(os, [&](const std::vector<int64_t>& i) {
        std::vector<int64_t> j = i;
        if (i[d] < na) want.push_back(a.values[linear(a.t.shape(), j)]);
        else if (i[d] < na + 2) { j[d] -= na; want.push_back(b.values[linear(sb, j)]); }
        else { j[d] -= na + 2; want.push_back(a.values[linear(a.t.shape(), j)]); }
      });
      expect_equal(read(y), want, what);
    }
    // stack inserts a new dim at every position (including the end and negative positions).
    Input p = make_input({3, 4}, dt, Layout::transposed, [](int64_t n) { return uniform_int(n, 0, 100, 163); });
    Input q = make_input({3, 4}, dt, Layout::broadcast, [](int64_t n) { return uniform_int(n, 0, 100, 164); });
    for (int64_t dim = -3; dim < 3; ++dim) {
      const int64_t d = dim < 0 ? dim + 3 : dim;
      Tensor y = stack({p.t, q.t}, dim);
      Shape os = {3, 4};
      os.insert(os.begin() + d, 2);
      REQUIRE(y.shape() == os);
      std::vector<double> want;
      for_each_index(os, [&](const std::vector<int64_t>& i) {
        std::vector<int64_t> j = i;
        j.erase(j.begin() + d);
        want.push_back((i[d] == 0 ? p.values : q.values)[linear({3, 4}, j)]);
      });
      expect_equal(read(y), want, std::string("stack ") + dtype_name(dt) + " dim " + std::to_string(dim));
    }
  }
  CHECK(read(concat({from_vector({1, 2}, {2})}, 0)) == std::vector<double>{1, 2});
  test::expect_error<ShapeError>([] { concat({zeros({2, 3}), zeros({2, 4})}, 0); }, {"[concat]", "f32[2, 4]", "f32[2, 3]"});
  test::expect_error<ShapeError>([] { concat({zeros({2, 3}), zeros({2, 3}, DType::f16)}, 0); }, {"[concat]", "f16[2, 3]"});
  test::expect_error<ShapeError>([] { concat({zeros({2, 3}), zeros({3})}, 0); }, {"[concat]"});
  test::expect_error<ShapeError>([] { concat({}, 0); }, {"[concat]"});
  test::expect_error<ShapeError>([] { stack({zeros({2, 3}), zeros({3, 2})}, 0); }, {"[stack]", "[3, 2]"});
  test::expect_error<ShapeError>([] { stack({zeros({2, 3})}, 3); }, {"[stack]"});
}

TEST_CASE("topk: descending, ties to the lower index, NaN first, strided rows") {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i8, DType::i64}) {
    for (Layout l : all_layouts()) {
      // Few distinct values so ties are common.
      Input x = make_input({5, 3, 13}, dt, l, [](int64_t n) { return uniform_int(n, -5, 5, 171); });
      if (!x.t.defined()) continue;
      for (int64_t k : {int64_t{0}, int64_t{1}, int64_t{4}, int64_t{13}}) {
        const std::string what = std::string("topk ") + dtype_name(dt) + " " + x.layout + " k " + std::to_string(k);
        auto [v, i] = topk(x.t, k);
        REQUIRE_MESSAGE(v.shape() == Shape({5, 3, k}), what);
        REQUIRE_MESSAGE(i.shape() == Shape({5, 3, k}), what);
        CHECK(v.dtype() == dt);
        CHECK(i.dtype() == DType::i64);
        std::vector<double> wv, wi;
        for (int64_t r = 0; r < 15; ++r) {
          std::vector<int64_t> order(13);
          std::iota(order.begin(), order.end(), 0);
          // Stable sort by descending value keeps equal values in index order.
          std::stable_sort(order.begin(), order.end(),
                           [&](int64_t p, int64_t q) { return x.values[r * 13 + p] > x.values[r * 13 + q]; });
          for (int64_t j = 0; j < k; ++j) {
            wv.push_back(x.values[r * 13 + order[j]]);
            wi.push_back(static_cast<double>(order[j]));
          }
        }
        expect_equal(read(v), wv, what + " values");
        expect_equal(read(i), wi, what + " indices");
      }
    }
  }
  // NaN ranks above every number (as torch.topk does); -inf below.
  auto [v, i] = topk(from_vector({1, NAN, -INFINITY, 5, NAN}, {5}), 4);
  const std::vector<double> vv = read(v);
  CHECK(std::isnan(vv[0]));
  CHECK(std::isnan(vv[1]));
  CHECK(vv[2] == 5);
  CHECK(vv[3] == 1);
  CHECK(read(i) == std::vector<double>{1, 4, 3, 0});
  test::expect_error<ShapeError>([] { topk(zeros({5, 7}), 8); }, {"[topk]", "8", "f32[5, 7]"});
  test::expect_error<ShapeError>([] { topk(zeros({5, 7}), -1); }, {"[topk]"});
  test::expect_error<ShapeError>([] { topk(scalar_tensor(1), 1); }, {"[topk]"});
}

TEST_CASE("index ops on zero-sized tensors") {
  CHECK(index_select(zeros({0, 7}), 1, index_tensor({1, 2})).shape() == Shape{0, 2});
  CHECK(index_select(zeros({5, 0}), 0, index_tensor({4, 0})).shape() == Shape{2, 0});
  CHECK(scatter_add(zeros({5, 0}), 0, index_tensor({1}), zeros({1, 0})).shape() == Shape{5, 0});
  CHECK(read(scatter_add(ones({3}), 0, index_tensor({}), zeros({0}))) == std::vector<double>{1, 1, 1});
  CHECK(concat({zeros({0, 3}), zeros({0, 3})}, 0).shape() == Shape{0, 3});
  CHECK(stack({zeros({0}), zeros({0})}, 1).shape() == Shape{0, 2});
  auto [v, i] = topk(zeros({0, 5}), 2);
  CHECK(v.shape() == Shape{0, 2});
  CHECK(i.shape() == Shape{0, 2});
  CHECK(topk(zeros({4, 0}), 0).first.shape() == Shape{4, 0});
}
