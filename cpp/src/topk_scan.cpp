// The scan at the heart of top-k: find the next score inside (lo, hi]. Almost every score fails
// the test once the bar has risen, so the speed of a call is the speed of this loop. An AVX2
// twin tests 32 scores per step; the portable loop is what the compiler vectorizes for the
// baseline instruction set. The choice is made once, at run time (ADRANK_SIMD=scalar forces
// the portable one).
#include <cstdlib>
#include <cstring>

#include "topk_internal.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ADRANK_TOPK_HAVE_AVX2 1
#endif

namespace adrank::topk_internal {
namespace {

std::size_t scan_portable(const float* x, std::size_t from, std::size_t end, float lo, float hi) {
  constexpr std::size_t kBlock = 16;
  std::size_t i = from;
  for (; i + kBlock <= end; i += kBlock) {
    int any = 0;
    for (std::size_t j = 0; j < kBlock; ++j) any |= (x[i + j] > lo) & (x[i + j] <= hi);
    if (any) break;
  }
  for (; i < end; ++i) {
    if (x[i] > lo && x[i] <= hi) return i;
  }
  return end;
}

#ifdef ADRANK_TOPK_HAVE_AVX2
// All-ones lanes where low < x[at + lane] <= high.
__attribute__((target("avx2"))) inline __m256 hits(const float* x, std::size_t at, __m256 low,
                                                   __m256 high) {
  const __m256 v = _mm256_loadu_ps(x + at);
  return _mm256_and_ps(_mm256_cmp_ps(v, low, _CMP_GT_OQ), _mm256_cmp_ps(v, high, _CMP_LE_OQ));
}

__attribute__((target("avx2"))) std::size_t scan_avx2(const float* x, std::size_t from,
                                                      std::size_t end, float lo, float hi) {
  const __m256 low = _mm256_set1_ps(lo);
  const __m256 high = _mm256_set1_ps(hi);
  std::size_t i = from;
  for (; i + 32 <= end; i += 32) {
    const __m256 a = hits(x, i, low, high), b = hits(x, i + 8, low, high);
    const __m256 c = hits(x, i + 16, low, high), d = hits(x, i + 24, low, high);
    const __m256 any = _mm256_or_ps(_mm256_or_ps(a, b), _mm256_or_ps(c, d));
    if (_mm256_testz_ps(any, any)) continue;
    const auto mask = static_cast<std::uint32_t>(_mm256_movemask_ps(a)) |
                      static_cast<std::uint32_t>(_mm256_movemask_ps(b)) << 8 |
                      static_cast<std::uint32_t>(_mm256_movemask_ps(c)) << 16 |
                      static_cast<std::uint32_t>(_mm256_movemask_ps(d)) << 24;
    return i + static_cast<std::size_t>(__builtin_ctz(mask));
  }
  for (; i + 8 <= end; i += 8) {
    const auto mask = static_cast<std::uint32_t>(_mm256_movemask_ps(hits(x, i, low, high)));
    if (mask) return i + static_cast<std::size_t>(__builtin_ctz(mask));
  }
  for (; i < end; ++i) {
    if (x[i] > lo && x[i] <= hi) return i;
  }
  return end;
}
#endif

bool avx2_allowed() {
#ifdef ADRANK_TOPK_HAVE_AVX2
  const char* forced = std::getenv("ADRANK_SIMD");
  if (forced != nullptr && std::strcmp(forced, "scalar") == 0) return false;
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

const bool kUseAvx2 = avx2_allowed();

}  // namespace

ScanFunction scan_function() {
#ifdef ADRANK_TOPK_HAVE_AVX2
  if (kUseAvx2) return scan_avx2;
#endif
  return scan_portable;
}

}  // namespace adrank::topk_internal

namespace adrank {

const char* topk_simd_level() { return topk_internal::kUseAvx2 ? "avx2" : "scalar"; }

}  // namespace adrank
