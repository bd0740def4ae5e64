// A persistent fork-join thread pool for the matmul and attention kernels.
//
// `ThreadPool(n)` starts n - 1 workers once; `Run(fn)` calls fn(t, n) on
// every thread t in [0, n) — the calling thread is thread 0 — and returns
// when all have finished. Workers spin briefly after each job (a decode step
// issues dozens of jobs back to back) and then sleep on a futex, so an idle
// pool costs no CPU.
//
// Callers split work statically, typically by output rows:
//
//   pool.Run([&](int t, int n) {
//     int64_t begin = rows * t / n, end = rows * (t + 1) / n;
//     ...
//   });
//
// Thread-safety: `Run` must not be called concurrently or re-entered from
// inside a job; one driver thread (the decoder's Step) owns a pool.
#ifndef HANGAR_ENGINE_THREAD_POOL_H_
#define HANGAR_ENGINE_THREAD_POOL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace hangar::engine {

class ThreadPool {
 public:
  // `threads` <= 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }
  void Run(const std::function<void(int thread, int threads)>& fn);

 private:
  void WorkerLoop(int index);

  int size_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_THREAD_POOL_H_
