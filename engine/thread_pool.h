// A persistent fork-join thread pool for the matmul and attention kernels.
//
// `ThreadPool(n)` starts n - 1 workers once. Two ways to hand out work:
//
//   * `ParallelFor(chunks, fn)` calls fn(c) once for every c in [0, chunks),
//     on whichever threads get there first; the calling thread works too and
//     the call returns as soon as every chunk is done. A worker that is
//     descheduled (the machine is shared, or busy with other replicas) does
//     not stall the call: the others take its chunks. The kernels use this.
//   * `Run(fn)` calls fn(t, n) on every thread t in [0, n) — the calling
//     thread is thread 0 — and returns when all have finished (static
//     splits; every thread must take part).
//
// Workers spin briefly after each job (a decode step issues dozens of jobs
// back to back) and then sleep on a futex, so an idle pool costs no CPU.
//
// Thread-safety: `Run`/`ParallelFor` must not be called concurrently or
// re-entered from inside a job; one driver thread (the decoder's Step) owns a
// pool.
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
  void ParallelFor(int64_t chunks,
                   const std::function<void(int64_t chunk)>& fn);

 private:
  void WorkerLoop(int index);
  // Claims the next chunk of job `seq`, or returns -1.
  int64_t Claim(uint32_t seq);

  int size_;
  std::vector<std::thread> workers_;
  // The current job, written by the driver before `generation_` moves.
  std::atomic<bool> dynamic_{false};
  std::atomic<const std::function<void(int, int)>*> job_{nullptr};
  std::atomic<const std::function<void(int64_t)>*> chunk_fn_{nullptr};
  std::atomic<int64_t> chunks_{0};
  uint32_t seq_ = 0;
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};  // Run: workers still to finish
  alignas(64) std::atomic<uint64_t> ticket_{
      0};                                 // ParallelFor: seq << 32 | next chunk
  alignas(64) std::atomic<int> busy_{0};  // ParallelFor: workers inside the job
  std::atomic<bool> stop_{false};
};

}  // namespace hangar::engine

#endif  // HANGAR_ENGINE_THREAD_POOL_H_
