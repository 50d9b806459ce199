// The scan at the heart of top-k: find the next score inside (lo, hi]. Almost every score fails
// the test once the bar has risen, so the speed of a call is the speed of this loop. AVX-512 and
// AVX2 twins test 32 scores per step (AVX-512 64 while the hit buffer has room); the portable
// loop is what the compiler vectorizes for the baseline instruction set. simd.hpp chooses
// between them (ADRANK_SIMD, set_simd).
#include <algorithm>
#include <cstdint>
#include <limits>

#include "adrank/simd.hpp"
#include "topk_internal.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ADRANK_TOPK_HAVE_AVX2 1
#endif

namespace adrank::topk_internal {
namespace {

// Room the caller's hit buffer must have left before a block of 32 scores is tested.
constexpr std::size_t kBlockHits = 32;

// The SIMD loops ask for the line this many scores (8 KB) ahead: the hardware prefetcher alone
// left a batch of 64 rows of 1e5 scores (25 MB, past the caches) 8 to 10% slower (measured on
// Zen 4, 1 KB to 32 KB ahead: 8 KB best; no change at rows of 1e4). A prefetch past the end
// of the scores never faults.
constexpr std::size_t kPrefetchAhead = 2048;

inline void prefetch_ahead(const float* p) {
  __builtin_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead), 0, 3);
}

inline void append_hits(std::uint32_t mask, std::size_t at, std::uint32_t* hits,
                        std::size_t& count) {
  for (; mask != 0; mask &= mask - 1) {
    hits[count++] = static_cast<std::uint32_t>(at + static_cast<std::size_t>(__builtin_ctz(mask)));
  }
}

std::size_t scan_portable(const float* x, std::size_t from, std::size_t end, float lo, float hi,
                          std::uint32_t* hits, std::size_t max_hits, std::size_t& count) {
  std::size_t i = from;
  for (; i + kBlockHits <= end && count + kBlockHits <= max_hits; i += kBlockHits) {
    std::uint32_t mask = 0;
    for (std::size_t j = 0; j < kBlockHits; ++j) {
      mask |= static_cast<std::uint32_t>(x[i + j] > lo && x[i + j] <= hi) << j;
    }
    append_hits(mask, i, hits, count);
  }
  if (i + kBlockHits > end && count + kBlockHits <= max_hits) {
    for (; i < end; ++i) {
      if (x[i] > lo && x[i] <= hi) hits[count++] = static_cast<std::uint32_t>(i);
    }
  }
  return i;
}

void bucket_maxima_portable(const float* x, std::size_t n, std::size_t buckets, float below,
                            float* maxima) {
  std::fill(maxima, maxima + buckets, -std::numeric_limits<float>::infinity());
  for (std::size_t start = 0; start + buckets <= n; start += buckets) {
    for (std::size_t j = 0; j < buckets; ++j) {
      const float v = x[start + j];
      maxima[j] = v > maxima[j] && v < below ? v : maxima[j];  // NaN fails both tests
    }
  }
}

#ifdef ADRANK_TOPK_HAVE_AVX2
__attribute__((target("avx2"))) void bucket_maxima_avx2(const float* x, std::size_t n,
                                                        std::size_t buckets, float below,
                                                        float* maxima) {
  const __m256 none = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256 limit = _mm256_set1_ps(below);
  std::fill(maxima, maxima + buckets, -std::numeric_limits<float>::infinity());
  for (std::size_t start = 0; start + buckets <= n; start += buckets) {
    for (std::size_t j = 0; j < buckets; j += 8) {
      if (j % 16 == 0) prefetch_ahead(x + start + j);
      // Scores at or over the limit (and NaN) count as -inf.
      const __m256 v = _mm256_loadu_ps(x + start + j);
      const __m256 kept = _mm256_blendv_ps(none, v, _mm256_cmp_ps(v, limit, _CMP_LT_OQ));
      _mm256_storeu_ps(maxima + j, _mm256_max_ps(kept, _mm256_loadu_ps(maxima + j)));
    }
  }
}

