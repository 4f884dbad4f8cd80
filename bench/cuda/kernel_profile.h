// Device time per engine kernel, for the CUDA benchmarks: wrappers around the CUDA backend and the
// fused / qdq / attention-row / flash-attention kernels, installed with the engine's
// test/benchmark override hooks, record a cudaEvent pair on the backend's stream around every
// call while the profile is on, under a key naming the op, its dtype and its output shape. After
// one synchronize, report() prints the keys by total device time with calls, ms, the bytes the
// call's operands span and the resulting GB/s (matmuls: TFLOP/s), and the sum next to the wall
// time of the profiled interval (the difference is launch gaps and host work).
//
//   bench::KernelProfile prof;            // installs the wrappers; uninstalls in its destructor
//   prof.start(); ... one iteration ...; prof.stop();
//   prof.report(20);
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "engine/attention_rows.h"
#include "engine/backend.h"
#include "engine/flash_attention.h"
#include "engine/fused.h"
#include "engine/qdq_fused.h"
#include "kernels/cuda/cuda_api.h"

namespace arq::bench {

// Bytes of the memory a view spans (broadcast dims once).
inline double span_bytes(const Tensor& t) {
  if (!t.defined() || t.numel() == 0) return 0;
  double n = 1;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.stride(d) != 0) n *= static_cast<double>(t.size(d));
  return n * static_cast<double>(t.itemsize());
}

class KernelTimer {
 public:
  ~KernelTimer() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  bool on = false;
  // A token for end(): calls may nest (each is timed on its own).
  size_t begin() {
    if (!on) return kOff;
    const size_t i = calls_.size();
    while (events_.size() < 2 * i + 2) {
      cudaEvent_t e;
      if (cudaEventCreate(&e) != cudaSuccess) return kOff;
      events_.push_back(e);
    }
    calls_.push_back({"(unfinished)", 0, 0});
    cudaEventRecord(events_[2 * i], stream());
    return i;
  }
  void end(size_t i, std::string key, double bytes, double flops = 0) {
    if (i == kOff) return;
    cudaEventRecord(events_[2 * i + 1], stream());
    calls_[i] = {std::move(key), bytes, flops};
  }
  struct Row {
    std::string key;
    double calls = 0, ms = 0, bytes = 0, flops = 0;
  };
  // Elapsed time per key (synchronizes), largest first; clears the recorded calls.
  std::vector<Row> collect() {
    cudaDeviceSynchronize();
    std::map<std::string, Row> by;
    for (size_t i = 0; i < calls_.size(); ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, events_[2 * i], events_[2 * i + 1]);
      Row& r = by[calls_[i].key];
      r.key = calls_[i].key;
      r.calls += 1;
      r.ms += ms;
      r.bytes += calls_[i].bytes;
      r.flops += calls_[i].flops;
    }
    calls_.clear();
    std::vector<Row> rows;
    for (auto& [k, r] : by) rows.push_back(r);
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.ms > b.ms; });
    return rows;
  }

 private:
  static constexpr size_t kOff = ~size_t{0};
  static cudaStream_t stream() { return static_cast<cudaStream_t>(cuda::stream_handle(0)); }
  struct Call {
    std::string key;
    double bytes, flops;
  };
  std::vector<cudaEvent_t> events_;
  std::vector<Call> calls_;
};

inline std::string shape_of(const Tensor& t) { return t.defined() ? t.str() : "-"; }
inline std::string dt(const Tensor& t) { return t.defined() ? dtype_name(t.dtype()) : "-"; }

