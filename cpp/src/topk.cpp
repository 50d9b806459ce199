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

float bar_of_maxima(const float* maxima, std::size_t count, std::size_t m) {
  thread_local std::vector<std::uint32_t> distance;  // from the largest, in monotone bits
  distance.resize(count);
  std::uint32_t top = 0;
  for (std::size_t j = 0; j < count; ++j) top = std::max(top, monotone_bits(maxima[j]));
  std::uint32_t farthest = 0;
  for (std::size_t j = 0; j < count; ++j) {
    distance[j] = top - monotone_bits(maxima[j]);
    farthest = std::max(farthest, distance[j]);
  }
  // Two levels of 256 bins (the second within the first's bin): one level over a range that
  // crosses zero or several exponents is too coarse a bar.
  std::uint32_t base = 0;  // the current bin: distances [base, base + width)
  std::uint64_t width = std::uint64_t{farthest} + 1;
  std::size_t above = 0;  // maxima nearer than base
  for (int level = 0; level < 2 && width > 1; ++level) {
    int shift = 0;
    while (((width - 1) >> shift) > 255u) ++shift;
    // Two tables, alternate maxima: equal bins in a row would otherwise wait on each other.
    std::uint32_t bins[2][256] = {};
    for (std::size_t j = 0; j < count; ++j) {
      const std::uint64_t d = std::uint64_t{distance[j]} - base;  // wraps past width when under
      if (d < width) ++bins[j & 1][d >> shift];
    }
    std::uint32_t bin = 0;
    for (; above + bins[0][bin] + bins[1][bin] < m; ++bin) above += bins[0][bin] + bins[1][bin];
    base += bin << shift;
    width = std::min<std::uint64_t>(std::uint64_t{1} << shift, std::uint64_t{farthest} - base + 1);
  }
  // The bin's lowest score: every maximum in it or nearer the top reaches it, m at least.
  const auto lowest = static_cast<std::uint32_t>(top - (base + width - 1));
  return score_of(static_cast<Key>(lowest) << 32);
}

// Buckets by score, then one insertion pass: keys scattered into n buckets by the distance of
// their score from the best lie nearly in order, so the pass moves each key a step or two. The
// pass compares whole keys (any input order); if it moves keys too often (scores piled into
// few buckets), std::sort finishes. Measured at 140 keys: 3x faster than std::sort.
void sort_by_buckets(Key* keys, std::size_t n, Key* scratch, std::uint32_t best,
                     std::uint32_t range) {
  const auto score_bits = [](Key key) { return static_cast<std::uint32_t>(key >> 32); };
  // bucket = (best - bits) * n / (range + 1) in [0, n), as a multiply and a shift.
  const std::uint64_t scale = (static_cast<std::uint64_t>(n) << 32) / (std::uint64_t{range} + 1);
  const auto bucket = [&](Key key) {
    return static_cast<std::size_t>((std::uint64_t{best - score_bits(key)} * scale) >> 32);
  };
  thread_local std::vector<std::uint32_t> start;
  start.assign(n + 1, 0);
  for (std::size_t i = 0; i < n; ++i) ++start[bucket(keys[i]) + 1];
  for (std::size_t b = 1; b <= n; ++b) start[b] += start[b - 1];
  for (std::size_t i = 0; i < n; ++i) scratch[start[bucket(keys[i])]++] = keys[i];
  std::size_t moves = 0;
  const std::size_t most_moves = 8 * n;
  keys[0] = scratch[0];
  for (std::size_t i = 1; i < n; ++i) {
    const Key key = scratch[i];
    std::size_t j = i;
    for (; j > 0 && keys[j - 1] < key; --j) keys[j] = keys[j - 1];
    keys[j] = key;
    moves += i - j;
    if (moves > most_moves) {  // piled up: keys[0, i] are sorted, the rest are in scratch
      std::copy(scratch + i + 1, scratch + n, keys + i + 1);
      std::sort(keys, keys + n, std::greater<Key>());
      return;
    }
  }
}

// A stable LSD radix sort, 8 bits a pass, on the score half of the keys taken relative to the
// best score: the passes cover only the bits in which the scores differ, and equal digits in a
// row are rare. Stability keeps ties in index order. Small inputs use std::sort.
void sort_best_first(Key* keys, std::size_t n, Key* scratch) {
  if (n < 32) {
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
  if (sorts_small(n)) {
    sort_by_buckets(keys, n, scratch, best, range);
    return;
  }
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
