// adrank/hash_functions.hpp — header-only, dependency-free hashing for feature ids.
//
// Contract:
//   * xxh3_64(data, len, seed) is bit-exact with the reference XXH3_64bits_withSeed
//     (python: xxhash.xxh3_64_intdigest(data, seed)) for every length and seed.
//   * murmur3_x86_32(data, len, seed) is bit-exact with MurmurHash3_x86_32
//     (python: mmh3.hash(data, seed, signed=False)); cast to int32_t for the signed form.
//   * fmix64 is MurmurHash3's 64-bit finalizer.
//   * xxh3_64_u64(v, seed) == xxh3_64(&v, 8, seed) (v's little-endian bytes).
//   * Xxh3Seeded(seed)(data, len) == xxh3_64(data, len, seed), deriving the long-input secret
//     once per seed instead of once per call.
// Inputs are read with unaligned loads and never past data + len; data may be null iff len == 0.
// All functions are pure and thread-safe. Implemented from doc/xxhash_spec.md (xxHash) and the
// public MurmurHash3 algorithm description; scalar, portable code, no intrinsics.
//
// Requirements: a little-endian host (checked below) and a compiler with unsigned __int128
// (gcc/clang) for the 64x64->128 multiply.

#ifndef ADRANK_HASH_FUNCTIONS_HPP_
#define ADRANK_HASH_FUNCTIONS_HPP_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace adrank {

namespace hash_internal {

// Lane reads below reinterpret memory directly, which is only correct on little-endian hosts.
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "adrank/hash_functions.hpp assumes a little-endian host");
#else
#error "adrank/hash_functions.hpp: cannot determine byte order (gcc/clang required)"
#endif

// 64x64->128 multiply; gcc/clang lower this to a single mul instruction on 64-bit targets.
// __extension__ keeps -Wpedantic quiet about the non-ISO type.
__extension__ typedef unsigned __int128 Uint128;

// ---------------------------------------------------------------------------------------------
// Loads and bit helpers.
// ---------------------------------------------------------------------------------------------

