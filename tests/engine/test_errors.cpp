// User-caused errors across the op builders: the right arq::Error subclass, a message that
// names the op in brackets and every shape involved. (Op-specific error cases live next to the
// op's tests; this file holds the cross-cutting ones.)
#include <doctest/doctest.h>

#include "engine/ops.h"
#include "tests/engine/test_util.h"

using namespace arq;
using test::expect_error;

TEST_CASE("errors: binary ops name the op, both dtypes and both shapes") {
  const Tensor a = zeros({5, 7}), h = zeros({5, 7}, DType::f16), c = zeros({3});
  expect_error<DTypeError>([&] { add(a, h); }, {"[add]", "f32[5, 7] cpu", "f16[5, 7] cpu"});
  expect_error<DTypeError>([&] { a* h; }, {"[mul]"});
  expect_error<DTypeError>([&] { maximum(a, h); }, {"[maximum]"});
  expect_error<DTypeError>([&] { lt(h, a); }, {"[lt]", "f16[5, 7]", "f32[5, 7]"});
  expect_error<ShapeError>([&] { add(a, c); }, {"[add] cannot broadcast", "f32[5, 7] cpu", "f32[3] cpu"});
  expect_error<ShapeError>([&] { sub(c, a); }, {"[sub]", "[3]", "[5, 7]"});
  expect_error<ShapeError>([&] { div(zeros({2, 5, 7}), zeros({3, 1, 7})); }, {"[div]", "[2, 5, 7]", "[3, 1, 7]"});
  expect_error<ShapeError>([&] { eq(zeros({0}), zeros({2})); }, {"[eq]"});
  expect_error<DTypeError>([&] { pow(zeros({2}, DType::i32), zeros({2}, DType::i32)); }, {"[pow]", "i32"});
  expect_error<ShapeError>([&] { add(Tensor(), a); }, {"[add]", "undefined"});
  // broadcast_shapes itself names the op it was given.
  expect_error<ShapeError>([] { broadcast_shapes({4, 2}, {3}, "my_op"); }, {"[my_op]", "[4, 2]", "[3]"});
  CHECK(broadcast_shapes({5, 1, 7}, {3, 1}, "x") == Shape{5, 3, 7});
  CHECK(broadcast_shapes({}, {2, 0}, "x") == Shape{2, 0});
  CHECK(broadcast_shapes({1, 0}, {4, 1}, "x") == Shape{4, 0});
}

TEST_CASE("errors: every user error derives from arq::Error") {
  // Catching the base class is how apps report failures; none may escape as another type.
  const std::function<void()> throwers[] = {
      [] { add(zeros({2}), zeros({3})); },
      [] { matmul(zeros({2, 3}), zeros({4, 5})); },
      [] { rms_norm(zeros({2, 3}), zeros({4}), 1e-6); },
      [] { topk(zeros({3}), 4); },
      [] { index_select(zeros({3}), 0, from_vector({3}, {1}, DType::i64)); },
      [] { zeros({3}).view({4}); },
      [] { exp(zeros({3}, DType::i8)); },
      [] { dtype_from_name("q4"); },
      [] { Device::parse("tpu"); },
  };
  for (const auto& f : throwers) CHECK_THROWS_AS(f(), Error);
}
