#include "adrank/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "adrank/check.hpp"

namespace adrank {
namespace {

// Workers sleep on a condition variable and wake for each job "generation". A job is a chunk
// counter that the caller and the workers drain together.
class ThreadPool {
 public:
  ~ThreadPool() { resize(1); }

  void resize(int num_threads) {
    std::lock_guard<std::mutex> busy(run_mutex_);
    stop_workers();
    num_threads_ = num_threads;
    for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  int num_threads() const { return num_threads_; }

  void run(std::size_t n, std::size_t grain,
           const std::function<void(std::size_t, std::size_t)>& fn) {
    if (n == 0) return;
    grain = std::max<std::size_t>(grain, 1);
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (!busy.owns_lock() || workers_.empty() || n <= grain) {
      fn(0, n);
      return;
    }
    const std::size_t max_chunks = static_cast<std::size_t>(num_threads_) * 4;
    const std::size_t chunk = std::max(grain, (n + max_chunks - 1) / max_chunks);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      n_ = n;
      chunk_ = chunk;
      next_.store(0);
      active_ = workers_.size();
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    drain();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return active_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void drain() {
    for (;;) {
      const std::size_t begin = next_.fetch_add(chunk_);
      if (begin >= n_) return;
      try {
        (*fn_)(begin, std::min(n_, begin + chunk_));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }

  void worker_loop() {
    std::size_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      drain();
      std::lock_guard<std::mutex> lock(mutex_);
      if (--active_ == 0) done_.notify_one();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
    stopping_ = false;
  }

  std::mutex run_mutex_;  // one job at a time; held by the caller for the whole job
  std::mutex mutex_;      // guards the job description and the counters below
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  int num_threads_ = 1;
  bool stopping_ = false;
  std::size_t generation_ = 0;
  std::size_t active_ = 0;
  const std::function<void(std::size_t, std::size_t)>* fn_ = nullptr;
  std::size_t n_ = 0;
  std::size_t chunk_ = 1;
  std::atomic<std::size_t> next_{0};
  std::exception_ptr error_;
};

ThreadPool& pool() {
  static ThreadPool instance;
  return instance;
}

}  // namespace

void set_num_threads(int num_threads) {
  ADRANK_CHECK_VALUE(num_threads >= 1 && num_threads <= 1024,
                     "num_threads must be in [1, 1024], got ", num_threads);
  if (num_threads != pool().num_threads()) pool().resize(num_threads);
}

int get_num_threads() { return pool().num_threads(); }

void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn) {
  pool().run(n, grain, fn);
}

}  // namespace adrank