// memcpy is the portable unaligned load; compilers turn it into a plain mov.
inline std::uint64_t Read64(const std::uint8_t* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline std::uint32_t Read32(const std::uint8_t* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void Write64(std::uint8_t* p, std::uint64_t v) noexcept { std::memcpy(p, &v, sizeof(v)); }

constexpr std::uint64_t Rotl64(std::uint64_t x, int r) noexcept {
  return (x << r) | (x >> (64 - r));
}

constexpr std::uint32_t Rotl32(std::uint32_t x, int r) noexcept {
  return (x << r) | (x >> (32 - r));
}

constexpr std::uint32_t Bswap32(std::uint32_t x) noexcept {
  return ((x << 24) & 0xFF000000u) | ((x << 8) & 0x00FF0000u) | ((x >> 8) & 0x0000FF00u) |
         ((x >> 24) & 0x000000FFu);
}

constexpr std::uint64_t Bswap64(std::uint64_t x) noexcept {
  return (static_cast<std::uint64_t>(Bswap32(static_cast<std::uint32_t>(x))) << 32) |
         Bswap32(static_cast<std::uint32_t>(x >> 32));
}

// Full 128-bit product folded to 64 bits: the core mixing primitive of XXH3.
inline std::uint64_t Mul128Fold64(std::uint64_t a, std::uint64_t b) noexcept {
  const Uint128 product = static_cast<Uint128>(a) * static_cast<Uint128>(b);
  return static_cast<std::uint64_t>(product) ^ static_cast<std::uint64_t>(product >> 64);
}

// ---------------------------------------------------------------------------------------------
// XXH3 constants (xxhash_spec.md).
// ---------------------------------------------------------------------------------------------

constexpr std::uint64_t kPrime32_1 = 0x9E3779B1u;
constexpr std::uint64_t kPrime32_2 = 0x85EBCA77u;
constexpr std::uint64_t kPrime32_3 = 0xC2B2AE3Du;
constexpr std::uint64_t kPrime64_1 = 0x9E3779B185EBCA87ull;
constexpr std::uint64_t kPrime64_2 = 0xC2B2AE3D27D4EB4Full;
constexpr std::uint64_t kPrime64_3 = 0x165667B19E3779F9ull;
constexpr std::uint64_t kPrime64_4 = 0x85EBCA77C2B2AE63ull;
constexpr std::uint64_t kPrime64_5 = 0x27D4EB2F165667C5ull;
constexpr std::uint64_t kPrimeMx1 = 0x165667919E3779F9ull;
constexpr std::uint64_t kPrimeMx2 = 0x9FB21C651E98DF25ull;

constexpr std::size_t kSecretSize = 192;
constexpr std::size_t kStripeLen = 64;
constexpr std::size_t kSecretConsumeRate = 8;  // secret offset advance per stripe
constexpr std::size_t kStripesPerBlock = (kSecretSize - kStripeLen) / kSecretConsumeRate;  // 16
constexpr std::size_t kBlockLen = kStripeLen * kStripesPerBlock;                           // 1024
constexpr std::size_t kMidSizeMax = 240;

// The default 192-byte secret.
alignas(64) inline constexpr std::uint8_t kSecret[kSecretSize] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

// Compile-time little-endian reads of the default secret, so the short paths see immediates.
constexpr std::uint64_t SecretWord64(std::size_t off) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(kSecret[off + i]) << (8 * i);
  return v;
}

constexpr std::uint32_t SecretWord32(std::size_t off) noexcept {
  return static_cast<std::uint32_t>(SecretWord64(off));
}

// Avalanche used by XXH64 (and the XXH3 0..3-byte paths).
constexpr std::uint64_t AvalancheXxh64(std::uint64_t h) noexcept {
  h ^= h >> 33;
  h *= kPrime64_2;
  h ^= h >> 29;
  h *= kPrime64_3;
  h ^= h >> 32;
  return h;
}

// XXH3's lighter avalanche, sufficient after the 128-bit multiply folds.
constexpr std::uint64_t AvalancheXxh3(std::uint64_t h) noexcept {
  h ^= h >> 37;
  h *= kPrimeMx1;
  h ^= h >> 32;
  return h;
}

// "rrmxmx" finalizer of the 4..8-byte path; stronger because only one multiply-free combine
// precedes it.
constexpr std::uint64_t Rrmxmx(std::uint64_t h, std::uint64_t len) noexcept {
  h ^= Rotl64(h, 49) ^ Rotl64(h, 24);
  h *= kPrimeMx2;
  h ^= (h >> 35) + len;
  h *= kPrimeMx2;
  return h ^ (h >> 28);
}

// ---------------------------------------------------------------------------------------------
// XXH3 short inputs (0..16 bytes). Always use the default secret; the seed is mixed in directly.
// ---------------------------------------------------------------------------------------------

inline std::uint64_t Xxh3Len0(std::uint64_t seed) noexcept {
  return AvalancheXxh64(seed ^ (SecretWord64(56) ^ SecretWord64(64)));
}

inline std::uint64_t Xxh3Len1To3(const std::uint8_t* p, std::size_t len,
                                 std::uint64_t seed) noexcept {
  // Pack last byte, length, first byte and middle byte; for len 1..3 this covers every byte.
  const std::uint32_t combined =
      static_cast<std::uint32_t>(p[len - 1]) | (static_cast<std::uint32_t>(len) << 8) |
      (static_cast<std::uint32_t>(p[0]) << 16) | (static_cast<std::uint32_t>(p[len >> 1]) << 24);
  const std::uint64_t bitflip = (SecretWord32(0) ^ SecretWord32(4)) + seed;
  return AvalancheXxh64(static_cast<std::uint64_t>(combined) ^ bitflip);
}

// The one per-seed constant of the 4..8 path (SIMD twins that hash many ids with one seed
// compute it once).
inline std::uint64_t Len4To8Bitflip(std::uint64_t seed) noexcept {
  // The seed's low half is byte-swapped into the high half so both halves of the key move.
  const std::uint64_t modified_seed =
      seed ^ (static_cast<std::uint64_t>(Bswap32(static_cast<std::uint32_t>(seed))) << 32);
  return (SecretWord64(8) ^ SecretWord64(16)) - modified_seed;
}

// Shared by the generic 4..8 path and xxh3_64_u64; `swapped` is (last4) | (first4 << 32).
inline std::uint64_t Xxh3Len4To8Combined(std::uint64_t swapped, std::size_t len,
                                         std::uint64_t seed) noexcept {
  return Rrmxmx(swapped ^ Len4To8Bitflip(seed), len);
}

inline std::uint64_t Xxh3Len4To8(const std::uint8_t* p, std::size_t len,
                                 std::uint64_t seed) noexcept {
  // First and last 4 bytes overlap for len < 8, so every byte is read without a loop.
  const std::uint64_t first = Read32(p);
  const std::uint64_t last = Read32(p + len - 4);
  return Xxh3Len4To8Combined(last | (first << 32), len, seed);
}

inline std::uint64_t Xxh3Len9To16(const std::uint8_t* p, std::size_t len,
                                  std::uint64_t seed) noexcept {
  const std::uint64_t bitflip_lo = (SecretWord64(24) ^ SecretWord64(32)) + seed;
  const std::uint64_t bitflip_hi = (SecretWord64(40) ^ SecretWord64(48)) - seed;
  const std::uint64_t lo = Read64(p) ^ bitflip_lo;
  const std::uint64_t hi = Read64(p + len - 8) ^ bitflip_hi;  // overlaps `lo` for len < 16
  const std::uint64_t acc =
      static_cast<std::uint64_t>(len) + Bswap64(lo) + hi + Mul128Fold64(lo, hi);
  return AvalancheXxh3(acc);
}

inline std::uint64_t Xxh3Len0To16(const std::uint8_t* p, std::size_t len,
                                  std::uint64_t seed) noexcept {
  if (len > 8) return Xxh3Len9To16(p, len, seed);
  if (len >= 4) return Xxh3Len4To8(p, len, seed);
  if (len > 0) return Xxh3Len1To3(p, len, seed);
  return Xxh3Len0(seed);
}

// ---------------------------------------------------------------------------------------------
// XXH3 medium inputs (17..240 bytes).
// ---------------------------------------------------------------------------------------------

// Mixes 16 input bytes against 16 secret bytes; the seed is added/subtracted to the key.
inline std::uint64_t Mix16(const std::uint8_t* p, const std::uint8_t* secret,
                           std::uint64_t seed) noexcept {
  return Mul128Fold64(Read64(p) ^ (Read64(secret) + seed),
                      Read64(p + 8) ^ (Read64(secret + 8) - seed));
}

inline std::uint64_t Xxh3Len17To128(const std::uint8_t* p, std::size_t len,
                                    std::uint64_t seed) noexcept {
  // Pairs of 16-byte chunks from the front and the back; the back chunks overlap the front ones
  // when len is not a multiple of 32. Nested ifs instead of a loop: at most 3 predictable
  // branches, and the accumulation is a commutative sum so the order is free.
  const std::uint8_t* s = kSecret;
  std::uint64_t acc = static_cast<std::uint64_t>(len) * kPrime64_1;
  if (len > 32) {
    if (len > 64) {
      if (len > 96) {
        acc += Mix16(p + 48, s + 96, seed);
        acc += Mix16(p + len - 64, s + 112, seed);
      }
      acc += Mix16(p + 32, s + 64, seed);
      acc += Mix16(p + len - 48, s + 80, seed);
    }
    acc += Mix16(p + 16, s + 32, seed);
    acc += Mix16(p + len - 32, s + 48, seed);
  }
  acc += Mix16(p, s, seed);
  acc += Mix16(p + len - 16, s + 16, seed);
  return AvalancheXxh3(acc);
}

inline std::uint64_t Xxh3Len129To240(const std::uint8_t* p, std::size_t len,
                                     std::uint64_t seed) noexcept {
  constexpr std::size_t kMidStartOffset = 3;   // secret offset for chunks 8.. (spec)
  constexpr std::size_t kMidLastOffset = 119;  // secret offset for the final 16 bytes (136 - 17)
  const std::uint8_t* s = kSecret;
  const std::size_t num_chunks = len >> 4;
  std::uint64_t acc = static_cast<std::uint64_t>(len) * kPrime64_1;
  for (std::size_t i = 0; i < 8; ++i) acc += Mix16(p + 16 * i, s + 16 * i, seed);
  // Intermediate avalanche: the remaining chunks reuse overlapping secret, so re-diffuse first.
  acc = AvalancheXxh3(acc);
  for (std::size_t i = 8; i < num_chunks; ++i) {
    acc += Mix16(p + 16 * i, s + 16 * (i - 8) + kMidStartOffset, seed);
  }
  acc += Mix16(p + len - 16, s + kMidLastOffset, seed);
  return AvalancheXxh3(acc);
}

// ---------------------------------------------------------------------------------------------
// XXH3 long inputs (> 240 bytes): 8 accumulators over 64-byte stripes, 1024-byte blocks.
// Seeds are folded into a derived secret rather than the data path.
// ---------------------------------------------------------------------------------------------

// Derived secret for seeded long inputs: even 64-bit words += seed, odd words -= seed.
inline void DeriveSecret(std::uint64_t seed, std::uint8_t* out) noexcept {
  for (std::size_t i = 0; i < kSecretSize / 16; ++i) {
    Write64(out + 16 * i, Read64(kSecret + 16 * i) + seed);
    Write64(out + 16 * i + 8, Read64(kSecret + 16 * i + 8) - seed);
  }
}

// One stripe: each lane adds a 32x32->64 product of its keyed halves, and its raw value to the
// neighbour lane so input bits survive even if the keyed product is zero.
inline void Accumulate512(std::uint64_t* acc, const std::uint8_t* p,
                          const std::uint8_t* secret) noexcept {
  for (std::size_t i = 0; i < 8; ++i) {
    const std::uint64_t data = Read64(p + 8 * i);
    const std::uint64_t keyed = data ^ Read64(secret + 8 * i);
    acc[i ^ 1] += data;
    acc[i] += (keyed & 0xFFFFFFFFu) * (keyed >> 32);
  }
}

// Once per block, so accumulator high bits feed back into the low bits used by the multiplies.
inline void Scramble(std::uint64_t* acc, const std::uint8_t* secret) noexcept {
  for (std::size_t i = 0; i < 8; ++i) {
    std::uint64_t a = acc[i];
    a ^= a >> 47;
    a ^= Read64(secret + 8 * i);
    acc[i] = a * kPrime32_1;
  }
}

inline void AccumulateStripes(std::uint64_t* acc, const std::uint8_t* p, std::size_t num_stripes,
                              const std::uint8_t* secret) noexcept {
  for (std::size_t n = 0; n < num_stripes; ++n) {
    Accumulate512(acc, p + n * kStripeLen, secret + n * kSecretConsumeRate);
  }
}

// `secret` is kSecretSize bytes: the default one, or DeriveSecret(seed).
inline std::uint64_t Xxh3HashLong(const std::uint8_t* p, std::size_t len,
                                  const std::uint8_t* secret) noexcept {
  constexpr std::size_t kLastStripeSecretOffset = kSecretSize - kStripeLen - 7;  // 121
  constexpr std::size_t kMergeSecretOffset = 11;
  std::uint64_t acc[8] = {kPrime32_3, kPrime64_1, kPrime64_2, kPrime64_3,
                          kPrime64_4, kPrime32_2, kPrime64_5, kPrime32_1};

  // Full blocks, except that the final block (even if full) is left to the tail logic below.
  const std::size_t num_blocks = (len - 1) / kBlockLen;
  for (std::size_t b = 0; b < num_blocks; ++b) {
    AccumulateStripes(acc, p + b * kBlockLen, kStripesPerBlock, secret);
    Scramble(acc, secret + kSecretSize - kStripeLen);
  }

  // Last partial block: whole stripes except the final one, then the last 64 input bytes (which
  // may overlap the previous stripe) with a dedicated secret offset.
  const std::size_t num_stripes = ((len - 1) - kBlockLen * num_blocks) / kStripeLen;
  AccumulateStripes(acc, p + num_blocks * kBlockLen, num_stripes, secret);
  Accumulate512(acc, p + len - kStripeLen, secret + kLastStripeSecretOffset);

  // Merge the 8 lanes pairwise through 128-bit multiplies.
  std::uint64_t result = static_cast<std::uint64_t>(len) * kPrime64_1;
  for (std::size_t i = 0; i < 4; ++i) {
    const std::uint8_t* k = secret + kMergeSecretOffset + 16 * i;
    result += Mul128Fold64(acc[2 * i] ^ Read64(k), acc[2 * i + 1] ^ Read64(k + 8));
  }
  return AvalancheXxh3(result);
}

// Dispatch for len <= 240 (seed applied directly with the default secret).
inline std::uint64_t Xxh3Short(const std::uint8_t* p, std::size_t len,
                               std::uint64_t seed) noexcept {
  if (len <= 16) return Xxh3Len0To16(p, len, seed);
  if (len <= 128) return Xxh3Len17To128(p, len, seed);
  return Xxh3Len129To240(p, len, seed);
}

// MurmurHash3 32-bit constants and finalizer.
constexpr std::uint32_t kMurmurC1 = 0xcc9e2d51u;
constexpr std::uint32_t kMurmurC2 = 0x1b873593u;

constexpr std::uint32_t MurmurMixK(std::uint32_t k) noexcept {
  return Rotl32(k * kMurmurC1, 15) * kMurmurC2;
}

constexpr std::uint32_t Fmix32(std::uint32_t h) noexcept {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

}  // namespace hash_internal

// ---------------------------------------------------------------------------------------------
// Public API.
// ---------------------------------------------------------------------------------------------

// XXH3 64-bit, bit-exact with the reference xxHash (python: xxhash.xxh3_64_intdigest(data, seed)).
inline std::uint64_t xxh3_64(const void* data, std::size_t len, std::uint64_t seed) noexcept {
  namespace hi = hash_internal;
  const auto* p = static_cast<const std::uint8_t*>(data);
  if (len <= hi::kMidSizeMax) return hi::Xxh3Short(p, len, seed);
  if (seed == 0) return hi::Xxh3HashLong(p, len, hi::kSecret);  // derived == default for seed 0
  alignas(64) std::uint8_t secret[hi::kSecretSize];
  hi::DeriveSecret(seed, secret);
  return hi::Xxh3HashLong(p, len, secret);
}

// Fast path for exactly 8 bytes (an int64 id in little-endian); equal to xxh3_64(&v, 8, seed).
inline std::uint64_t xxh3_64_u64(std::uint64_t v, std::uint64_t seed) noexcept {
  // For len 8, first4 = low half and last4 = high half, so (last4 | first4 << 32) is a rotation.
  return hash_internal::Xxh3Len4To8Combined(hash_internal::Rotl64(v, 32), 8, seed);
}

// XXH3 64-bit with a fixed seed; the long-input (> 240 bytes) secret is derived once here.
class Xxh3Seeded {
 public:
  explicit Xxh3Seeded(std::uint64_t seed) noexcept : seed_(seed) {
    hash_internal::DeriveSecret(seed, secret_);
  }

  std::uint64_t seed() const noexcept { return seed_; }

  // Equal to xxh3_64(data, len, seed()).
  std::uint64_t operator()(const void* data, std::size_t len) const noexcept {
    const auto* p = static_cast<const std::uint8_t*>(data);
    if (len <= hash_internal::kMidSizeMax) return hash_internal::Xxh3Short(p, len, seed_);
    return hash_internal::Xxh3HashLong(p, len, secret_);
  }

 private:
  alignas(64) std::uint8_t secret_[hash_internal::kSecretSize];
  std::uint64_t seed_;
};

// MurmurHash3 x86 32-bit, bit-exact with mmh3.hash(data, seed, signed=False). Cast the result to
// int32_t for mmh3's default signed form.
inline std::uint32_t murmur3_x86_32(const void* data, std::size_t len,
                                    std::uint32_t seed) noexcept {
  namespace hi = hash_internal;
  const auto* p = static_cast<const std::uint8_t*>(data);
  const std::size_t num_blocks = len / 4;
  std::uint32_t h = seed;
  for (std::size_t i = 0; i < num_blocks; ++i) {
    h ^= hi::MurmurMixK(hi::Read32(p + 4 * i));
    h = hi::Rotl32(h, 13) * 5 + 0xe6546b64u;
  }
  // Tail: the 1..3 leftover bytes form one little-endian partial word.
  const std::uint8_t* tail = p + 4 * num_blocks;
  std::uint32_t k = 0;
  switch (len & 3) {
    case 3:
      k ^= static_cast<std::uint32_t>(tail[2]) << 16;
      [[fallthrough]];
    case 2:
      k ^= static_cast<std::uint32_t>(tail[1]) << 8;
      [[fallthrough]];
    case 1:
      k ^= tail[0];
      h ^= hi::MurmurMixK(k);
      break;
    default:
      break;
  }
  // The reference mixes in a 32-bit length; longer inputs wrap, matching it.
  h ^= static_cast<std::uint32_t>(len);
  return hi::Fmix32(h);
}

// MurmurHash3's 64-bit finalizer (fmix64): a cheap bijective avalanche for 64-bit keys.
constexpr std::uint64_t fmix64(std::uint64_t k) noexcept {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

}  // namespace adrank

#endif  // ADRANK_HASH_FUNCTIONS_HPP_
