// Shared between hashing.cpp (validation, threads, dispatch) and its SIMD twins. Private.
#pragma once

#include <cstddef>
#include <cstdint>

namespace adrank::hashing_internal {

// out[i] = reduce_to_bucket(xxh3_64_u64(ids[i], seed), num_buckets) for i in [0, n), 8 ids a
// step with AVX-512 F + DQ. num_buckets < 2^32 (the bucket then comes from two 32-bit
// products). Called only at simd level "avx512".
void hash_ids_avx512(const std::int64_t* ids, std::size_t n, std::uint64_t seed,
                     std::uint64_t num_buckets, std::int64_t* out);

}  // namespace adrank::hashing_internal
