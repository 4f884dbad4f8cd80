// How one [r, c] matrix of a [B, r, c] batch view is laid out, for BLAS-style calls:
// row-major ('N', ld = row stride) or column-major ('T', ld = column stride). A layout that is
// neither (ok == false) must be made contiguous before the call.
#pragma once

#include <algorithm>

#include "engine/tensor.h"

namespace arq {

struct MatLayout {
  char trans = 'N';
  int64_t ld = 0;
  bool ok = false;
};

inline MatLayout mat_layout(const Tensor& t) {
  const int64_t r = t.size(1), c = t.size(2), sr = t.stride(1), sc = t.stride(2);
  if ((sc == 1 || c == 1) && (sr >= std::max<int64_t>(c, 1) || r == 1))
    return {'N', r == 1 ? std::max<int64_t>(c, 1) : sr, true};
  if ((sr == 1 || r == 1) && (sc >= std::max<int64_t>(r, 1) || c == 1))
    return {'T', c == 1 ? std::max<int64_t>(r, 1) : sc, true};
  return {};
}

}  // namespace arq
