#include "engine/thread_pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace hangar::engine {
namespace {
inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}
constexpr int kSpinIterations = 4000;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = int(std::thread::hardware_concurrency());
  if (threads <= 0) threads = 1;
  size_ = threads;
  for (int i = 1; i < size_; ++i)
    workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  generation_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::Run(const std::function<void(int, int)>& fn) {
  if (size_ == 1) {
    fn(0, 1);
    return;
  }
  dynamic_.store(false);
  job_.store(&fn);
  pending_.store(size_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  generation_.notify_all();
  fn(0, size_);
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0) {
    if (++spins < kSpinIterations) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

int64_t ThreadPool::Claim(uint32_t seq) {
  uint64_t t = ticket_.load(std::memory_order_seq_cst);
  while (true) {
    if (uint32_t(t >> 32) != seq ||
        int64_t(t & 0xffffffffu) >= chunks_.load(std::memory_order_relaxed)) {
      return -1;
    }
    if (ticket_.compare_exchange_weak(t, t + 1, std::memory_order_seq_cst))
      return int64_t(t & 0xffffffffu);
  }
}

void ThreadPool::ParallelFor(int64_t chunks,
                             const std::function<void(int64_t)>& fn) {
  if (size_ == 1 || chunks <= 1) {
    for (int64_t c = 0; c < chunks; ++c) fn(c);
    return;
  }
  const uint32_t seq = ++seq_;
  dynamic_.store(true);
  chunk_fn_.store(&fn);
  chunks_.store(chunks, std::memory_order_relaxed);
  ticket_.store(uint64_t(seq) << 32, std::memory_order_seq_cst);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  generation_.notify_all();
  for (int64_t c; (c = Claim(seq)) >= 0;) fn(c);
  // Every chunk is claimed; wait for the workers still running one. A
  // worker that has not started yet will find nothing left to claim.
  int spins = 0;
  while (busy_.load(std::memory_order_seq_cst) != 0) {
    if (++spins < kSpinIterations) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::WorkerLoop(int index) {
  // Generation 0 is the state at construction: a job published before this
  // thread got scheduled must still be run by it.
  uint32_t seen = 0;
  while (true) {
    int spins = 0;
    uint32_t g;
    while ((g = generation_.load(std::memory_order_acquire)) == seen) {
      if (++spins < kSpinIterations) {
        CpuRelax();
      } else {
        generation_.wait(seen, std::memory_order_acquire);
      }
    }
    if (stop_.load()) return;
    // Read a consistent snapshot of the newest job. A static job cannot
    // change under us (the driver waits for every worker); a dynamic one
    // may finish and be replaced, which the ticket's sequence detects.
    bool dynamic;
    uint32_t seq;
    while (true) {
      g = generation_.load(std::memory_order_seq_cst);
      dynamic = dynamic_.load();
      seq = uint32_t(ticket_.load(std::memory_order_seq_cst) >> 32);
      if (generation_.load(std::memory_order_seq_cst) == g) break;
    }
    seen = g;
    if (stop_.load()) return;
    if (!dynamic) {
      (*job_.load())(index, size_);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
      continue;
    }
    busy_.fetch_add(1, std::memory_order_seq_cst);
    const std::function<void(int64_t)>* fn = chunk_fn_.load();
    for (int64_t c; (c = Claim(seq)) >= 0;) (*fn)(c);
    busy_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

}  // namespace hangar::engine
