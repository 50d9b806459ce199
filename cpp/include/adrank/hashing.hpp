// Feature hashing: the one definition of how a raw feature value becomes a bucket id, shared by
// training data preparation and by serving so the two can never disagree.
//
// Glossary: N values, K keys (feature slots) of a keyed batch, values key-major.
//
// Fast mode (adrank's own):
//   slot_seed(seed, slot) = seed + slot * 0x9E3779B97F4A7C15                  (mod 2^64)
//   h(string)  = XXH3_64(utf8 bytes,                   slot_seed)
//   h(id)      = XXH3_64(8 bytes of the int64, little-endian, slot_seed)
//   h(missing) = fmix64(slot_seed)                 (MurmurHash3's 64-bit finalizer)
//   h(cross of columns c_1..c_m) = x_m where x_0 = slot_seed, x_j = XXH3_64(8 bytes of c_j,
//   x_{j-1}) bucket(h)  = (h * num_buckets) >> 64           (Lemire's multiply-shift, 128-bit
//   product)
// Different slots get unrelated seeds, so one value lands in unrelated buckets per slot.
//
// scikit-learn mode reproduces FeatureHasher(input_type="string") bit for bit:
//   h = MurmurHash3_x86_32(utf8 bytes, seed 0) as int32
//   index = |h| % n_features (2^31 % n_features for h == INT32_MIN);  sign = h >= 0 ? +1 : -1
#pragma once

#include <cstddef>
#include <cstdint>

#include "adrank/hash_functions.hpp"

namespace adrank {

constexpr std::uint64_t kSlotSeedMultiplier = 0x9E3779B97F4A7C15ULL;

constexpr std::uint64_t slot_seed(std::uint64_t seed, std::int64_t slot) {
  return seed + static_cast<std::uint64_t>(slot) * kSlotSeedMultiplier;
}

inline std::int64_t reduce_to_bucket(std::uint64_t hash, std::uint64_t num_buckets) {
  // Takes the high bits of the product: uniform over [0, num_buckets) without a division.
  using Wide = hash_internal::Uint128;
  return static_cast<std::int64_t>((static_cast<Wide>(hash) * num_buckets) >> 64);
}

// A column of N strings (UTF-8 or raw bytes) in one of the layouts Python hands over without
// building a Python object per value.
struct StringColumn {
  enum class Layout {
    kViews,    // view_data[i], view_lengths[i]; view_data[i] == nullptr means missing
    kArrow32,  // Arrow (large_)string/binary: data + int32 (int64) offsets[N + 1] + validity
    kArrow64,
    kFixedBytes,  // numpy "S<itemsize>": trailing NUL bytes are not part of the value
    kFixedUcs4,   // numpy "U<itemsize/4>": UCS-4 code points, encoded to UTF-8 before hashing
  };
  Layout layout = Layout::kViews;
  std::size_t size = 0;
  // kViews
  const char* const* view_data = nullptr;
  const std::int64_t* view_lengths = nullptr;
  // kArrow32 / kArrow64 / kFixed*
  const std::uint8_t* data = nullptr;
  std::size_t data_size = 0;  // bytes in `data`; Arrow offsets are checked against it
  const void* offsets = nullptr;
  const std::uint8_t* validity = nullptr;  // Arrow bitmap (LSB first); nullptr: all valid
  std::int64_t validity_offset = 0;        // bit index of value 0 in `validity`
  std::size_t itemsize = 0;                // bytes per value for kFixed*
};

// A keyed batch: key k owns values [key_offsets[k], key_offsets[k + 1]) and is hashed with
// slot slots[k] into num_buckets[k] buckets. key_offsets has K + 1 entries, starting at 0.
struct KeyedHashSpec {
  const std::int64_t* key_offsets = nullptr;
  const std::int64_t* slots = nullptr;
  const std::int64_t* num_buckets = nullptr;
  std::size_t num_keys = 0;
  std::uint64_t seed = 0;
};

// out[i] = bucket of value i under its key's slot. Validates the spec (ValueError).
void hash_strings(const StringColumn& values, const KeyedHashSpec& spec, std::int64_t* out);

// ids[i] is missing where the Arrow-style bitmap `validity` (may be nullptr) has a 0 bit.
// Without a bitmap and with fewer than 2^32 buckets, the AVX-512 twin runs at simd level
// "avx512" (simd.hpp); the answers are the same bits.
void hash_ids(const std::int64_t* ids, const std::uint8_t* validity, std::int64_t validity_offset,
              std::size_t n, const KeyedHashSpec& spec, std::int64_t* out);

// Order-sensitive cross of num_columns int64 columns of length n (column-major pointers).
void hash_cross(const std::int64_t* const* columns, std::size_t num_columns, std::size_t n,
                std::int64_t slot, std::int64_t num_buckets, std::uint64_t seed, std::int64_t* out);

// out[i] = number of boundaries <= values[i] (numpy.searchsorted(side="right")); NaN gets
// num_boundaries + 1, its own bucket. Boundaries must be strictly increasing and not NaN.
template <class Float>
void bucketize(const Float* values, std::size_t n, const double* boundaries,
               std::size_t num_boundaries, std::int64_t* out);

// scikit-learn FeatureHasher(input_type="string") per value; a missing value is an error.
void hash_sklearn(const StringColumn& values, std::int64_t n_features, bool alternate_sign,
                  std::int64_t* indices, std::int8_t* signs);

}  // namespace adrank
