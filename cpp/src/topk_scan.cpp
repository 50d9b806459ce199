// The scan at the heart of top-k: find the next score inside (lo, hi]. Almost every score fails
// the test once the bar has risen, so the speed of a call is the speed of this loop. An AVX2
// twin tests 32 scores per step; the portable loop is what the compiler vectorizes for the
// baseline instruction set. simd.hpp chooses between them (ADRANK_SIMD, set_simd).
#include <algorithm>
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

// The AVX2 twins run at simd levels "avx2" and "avx512" (whose CPUs have AVX2, all they need).
bool use_avx2() { return simd_level() >= SimdLevel::kAvx2; }
#endif

}  // namespace

ScanFunction scan_function() {
#ifdef ADRANK_TOPK_HAVE_AVX2
  if (use_avx2()) return scan_avx2;
#endif
  return scan_portable;
}

void bucket_maxima(const float* x, std::size_t n, std::size_t buckets, float below, float* maxima) {
#ifdef ADRANK_TOPK_HAVE_AVX2
  if (use_avx2()) return bucket_maxima_avx2(x, n, buckets, below, maxima);
#endif
  bucket_maxima_portable(x, n, buckets, below, maxima);
}

}  // namespace adrank::topk_internal
