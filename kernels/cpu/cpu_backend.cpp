// The CPU Backend: forwards each interface method to its kernel file.
#include "kernels/cpu/cpu_kernels.h"

namespace arq {
namespace {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  void copy(const Tensor& src, Tensor& dst) override {
    ARQ_CHECK(src.device().is_cpu() && dst.device().is_cpu(), DeviceError, "[copy] cpu backend asked to copy ",
              src.str(), " -> ", dst.str());
    cpu::copy(src, dst);
  }
  void fill(Tensor& dst, double value) override { cpu::fill(dst, value); }
  void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) override { cpu::unary(op, x, out, p0, p1); }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override { cpu::binary(op, a, b, out); }
  void where(const Tensor& c, const Tensor& a, const Tensor& b, Tensor& out) override { cpu::where(c, a, b, out); }
  void reduce(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out) override { cpu::reduce(op, x, axis, out); }
  void matmul(const Tensor& a, const Tensor& b, Tensor& out) override { cpu::matmul(a, b, out); }
  void softmax(const Tensor& x, Tensor& out, bool log) override { cpu::softmax(x, out, log); }
  void rms_norm(const Tensor& x, const Tensor& w, double eps, Tensor& out) override { cpu::rms_norm(x, w, eps, out); }
  void rope(const Tensor& x, const Tensor& c, const Tensor& s, RopeStyle st, Tensor& out) override {
    cpu::rope(x, c, s, st, out);
  }
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) override {
    cpu::index_select(x, dim, index, out);
  }
  void index_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    cpu::index_add(out, dim, index, src);
  }
  void topk(const Tensor& x, int64_t k, Tensor& values, Tensor& indices) override { cpu::topk(x, k, values, indices); }
  void arange(double start, double step, Tensor& out) override { cpu::arange(start, step, out); }
  void random(RandomKind kind, uint64_t seed, double a, double b, Tensor& out) override {
    cpu::random(kind, seed, a, b, out);
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend b;
  return b;
}

}  // namespace arq
