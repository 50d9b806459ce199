// Shared pieces of the top-k kernels (topk.cpp, topk_select.cpp, topk_scan.cpp). Private.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "adrank/topk.hpp"

namespace adrank::topk_internal {

// A candidate as one integer whose order is the ranking order: score bits made monotone in the
// high half, the complemented index in the low half (a lower index ranks higher on ties).
using Key = std::uint64_t;
constexpr Key kNoBound = std::numeric_limits<Key>::max();  // above every key
constexpr std::uint32_t kMaxIndex = 0xFFFFFFFEu;           // 0xFFFFFFFF - index stays distinct

inline std::uint32_t monotone_bits(float score) {
  score += 0.0f;  // -0.0 becomes +0.0: they tie
  std::uint32_t bits;
  std::memcpy(&bits, &score, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

inline float score_of(Key key) {
  const auto high = static_cast<std::uint32_t>(key >> 32);
  const std::uint32_t bits = (high & 0x80000000u) ? (high ^ 0x80000000u) : ~high;
  float score;
  std::memcpy(&score, &bits, sizeof score);
  return score;
}

inline Key make_key(float score, std::size_t index) {
  return (static_cast<Key>(monotone_bits(score)) << 32) |
         (0xFFFFFFFFu - static_cast<std::uint32_t>(index));
}

inline std::size_t index_of(Key key) { return 0xFFFFFFFFu - static_cast<std::uint32_t>(key); }

// Appends to hits[count..] every i in [from, end) with lo < x[i] <= hi (NaN never matches)
// and returns where it stopped: at end, or earlier once fewer than 32 free entries are left
// in hits[0, max_hits).
using ScanFunction = std::size_t (*)(const float* x, std::size_t from, std::size_t end, float lo,
                                     float hi, std::uint32_t* hits, std::size_t max_hits,
                                     std::size_t& count);
ScanFunction scan_function();

// The m-th largest of n distinct keys (1 <= m <= n), keys left as they are: a radix select,
// 8 bits a level, that copies only the bucket holding the answer.
Key mth_largest(const Key* keys, std::size_t n, std::size_t m, std::vector<Key>& scratch);

// maxima[j] = the largest score under `below` among x[j], x[j + buckets], ... over the whole
// chunks of `buckets` scores in x[0, n) (-inf if none). buckets is a multiple of 16.
void bucket_maxima(const float* x, std::size_t n, std::size_t buckets, float below, float* maxima);

// A score that at least m of maxima[0, count) reach (1 <= m <= count; -inf counts as a score),
// at most their m-th largest: a histogram of 256 bins over the maxima's range and a second one
// within the bin where the count reaches m; the bar is the lowest score of the final bin.
// Cheaper than selecting the m-th exactly for 64 < count <= 256 (nth_element on 200 keys was a
// fifth of a top-k call at n = 1e4, k = 100), and looser by at most the final bin's maxima.
float bar_of_maxima(const float* maxima, std::size_t count, std::size_t m);

// A bar that at least m scores of x[0, n) under `below` reach, found cheaply: about the m-th
// largest of 2m bucket maxima over a prefix (m distinct scores reach it), so about 1.4m scores of
// the prefix reach it (fewer when buckets are small). -inf when there are under 2 scores a bucket.
// The prefix, sqrt(256 m n) scores within [32m, n], balances the vectorized pass over it against
// the candidates the bar lets through from the rest, each a key to keep and select among:
// measured against 32m, 1.7x faster at 64 rows of 1e5 and k = 100, 2.7x at 1e4 and k = 10.
inline float initial_bar(const float* x, std::size_t n, std::size_t m, float below) {
  const std::size_t buckets = (2 * m + 15) / 16 * 16;
  const auto balanced =
      static_cast<std::size_t>(std::sqrt(256.0 * static_cast<double>(m) * static_cast<double>(n)));
  // The prefix starts at the first cache line (any scores will do): every chunk of buckets is
  // then read in whole lines, as 64-byte loads want.
  const std::size_t skip = std::min(n, (64 - reinterpret_cast<std::uintptr_t>(x) % 64) % 64 / 4);
  const std::size_t prefix = std::min(n - skip, std::max(32 * m, balanced));
  if (prefix < 2 * buckets) return -std::numeric_limits<float>::infinity();
  thread_local std::vector<float> maxima;
  maxima.resize(buckets);
  bucket_maxima(x + skip, prefix, buckets, below, maxima.data());
  if (buckets <= 64 || buckets > 256) {  // few enough to select, or enough to pay radix tables
    thread_local std::vector<Key> keys;
    thread_local std::vector<Key> scratch;
    keys.resize(buckets);
    for (std::size_t j = 0; j < buckets; ++j) keys[j] = make_key(maxima[j], j);
    return score_of(mth_largest(keys.data(), buckets, m, scratch));
  }
  return bar_of_maxima(maxima.data(), buckets, m);
}

// Sorts keys best first. `keys` must be in index order (ties then stay in it); scratch holds
// as many keys. Small inputs (sorts_small) are compared whole and may come in any order.
// Measured on fresh (unpredictable) rows: a bucket sort wins below this size (3x std::sort at
// 140 keys), the radix sort above; under 32 keys, std::sort.
constexpr bool sorts_small(std::size_t n) { return n < 192; }
void sort_best_first(Key* keys, std::size_t n, Key* scratch);

// Keeps the best m of keys, in their order, and returns the worst of them. keys.size() > m.
inline Key keep_best(std::vector<Key>& keys, std::size_t m, std::vector<Key>& scratch) {
  const Key worst = mth_largest(keys.data(), keys.size(), m, scratch);
  keys.erase(std::remove_if(keys.begin(), keys.end(), [worst](Key key) { return key < worst; }),
             keys.end());
  return worst;
}

// The best m candidates of x[0, n), best first, among those with a key below `below`,
// a score >= min_score (so never NaN) and accept(i) true. One pass: a buffer of 2m candidates
// is cut back to the best m whenever it fills, and the m-th best so far becomes the bar a
// score must clear, which the vectorized scan tests 32 scores at a time.
//
// When accept is always true (kAcceptsAll), the bar starts at initial_bar instead of the m-th
// of the first 2m scores: far fewer candidates get buffered when m is large.
template <bool kAcceptsAll, class Accept>
void collect_best(const float* x, std::size_t n, std::size_t m, float min_score, Key below,
                  Accept&& accept, std::vector<Key>& keys) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  thread_local std::vector<Key> scratch;
  keys.clear();
  if (m == 0) return;
  const std::size_t capacity = std::max<std::size_t>(2 * m, m + 32);
  const float hi = below == kNoBound ? kInf : score_of(below);
  std::size_t i = 0;
  float bar = -kInf;
  // Strictly under hi: a score equal to the bound's may still be above it (a lower index).
  if (kAcceptsAll) bar = std::max(initial_bar(x, n, m, hi), min_score);
  if (bar != -kInf) {
    // Scores equal to the bar may rank in the top m: keep them (the bar is met, not beaten).
    bar = std::nextafter(bar, -kInf);
  } else {
    for (; i < n && keys.size() < capacity; ++i) {
      if (!(x[i] >= min_score)) continue;
      const Key key = make_key(x[i], i);
      if (key < below && accept(i)) keys.push_back(key);
    }
    // Ties with the bar lose: the bar's candidate came earlier, so it has the lower index.
    if (i < n) bar = score_of(keep_best(keys, m, scratch));
  }
  if (i < n) {
    const ScanFunction scan = scan_function();
    constexpr std::size_t kMaxHits = 256;
    std::uint32_t hits[kMaxHits];
    while (i < n) {
      std::size_t count = 0;
      i = scan(x, i, n, bar, hi, hits, kMaxHits, count);
      for (std::size_t h = 0; h < count; ++h) {
        const std::size_t j = hits[h];
        if (!(x[j] > bar)) continue;  // the bar may have risen since the scan
        const Key key = make_key(x[j], j);
        if (key >= below || !accept(j)) continue;
        keys.push_back(key);
        if (keys.size() == capacity) bar = score_of(keep_best(keys, m, scratch));
      }
    }
  }
  // A few hundred keys sort faster whole than selected, then sorted (measured).
  if (keys.size() > m && keys.size() > 256) keep_best(keys, m, scratch);
  scratch.resize(keys.size());
  sort_best_first(keys.data(), keys.size(), scratch.data());
  if (keys.size() > m) keys.resize(m);
}

// Checks rows (ValueError); returns nothing, throws on the first problem.
void check_rows(const ScoreRows& rows);

// Calls fn(row, begin, length) for every request, over the thread pool.
void for_each_row(const ScoreRows& rows,
                  const std::function<void(std::size_t, std::size_t, std::size_t)>& fn);

// Writes a request's answer: the chosen keys' scores and indices, then (-inf, -1) padding.
inline void write_answer(const float* x, const Key* chosen, std::size_t count, std::size_t k,
                         float* values, std::int64_t* indices) {
  for (std::size_t s = 0; s < count; ++s) {
    const std::size_t index = index_of(chosen[s]);
    values[s] = x[index];
    indices[s] = static_cast<std::int64_t>(index);
  }
  std::fill(values + count, values + k, -std::numeric_limits<float>::infinity());
  std::fill(indices + count, indices + k, std::int64_t{-1});
}

}  // namespace adrank::topk_internal
