#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/backend.h"

namespace arq {
namespace {

int default_threads() {
  if (const char* s = std::getenv("ARQ_NUM_THREADS")) {
    const int n = std::atoi(s);
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int n) {
    stop();
    stopping_ = false;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { loop(i); });
  }

  // Run fn(chunk) for chunk in [0, n_chunks) over the pool; returns when all are done.
  void run(int64_t n_chunks, const std::function<void(int64_t)>& fn) {
    std::unique_lock<std::mutex> job_lock(job_mutex_);  // one parallel region at a time
    {
      std::lock_guard<std::mutex> g(m_);
      fn_ = &fn;
      n_chunks_ = n_chunks;
      next_.store(0);
      pending_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    cv_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void work() {
    for (int64_t c; (c = next_.fetch_add(1)) < n_chunks_;) (*fn_)(c);
  }
  void loop(int) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      work();
      {
        std::lock_guard<std::mutex> g(m_);
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }
  void stop() {
    {
      std::lock_guard<std::mutex> g(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex m_, job_mutex_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t n_chunks_ = 0;
  std::atomic<int64_t> next_{0};
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
};

// oneDNN (Debian's build) runs its GEMMs on OpenMP threads, which otherwise default to every
// core whatever ARQ_NUM_THREADS says. Weak: resolves only when libgomp is linked in.
extern "C" void omp_set_num_threads(int) __attribute__((weak));

void set_openmp_threads(int n) {
  if (omp_set_num_threads) omp_set_num_threads(n);
}

Pool& pool() {
  static Pool p = [] {
    const int n = default_threads();
    set_openmp_threads(n);
    return Pool(n);
  }();
  return p;
}

thread_local bool t_in_parallel = false;

}  // namespace

int num_threads() { return pool().size(); }
void set_num_threads(int n) {
  pool().resize(std::max(1, n));
  set_openmp_threads(std::max(1, n));
}

namespace cpu {

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int threads = num_threads();
  if (threads == 1 || n <= grain || t_in_parallel) {
    fn(0, n);
    return;
  }
  const int64_t max_chunks = std::min<int64_t>((n + grain - 1) / grain, static_cast<int64_t>(threads) * 4);
  const int64_t chunk = (n + max_chunks - 1) / max_chunks;
  const int64_t n_chunks = (n + chunk - 1) / chunk;
  pool().run(n_chunks, [&](int64_t c) {
    t_in_parallel = true;
    const int64_t b = c * chunk;
    fn(b, std::min(n, b + chunk));
    t_in_parallel = false;
  });
}

}  // namespace cpu
}  // namespace arq