class TimedBackend final : public Backend {
 public:
  TimedBackend(Backend& real, KernelTimer& t) : r_(real), t_(t) {}
  const char* name() const override { return r_.name(); }
  void copy(const Tensor& src, Tensor& dst) override {
    const size_t tok = t_.begin();
    r_.copy(src, dst);
    const char* kind = src.device() != dst.device() ? "copy host<->device"
                       : src.dtype() != dst.dtype() ? "cast"
                       : src.is_contiguous() && dst.is_contiguous() ? "copy" : "copy strided";
    t_.end(tok, std::string(kind) + " " + dt(src) + "->" + dt(dst) + " " + shape_of(dst), span_bytes(src) + span_bytes(dst));
  }
  void fill(Tensor& dst, double value) override {
    const size_t tok = t_.begin();
    r_.fill(dst, value);
    t_.end(tok, "fill " + dt(dst) + " " + shape_of(dst), span_bytes(dst));
  }
  void unary(UnaryOp op, const Tensor& x, Tensor& out, double p0, double p1) override {
    const size_t tok = t_.begin();
    r_.unary(op, x, out, p0, p1);
    t_.end(tok, std::string(unary_name(op)) + " " + dt(x) + " " + shape_of(out), span_bytes(x) + span_bytes(out));
  }
  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override {
    const size_t tok = t_.begin();
    r_.binary(op, a, b, out);
    t_.end(tok, std::string(binary_name(op)) + " " + dt(a) + " " + shape_of(out),
           span_bytes(a) + span_bytes(b) + span_bytes(out));
  }
  void where(const Tensor& c, const Tensor& a, const Tensor& b, Tensor& out) override {
    const size_t tok = t_.begin();
    r_.where(c, a, b, out);
    t_.end(tok, "where " + dt(out) + " " + shape_of(out), span_bytes(c) + span_bytes(a) + span_bytes(b) + span_bytes(out));
  }
  void reduce(ReduceOp op, const Tensor& x, int64_t axis, Tensor& out) override {
    const size_t tok = t_.begin();
    r_.reduce(op, x, axis, out);
    t_.end(tok, std::string(reduce_name(op)) + " " + dt(x) + " " + shape_of(x) + " axis " + std::to_string(axis),
           span_bytes(x) + span_bytes(out));
  }
  void matmul(const Tensor& a, const Tensor& bm, Tensor& out) override {
    const size_t tok = t_.begin();
    r_.matmul(a, bm, out);
    const double f = 2.0 * double(a.size(0)) * double(a.size(1)) * double(a.size(2)) * double(bm.size(2));
    t_.end(tok, "matmul " + dt(a) + " " + shape_of(a) + "x" + shape_of(bm), span_bytes(a) + span_bytes(bm) + span_bytes(out),
           f);
  }
  void softmax(const Tensor& x, Tensor& out, bool log) override {
    const size_t tok = t_.begin();
    r_.softmax(x, out, log);
    t_.end(tok, std::string(log ? "log_softmax " : "softmax ") + dt(x) + " " + shape_of(x), span_bytes(x) + span_bytes(out));
  }
  void rms_norm(const Tensor& x, const Tensor& w, double eps, Tensor& out) override {
    const size_t tok = t_.begin();
    r_.rms_norm(x, w, eps, out);
    t_.end(tok, "rms_norm " + dt(x) + " " + shape_of(x), span_bytes(x) + span_bytes(w) + span_bytes(out));
  }
  void rope(const Tensor& x, const Tensor& c, const Tensor& s, RopeStyle st, Tensor& out) override {
    const size_t tok = t_.begin();
    r_.rope(x, c, s, st, out);
    t_.end(tok, "rope " + dt(x) + " " + shape_of(x), span_bytes(x) + span_bytes(c) + span_bytes(s) + span_bytes(out));
  }
  void index_select(const Tensor& x, int64_t dim, const Tensor& index, Tensor& out) override {
    const size_t tok = t_.begin();
    r_.index_select(x, dim, index, out);
    t_.end(tok, "index_select " + dt(x) + " " + shape_of(out), 2 * span_bytes(out) + span_bytes(index));
  }
  void index_add(Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) override {
    const size_t tok = t_.begin();
    r_.index_add(out, dim, index, src);
    t_.end(tok, "index_add " + dt(src) + " " + shape_of(src), 3 * span_bytes(src) + span_bytes(index));
  }
  void topk(const Tensor& x, int64_t k, Tensor& v, Tensor& i) override {
    const size_t tok = t_.begin();
    r_.topk(x, k, v, i);
    t_.end(tok, "topk " + dt(x) + " " + shape_of(x), span_bytes(x) + span_bytes(v) + span_bytes(i));
  }
  void arange(double start, double step, Tensor& out) override {
    const size_t tok = t_.begin();
    r_.arange(start, step, out);
    t_.end(tok, "arange " + shape_of(out), span_bytes(out));
  }
  void random(RandomKind kind, uint64_t seed, double a, double b, Tensor& out) override {
    const size_t tok = t_.begin();
    r_.random(kind, seed, a, b, out);
    t_.end(tok, "random " + dt(out) + " " + shape_of(out), span_bytes(out));
  }
  void synchronize() override { r_.synchronize(); }