// One bit per lane where low < x[at + lane] <= high.
__attribute__((target("avx2"))) inline std::uint32_t hit_bits(const float* x, std::size_t at,
                                                              __m256 low, __m256 high) {
  const __m256 v = _mm256_loadu_ps(x + at);
  const __m256 in =
      _mm256_and_ps(_mm256_cmp_ps(v, low, _CMP_GT_OQ), _mm256_cmp_ps(v, high, _CMP_LE_OQ));
  return static_cast<std::uint32_t>(_mm256_movemask_ps(in));
}

__attribute__((target("avx2"))) std::size_t scan_avx2(const float* x, std::size_t from,
                                                      std::size_t end, float lo, float hi,
                                                      std::uint32_t* hits, std::size_t max_hits,
                                                      std::size_t& count) {
  const __m256 low = _mm256_set1_ps(lo);
  const __m256 high = _mm256_set1_ps(hi);
  std::size_t i = from;
  for (; i + kBlockHits <= end && count + kBlockHits <= max_hits; i += kBlockHits) {
    prefetch_ahead(x + i);
    prefetch_ahead(x + i + 16);
    const std::uint32_t mask = hit_bits(x, i, low, high) | hit_bits(x, i + 8, low, high) << 8 |
                               hit_bits(x, i + 16, low, high) << 16 |
                               hit_bits(x, i + 24, low, high) << 24;
    if (mask != 0) append_hits(mask, i, hits, count);
  }
  if (i + kBlockHits > end && count + kBlockHits <= max_hits) {
    for (; i < end; ++i) {
      if (x[i] > lo && x[i] <= hi) hits[count++] = static_cast<std::uint32_t>(i);
    }
  }
  return i;
}

// AVX-512: 16 scores a compare, straight into a mask register; a plain top-k has no upper
// bound (hi = +inf), so one compare a vector does (NaN fails x > lo alone).
template <bool kBounded>
__attribute__((target("avx512f"))) inline std::uint32_t hit_bits16(const float* x, std::size_t at,
                                                                   __m512 low, __m512 high) {
  const __m512 v = _mm512_loadu_ps(x + at);
  __mmask16 in = _mm512_cmp_ps_mask(v, low, _CMP_GT_OQ);
  if (kBounded) in = _mm512_mask_cmp_ps_mask(in, v, high, _CMP_LE_OQ);
  return static_cast<std::uint32_t>(in);
}

template <bool kBounded>
__attribute__((target("avx512f"))) std::size_t scan_avx512(const float* x, std::size_t from,
                                                           std::size_t end, float lo, float hi,
                                                           std::uint32_t* hits,
                                                           std::size_t max_hits,
                                                           std::size_t& count) {
  const __m512 low = _mm512_set1_ps(lo);
  const __m512 high = _mm512_set1_ps(hi);
  std::size_t i = from;
  // Up to a cache line first: a 64-byte load across two lines costs two, and numpy's arrays
  // start 16 bytes off a line (this loop was slower than AVX2's without it). At most 15
  // scores, so the hits fit; none for scores not aligned to their size (a view at an odd
  // byte offset), which no count of steps would align.
  const std::size_t misalign = reinterpret_cast<std::uintptr_t>(x + i) % 64;
  if (misalign % sizeof(float) == 0 && count + kBlockHits <= max_hits) {
    const std::size_t head = std::min(end - i, (64 - misalign) % 64 / sizeof(float));
    for (const std::size_t stop = i + head; i < stop; ++i) {
      if (x[i] > lo && x[i] <= hi) hits[count++] = static_cast<std::uint32_t>(i);
    }
  }
  // Two blocks a step while there is room for both: one well-predicted branch per 64 scores.
  for (; i + 2 * kBlockHits <= end && count + 2 * kBlockHits <= max_hits; i += 2 * kBlockHits) {
    for (std::size_t line = 0; line < 2 * kBlockHits; line += 16) prefetch_ahead(x + i + line);
    const std::uint32_t first =
        hit_bits16<kBounded>(x, i, low, high) | hit_bits16<kBounded>(x, i + 16, low, high) << 16;
    const std::uint32_t second = hit_bits16<kBounded>(x, i + 32, low, high) |
                                 hit_bits16<kBounded>(x, i + 48, low, high) << 16;
    if ((first | second) == 0) continue;
    append_hits(first, i, hits, count);
    append_hits(second, i + kBlockHits, hits, count);
  }
  for (; i + kBlockHits <= end && count + kBlockHits <= max_hits; i += kBlockHits) {
    const std::uint32_t mask =
        hit_bits16<kBounded>(x, i, low, high) | hit_bits16<kBounded>(x, i + 16, low, high) << 16;
    if (mask != 0) append_hits(mask, i, hits, count);
  }
  if (i + kBlockHits > end && count + kBlockHits <= max_hits) {
    for (; i < end; ++i) {
      if (x[i] > lo && x[i] <= hi) hits[count++] = static_cast<std::uint32_t>(i);
    }
  }
  return i;
}

