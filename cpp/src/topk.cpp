#include "adrank/topk.hpp"

#include <algorithm>
#include <string>

#include "adrank/check.hpp"
#include "adrank/parallel.hpp"
#include "topk_internal.hpp"

namespace adrank {
namespace topk_internal {

void sort_best_first(Key* begin, Key* end) { std::sort(begin, end, std::greater<Key>()); }

void check_rows(const ScoreRows& rows) {
  ADRANK_CHECK_VALUE(rows.scores != nullptr || rows.size == 0, "scores must not be null");
  if (rows.offsets == nullptr) {
    ADRANK_CHECK_VALUE(rows.num_rows * rows.row_length == rows.size, "scores must hold ",
                       rows.num_rows, " x ", rows.row_length, " values, got ", rows.size);
    ADRANK_CHECK_VALUE(rows.num_rows == 0 || rows.row_length <= kMaxIndex,
                       "a request holds at most ", kMaxIndex, " candidates, got ", rows.row_length);
    return;
  }
  const std::int64_t* offsets = rows.offsets;
  ADRANK_CHECK_VALUE(offsets[0] == 0, "offsets must start at 0, got ", offsets[0]);
  for (std::size_t r = 0; r < rows.num_rows; ++r) {
    ADRANK_CHECK_VALUE(offsets[r + 1] >= offsets[r], "offsets must not decrease, got offsets[", r,
                       "] = ", offsets[r], " > offsets[", r + 1, "] = ", offsets[r + 1]);
    ADRANK_CHECK_VALUE(static_cast<std::uint64_t>(offsets[r + 1] - offsets[r]) <= kMaxIndex,
                       "a request holds at most ", kMaxIndex, " candidates, got ",
                       offsets[r + 1] - offsets[r], " in request ", r);
  }
  ADRANK_CHECK_VALUE(static_cast<std::uint64_t>(offsets[rows.num_rows]) == rows.size,
                     "offsets must end at len(scores) = ", rows.size, ", got ",
                     offsets[rows.num_rows]);
}

void for_each_row(const ScoreRows& rows,
                  const std::function<void(std::size_t, std::size_t, std::size_t)>& fn) {
  const std::size_t mean_length = rows.num_rows == 0 ? 0 : rows.size / rows.num_rows;
  // Enough candidates per chunk to amortize waking a thread.
  const std::size_t grain = std::max<std::size_t>(1, 16384 / std::max<std::size_t>(mean_length, 1));
  parallel_for(rows.num_rows, grain, [&](std::size_t first, std::size_t last) {
    for (std::size_t r = first; r < last; ++r) {
      if (rows.offsets == nullptr) {
        fn(r, r * rows.row_length, rows.row_length);
      } else {
        const auto begin = static_cast<std::size_t>(rows.offsets[r]);
        fn(r, begin, static_cast<std::size_t>(rows.offsets[r + 1]) - begin);
      }
    }
  });
}

}  // namespace topk_internal

using namespace topk_internal;

void topk(const ScoreRows& rows, std::size_t k, float* values, std::int64_t* indices) {
  check_rows(rows);
  for_each_row(rows, [&](std::size_t r, std::size_t begin, std::size_t n) {
    thread_local std::vector<Key> keys;
    const float* x = rows.scores + begin;
    float* row_values = values + r * k;
    std::int64_t* row_indices = indices + r * k;
    if (k == 0) return;
    collect_best(
        x, n, std::min(k, n), -std::numeric_limits<float>::infinity(), kNoBound,
        [](std::size_t) { return true; }, keys);
    write_answer(x, keys.data(), keys.size(), k, row_values, row_indices);
  });
}

}  // namespace adrank