 private:
  Backend& r_;
  KernelTimer& t_;
};

class TimedFused final : public FusedKernels {
 public:
  TimedFused(FusedKernels& real, KernelTimer& t) : r_(real), t_(t) {}
  void swiglu(const Tensor& gate, const Tensor& up, Tensor& h) override {
    const size_t tok = t_.begin();
    r_.swiglu(gate, up, h);
    t_.end(tok, "swiglu fwd " + dt(gate) + " " + shape_of(gate), span_bytes(gate) + span_bytes(up) + span_bytes(h));
  }
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& g, Tensor& dgate, Tensor& dup) override {
    const size_t tok = t_.begin();
    r_.swiglu_backward(gate, up, g, dgate, dup);
    t_.end(tok, "swiglu bwd " + dt(gate) + " " + shape_of(gate),
           span_bytes(gate) + span_bytes(up) + span_bytes(g) + span_bytes(dgate) + span_bytes(dup));
  }
  void rms_norm_backward(const Tensor& x, const Tensor& w, const Tensor& g, double eps, Tensor& dx, Tensor& dw) override {
    const size_t tok = t_.begin();
    r_.rms_norm_backward(x, w, g, eps, dx, dw);
    t_.end(tok, "rms_norm bwd " + dt(x) + " " + shape_of(x),
           span_bytes(x) + span_bytes(w) + span_bytes(g) + span_bytes(dx) + span_bytes(dw));
  }
  void sign_step(Tensor& p, const Tensor& d, double lr) override {
    const size_t tok = t_.begin();
    r_.sign_step(p, d, lr);
    t_.end(tok, "sign_sgd_step " + dt(p) + " " + shape_of(p), 2 * span_bytes(p) + span_bytes(d));
  }

 private:
  FusedKernels& r_;
  KernelTimer& t_;
};

inline double qdq_in_bytes(const QdqInputs& x) {
  return span_bytes(x.wg) + span_bytes(x.wmin) + span_bytes(x.wmax) + span_bytes(x.v) + span_bytes(x.alpha) +
         span_bytes(x.beta);
}

class TimedQdq final : public QdqKernels {
 public:
  TimedQdq(QdqKernels& real, KernelTimer& t) : r_(real), t_(t) {}
  void forward(const QdqInputs& x, const QdqSpec& s, Tensor& w_hat, QdqCodes& codes) override {
    const size_t tok = t_.begin();
    r_.forward(x, s, w_hat, codes);
    t_.end(tok, "qdq fwd [" + std::to_string(s.out) + "," + std::to_string(s.in) + "]",
           qdq_in_bytes(x) + span_bytes(w_hat) + span_bytes(codes.codes));
  }
  void backward(const QdqInputs& x, const QdqSpec& s, const Tensor& g, QdqGrads& gr) override {
    const size_t tok = t_.begin();
    r_.backward(x, s, g, gr);
    t_.end(tok, "qdq bwd [" + std::to_string(s.out) + "," + std::to_string(s.in) + "]",
           qdq_in_bytes(x) + span_bytes(g) + span_bytes(gr.dv) + span_bytes(gr.dalpha) + span_bytes(gr.dbeta));
  }
  void dequantize(const Tensor& codes, const Tensor& scales, const Tensor& zeros, const Tensor& mins, const QdqSpec& s,
                  Tensor& out) override {
    const size_t tok = t_.begin();
    r_.dequantize(codes, scales, zeros, mins, s, out);
    t_.end(tok, "dequantize " + shape_of(codes), span_bytes(codes) + span_bytes(out));
  }

 private:
  QdqKernels& r_;
  KernelTimer& t_;
};

class TimedRows final : public AttentionRowsKernels {
 public:
  TimedRows(AttentionRowsKernels& real, KernelTimer& t) : r_(real), t_(t) {}
  void probs(const Tensor& scores, const Tensor& mask, const Tensor& dead, const Tensor& dp, const Tensor& d_row,
             const AttentionRowsParams& prm, Tensor& p, Tensor& ds) override {
    const size_t tok = t_.begin();
    r_.probs(scores, mask, dead, dp, d_row, prm, p, ds);
    t_.end(tok, std::string(ds.defined() ? "attention rows bwd " : "attention rows fwd ") + dt(scores),
           span_bytes(scores) + span_bytes(mask) + span_bytes(dp) + span_bytes(p) + span_bytes(ds));
  }

