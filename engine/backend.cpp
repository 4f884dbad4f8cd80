#include "engine/backend.h"

namespace arq {

const char* unary_name(UnaryOp op) {
  static const char* names[] = {"neg", "abs", "exp", "log", "sqrt", "rsqrt", "sigmoid", "silu",
                                "tanh", "sign", "round", "floor", "pow", "clamp", "affine"};
  return names[static_cast<int>(op)];
}

const char* binary_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "minimum", "maximum", "pow",
                                "eq", "ne", "lt", "le", "gt", "ge"};
  return names[static_cast<int>(op)];
}

const char* reduce_name(ReduceOp op) {
  static const char* names[] = {"sum", "mean", "max", "min", "argmax", "sum_squares"};
  return names[static_cast<int>(op)];
}

namespace {
Backend* g_backend_override[2] = {nullptr, nullptr};   // by DeviceType; test/benchmark only
}  // namespace

void set_backend_override(DeviceType t, Backend* b) { g_backend_override[static_cast<int>(t)] = b; }

Backend& backend_for(const Device& d) {
  if (Backend* o = g_backend_override[static_cast<int>(d.type)]) return *o;
  if (d.is_cpu()) return cpu_backend();
  return cuda_backend();
}

}  // namespace arq
