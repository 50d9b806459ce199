#include "adrank/topk.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "adrank/check.hpp"
#include "adrank/parallel.hpp"
#include "topk_internal.hpp"

namespace adrank {
namespace topk_internal {

Key mth_largest(const Key* keys, std::size_t n, std::size_t m, std::vector<Key>& scratch) {
  if (n <= 256) {  // too few keys to pay for clearing and walking the radix tables
    scratch.assign(keys, keys + n);
    std::nth_element(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(m - 1),
                     scratch.end(), std::greater<Key>());
    return scratch[m - 1];
  }
  const Key* data = keys;
  for (int shift = 56; n > 1 && shift >= 0; shift -= 8) {
    // Two tables, alternate keys: equal digits in a row would otherwise wait on each other.
    std::uint32_t counts[2][256] = {};
    std::size_t i = 0;
    for (; i + 2 <= n; i += 2) {
      ++counts[0][(data[i] >> shift) & 0xFFu];
      ++counts[1][(data[i + 1] >> shift) & 0xFFu];
    }
    if (i < n) ++counts[0][(data[i] >> shift) & 0xFFu];
    unsigned digit = 255;
    std::size_t in_bucket = counts[0][digit] + counts[1][digit];
    while (in_bucket < m) {
      m -= in_bucket;
      --digit;
      in_bucket = counts[0][digit] + counts[1][digit];
    }
    if (in_bucket == n) continue;
    // Gather the bucket, in place once data is the scratch (writes never pass reads); every
    // key is stored and only the bucket's advance, so there is no branch to mispredict.
    scratch.resize(std::max(scratch.size(), in_bucket + 1));  // +1: the branch-free store
    Key* out = scratch.data();
    std::size_t count = 0;
    for (i = 0; i < n; ++i) {
      out[count] = data[i];
      count += ((data[i] >> shift) & 0xFFu) == digit;
    }
    data = out;
    n = count;
  }
  return data[0];
}

// A stable LSD radix sort, 8 bits a pass, on the score half of the keys taken relative to the
// best score: the passes cover only the bits in which the scores differ, and equal digits in a
// row are rare. Stability keeps ties in index order. Small inputs use std::sort.
void sort_best_first(Key* keys, std::size_t n, Key* scratch) {
  if (sorts_small(n)) {
    std::sort(keys, keys + n, std::greater<Key>());
    return;
  }
  const auto score_bits = [](Key key) { return static_cast<std::uint32_t>(key >> 32); };
  std::uint32_t best = 0;
  std::uint32_t worst = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    best = std::max(best, score_bits(keys[i]));
    worst = std::min(worst, score_bits(keys[i]));
  }
  const std::uint32_t range = best - worst;
  int passes = 0;
  while (passes < 4 && (range >> (8 * passes)) != 0) ++passes;
  Key* from = keys;
  Key* to = scratch;
  for (int pass = 0; pass < passes; ++pass) {
    const int shift = 8 * pass;
    std::uint32_t start[256] = {};
    for (std::size_t i = 0; i < n; ++i) ++start[((best - score_bits(from[i])) >> shift) & 0xFFu];
    std::uint32_t sum = 0;
    for (std::uint32_t& s : start) sum += std::exchange(s, sum);
    for (std::size_t i = 0; i < n; ++i) {
      to[start[((best - score_bits(from[i])) >> shift) & 0xFFu]++] = from[i];
    }
    std::swap(from, to);
  }
  if (from != keys) std::copy(from, from + n, keys);
}

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
  if (rows.num_rows == 1) {  // one request: no pool to wake
    fn(0, 0, rows.offsets == nullptr ? rows.row_length : static_cast<std::size_t>(rows.offsets[1]));
    return;
  }
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

std::size_t max_k(const ScoreRows& rows) {
  const std::size_t mean_length =
      rows.num_rows == 0 ? 0 : (rows.size + rows.num_rows - 1) / rows.num_rows;
  return std::max(mean_length, kMaxPadding);
}

void validate_topk(const ScoreRows& rows, std::size_t k) {
  check_rows(rows);
  ADRANK_CHECK_VALUE(k <= max_k(rows), "k must be <= ", max_k(rows),
                     " (the candidates per request, or ", kMaxPadding, " slots with padding), got ",
                     k);
}

void topk(const ScoreRows& rows, std::size_t k, float* values, std::int64_t* indices) {
  validate_topk(rows, k);
  topk_unchecked(rows, k, values, indices);
}

void topk_unchecked(const ScoreRows& rows, std::size_t k, float* values, std::int64_t* indices) {
  for_each_row(rows, [&](std::size_t r, std::size_t begin, std::size_t n) {
    thread_local std::vector<Key> keys;
    const float* x = rows.scores + begin;
    float* row_values = values + r * k;
    std::int64_t* row_indices = indices + r * k;
    if (k == 0) return;
    collect_best<true>(
        x, n, std::min(k, n), -std::numeric_limits<float>::infinity(), kNoBound,
        [](std::size_t) { return true; }, keys);
    write_answer(x, keys.data(), keys.size(), k, row_values, row_indices);
  });
}

}  // namespace adrank
