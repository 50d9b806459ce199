// The pooling kernel for the build's baseline instruction set (see embedding_kernel.hpp).
// Vec is wider than the baseline registers; helpers that pass it are always inlined, so GCC's
// note about the ABI of such functions does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
#include <cstddef>
#include <cstdint>

#include "embedding_internal.hpp"

#define ADRANK_EMBEDDING_TARGET generic

namespace adrank::embedding_internal::generic {

// binary16 to binary32 on all lanes at once, by bit arithmetic: no call in a function that
// returns a Vec (GCC warns about the ABI of those on the baseline build).
ADRANK_VEC_INLINE Vec load_half8(const std::uint16_t* p) {
  typedef std::uint16_t Half8 __attribute__((vector_size(16)));
  typedef std::uint32_t Bits8 __attribute__((vector_size(32)));
  constexpr std::uint32_t kExponentMask = 0x7C00u << 13;
  Half8 halves;
  __builtin_memcpy(&halves, p, sizeof(halves));
  const Bits8 x = __builtin_convertvector(halves, Bits8);
  Bits8 bits = (x & 0x7FFFu) << 13;
  const Bits8 exponent = bits & kExponentMask;
  const Bits8 is_special = (Bits8)(exponent == kExponentMask);  // inf or NaN
  const Bits8 is_subnormal = (Bits8)(exponent == 0u);           // zero or subnormal
  bits += (127u - 15u) << 23;
  bits += is_special & ((128u - 16u) << 23);
  bits += is_subnormal & (1u << 23);
  // A subnormal (or zero) is its mantissa times 2^-24: renormalize by subtracting 2^-14.
  Vec value;
  __builtin_memcpy(&value, &bits, sizeof(value));
  const float two_to_minus_14 = 6.103515625e-05f;
  Vec renormalized =
      value - Vec{two_to_minus_14, two_to_minus_14, two_to_minus_14, two_to_minus_14,
                  two_to_minus_14, two_to_minus_14, two_to_minus_14, two_to_minus_14};
  Bits8 fixed;
  __builtin_memcpy(&fixed, &renormalized, sizeof(fixed));
  bits = (bits & ~is_subnormal) | (fixed & is_subnormal);
  bits |= (x & 0x8000u) << 16;
  __builtin_memcpy(&value, &bits, sizeof(value));
  return value;
}

ADRANK_VEC_INLINE Vec load_byte8(const std::uint8_t* p) {
  typedef std::uint8_t Bytes8 __attribute__((vector_size(8)));
  Bytes8 b;
  __builtin_memcpy(&b, p, sizeof(b));
  return __builtin_convertvector(b, Vec);
}

ADRANK_VEC_INLINE Vec fmadd(const Vec& a, const Vec& b, const Vec& c) { return a * b + c; }

}  // namespace adrank::embedding_internal::generic

#include "embedding_kernel.hpp"
