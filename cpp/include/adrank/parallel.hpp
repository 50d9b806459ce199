// The kernels' thread pool: one process-wide pool whose size is a setting.
//
// parallel_for(n, grain, fn) calls fn(begin, end) over [0, n) in chunks of at least `grain` items.
// The calling thread takes part; small inputs (n <= grain) and calls made while the pool is busy
// (another caller, or a nested call) run inline on the calling thread, so it never deadlocks and
// never oversubscribes. If chunks throw, the first exception is rethrown on the calling thread
// once every chunk has finished.
#pragma once

#include <cstddef>
#include <functional>

namespace adrank {

// Threads used by kernels, the caller included. Default: 1 (serving runs one request a core).
void set_num_threads(int num_threads);
int get_num_threads();

void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t begin, std::size_t end)>& fn);

}  // namespace adrank