 private:
  AttentionRowsKernels& r_;
  KernelTimer& t_;
};

class TimedFlash final : public FlashAttentionKernels {
 public:
  TimedFlash(FlashAttentionKernels& real, KernelTimer& t) : r_(real), t_(t) {}
  bool supports(DType d, int64_t hd) const override { return r_.supports(d, hd); }
  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const FlashAttentionParams& p, Tensor& o,
               Tensor& lse) override {
    const size_t tok = t_.begin();
    r_.forward(q, k, v, p, o, lse);
    t_.end(tok, "flash attention fwd " + dt(q) + " " + shape_of(q), span_bytes(q) + span_bytes(k) + span_bytes(v) + span_bytes(o));
  }
  void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                const Tensor& dout, const FlashAttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv) override {
    const size_t tok = t_.begin();
    r_.backward(q, k, v, o, lse, dout, p, dq, dk, dv);
    t_.end(tok, "flash attention bwd " + dt(q) + " " + shape_of(q),
           span_bytes(q) + span_bytes(k) + span_bytes(v) + span_bytes(o) + span_bytes(dout) + span_bytes(dq) +
               span_bytes(dk) + span_bytes(dv));
  }

 private:
  FlashAttentionKernels& r_;
  KernelTimer& t_;
};

// Installs the timed wrappers for CUDA devices while alive.
class KernelProfile {
 public:
  KernelProfile()
      : backend_(cuda_backend(), timer_),
        fused_(cuda_fused_kernels(), timer_),
        qdq_(cuda_qdq_kernels(), timer_),
        rows_(cuda_attention_rows_kernels(), timer_),
        flash_(cuda_flash_attention_kernels(), timer_) {
    set_backend_override(DeviceType::cuda, &backend_);
    set_fused_kernels_override(DeviceType::cuda, &fused_);
    set_qdq_kernels_override(DeviceType::cuda, &qdq_);
    set_attention_rows_kernels_override(DeviceType::cuda, &rows_);
    set_flash_attention_kernels_override(DeviceType::cuda, &flash_);
  }
  ~KernelProfile() {
    set_backend_override(DeviceType::cuda, nullptr);
    set_fused_kernels_override(DeviceType::cuda, nullptr);
    set_qdq_kernels_override(DeviceType::cuda, nullptr);
    set_attention_rows_kernels_override(DeviceType::cuda, nullptr);
    set_flash_attention_kernels_override(DeviceType::cuda, nullptr);
  }
  KernelProfile(const KernelProfile&) = delete;
  KernelProfile& operator=(const KernelProfile&) = delete;

  void start() {
    cudaDeviceSynchronize();
    t0_ = std::chrono::steady_clock::now();
    timer_.on = true;
  }
  void stop() {
    cudaDeviceSynchronize();
    wall_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
    timer_.on = false;
  }
  // The `top` keys by device time, then the sum over all keys and the interval's wall time.
  void report(size_t top, const char* title) {
    const std::vector<KernelTimer::Row> rows = timer_.collect();
    double total = 0, calls = 0;
    for (const auto& r : rows) {
      total += r.ms;
      calls += r.calls;
    }
    std::printf("\n== %s: device time by kernel (%zu keys, %.0f calls) ==\n", title, rows.size(), calls);
    std::printf("%9s %6s %6s %10s  %s\n", "ms", "share", "calls", "GB/s|TF/s", "op dtype shape");
    for (size_t i = 0; i < rows.size() && i < top; ++i) {
      const auto& r = rows[i];
      const double rate = r.flops > 0 ? r.flops / (r.ms * 1e-3) / 1e12 : r.bytes / (r.ms * 1e-3) / 1e9;
      std::printf("%9.3f %5.1f%% %6.0f %9.0f%s  %s\n", r.ms, 100 * r.ms / total, r.calls, rate, r.flops > 0 ? "T" : " ",
                  r.key.c_str());
    }
    std::printf("PROFILE kernels %.2f ms in %.0f calls, wall %.2f ms (gaps and host work %.2f ms)\n", total, calls,
                wall_ms_, wall_ms_ - total);
  }

 private:
  KernelTimer timer_;
  TimedBackend backend_;
  TimedFused fused_;
  TimedQdq qdq_;
  TimedRows rows_;
  TimedFlash flash_;
  std::chrono::steady_clock::time_point t0_{};
  double wall_ms_ = 0;
};

}  // namespace arq::bench
