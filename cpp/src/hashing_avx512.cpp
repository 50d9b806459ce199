// hash_ids' inner loop with AVX-512 (see hashing_internal.hpp): XXH3's 8-byte path in 64-bit
// lanes, which AVX-512 DQ multiplies (vpmullq) and F rotates (vprolq) in one instruction each;
// AVX2 has neither, so its twin would gain little on the scalar loop. Bit-exact with it.
#include <cstddef>
#include <cstdint>

#include "adrank/hashing.hpp"
#include "hashing_internal.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

namespace adrank::hashing_internal {

__attribute__((target("avx512f,avx512dq"))) void hash_ids_avx512(const std::int64_t* ids,
                                                                 std::size_t n, std::uint64_t seed,
                                                                 std::uint64_t num_buckets,
                                                                 std::int64_t* out) {
  using hash_internal::kPrimeMx2;
  const __m512i bitflip =
      _mm512_set1_epi64(static_cast<long long>(hash_internal::Len4To8Bitflip(seed)));
  const __m512i prime = _mm512_set1_epi64(static_cast<long long>(kPrimeMx2));
  const __m512i length = _mm512_set1_epi64(8);
  const __m512i buckets = _mm512_set1_epi64(static_cast<long long>(num_buckets));
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    // For 8 bytes, (last4 | first4 << 32) is the id rotated by 32; then rrmxmx.
    __m512i h = _mm512_xor_si512(_mm512_rol_epi64(_mm512_loadu_si512(ids + i), 32), bitflip);
    h = _mm512_xor_si512(h, _mm512_xor_si512(_mm512_rol_epi64(h, 49), _mm512_rol_epi64(h, 24)));
    h = _mm512_mullo_epi64(h, prime);
    h = _mm512_xor_si512(h, _mm512_add_epi64(_mm512_srli_epi64(h, 35), length));
    h = _mm512_mullo_epi64(h, prime);
    h = _mm512_xor_si512(h, _mm512_srli_epi64(h, 28));
    // (h * num_buckets) >> 64 = (hi(h) * nb + (lo(h) * nb >> 32)) >> 32 when nb < 2^32; the
    // sum stays under 2^64.
    const __m512i high = _mm512_mul_epu32(_mm512_srli_epi64(h, 32), buckets);
    const __m512i low = _mm512_mul_epu32(h, buckets);
    const __m512i bucket =
        _mm512_srli_epi64(_mm512_add_epi64(high, _mm512_srli_epi64(low, 32)), 32);
    _mm512_storeu_si512(out + i, bucket);
  }
  for (; i < n; ++i) {
    out[i] = reduce_to_bucket(xxh3_64_u64(static_cast<std::uint64_t>(ids[i]), seed), num_buckets);
  }
}

}  // namespace adrank::hashing_internal

#else

namespace adrank::hashing_internal {
// Never selected off x86-64: simd_level() is never kAvx512 there.
void hash_ids_avx512(const std::int64_t* ids, std::size_t n, std::uint64_t seed,
                     std::uint64_t num_buckets, std::int64_t* out) {
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = reduce_to_bucket(xxh3_64_u64(static_cast<std::uint64_t>(ids[i]), seed), num_buckets);
  }
}
}  // namespace adrank::hashing_internal

#endif
