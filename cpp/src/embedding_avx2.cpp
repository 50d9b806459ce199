// The pooling kernel compiled for AVX2 + FMA + F16C (see embedding_kernel.hpp); embedding.cpp
// calls it only where the CPU has all three. Standard headers come before the target pragma so
// that none of their inline code is compiled for AVX2.
#include <cstddef>
#include <cstdint>

#include "embedding_internal.hpp"

#if defined(__x86_64__) || defined(__i386__)

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#define ADRANK_EMBEDDING_TARGET avx2

namespace adrank::embedding_internal::avx2 {

ADRANK_VEC_INLINE Vec load_half8(const std::uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// 8 codes to 8 floats in three instructions (GCC scalarizes the generic conversion).
ADRANK_VEC_INLINE Vec load_byte8(const std::uint8_t* p) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes));
}

ADRANK_VEC_INLINE Vec fmadd(const Vec& a, const Vec& b, const Vec& c) {
  return _mm256_fmadd_ps(a, b, c);
}

}  // namespace adrank::embedding_internal::avx2

#include "embedding_kernel.hpp"

#pragma GCC pop_options

#else

namespace adrank::embedding_internal::avx2 {
// Never selected off x86: simd_level() is kGeneric there.
void pool_bags(const TableView& table, const Pooling& pooling, const BagRun& run) {
  generic::pool_bags(table, pooling, run);
}
}  // namespace adrank::embedding_internal::avx2

#endif