std::size_t scan_avx512_any(const float* x, std::size_t from, std::size_t end, float lo, float hi,
                            std::uint32_t* hits, std::size_t max_hits, std::size_t& count) {
  if (hi == std::numeric_limits<float>::infinity()) {
    return scan_avx512<false>(x, from, end, lo, hi, hits, max_hits, count);
  }
  return scan_avx512<true>(x, from, end, lo, hi, hits, max_hits, count);
}

// 16 buckets a step (buckets is a multiple of 16 at this level); scores at or over the limit,
// and NaN, leave a bucket's maximum as it was. x is 64-byte aligned (initial_bar sees to it).
__attribute__((target("avx512f"))) void bucket_maxima_avx512(const float* x, std::size_t n,
                                                             std::size_t buckets, float below,
                                                             float* maxima) {
  const __m512 limit = _mm512_set1_ps(below);
  std::fill(maxima, maxima + buckets, -std::numeric_limits<float>::infinity());
  const bool bounded = below != std::numeric_limits<float>::infinity();
  for (std::size_t start = 0; start + buckets <= n; start += buckets) {
    for (std::size_t j = 0; j < buckets; j += 16) {
      prefetch_ahead(x + start + j);
      const __m512 v = _mm512_loadu_ps(x + start + j);
      const __m512 m = _mm512_loadu_ps(maxima + j);
      // max(v, m) answers m when v is NaN (the second operand wins).
      const __mmask16 kept = bounded ? _mm512_cmp_ps_mask(v, limit, _CMP_LT_OQ) : 0xFFFF;
      _mm512_storeu_ps(maxima + j, _mm512_mask_max_ps(m, kept, v, m));
    }
  }
}

// The AVX2 twins run at simd level "avx2"; "avx512" runs the AVX-512 ones.
bool use_avx2() { return simd_level() >= SimdLevel::kAvx2; }
bool use_avx512() { return simd_level() >= SimdLevel::kAvx512; }
#endif

}  // namespace

ScanFunction scan_function() {
#ifdef ADRANK_TOPK_HAVE_AVX2
  if (use_avx512()) return scan_avx512_any;
  if (use_avx2()) return scan_avx2;
#endif
  return scan_portable;
}

void bucket_maxima(const float* x, std::size_t n, std::size_t buckets, float below, float* maxima) {
#ifdef ADRANK_TOPK_HAVE_AVX2
  if (use_avx512() && buckets % 16 == 0) return bucket_maxima_avx512(x, n, buckets, below, maxima);
  if (use_avx2()) return bucket_maxima_avx2(x, n, buckets, below, maxima);
#endif
  bucket_maxima_portable(x, n, buckets, below, maxima);
}

}  // namespace adrank::topk_internal
