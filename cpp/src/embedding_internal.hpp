// Shared between embedding.cpp (validation, threads, dispatch) and the per-ISA kernels.
#pragma once

#include <cstddef>
#include <cstdint>

#include "adrank/embedding.hpp"

namespace adrank::embedding_internal {

typedef float Vec __attribute__((vector_size(32)));

// Helpers that take or return a Vec are always inlined: Vec never crosses a real call, so the
// baseline build (where Vec is wider than a register) has no ABI to worry about.
#define ADRANK_VEC_INLINE [[gnu::always_inline]] inline

// Bags [bag_begin, bag_end) of one table. Bag b holds ids at positions [offsets[b], end_b) of
// indices, where end_b = offsets[b + 1] if b + 1 < num_offsets, else num_indices. Row b of the
// output is at out + b * out_row_stride. offsets are int64 or the indices' type.
// With lengths (a collection's field), bag b holds lengths[b] ids instead, bag_begin's starting
// at first_index, and ids are read ahead (prefetch) up to prefetch_end, the field's end.
struct BagRun {
  const std::int64_t* lengths = nullptr;
  std::size_t first_index = 0;
  std::size_t prefetch_end = 0;
  IndexType index_type = IndexType::kInt64;
  bool offsets_int64 = true;
  const void* indices = nullptr;
  std::size_t num_indices = 0;
  const void* offsets = nullptr;
  std::size_t num_offsets = 0;
  std::size_t bag_begin = 0;
  std::size_t bag_end = 0;
  const float* weights = nullptr;
  float* out = nullptr;
  std::size_t out_row_stride = 0;
  std::size_t row_bytes = 0;
};

// IEEE binary16 to binary32, exact (subnormals, infinities and NaN included).
[[gnu::always_inline]] inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exponent = (h >> 10) & 0x1Fu;
  std::uint32_t mantissa = h & 0x3FFu;
  std::uint32_t bits;
  if (exponent == 0x1Fu) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalize
    exponent = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3FFu) << 13);
  }
  float f;
  __builtin_memcpy(&f, &bits, sizeof(f));
  return f;
}

namespace generic {
void pool_bags(const TableView& table, const Pooling& pooling, const BagRun& run);
}
namespace avx2 {
void pool_bags(const TableView& table, const Pooling& pooling, const BagRun& run);
}
namespace avx512 {
void pool_bags(const TableView& table, const Pooling& pooling, const BagRun& run);
}

}  // namespace adrank::embedding_internal
