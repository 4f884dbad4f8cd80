// CPU kernels behind the Backend interface (engine/backend.h); one file per op family.
#pragma once

#include "engine/backend.h"

namespace arq::cpu {

// elementwise.cpp
void copy(const Tensor& src, Tensor& dst);
void fill(Tensor& dst, double value);
void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1);
void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out);
void where(const Tensor& cond, const Tensor& a, const Tensor& b, Tensor& out);
// reduce.cpp
void reduce(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out);
void softmax(const Tensor& x, Tensor& out, bool log);
void rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor& out);
// matmul.cpp
void matmul(const Tensor& a, const Tensor& b, Tensor& out);
// nn.cpp
void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeStyle style, Tensor& out);
void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out);
void index_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& src);
void topk(const Tensor& x, int64_t k, Tensor& values, Tensor& indices);
void arange(double start, double step, Tensor& out);
void random(RandomKind kind, uint64_t seed, double a, double b, Tensor& out);

}  // namespace arq::cpu
